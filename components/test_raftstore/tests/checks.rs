//! Every rejected command gets the right region error, and the store keeps serving.

use std::time::Duration;

use proto::metapb;
use raft::eraftpb::MessageType;
use raftstore::Config;
use test_raftstore::util::{cmd, delete_range_req, header, put_req, snap_req};
use test_raftstore::{Cluster, MessageTypeFilter};
use util::config::ReadableSize;

const T: Duration = Duration::from_secs(10);

#[test]
fn proposal_checks_answer_region_errors() {
    let mut cfg = Config::for_tests();
    cfg.raft_entry_max_size = ReadableSize::kib(4);
    let mut cluster = Cluster::new(3, &[b"m"], cfg);
    cluster.start();
    cluster.must_put(b"x", b"v");
    let leader = cluster.wait_leader(2);
    let region = cluster.region(2);

    // NotLeader, with the leader as a hint.
    let follower = region.peers.iter().find(|p| p.id != leader.id).unwrap().clone();
    let resp = cluster
        .call_command_on(
            follower.store_id,
            cmd(header(&region, &follower), vec![put_req(b"x", b"1")]),
            T,
        )
        .unwrap();
    let e = resp.error().expect("follower refuses").clone();
    assert_eq!(e.not_leader.unwrap().leader.map(|p| p.id), Some(leader.id));

    // StoreNotMatch.
    let mut wrong = leader.clone();
    wrong.store_id = 99;
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&region, &wrong), vec![put_req(b"x", b"1")]),
            T,
        )
        .unwrap();
    assert!(resp.error().unwrap().store_not_match.is_some());

    // EpochNotMatch carries the current region, then its neighbours on the store.
    let mut stale = region.clone();
    stale.region_epoch = Some(metapb::RegionEpoch { conf_ver: 1, version: 0 });
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&stale, &leader), vec![put_req(b"x", b"1")]),
            T,
        )
        .unwrap();
    let current =
        resp.error().unwrap().epoch_not_match.clone().expect("epoch not match").current_regions;
    assert_eq!(current[0], region);
    assert!(!current[1..].is_empty(), "region 2 has neighbours");
    for n in &current[1..] {
        assert!(n.end_key == region.start_key || n.start_key == region.end_key, "{n:?}");
    }

    // KeyNotInRegion, for a put and for a range leaving the region.
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&region, &leader), vec![put_req(b"a", b"1")]),
            T,
        )
        .unwrap();
    let e = resp.error().unwrap().key_not_in_region.clone().expect("key not in region");
    assert_eq!((e.key.as_slice(), e.region_id), (&b"a"[..], 2));
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&region, &leader), vec![delete_range_req(b"a", b"z")]),
            T,
        )
        .unwrap();
    assert!(resp.error().unwrap().key_not_in_region.is_some());

    // RaftEntryTooLarge.
    let big = vec![7u8; 8 * 1024];
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&region, &leader), vec![put_req(b"x", &big)]),
            T,
        )
        .unwrap();
    assert_eq!(resp.error().unwrap().raft_entry_too_large.clone().unwrap().region_id, 2);

    // Unknown region.
    let mut unknown = region.clone();
    unknown.id = 77;
    let resp = cluster
        .call_command_on(leader.store_id, cmd(header(&unknown, &leader), vec![snap_req()]), T)
        .unwrap();
    assert_eq!(resp.error().unwrap().region_not_found.clone().unwrap().region_id, 77);

    // Mixed reads and writes are refused, not half-done.
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&region, &leader), vec![put_req(b"x", b"1"), snap_req()]),
            T,
        )
        .unwrap();
    assert!(resp.error().is_some());

    // After all of that the region still works, and nothing rejected was applied.
    cluster.must_get_equal(b"x", b"v");
    cluster.must_put(b"x", b"w");
    cluster.must_get_equal(b"x", b"w");
}

#[test]
fn too_many_pending_proposals_is_server_busy() {
    let mut cfg = Config::for_tests();
    cfg.max_pending_proposals = 2;
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    // Nothing commits while appends are dropped.
    let f = cluster.hub.add_filter(MessageTypeFilter(MessageType::MsgAppend));
    let router = cluster.router(leader.store_id).clone();
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..3u8 {
        let tx = tx.clone();
        let before = cluster.stats(leader.store_id).proposals_synced;
        let req = cmd(header(&region, &leader), vec![put_req(b"k", &[i])]);
        router.send_command(
            req,
            raftstore::Callback::new(1.into(), move |r| {
                tx.send(test_raftstore::to_response(r)).unwrap()
            }),
        );
        if i < 2 {
            // One at a time, so each is its own proposal rather than part of one batch.
            test_raftstore::util::wait_for("the proposal to be persisted", T, || {
                (cluster.stats(leader.store_id).proposals_synced > before).then_some(())
            });
        }
    }
    let busy = rx.recv_timeout(T).expect("the third command is answered at once");
    let e = busy.header.unwrap().error.expect("busy");
    assert!(e.server_is_busy.is_some(), "{e:?}");
    cluster.hub.remove_filter(f);
    // The first two commit once appends flow again.
    for _ in 0..2 {
        let r = rx.recv_timeout(Duration::from_secs(20)).expect("pending proposals finish");
        assert!(r.header.unwrap().error.is_none());
    }
}
