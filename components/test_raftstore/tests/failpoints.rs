//! Crash windows driven by failpoints. The failpoint makes the apply poller behave as if the
//! process died at that point (the round's batch and answers are lost, the region's apply
//! stops); the test then stops the store and restarts it from disk.
//!
//! Failpoints are process-global, so these tests serialize through `FailScenario`.

use std::time::Duration;

use engine_traits::{Peekable, RaftEngine, CF_RAFT};
use proto::raft_serverpb::RaftApplyState;
use raftstore::Config;
use test_raftstore::util::{cmd, header, put_req};
use test_raftstore::Cluster;
use util::RegionId;

fn put_expect_no_ack(cluster: &Cluster, key: &[u8], value: &[u8]) {
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    let req = cmd(header(&region, &leader), vec![put_req(key, value)]);
    let resp =
        cluster.call_command_on(leader.store_id, req, Duration::from_secs(10)).expect("answered");
    assert!(resp.error().is_some(), "the crashed store acknowledged the write");
}

fn applied_index(cluster: &Cluster, store: u64) -> u64 {
    let state: RaftApplyState = cluster
        .engines(store)
        .kv
        .get_msg_cf(CF_RAFT, &keys::apply_state_key(RegionId(1)))
        .unwrap()
        .unwrap();
    state.applied_index
}

fn crash_and_recover(failpoint: &str, stores: u64) {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::new(stores, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"before", b"1");
    let leader = cluster.wait_leader(1);
    for s in 1..=stores {
        cluster.must_applied_on(s, b"before", Some(b"1"));
    }

    fail::cfg(failpoint, "return").unwrap();
    put_expect_no_ack(&cluster, b"k", b"v");
    // The entry is durable in the leader's log even though nothing acknowledged it.
    let last = cluster.engines(leader.store_id).raft.last_index(RegionId(1)).unwrap().unwrap();
    fail::remove(failpoint);

    cluster.shutdown();
    for s in 1..=stores {
        cluster.start_store(s);
    }
    // Recovery replays the committed entry exactly once and the data is there.
    cluster.must_get_equal(b"k", b"v");
    cluster.must_get_equal(b"before", b"1");
    for s in 1..=stores {
        cluster.must_applied_on(s, b"k", Some(b"v"));
        assert!(applied_index(&cluster, s) >= last.get(), "store {s} did not apply the log");
    }
    cluster.must_put(b"after", b"2");
    cluster.must_get_equal(b"after", b"2");
    drop(cluster);
    scenario.teardown();
}

#[test]
fn crash_after_persisting_the_log_before_applying() {
    crash_and_recover("raftstore::apply::before_write", 1);
    crash_and_recover("raftstore::apply::before_write", 3);
}

#[test]
fn crash_after_applying_before_answering() {
    crash_and_recover("raftstore::apply::after_write", 1);
    crash_and_recover("raftstore::apply::after_write", 3);
}

/// A full mailbox gives the command back unanswered (so the gRPC edge can wait instead of
/// answering `ServerIsBusy`, which the official client does not retry).
#[test]
fn full_mailbox_gives_the_command_back() {
    let scenario = fail::FailScenario::setup();
    let mut cfg = Config::for_tests();
    cfg.notify_capacity = 8;
    let mut cluster = Cluster::new(1, &[], cfg);
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    // The store's only poller stops inside its next round's raft write.
    fail::cfg("raftstore::store::before_persist", "pause").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let router = cluster.router(1).clone();
    let mut given_back = None;
    let mut sent = 0;
    for i in 0..1000u32 {
        sent += 1;
        let tx = tx.clone();
        let req = cmd(header(&region, &leader), vec![put_req(format!("k{i}").as_bytes(), b"v")]);
        let cb = raftstore::Callback::new(1.into(), move |r| {
            let _ = tx.send(test_raftstore::to_response(r));
        });
        if let Err(back) = router.try_send_command(raftstore::RaftCommand::new(req, cb)) {
            given_back = Some(back);
            break;
        }
    }
    let back = given_back.expect("the mailbox filled up");
    // Unpause: everything queued is answered, and the command given back can be sent again.
    fail::remove("raftstore::store::before_persist");
    let mut back = Some(back);
    test_raftstore::util::wait_for("room in the mailbox", Duration::from_secs(10), || match router
        .try_send_command(back.take().expect("kept until sent"))
    {
        Ok(()) => Some(()),
        Err(b) => {
            back = Some(b);
            None
        }
    });
    drop(tx);
    let answered: Vec<_> = rx.iter().collect();
    // Each command answered exactly once: the one given back only after it was sent again.
    assert_eq!(answered.len(), sent);
    assert!(answered.iter().all(|r| r.header.as_ref().unwrap().error.is_none()), "{answered:?}");
    drop(cluster);
    scenario.teardown();
}

/// The durability invariant of log GC, shown by breaking it: with the KV sync before log
/// deletion skipped, a power cut after a compaction leaves a KV engine whose apply state needs
/// log entries that were deleted. The store refuses to start with a clear error (it does not
/// start with a hole in its history); with the sync (`log_gc.rs` tests) nothing is lost.
#[test]
fn log_gc_without_the_kv_sync_would_lose_writes_at_a_power_cut() {
    let scenario = fail::FailScenario::setup();
    let cfg = Config {
        raft_log_gc_tick_interval: util::config::ReadableDuration::millis(50),
        raft_log_gc_threshold: 10,
        raft_log_reserve_max_ticks: 2,
        ..Config::for_tests()
    };
    let mut cluster = Cluster::new(1, &[], cfg);
    cluster.simulate_power_cuts();
    fail::cfg("raftstore::log_gc::skip_kv_sync", "return").unwrap();
    cluster.start();
    for i in 0..60u32 {
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    test_raftstore::util::wait_for("the log to be compacted", Duration::from_secs(20), || {
        cluster.first_log_entry(1, 1).is_some_and(|f| f > 20).then_some(())
    });
    cluster.shutdown();
    fail::remove("raftstore::log_gc::skip_kv_sync");
    let err = cluster.try_start_store(1).expect_err("the store must not start with a hole");
    assert!(err.to_string().contains("compacted past what the KV engine holds"), "{err}");
    drop(cluster);
    scenario.teardown();
}

/// A crash after a snapshot's data was ingested and before its region became `Normal`: the
/// restarted store finds the region `Applying`, applies the same files again, and serves
/// every write.
#[test]
fn crash_while_applying_a_snapshot_resumes_on_restart() {
    use proto::raft_serverpb::PeerState;
    let scenario = fail::FailScenario::setup();
    let cfg = Config {
        raft_log_gc_tick_interval: util::config::ReadableDuration::millis(50),
        raft_log_gc_threshold: 5,
        raft_log_gc_count_limit: Some(20),
        raft_log_reserve_max_ticks: 2,
        ..Config::for_tests()
    };
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    let key = |i: u32| format!("k{i:04}").into_bytes();
    for i in 0..10 {
        cluster.must_put(&key(i), b"v");
    }
    let leader = cluster.wait_leader(1);
    let lagger = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    cluster.must_applied_on(lagger.store_id, &key(9), Some(b"v"));
    let last = applied_index(&cluster, lagger.store_id);
    let f = cluster.hub.add_filter(test_raftstore::IsolateStore(lagger.store_id));
    for i in 10..100 {
        cluster.must_put(&key(i), b"v");
    }
    test_raftstore::util::wait_for("compaction past the lagger", Duration::from_secs(20), || {
        (cluster.truncated_index(leader.store_id, 1) > last + 1).then_some(())
    });
    fail::cfg("raftstore::apply::snapshot_before_normal", "return").unwrap();
    cluster.hub.remove_filter(f);
    // Ingested (the data is there) but not `Normal`: stopped at the failpoint.
    test_raftstore::util::wait_for("the lagger to stop mid-apply", Duration::from_secs(20), || {
        let state = cluster.region_local_state(lagger.store_id, 1)?;
        let ingested = cluster.get_from_engine(lagger.store_id, &key(99)).is_some();
        (state.state == PeerState::Applying as i32 && ingested).then_some(())
    });
    cluster.stop_store(lagger.store_id);
    fail::remove("raftstore::apply::snapshot_before_normal");
    cluster.start_store(lagger.store_id);
    test_raftstore::util::wait_for(
        "the region to be Normal again",
        Duration::from_secs(20),
        || {
            let state = cluster.region_local_state(lagger.store_id, 1)?;
            (state.state == PeerState::Normal as i32).then_some(())
        },
    );
    for i in 0..100 {
        cluster.must_applied_on(lagger.store_id, &key(i), Some(b"v"));
    }
    cluster.must_put(b"after", b"1");
    cluster.must_applied_on(lagger.store_id, b"after", Some(b"1"));
    drop(cluster);
    scenario.teardown();
}
