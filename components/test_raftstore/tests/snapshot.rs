//! Snapshots: a follower cut off past a forced log compaction catches up by one, and a peer
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

#[test]
fn follower_cut_off_past_a_forced_compaction_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(3, &[], gc_config());
    cluster.start();
    put_range(&cluster, 0..10);
    let leader = cluster.wait_leader(1);
    let lagger = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    must_have_range(&cluster, lagger.store_id, 0..10);
    let lagger_last = cluster.apply_state(lagger.store_id, 1).applied_index;
    let applied_before = cluster.stats(lagger.store_id).snapshots_applied;

    let f = cluster.hub.add_filter(IsolateStore(lagger.store_id));
    put_range(&cluster, 10..120);
    wait_for("the leader to compact past the lagger", T, || {
        (cluster.truncated_index(leader.store_id, 1) > lagger_last + 1).then_some(())
    });
    cluster.hub.remove_filter(f);

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
