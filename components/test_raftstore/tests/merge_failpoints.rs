//! Region merge around its crash windows and its failure paths, driven by failpoints in
//! `peer::merge`: a merge held before its target is checked, then restarted, rolled back, or
//! moved to another leader; a target paused for its source across a restart; a crash after
//! the target applied the merge and before the source was destroyed.
//!
//! Failpoints are process-global, so these tests serialize through `FailScenario`.

use std::time::Duration;

use proto::metapb;
use proto::raft_serverpb::PeerState;
use raftstore::Config;
use test_raftstore::util::wait_for;
use test_raftstore::Cluster;

const T: Duration = Duration::from_secs(10);

/// Holds every merge before its target is checked (`peer::merge`, step 4).
const HOLD: &str = "raftstore::merge::before_schedule";

fn cluster(split_keys: &[&[u8]]) -> Cluster {
    let mut c = Cluster::new(3, split_keys, Config::for_tests());
    c.start();
    c
}

fn version(r: &metapb::Region) -> u64 {
    r.region_epoch.unwrap().version
}

/// Every running store has `region` in `state`.
fn wait_state(cluster: &Cluster, region: u64, state: PeerState) {
    for &s in cluster.store_ids() {
        if cluster.is_running(s) {
            wait_for(&format!("region {region} {state:?} on store {s}"), T, || {
                cluster.region_local_state(s, region).filter(|st| st.state == state as i32)
            });
        }
    }
}

fn put_keys(cluster: &Cluster, keys: &[&[u8]], value: &[u8]) {
    for k in keys {
        cluster.must_put(k, value);
    }
}

fn check_keys(cluster: &Cluster, keys: &[&[u8]], value: &[u8]) {
    for k in keys {
        cluster.must_get_equal(k, value);
        for s in 1..=3 {
            cluster.must_applied_on(s, k, Some(value));
        }
    }
}

/// Regions [, m) and [m, +inf) with a key in each, `failpoint` set, and region 1's merge into
/// region 2 prepared: every store has region 1 `Merging`, unless `failpoint` lets the merge
/// run past that (the caller waits for what it needs then).
fn prepare_merge_with(failpoint: &str, wait_merging: bool) -> Cluster {
    let cluster = cluster(&[b"m"]);
    put_keys(&cluster, &[b"a", b"n"], b"1");
    fail::cfg(failpoint, "return").unwrap();
    cluster.try_merge(1, 2).expect("prepare merge");
    if wait_merging {
        wait_state(&cluster, 1, PeerState::Merging);
    }
    cluster
}

#[test]
fn a_merge_whose_target_changed_rolls_back_and_a_second_merge_loses_nothing() {
    let scenario = fail::FailScenario::setup();
    let cluster = prepare_merge_with(HOLD, true);
    let merging = cluster.region(1);
    // The target splits meanwhile: the merge recorded a target that no longer exists. (The
    // target's id keeps the right part, [x, +inf); its left neighbour is now [m, x).)
    let (neighbour, _) = cluster.must_split(b"x");
    fail::remove(HOLD);
    // A quorum of the source's peers sees the newer target and votes for rollback.
    wait_state(&cluster, 1, PeerState::Normal);
    for &s in cluster.store_ids() {
        let r = cluster.wait_region_version(s, 1, version(&merging) + 1);
        assert_eq!((&r.start_key[..], &r.end_key[..]), (&b""[..], &b"m"[..]));
        assert!(cluster.stats(s).merges_rolled_back >= 1);
    }
    // The source serves writes again; those writes come after the failed PrepareMerge in
    // its log, and a second merge MUST carry them (TiKV #6460).
    put_keys(&cluster, &[b"b", b"c"], b"2");
    let merged = cluster.must_merge(1, neighbour.id);
    assert_eq!((&merged.start_key[..], &merged.end_key[..]), (&b""[..], &b"x"[..]));
    check_keys(&cluster, &[b"a", b"n"], b"1");
    check_keys(&cluster, &[b"b", b"c"], b"2");
    scenario.teardown();
}

#[test]
fn a_merge_held_across_a_restart_of_every_store_finishes() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = prepare_merge_with(HOLD, true);
    cluster.shutdown();
    fail::remove(HOLD);
    // `Merging` is loaded at start and the merge goes on.
    cluster.start();
    cluster.wait_merged(1, 2);
    check_keys(&cluster, &[b"a", b"n"], b"1");
    scenario.teardown();
}

#[test]
fn a_target_paused_for_its_source_resumes_after_a_restart() {
    let scenario = fail::FailScenario::setup();
    // The sources never answer the targets' catch-up: every target stays paused at its
    // CommitMerge.
    let mut cluster = prepare_merge_with("raftstore::merge::before_catch_up", true);
    // Every target reached its CommitMerge and waits there.
    for s in 1..=3 {
        wait_for(&format!("store {s}'s target to wait for its source"), T, || {
            (cluster.stats(s).merge_target_waits > 0).then_some(())
        });
        assert_eq!(cluster.stats(s).merges_committed, 0);
    }
    cluster.shutdown();
    fail::remove("raftstore::merge::before_catch_up");
    cluster.start();
    cluster.wait_merged(1, 2);
    check_keys(&cluster, &[b"a", b"n"], b"1");
    scenario.teardown();
}

#[test]
fn a_crash_after_the_target_applied_the_merge_keeps_it() {
    let scenario = fail::FailScenario::setup();
    // The targets apply the merge, but the sources are never told to go.
    let mut cluster = prepare_merge_with("raftstore::merge::before_source_destroy", false);
    wait_state(&cluster, 1, PeerState::Tombstone);
    cluster.shutdown();
    fail::remove("raftstore::merge::before_source_destroy");
    cluster.start();
    cluster.wait_merged(1, 2);
    for &s in cluster.store_ids() {
        assert_eq!(cluster.store_meta(s).lock().region_count(), 1, "store {s}");
    }
    check_keys(&cluster, &[b"a", b"n"], b"1");
    cluster.must_put(b"b", b"2");
    scenario.teardown();
}

#[test]
fn leadership_moves_while_merging_and_the_merge_finishes() {
    let scenario = fail::FailScenario::setup();
    let cluster = prepare_merge_with(HOLD, true);
    let leader = cluster.wait_leader(1);
    let other = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    cluster.must_transfer_leader(1, &other);
    // The new leader serves nothing of the merging range: a write is held (and retried by
    // the client) until the merge ends, then lands in the target.
    let held_before = cluster.stats(other.store_id).commands_held;
    let written = std::thread::scope(|s| {
        let w = s.spawn(|| cluster.put(b"b", b"2"));
        wait_for("the new leader to hold the write", T, || {
            (cluster.stats(other.store_id).commands_held > held_before).then_some(())
        });
        fail::remove(HOLD);
        w.join().unwrap()
    });
    cluster.wait_merged(1, 2);
    written.expect("the write went through once merged");
    cluster.must_get_equal(b"b", b"2");
    check_keys(&cluster, &[b"a", b"n"], b"1");
    scenario.teardown();
}
