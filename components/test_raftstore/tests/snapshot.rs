//! Snapshots: a follower cut off past a forced log compaction catches up by one (also when the
//! first one is corrupted on the way), and a peer
//! added to a store (here, one holding a tombstone of the region) is created uninitialized,
//! receives one, and serves after becoming leader.

use std::time::Duration;

use proto::metapb::{self, ConfChangeType};
use proto::raft_serverpb::PeerState;
use raftstore::Config;
use test_raftstore::{Cluster, IsolateStore};
use util::config::ReadableDuration;
use util::wait::wait_for;

const T: Duration = Duration::from_secs(30);

/// Compacts often, and past a laggard once 20 applied entries are in the log.
fn gc_config() -> Config {
    Config {
        raft_log_gc_tick_interval: ReadableDuration::millis(50),
        raft_log_gc_threshold: 5,
        raft_log_gc_count_limit: Some(20),
        raft_log_reserve_max_ticks: 2,
        ..Config::for_tests()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat(64)).into_bytes()
}

fn put_range(cluster: &Cluster, range: std::ops::Range<u32>) {
    for i in range {
        cluster.must_put(&key(i), &value(i));
    }
}

fn must_have_range(cluster: &Cluster, store_id: u64, range: std::ops::Range<u32>) {
    for i in range {
        cluster.must_applied_on(store_id, &key(i), Some(&value(i)));
    }
}

/// What `cut_off_past_a_compaction` leaves: a follower cut off (by `filter`) at applied index
/// `lagger_last`, and the leader's log compacted past it.
struct Cut {
    leader: metapb::Peer,
    lagger: metapb::Peer,
    lagger_last: u64,
    /// Snapshots the lagger had applied before it was cut off.
    applied_before: u64,
    filter: u64,
}

/// Writes keys 0..10 everywhere, cuts a follower off, writes 10..120 and waits until the
/// leader's log is compacted past the follower (it can only catch up by snapshot).
fn cut_off_past_a_compaction(cluster: &Cluster) -> Cut {
    put_range(cluster, 0..10);
    let leader = cluster.wait_leader(1);
    let lagger = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    must_have_range(cluster, lagger.store_id, 0..10);
    let lagger_last = cluster.apply_state(lagger.store_id, 1).applied_index;
    let applied_before = cluster.stats(lagger.store_id).snapshots_applied;
    let filter = cluster.hub.add_filter(IsolateStore(lagger.store_id));
    put_range(cluster, 10..120);
    wait_for("the leader to compact past the lagger", T, || {
        (cluster.truncated_index(leader.store_id, 1) > lagger_last + 1).then_some(())
    });
    Cut { leader, lagger, lagger_last, applied_before, filter }
}

/// A snapshot corrupted on the way (a byte flipped in a chunk) is refused by the receiving
/// store (its file checksums do not match), the leader learns the send failed, generates and
/// sends another, and the follower catches up with every write.
#[test]
fn a_corrupted_snapshot_is_refused_and_a_new_one_catches_the_follower_up() {
    let mut cluster = Cluster::new(3, &[], gc_config());
    cluster.start();
    let Cut { leader, lagger, filter: f, .. } = cut_off_past_a_compaction(&cluster);
    let generated_before = cluster.stats(leader.store_id).snapshots_generated;
    cluster.hub.corrupt_next_snapshots(1);
    cluster.hub.remove_filter(f);

    must_have_range(&cluster, lagger.store_id, 0..120);
    assert_eq!(cluster.hub.snapshots_refused(), 1, "the corrupted transfer was refused");
    assert!(
        cluster.stats(leader.store_id).snapshots_generated >= generated_before + 2,
        "the refused snapshot was generated anew"
    );
    put_range(&cluster, 120..130);
    must_have_range(&cluster, lagger.store_id, 120..130);
}

#[test]
fn follower_cut_off_past_a_forced_compaction_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(3, &[], gc_config());
    cluster.start();
    let Cut { leader, lagger, lagger_last, applied_before, filter } =
        cut_off_past_a_compaction(&cluster);
    cluster.hub.remove_filter(filter);

    must_have_range(&cluster, lagger.store_id, 0..120);
    let state = cluster.apply_state(lagger.store_id, 1);
    assert!(
        state.truncated_state.unwrap().index > lagger_last,
        "the lagger's log starts past where it was cut off: it took a snapshot ({state:?})"
    );
    // Counted just after the region's state is written: wait for it.
    wait_for("the lagger to count its snapshot", T, || {
        (cluster.stats(lagger.store_id).snapshots_applied > applied_before).then_some(())
    });
    assert!(cluster.stats(leader.store_id).snapshots_generated >= 1);
    // It keeps replicating after the snapshot.
    put_range(&cluster, 120..130);
    must_have_range(&cluster, lagger.store_id, 120..130);
}

#[test]
fn peer_readded_to_a_store_with_a_tombstone_gets_a_snapshot_and_serves_as_leader() {
    let mut cluster = Cluster::new(3, &[], gc_config());
    cluster.start();
    put_range(&cluster, 0..50);
    let leader = cluster.wait_leader(1);
    let gone = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    cluster.change_peer(1, ConfChangeType::RemoveNode, gone.clone()).unwrap();
    wait_for("the removed peer's tombstone", T, || {
        let s = cluster.region_local_state(gone.store_id, 1)?;
        (s.state == PeerState::Tombstone as i32
            && cluster.store_meta(gone.store_id).lock().region(1.into()).is_none())
        .then_some(())
    });
    for i in 0..50 {
        assert_eq!(cluster.get_from_engine(gone.store_id, &key(i)), None);
    }
    put_range(&cluster, 50..80);

    // Back on the same store under a new peer id: created by the leader's first contact,
    // uninitialized, then given the region by a snapshot.
    let again =
        metapb::Peer { id: gone.id + 100_000, store_id: gone.store_id, ..Default::default() };
    let region = cluster.change_peer(1, ConfChangeType::AddNode, again.clone()).unwrap();
    assert_eq!(region.peers.len(), 3);
    must_have_range(&cluster, gone.store_id, 0..80);
    // The data is ingested just before the region is written `Normal`: wait for that.
    let state = wait_for("the new peer's region to be Normal", T, || {
        cluster.region_local_state(gone.store_id, 1).filter(|s| s.state == PeerState::Normal as i32)
    });
    assert!(state.region.unwrap().peers.iter().any(|p| p.id == again.id));

    // It leads and serves: every write acknowledged before is there.
    cluster.must_transfer_leader(1, &again);
    for i in 0..80 {
        cluster.must_get_equal(&key(i), &value(i));
    }
    put_range(&cluster, 80..90);
    for &s in cluster.store_ids() {
        must_have_range(&cluster, s, 80..90);
    }
}

#[test]
fn a_new_peer_gets_a_snapshot_of_a_100_mb_region_and_serves_reads_as_its_leader() {
    const VALUE: usize = 512 * 1024;
    const KEYS: u32 = 200; // 100 MiB
                           // Incompressible (xorshift), so the files hold all 100 MiB.
    let big = |i: u32| {
        let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..VALUE / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect::<Vec<u8>>()
    };
    // One voter holds the data; no split check, so it stays one region.
    let cfg =
        Config { split_region_check_tick_interval: ReadableDuration::secs(3600), ..gc_config() };
    let mut cluster = Cluster::with_empty_stores(1, 1, &[], cfg);
    cluster.start();
    for i in 0..KEYS {
        cluster.must_put(&key(i), &big(i));
    }
    wait_for("the log to be compacted", T, || (cluster.truncated_index(1, 1) > 1).then_some(()));

    // The new peer is far behind a compacted log: only a snapshot can bring it the data.
    let started = std::time::Instant::now();
    let new = metapb::Peer { id: 1002, store_id: 2, ..Default::default() };
    cluster.change_peer(1, ConfChangeType::AddLearnerNode, new.clone()).unwrap();
    wait_for("the learner's region to be Normal", Duration::from_secs(300), || {
        cluster.region_local_state(2, 1).filter(|s| s.state == PeerState::Normal as i32)
    });
    cluster.must_applied_on(2, &key(KEYS - 1), Some(&big(KEYS - 1)));
    assert!(cluster.stats(2).snapshots_applied >= 1);
    cluster.change_peer(1, ConfChangeType::AddNode, new.clone()).unwrap();
    cluster.must_transfer_leader(1, &new);
    eprintln!("100 MiB region: the new peer led after {:?}", started.elapsed());

    // It serves every key as leader, and commits new writes.
    for i in 0..KEYS {
        cluster.must_get_equal(&key(i), &big(i));
    }
    cluster.must_put(b"after", b"the snapshot");
    cluster.must_applied_on(1, b"after", Some(b"the snapshot"));
}
