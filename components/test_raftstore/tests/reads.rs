//! Linearizable reads: lease reads, ReadIndex, and reads racing writes and leader changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raftstore::{Config, ManualClock};
use test_raftstore::util::wait_for;
use test_raftstore::Cluster;

#[test]
fn reads_use_the_lease_when_it_is_valid() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let before = cluster.stats(leader.store_id);
    // Reads right after a write: the write's commit renewed the lease.
    let mut served = 0;
    for _ in 0..20 {
        cluster.must_put(b"k", b"v");
        cluster.must_get_equal(b"k", b"v");
        served += 1;
    }
    let after = cluster.stats(leader.store_id);
    let lease = after.lease_reads - before.lease_reads;
    let read_index = after.read_index_reads - before.read_index_reads;
    assert_eq!(lease + read_index, served, "every read took exactly one path");
    assert!(lease > 0, "no read was served from the lease");
}

/// The stores' clock moved by hand: a read inside the lease is served locally; once the clock
/// passes the lease, a read confirms leadership with ReadIndex, which renews the lease from
/// the time it was sent, so the next read is local again. Nothing sleeps.
#[test]
fn the_lease_expires_and_renews_on_the_stores_clock() {
    let clock = Arc::new(ManualClock::default());
    let mut cluster = Cluster::new(3, &[], Config::for_tests()); // 200 ms lease
    cluster.set_clock(clock.clone());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let paths = |before: &raftstore::StoreStatsSnapshot| {
        let after = cluster.stats(leader.store_id);
        (after.lease_reads - before.lease_reads, after.read_index_reads - before.read_index_reads)
    };
    // The clock stands still, so once the leader has applied its put, the lease holds.
    wait_for("a lease read", Duration::from_secs(10), || {
        let before = cluster.stats(leader.store_id);
        cluster.must_get_equal(b"k", b"v");
        (paths(&before) == (1, 0)).then_some(())
    });
    clock.advance(Duration::from_secs(1));
    let before = cluster.stats(leader.store_id);
    cluster.must_get_equal(b"k", b"v");
    assert_eq!(paths(&before), (0, 1), "past the lease: ReadIndex");
    let before = cluster.stats(leader.store_id);
    cluster.must_get_equal(b"k", b"v");
    assert_eq!(paths(&before), (1, 0), "the ReadIndex renewed the lease");
}

/// A read never returns a value older than a write acknowledged before the read started,
/// while leadership moves around.
#[test]
fn reads_see_every_write_acknowledged_before_them() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"counter", &0u64.to_be_bytes());
    let acked = AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=150u64 {
                cluster.must_put(b"counter", &i.to_be_bytes());
                acked.store(i, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            let mut n = 0u64;
            while !done.load(Ordering::SeqCst) {
                let floor = acked.load(Ordering::SeqCst);
                let v = cluster.must_get(b"counter").expect("present");
                let v = u64::from_be_bytes(v.try_into().unwrap());
                assert!(v >= floor, "read {v} after write {floor} was acknowledged");
                n += 1;
            }
            assert!(n > 0);
        });
        s.spawn(|| {
            for store in [2u64, 3, 1, 2] {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let target = cluster.peer_on(1, store);
                cluster.must_transfer_leader(1, &target);
            }
        });
    });
    cluster.must_get_equal(b"counter", &150u64.to_be_bytes());
}
