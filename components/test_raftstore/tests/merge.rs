//! Region merge over three stores: the protocol end to end (PrepareMerge, CommitMerge, the
//! source's catch-up, the source's destruction), its refusals, and the data around it. Crash
//! windows and rollbacks, which need failpoints, are in `merge_failpoints.rs`.

use std::time::Duration;

use proto::metapb;
use proto::raft_serverpb::{PeerState, RegionLocalState};
use raftstore::Config;
use test_raftstore::load::with_load;
use test_raftstore::util::{cmd, header, put_req, wait_for};
use test_raftstore::{Cluster, IsolateStore, RegionFilter};
use util::config::ReadableDuration;
use util::RegionId;

const T: Duration = Duration::from_secs(10);

fn cluster(split_keys: &[&[u8]]) -> Cluster {
    let mut c = Cluster::new(3, split_keys, Config::for_tests());
    c.start();
    c
}

fn version(r: &metapb::Region) -> u64 {
    r.region_epoch.unwrap().version
}

fn range(r: &metapb::Region) -> (&[u8], &[u8]) {
    (&r.start_key, &r.end_key)
}

/// Every store keeps a tombstone of `source` that records the merge into `target`.
fn assert_merged_tombstones(cluster: &Cluster, source: u64, target: u64) {
    for &s in cluster.store_ids() {
        let state: RegionLocalState = wait_for(&format!("source tombstone on {s}"), T, || {
            cluster
                .region_local_state(s, source)
                .filter(|st| st.state == PeerState::Tombstone as i32)
        });
        let merge = state.merge_state.expect("a merged source keeps its merge state");
        assert_eq!(merge.target.expect("target").id, target);
        assert!(merge.commit > 0);
    }
}

#[test]
fn merging_the_left_region_into_the_right_keeps_every_key() {
    let cluster = cluster(&[b"m"]);
    let keys: &[&[u8]] = &[b"a", b"f", b"l", b"m", b"q", b"z"];
    for k in keys {
        cluster.must_put(k, k);
    }
    let (left, right) = (cluster.region(1), cluster.region(2));
    assert_eq!(range(&left), (&b""[..], &b"m"[..]));

    let merged = cluster.must_merge(1, 2);
    assert_eq!(merged.id, 2);
    assert_eq!(range(&merged), (&b""[..], &b""[..]));
    // The source's PrepareMerge bumped its version once: max(2, 1) + 1.
    assert_eq!(version(&merged), version(&left).max(version(&right)) + 1 + 1);
    assert_eq!(merged.region_epoch.unwrap().conf_ver, right.region_epoch.unwrap().conf_ver);
    assert_merged_tombstones(&cluster, 1, 2);
    for &s in cluster.store_ids() {
        let st = cluster.region_local_state(s, 2).unwrap();
        assert_eq!(st.state, PeerState::Normal as i32);
        assert_eq!(range(st.region.as_ref().unwrap()), (&b""[..], &b""[..]));
        assert!(cluster.stats(s).merges_committed >= 1);
        // The data stayed where it was: nobody deleted the source's range.
        for k in keys {
            assert_eq!(cluster.get_from_engine(s, k).as_deref(), Some(*k), "store {s} key {k:?}");
        }
    }
    // The merged region serves the whole range, old keys and new.
    for k in keys {
        cluster.must_get_equal(k, k);
    }
    cluster.must_put(b"b", b"new-left");
    cluster.must_put(b"y", b"new-right");
    cluster.must_get_equal(b"b", b"new-left");
    cluster.must_get_equal(b"y", b"new-right");
}

#[test]
fn a_cascade_of_merges_returns_to_one_region() {
    let cluster = cluster(&[b"b", b"d", b"f", b"h"]);
    for k in [&b"a"[..], b"c", b"e", b"g", b"i"] {
        cluster.must_put(k, k);
    }
    // Right into left, one neighbour after the other: 2 into 1, 3 into 1, ...
    for source in 2..=5 {
        let merged = cluster.must_merge(source, 1);
        assert_eq!(merged.start_key, b"");
        assert_eq!(merged.end_key, cluster.bootstrapped_regions()[source as usize - 1].end_key);
        cluster.must_put(&merged.end_key, b"tail");
    }
    assert_eq!(range(&cluster.region(1)), (&b""[..], &b""[..]));
    for k in [&b"a"[..], b"c", b"e", b"g", b"i"] {
        cluster.must_get_equal(k, k);
    }
    for &s in cluster.store_ids() {
        assert_eq!(cluster.store_meta(s).lock().region_count(), 1);
    }
}

#[test]
fn a_store_cut_off_from_the_source_catches_up_through_the_target() {
    let cluster = cluster(&[b"m"]);
    cluster.must_put(b"a", b"1");
    for s in 1..=3 {
        cluster.must_applied_on(s, b"a", Some(b"1"));
    }
    // Store 3 hears nothing of the source from here on: it never receives the PrepareMerge
    // entry from the source's leader. The target carries it in its CommitMerge.
    // Neither leader is on store 3: the target's leader must be asked for the CommitMerge by
    // the source peer on its own store, and store 3's source never reaches Merging. (With
    // the target led from store 3 the merge waits until that leadership moves, as in TiKV.)
    for region in [1, 2] {
        if cluster.wait_leader(region).store_id == 3 {
            cluster.must_transfer_leader(region, &cluster.peer_on(region, 1));
        }
    }
    cluster.hub.add_filter(RegionFilter { region_id: 1, msg_type: None, to_store: Some(3) });
    let merged = cluster.must_merge(1, 2);
    assert_eq!(range(&merged), (&b""[..], &b""[..]));
    assert_merged_tombstones(&cluster, 1, 2);
    cluster.must_applied_on(3, b"a", Some(b"1"));
    cluster.hub.clear_filters();
    cluster.must_put(b"b", b"2");
    cluster.must_applied_on(3, b"b", Some(b"2"));
}

#[test]
fn refusals_name_their_reason_and_change_nothing() {
    let cluster = cluster(&[b"b", b"d"]);
    for r in 1..=3 {
        cluster.wait_leader(r);
    }
    // Not adjacent: [, b) and [d, ).
    let e = cluster.try_merge(1, 3).unwrap_err();
    assert!(e.message.contains("not adjacent"), "{e:?}");
    // Unknown target.
    let mut unknown = cluster.region(3);
    unknown.id = 99;
    let leader = cluster.wait_leader(1);
    let admin = proto::raft_cmdpb::AdminRequest {
        cmd_type: proto::raft_cmdpb::AdminCmdType::PrepareMerge as i32,
        prepare_merge: Some(proto::raft_cmdpb::PrepareMergeRequest {
            min_index: 0,
            target: Some(unknown),
        }),
        ..Default::default()
    };
    let req = proto::raft_cmdpb::RaftCmdRequest {
        header: Some(header(&cluster.region(1), &leader)),
        admin_request: Some(admin),
        ..Default::default()
    };
    let reply = cluster.call_command_on(leader.store_id, req, T).unwrap();
    let e = reply.error().expect("refused");
    assert!(e.message.contains("no peer on this store"), "{e:?}");
    // CommitMerge and RollbackMerge come from the store itself only.
    for t in [
        proto::raft_cmdpb::AdminCmdType::CommitMerge,
        proto::raft_cmdpb::AdminCmdType::RollbackMerge,
    ] {
        let admin = proto::raft_cmdpb::AdminRequest { cmd_type: t as i32, ..Default::default() };
        let e = cluster.admin(1, admin).unwrap_err();
        assert!(e.message.contains("proposed by the store itself"), "{e:?}");
    }
    for r in 1..=3 {
        assert_eq!(version(&cluster.region(r)), 1, "region {r} changed");
        for &s in cluster.store_ids() {
            let st = cluster.region_local_state(s, r).unwrap();
            assert_eq!(st.state, PeerState::Normal as i32);
        }
    }
    // Still working.
    cluster.must_put(b"a", b"1");
    cluster.must_put(b"c", b"1");
}

#[test]
fn every_acknowledged_write_survives_a_merge_under_load() {
    let cluster = cluster(&[b"load-1"]);
    cluster.must_put(b"load-0", b"x");
    cluster.must_put(b"load-1", b"x");
    let ((), acked) = with_load(&cluster, 3, 16, |load| {
        load.wait_more(30);
        // Writer 0 writes to the left region, writers 1 and 2 to the right one.
        cluster.must_merge(1, 2);
        load.wait_more(30);
    });
    assert!(acked.len() >= 60, "{} writes acknowledged", acked.len());
    for (k, v) in &acked {
        cluster.must_get_equal(k, v);
        for s in 1..=3 {
            cluster.must_applied_on(s, k, Some(v));
        }
    }
}

#[test]
fn a_source_peer_never_comes_back_after_a_restart() {
    let mut cluster = cluster(&[b"m"]);
    cluster.must_put(b"a", b"1");
    cluster.must_merge(1, 2);
    cluster.shutdown();
    cluster.start();
    cluster.wait_leader(2);
    for &s in cluster.store_ids() {
        let meta = cluster.store_meta(s);
        assert!(meta.lock().region(RegionId(1)).is_none(), "store {s} loaded the source");
        assert_eq!(meta.lock().region_count(), 1);
    }
    cluster.must_get_equal(b"a", b"1");
    // A write for the old source, under its last epoch, is routed to nothing here.
    let leader = cluster.wait_leader(2);
    let stale = cmd(header(&cluster.bootstrapped_regions()[0], &leader), vec![put_req(b"a", b"2")]);
    let reply = cluster.call_command_on(leader.store_id, stale, T).unwrap();
    assert!(reply.error().is_some(), "a write to the merged source was accepted");
    cluster.must_get_equal(b"a", b"1");
}

/// Store 3 misses the whole merge (cut off), and the merged region's log is compacted past
/// it: its target can only catch up by a snapshot that covers its stale source too. The
/// source learns from a store where it merged away (`merge_target`) that it is a merge
/// source, stops, and the snapshot replaces it in one write: the range is never served by
/// two regions, and nothing of it is lost.
#[test]
fn a_store_that_missed_the_merge_gets_the_merged_region_by_snapshot() {
    let cfg = Config {
        raft_log_gc_tick_interval: ReadableDuration::millis(50),
        raft_log_gc_threshold: 5,
        raft_log_gc_count_limit: Some(20),
        raft_log_reserve_max_ticks: 2,
        ..Config::for_tests()
    };
    let mut cluster = Cluster::new(3, &[b"m"], cfg);
    cluster.start();
    for k in [&b"a"[..], b"z"] {
        cluster.must_put(k, k);
        cluster.must_applied_on(3, k, Some(k));
    }
    for r in [1, 2] {
        let leader = cluster.wait_leader(r);
        if leader.store_id == 3 {
            cluster.must_transfer_leader(r, &cluster.peer_on(r, 1));
        }
    }
    let cut = cluster.hub.add_filter(IsolateStore(3));
    cluster.try_merge(1, 2).expect("prepare merge");
    let merged = wait_for("the merge on stores 1 and 2", T, || {
        let covers = |s: u64| {
            let meta = cluster.store_meta(s);
            let m = meta.lock();
            (m.region(RegionId(1)).is_none())
                .then(|| m.region(RegionId(2)).cloned())
                .flatten()
                .filter(|r| r.start_key.is_empty())
        };
        covers(1).and(covers(2))
    });
    for i in 0..60u32 {
        let k = format!("b{i:03}").into_bytes();
        cluster.must_put(&k, &k);
    }
    let last_on_3 = cluster.apply_state(3, 2).applied_index;
    wait_for("the merged region's log compacted past store 3", T, || {
        (cluster.truncated_index(1, 2) > last_on_3 + 1).then_some(())
    });
    let replaced_before = cluster.stats(3).snapshots_applied;
    cluster.hub.remove_filter(cut);
    wait_for("store 3 to have the merged region", T, || {
        let meta = cluster.store_meta(3);
        let m = meta.lock();
        (m.region(RegionId(1)).is_none()
            && m.region(RegionId(2)).is_some_and(|r| version(r) >= version(&merged)))
        .then_some(())
    });
    wait_for("store 3 to apply the snapshot", T, || {
        (cluster.stats(3).snapshots_applied > replaced_before).then_some(())
    });
    let st = cluster.region_local_state(3, 1).expect("a tombstone of the source");
    assert_eq!(st.state, PeerState::Tombstone as i32);
    assert_eq!(st.merge_state.and_then(|m| m.target).map(|t| t.id), Some(2));
    for k in [&b"a"[..], b"z", b"b000", b"b059"] {
        cluster.must_applied_on(3, k, Some(k));
    }
    // Store 3 serves the merged range as its leader.
    cluster.must_transfer_leader(2, &cluster.peer_on(2, 3));
    cluster.must_get_equal(b"a", b"a");
    cluster.must_put(b"c", b"c");
    cluster.must_applied_on(3, b"c", Some(b"c"));
}
