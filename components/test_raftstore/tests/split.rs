//! Region splits: the BatchSplit admin command end to end over three stores, the epoch rules
//! around it, followers that apply it late, restarts, and the automatic split checker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, RaftCmdRequest, SplitRequest,
};
use raftstore::{Config, SplitConfig};
use test_raftstore::util::{cmd, header, put_req, wait_for};
use test_raftstore::{Cluster, IsolateStore, RegionFilter};
use util::config::ReadableSize;

const T: Duration = Duration::from_secs(10);

fn cluster3() -> Cluster {
    let mut c = Cluster::new(3, &[], Config::for_tests());
    c.start();
    c
}

fn version(r: &metapb::Region) -> u64 {
    r.region_epoch.unwrap().version
}

/// Every store has every region in `regions` at its version.
fn wait_everywhere(cluster: &Cluster, regions: &[metapb::Region]) {
    for &s in cluster.store_ids() {
        if cluster.is_running(s) {
            for r in regions {
                let got = cluster.wait_region_version(s, r.id, version(r));
                assert_eq!((&got.start_key, &got.end_key), (&r.start_key, &r.end_key));
            }
        }
    }
}

#[test]
fn split_at_one_key_keeps_data_and_both_halves_serve() {
    let cluster = cluster3();
    for k in [&b"a"[..], b"k", b"m", b"z"] {
        cluster.must_put(k, k);
    }
    let (left, right) = cluster.must_split(b"m");
    // Right-derive: the original id keeps the right part.
    assert_eq!(right.id, 1);
    assert_ne!(left.id, 1);
    assert_eq!((left.start_key.as_slice(), left.end_key.as_slice()), (&b""[..], &b"m"[..]));
    assert_eq!((right.start_key.as_slice(), right.end_key.as_slice()), (&b"m"[..], &b""[..]));
    assert_eq!(version(&left), 2);
    assert_eq!(version(&right), 2);
    assert_eq!(left.region_epoch.unwrap().conf_ver, 1, "a split keeps conf_ver");
    assert_eq!(left.peers.len(), 3);
    wait_everywhere(&cluster, &[left.clone(), right.clone()]);
    cluster.wait_leader(left.id);
    for k in [&b"a"[..], b"k", b"m", b"z"] {
        cluster.must_get_equal(k, k);
    }
    cluster.must_put(b"b", b"left");
    cluster.must_put(b"n", b"right");
    assert_eq!(cluster.region_for_key(b"b").id, left.id);
    cluster.must_get_equal(b"b", b"left");
    cluster.must_get_equal(b"n", b"right");
    for s in [1, 2, 3] {
        cluster.must_applied_on(s, b"b", Some(b"left"));
    }
    for s in [1, 2, 3] {
        assert_eq!(cluster.stats(s).splits_applied, 1, "store {s}");
    }
    // PD was told.
    assert!(cluster.pd.split_reports() >= 1);
    wait_for("PD to know the new region", T, || cluster.pd.region(left.id));
}

#[test]
fn split_at_many_keys_in_one_entry() {
    let cluster = cluster3();
    let keys: Vec<Vec<u8>> = (b'a'..=b'z').map(|c| vec![c]).collect();
    for k in &keys {
        cluster.must_put(k, k);
    }
    let regions = cluster.split_region(1, &[b"d", b"h", b"p", b"t"]).unwrap();
    assert_eq!(regions.len(), 5);
    let bounds: Vec<(&[u8], &[u8])> =
        regions.iter().map(|r| (r.start_key.as_slice(), r.end_key.as_slice())).collect();
    assert_eq!(
        bounds,
        vec![(&b""[..], &b"d"[..]), (b"d", b"h"), (b"h", b"p"), (b"p", b"t"), (b"t", b"")]
    );
    assert_eq!(regions[4].id, 1);
    for r in &regions {
        assert_eq!(version(r), 5, "version grows by the number of new regions");
    }
    wait_everywhere(&cluster, &regions);
    for r in &regions {
        cluster.wait_leader(r.id);
    }
    for k in &keys {
        cluster.must_get_equal(k, k);
        cluster.must_put(k, b"again");
    }
    for k in &keys {
        cluster.must_get_equal(k, b"again");
    }
}

#[test]
fn split_twice_and_left_derive() {
    let mut cfg = Config::for_tests();
    cfg.right_derive_when_split = false;
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    let (left, right) = cluster.must_split(b"m");
    assert_eq!(left.id, 1, "left-derive keeps the id on the left");
    let (ll, lr) = cluster.must_split(b"f");
    let (rl, rr) = cluster.must_split(b"t");
    assert_eq!((ll.id, lr.end_key.as_slice()), (1, &b"m"[..]));
    assert_eq!((rl.id, rr.start_key.as_slice()), (right.id, &b"t"[..]));
    assert_eq!(version(&ll), 3, "region 1 split twice");
    let all = [ll, lr, rl, rr];
    wait_everywhere(&cluster, &all);
    for (i, r) in all.iter().enumerate() {
        let key = [r.start_key.as_slice(), b"x"].concat();
        cluster.must_put(&key, &[i as u8]);
        cluster.must_get_equal(&key, &[i as u8]);
    }
}

#[test]
fn stale_epochs_and_bad_keys_are_refused() {
    let cluster = cluster3();
    let before = cluster.region(1);
    let (left, right) = cluster.must_split(b"m");
    let leader = cluster.wait_leader(1);

    // A write routed by the old layout: EpochNotMatch with the new regions.
    let resp = cluster
        .call_command_on(
            leader.store_id,
            cmd(header(&before, &leader), vec![put_req(b"x", b"1")]),
            T,
        )
        .unwrap();
    let e = resp.error().unwrap().epoch_not_match.clone().expect("epoch not match");
    let ids: Vec<u64> = e.current_regions.iter().map(|r| r.id).collect();
    assert_eq!(ids[0], right.id);
    assert!(ids.contains(&left.id), "the sibling is included: {ids:?}");

    // A split under the old epoch.
    let e = cluster.split_region_with_epoch(1, before.region_epoch.unwrap(), &[b"t"]).unwrap_err();
    assert!(e.epoch_not_match.is_some(), "{e:?}");

    // Bad keys for region 1 = [m, +inf).
    let e = cluster.split_region(1, &[b"c"]).unwrap_err();
    assert!(e.key_not_in_region.is_some(), "outside the region: {e:?}");
    let e = cluster.split_region(1, &[b"m"]).unwrap_err();
    assert!(e.message.contains("start of region"), "{e:?}");
    let e = cluster.split_region(1, &[b"t", b"p"]).unwrap_err();
    assert!(e.message.contains("sorted"), "{e:?}");
    let e = cluster.split_region(1, &[b"p", b"p"]).unwrap_err();
    assert!(e.message.contains("sorted and distinct"), "{e:?}");
    let e = cluster.split_region(1, &[]).unwrap_err();
    assert!(e.message.contains("no split key"), "{e:?}");
    assert_eq!(version(&cluster.region(1)), version(&right), "nothing split");

    // PD down: the split fails cleanly and can be retried.
    cluster.pd.set_unavailable(true);
    let e = cluster.split_region(1, &[b"t"]).unwrap_err();
    assert!(e.message.contains("placement driver"), "{e:?}");
    cluster.pd.set_unavailable(false);
    cluster.split_region(1, &[b"t"]).unwrap();
}

/// The proposal checker: a write queued behind a proposed split is answered after the split
/// applied, with the new layout, and never applied under the old epoch.
#[test]
fn write_behind_a_pending_split_gets_the_new_layout() {
    let cluster = cluster3();
    let region = cluster.region(1);
    let leader = cluster.wait_leader(1);
    let split = RaftCmdRequest {
        header: Some(header(&region, &leader)),
        admin_request: Some(AdminRequest {
            cmd_type: AdminCmdType::BatchSplit as i32,
            splits: Some(BatchSplitRequest {
                requests: vec![SplitRequest {
                    split_key: b"m".to_vec(),
                    new_region_id: 500,
                    new_peer_ids: vec![501, 502, 503],
                    ..Default::default()
                }],
                right_derive: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Both land in the leader's mailbox before it runs: the put is handled while the split
    // is proposed and not applied.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let router = cluster.router(leader.store_id);
    router.send_command(
        split,
        raftstore::Callback::new(1.into(), move |r| {
            tx.send(("split", test_raftstore::to_response(r))).unwrap()
        }),
    );
    router.send_command(
        cmd(header(&region, &leader), vec![put_req(b"a", b"old-epoch")]),
        raftstore::Callback::new(1.into(), move |r| {
            tx2.send(("put", test_raftstore::to_response(r))).unwrap()
        }),
    );
    let mut answers = HashMap::new();
    for _ in 0..2 {
        let (what, resp) = rx.recv_timeout(T).unwrap();
        answers.insert(what, resp);
    }
    assert!(answers["split"].header.as_ref().unwrap().error.is_none(), "{:?}", answers["split"]);
    let e = answers["put"].header.as_ref().unwrap().error.clone().expect("put refused");
    let e = e.epoch_not_match.expect("epoch not match");
    assert!(e.current_regions.iter().any(|r| r.id == 500), "new layout: {e:?}");
    assert_eq!(cluster.stats(leader.store_id).commands_held, 1, "the put waited for the split");
    wait_everywhere(&cluster, &[cluster.region(500), cluster.region(1)]);
    for s in [1, 2, 3] {
        assert_eq!(cluster.get_from_engine(s, b"a"), None, "the refused put was not applied");
    }
}

/// Writers keep writing (and reading back what they wrote) while the region splits several
/// times. Every acknowledged write is readable at once and at the end; a write refused with
/// EpochNotMatch never shows up.
#[test]
fn concurrent_writes_during_splits() {
    let cluster = Arc::new(cluster3());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3u8 {
        let cluster = cluster.clone();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            // key -> (last acknowledged value, an ambiguous attempt happened after it)
            let mut state: HashMap<Vec<u8>, (Option<Vec<u8>>, bool)> = HashMap::new();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("{}{:02}", (b'a' + (i % 26) as u8) as char, w).into_bytes();
                let value = format!("{w}-{i}").into_bytes();
                i += 1;
                let region = cluster.region_for_key(&key);
                let Some(leader) = cluster.leader_of(region.id) else { continue };
                let req = cmd(header(&region, &leader), vec![put_req(&key, &value)]);
                state.entry(key.clone()).or_insert((None, false));
                match cluster.call_command_on(leader.store_id, req, T) {
                    Ok(resp) => match resp.error() {
                        None => {
                            // Read it back at once, through whatever region holds it now.
                            let read = cluster.get(&key).expect("read after write");
                            assert_eq!(read.as_deref(), Some(&value[..]), "read after ack");
                            *state.get_mut(&key).expect("inserted above") = (Some(value), false);
                        }
                        // Refused before or at apply: not written.
                        Some(e)
                            if e.epoch_not_match.is_some()
                                || e.key_not_in_region.is_some()
                                || e.not_leader.is_some() => {}
                        Some(_) => state.get_mut(&key).expect("inserted above").1 = true,
                    },
                    Err(_) => state.get_mut(&key).expect("inserted above").1 = true,
                }
            }
            state
        }));
    }
    let splits: [&[u8]; 6] = [b"m", b"f", b"t", b"c", b"p", b"w"];
    for k in splits {
        cluster.must_split(k);
    }
    stop.store(true, Ordering::SeqCst);
    let mut checked = 0;
    for w in writers {
        for (key, (acked, ambiguous)) in w.join().unwrap() {
            if ambiguous {
                continue;
            }
            assert_eq!(cluster.must_get(&key), acked, "key {:?}", String::from_utf8_lossy(&key));
            checked += 1;
        }
    }
    assert!(checked > 0);
    assert_eq!(cluster.regions().len(), 7);
}

#[test]
fn follower_partitioned_during_split_catches_up() {
    let cluster = cluster3();
    cluster.must_put(b"a", b"1");
    cluster.must_put(b"z", b"1");
    let leader = cluster.wait_leader(1);
    let isolated = [1, 2, 3].into_iter().find(|&s| s != leader.store_id).unwrap();
    let filter = cluster.hub.add_filter(IsolateStore(isolated));
    let (left, right) = cluster.must_split(b"m");
    cluster.must_put(b"a", b"2");
    cluster.must_put(b"z", b"2");
    // The isolated store still has the old region.
    assert_eq!(version(&cluster.store_meta(isolated).lock().region(1.into()).unwrap().clone()), 1);
    cluster.hub.remove_filter(filter);
    wait_everywhere(&cluster, &[left.clone(), right]);
    cluster.must_applied_on(isolated, b"a", Some(b"2"));
    cluster.must_applied_on(isolated, b"z", Some(b"2"));
    // Its peer of the new region is a full member: it can lead it.
    let peer = left.peers.iter().find(|p| p.store_id == isolated).unwrap().clone();
    cluster.must_transfer_leader(left.id, &peer);
    cluster.must_put(b"b", b"3");
    cluster.must_get_equal(b"b", b"3");
}

/// A follower that applies the split late: the new region elects a leader among the others,
/// and the late store joins it once it applies the split.
#[test]
fn follower_applying_the_split_late_joins_the_new_region() {
    let cluster = cluster3();
    let leader = cluster.wait_leader(1);
    let late = [1, 2, 3].into_iter().find(|&s| s != leader.store_id).unwrap();
    // Region 1's appends to `late` are dropped: it cannot apply the split.
    let filter = cluster.hub.add_filter(RegionFilter {
        region_id: 1,
        msg_type: Some(raft::eraftpb::MessageType::MsgAppend),
        to_store: Some(late),
    });
    let (left, _) = cluster.must_split(b"m");
    cluster.wait_leader(left.id);
    cluster.must_put(b"b", b"new-region");
    cluster.hub.remove_filter(filter);
    cluster.wait_region_version(late, left.id, version(&left));
    cluster.must_applied_on(late, b"b", Some(b"new-region"));
}

#[test]
fn split_survives_restart_of_all_stores() {
    let mut cluster = cluster3();
    for k in [&b"a"[..], b"n", b"z"] {
        cluster.must_put(k, k);
    }
    let regions = cluster.split_region(1, &[b"g", b"t"]).unwrap();
    wait_everywhere(&cluster, &regions);
    cluster.must_put(b"b", b"after");
    cluster.shutdown();
    for s in [1, 2, 3] {
        cluster.start_store(s);
    }
    wait_everywhere(&cluster, &regions);
    for k in [&b"a"[..], b"n", b"z"] {
        cluster.must_get_equal(k, k);
    }
    cluster.must_get_equal(b"b", b"after");
    for r in &regions {
        let key = [r.start_key.as_slice(), b"y"].concat();
        cluster.must_put(&key, b"1");
    }
}

/// Writing past a small split size splits the region into parts of about that size.
#[test]
fn auto_split_by_size() {
    let mut cfg = Config::for_tests();
    cfg.coprocessor = SplitConfig::with_split_size(ReadableSize::kib(64));
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    // 1000 keys of ~1 KiB written in order. The checker cuts a region every 64 keys (the
    // first key reaching 64 KiB in its part) and leaves a part alone below 96 KiB (93 keys):
    // boundaries at every 64th key, and the last 40 keys stay one region.
    let value = vec![b'v'; 1024];
    for i in 0..1000u32 {
        cluster.must_put(format!("k{i:04}").as_bytes(), &value);
    }
    let per_key = (5 + value.len()) as u64;
    let per_part = (64 * 1024u64).div_ceil(per_key) as usize;
    assert_eq!(per_part, 64);
    let expected = 1000usize.div_ceil(per_part); // 16
    wait_for("the auto splits to settle", Duration::from_secs(60), || {
        (cluster.regions().len() == expected).then_some(())
    });
    let regions = cluster.regions();
    for (i, r) in regions.iter().enumerate().skip(1) {
        assert_eq!(r.start_key, format!("k{:04}", i * per_part).into_bytes(), "region {i}");
    }
    wait_everywhere(&cluster, &regions);
    let checks: u64 = [1, 2, 3].iter().map(|&s| cluster.stats(s).split_checks).sum();
    assert!(checks >= 15, "every split came from a check: {checks}");
    for i in (0..1000u32).step_by(37) {
        cluster.must_get_equal(format!("k{i:04}").as_bytes(), &value);
    }
}

/// A raft message with an older epoch is heard from a member (it may not have applied a split
/// yet) and ignored from a non-member (a removed peer must not disturb the group).
#[test]
fn stale_epoch_messages_from_non_members_are_ignored() {
    use proto::raft_serverpb::RaftMessage;
    use protobuf::Message as _;
    use raft::eraftpb::{Message, MessageType};

    let cluster = cluster3();
    cluster.must_split(b"m");
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    let term_of = |c: &Cluster| {
        let resp = c
            .call_command_on(leader.store_id, test_raftstore::util::region_leader_cmd(1), T)
            .unwrap();
        resp.response.header.unwrap().current_term
    };
    let term = term_of(&cluster);
    // A heartbeat of a much later term: raft would make the leader follow it.
    let heartbeat = |from: metapb::Peer| {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from.id;
        m.to = leader.id;
        m.term = term + 5;
        RaftMessage {
            region_id: 1,
            from_peer: Some(from),
            to_peer: Some(leader.clone()),
            message: m.write_to_bytes().unwrap(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }), // before the split
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            ..Default::default()
        }
    };
    let router = cluster.router(leader.store_id);
    let stranger = metapb::Peer { id: 999_999, store_id: 3, ..Default::default() };
    router.send_raft_message(heartbeat(stranger)).unwrap();
    // Messages and commands of one region are handled in mailbox order: the status answer
    // comes after the heartbeat was handled.
    assert_eq!(term_of(&cluster), term, "a stale non-member moved the term");
    let member = region.peers.iter().find(|p| p.id != leader.id).unwrap().clone();
    router.send_raft_message(heartbeat(member)).unwrap();
    assert_eq!(term_of(&cluster), term + 5, "a member's message is heard despite its old epoch");
}

/// Leaders report their regions to PD on a tick, with the size the split checker measured.
#[test]
fn leaders_heartbeat_pd_periodically() {
    let mut cfg = Config::for_tests();
    cfg.region_heartbeat_interval = util::config::ReadableDuration::millis(50);
    let mut cluster = Cluster::new(3, &[b"m"], cfg);
    cluster.start();
    for id in [1, 2] {
        cluster.wait_leader(id);
        let seen = cluster.pd.heartbeats(id);
        wait_for("more heartbeats", T, || (cluster.pd.heartbeats(id) >= seen + 3).then_some(()));
    }
    let (left, _) = cluster.must_split(b"f");
    wait_for("the new region's heartbeats", T, || {
        (cluster.pd.heartbeats(left.id) >= 2).then_some(())
    });
    assert_eq!(cluster.pd.region(left.id).unwrap().end_key, b"f");
}
