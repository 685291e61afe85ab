//! Membership changes: adding, removing, demoting and promoting peers (simple and joint, also
//! under writes), the leader's safety checks (also during a leader transfer), and the removed
//! peer's end (tombstone, log and data deleted), also when it missed its own removal.

use std::time::Duration;

use proto::metapb::{ConfChangeType, PeerRole};
use proto::raft_serverpb::PeerState;
use raft::eraftpb::MessageType;
use raftstore::{Config, DroppedMessage};
use test_raftstore::load::{with_load, Acked};
use test_raftstore::util::{
    check_range, header, numbered_key as key, put_range, transfer_leader_cmd,
};
use test_raftstore::{Cluster, IsolateStore, MessageTypeFilter};
use util::wait::wait_for;

const T: Duration = Duration::from_secs(20);

fn cluster(stores: u64) -> Cluster {
    let mut cluster = Cluster::new(stores, &[], Config::for_tests());
    cluster.start();
    cluster
}

/// A follower of region 1 (not the leader).
fn follower(cluster: &Cluster, skip: &[u64]) -> proto::metapb::Peer {
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    region
        .peers
        .into_iter()
        .find(|p| p.id != leader.id && !skip.contains(&p.store_id))
        .expect("a follower")
}

/// Waits until `store_id` destroyed its peer of region 1: tombstone written, region gone from
/// the store's meta (the last step of a destroy).
fn wait_tombstone(cluster: &Cluster, store_id: u64) {
    wait_for(&format!("store {store_id} to destroy its peer of region 1"), T, || {
        let tombstone = cluster
            .region_local_state(store_id, 1)
            .is_some_and(|s| s.state == PeerState::Tombstone as i32);
        let gone = cluster.store_meta(store_id).lock().region(1.into()).is_none();
        (tombstone && gone).then_some(())
    });
}

fn role_of(region: &proto::metapb::Region, peer_id: u64) -> i32 {
    region.peers.iter().find(|p| p.id == peer_id).expect("peer").role
}

#[test]
fn removed_follower_keeps_a_tombstone_and_loses_its_log_and_data() {
    let cluster = cluster(3);
    put_range(&cluster, 0..20);
    let gone = follower(&cluster, &[]);
    cluster.must_applied_on(gone.store_id, &key(19), Some(&19u32.to_be_bytes()));
    let before = cluster.region(1).region_epoch.unwrap();

    let region = cluster.change_peer(1, ConfChangeType::RemoveNode, gone.clone()).unwrap();
    assert_eq!(region.peers.len(), 2);
    assert!(region.peers.iter().all(|p| p.id != gone.id));
    assert_eq!(region.region_epoch.unwrap().conf_ver, before.conf_ver + 1);
    assert_eq!(region.region_epoch.unwrap().version, before.version, "range unchanged");

    wait_tombstone(&cluster, gone.store_id);
    // The tombstone keeps the region as the peer last knew it: with the removal if it applied
    // it, or before it if a member told it (when it had not learned the commit in time).
    let state = cluster.region_local_state(gone.store_id, 1).unwrap();
    assert!(state.region.unwrap().region_epoch.unwrap().conf_ver >= before.conf_ver);
    assert!(cluster.store_meta(gone.store_id).lock().region(1.into()).is_none());
    assert_eq!(cluster.first_log_entry(gone.store_id, 1), None, "raft log deleted");
    for i in 0..20 {
        assert_eq!(cluster.get_from_engine(gone.store_id, &key(i)), None, "data deleted");
    }
    // The two left keep serving, and agree.
    put_range(&cluster, 20..40);
    check_range(&cluster, 0..40);
}

#[test]
fn leader_refuses_to_remove_or_demote_itself() {
    let cluster = cluster(3);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    for t in [ConfChangeType::RemoveNode, ConfChangeType::AddLearnerNode] {
        let e = cluster.change_peer(1, t, leader.clone()).expect_err("leader kept");
        assert!(e.message.contains("transfer leadership"), "{t:?}: {e:?}");
    }
    assert_eq!(cluster.region(1).peers.len(), 3);
}

#[test]
fn invalid_changes_are_refused_with_a_clear_error() {
    let cluster = cluster(3);
    cluster.must_put(b"k", b"v");
    let f = follower(&cluster, &[]);
    // Already a voter.
    let e = cluster.change_peer(1, ConfChangeType::AddNode, f.clone()).unwrap_err();
    assert!(e.message.contains("already a voter"), "{e:?}");
    // A second peer on a store that has one.
    let mut twin = f.clone();
    twin.id = 9_999;
    let e = cluster.change_peer(1, ConfChangeType::AddNode, twin).unwrap_err();
    assert!(e.message.contains("already has a peer"), "{e:?}");
    // Not in the region.
    let stranger = proto::metapb::Peer { id: 8_888, store_id: 77, ..Default::default() };
    let e = cluster.change_peer(1, ConfChangeType::RemoveNode, stranger).unwrap_err();
    assert!(e.message.contains("not in region"), "{e:?}");
    // Leaving a joint state the region is not in.
    let e = cluster.change_peer_v2(1, vec![]).unwrap_err();
    assert!(e.message.contains("not in a joint state"), "{e:?}");
    assert_eq!(cluster.region(1).region_epoch.unwrap().conf_ver, 1, "nothing changed");
    cluster.must_put(b"k2", b"v2");
}

#[test]
fn voter_demoted_to_learner_and_promoted_back_under_writes() {
    let cluster = cluster(3);
    put_range(&cluster, 0..10);
    let f = follower(&cluster, &[]);
    let region = cluster.change_peer(1, ConfChangeType::AddLearnerNode, f.clone()).unwrap();
    assert_eq!(role_of(&region, f.id), PeerRole::Learner as i32);
    // A learner still receives the log.
    put_range(&cluster, 10..20);
    cluster.must_applied_on(f.store_id, &key(19), Some(&19u32.to_be_bytes()));
    let region = cluster.change_peer(1, ConfChangeType::AddNode, f.clone()).unwrap();
    assert_eq!(role_of(&region, f.id), PeerRole::Voter as i32);
    assert_eq!(region.region_epoch.unwrap().conf_ver, 3);
    put_range(&cluster, 20..30);
    check_range(&cluster, 0..30);
}

#[test]
fn joint_change_demotes_two_voters_then_leaves_the_joint_state_by_itself() {
    let cluster = cluster(3);
    put_range(&cluster, 0..10);
    let a = follower(&cluster, &[]);
    let b = follower(&cluster, &[a.store_id]);
    let joint = cluster
        .change_peer_v2(
            1,
            vec![
                (ConfChangeType::AddLearnerNode, a.clone()),
                (ConfChangeType::AddLearnerNode, b.clone()),
            ],
        )
        .unwrap();
    assert_eq!(role_of(&joint, a.id), PeerRole::DemotingVoter as i32);
    assert_eq!(role_of(&joint, b.id), PeerRole::DemotingVoter as i32);
    // The leader leaves the joint state on its own.
    let left = wait_for("the joint state to be left", T, || {
        let r = cluster.region(1);
        (role_of(&r, a.id) == PeerRole::Learner as i32
            && role_of(&r, b.id) == PeerRole::Learner as i32)
            .then_some(r)
    });
    assert_eq!(left.region_epoch.unwrap().conf_ver, 1 + 2 + 2);
    // One voter: it commits alone.
    put_range(&cluster, 10..20);
    // Both back as voters, through another joint state.
    cluster
        .change_peer_v2(
            1,
            vec![(ConfChangeType::AddNode, a.clone()), (ConfChangeType::AddNode, b.clone())],
        )
        .unwrap();
    wait_for("both voters again", T, || {
        let r = cluster.region(1);
        r.peers.iter().all(|p| p.role == PeerRole::Voter as i32).then_some(())
    });
    put_range(&cluster, 20..30);
    check_range(&cluster, 0..30);
    for s in [a.store_id, b.store_id] {
        cluster.must_applied_on(s, &key(29), Some(&29u32.to_be_bytes()));
    }
}

#[test]
fn a_change_leaving_too_few_healthy_voters_is_refused() {
    // Store 3 never runs: its peer never answers, so the leader never counts it healthy.
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start_store(1);
    cluster.start_store(2);
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let dead = cluster.peer_on(1, 3);
    let alive = follower(&cluster, &[3]);
    // Without the other healthy voter, {leader, dead} would have one healthy voter of two.
    let e = cluster.change_peer(1, ConfChangeType::RemoveNode, alive.clone()).unwrap_err();
    assert!(e.message.contains("healthy voters"), "{e:?}");
    // Demoting it is the same loss of a voter.
    let e = cluster.change_peer(1, ConfChangeType::AddLearnerNode, alive.clone()).unwrap_err();
    assert!(e.message.contains("healthy voters"), "{e:?}");
    assert_eq!(cluster.leader_of(1).map(|l| l.id), Some(leader.id));
    assert_eq!(cluster.region(1).region_epoch.unwrap().conf_ver, 1, "nothing changed");
    // Removing the dead one is fine: {leader, alive} are both healthy.
    let region = cluster.change_peer(1, ConfChangeType::RemoveNode, dead.clone()).unwrap();
    assert_eq!(region.peers.len(), 2);
    cluster.must_put(b"k2", b"v2");
}

#[test]
fn peer_removed_while_partitioned_destroys_itself_when_it_comes_back() {
    let cluster = cluster(3);
    put_range(&cluster, 0..10);
    let gone = follower(&cluster, &[]);
    cluster.must_applied_on(gone.store_id, &key(9), Some(&9u32.to_be_bytes()));
    cluster.hub.add_filter(IsolateStore(gone.store_id));
    cluster.change_peer(1, ConfChangeType::RemoveNode, gone.clone()).unwrap();
    put_range(&cluster, 10..20);
    assert_eq!(
        cluster.region_local_state(gone.store_id, 1).unwrap().state,
        PeerState::Normal as i32,
        "cut off, it cannot know yet"
    );
    cluster.hub.clear_filters();
    // It campaigns; a member answers that it is gone.
    wait_tombstone(&cluster, gone.store_id);
    let told: u64 = cluster
        .store_ids()
        .iter()
        .filter(|&&s| s != gone.store_id)
        .map(|&s| cluster.stats(s).raft_messages_dropped[stale_sender_index()])
        .sum();
    assert!(told > 0, "a member dropped the stale peer's message and answered it");
    for i in 0..10 {
        assert_eq!(cluster.get_from_engine(gone.store_id, &key(i)), None);
    }
    check_range(&cluster, 0..20);
}

fn stale_sender_index() -> usize {
    DroppedMessage::ALL.iter().position(|d| *d == DroppedMessage::StaleSender).unwrap()
}

#[test]
fn a_tombstone_refuses_stale_messages_and_a_newer_vote_creates_an_uninitialized_peer() {
    let cluster = cluster(3);
    cluster.must_put(b"k", b"v");
    let gone = follower(&cluster, &[]);
    let region = cluster.change_peer(1, ConfChangeType::RemoveNode, gone.clone()).unwrap();
    wait_tombstone(&cluster, gone.store_id);
    let leader = cluster.wait_leader(1);
    let vote_from = |from: &proto::metapb::Peer, epoch: proto::metapb::RegionEpoch, to_id: u64| {
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgRequestVote);
        m.from = from.id;
        m.to = to_id;
        m.term = 100;
        proto::raft_serverpb::RaftMessage {
            region_id: 1,
            from_peer: Some(from.clone()),
            to_peer: Some(proto::metapb::Peer {
                id: to_id,
                store_id: gone.store_id,
                ..Default::default()
            }),
            message: protobuf::Message::write_to_bytes(&m).unwrap(),
            region_epoch: Some(epoch),
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            ..Default::default()
        }
    };
    let vote = |epoch, to_id| vote_from(&leader, epoch, to_id);
    let tombstone_index =
        DroppedMessage::ALL.iter().position(|d| *d == DroppedMessage::Tombstone).unwrap();
    let dropped = || cluster.stats(gone.store_id).raft_messages_dropped[tombstone_index];
    // From the configuration that removed it (or older): stale.
    let before = dropped();
    cluster
        .router(gone.store_id)
        .send_raft_message(vote(region.region_epoch.unwrap(), gone.id))
        .unwrap();
    wait_for("the stale vote to be dropped", T, || (dropped() > before).then_some(()));
    assert!(!cluster.store_meta(gone.store_id).lock().is_uninitialized(1.into()));
    // From a peer the tombstone shows was removed before this one (an older epoch, not in the
    // tombstone's region): answered `is_tombstone` with the tombstone's epoch, so it stops
    // campaigning. The leader, a member of that region, got no such answer above.
    let answers = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    cluster.hub.add_filter(TombstoneAnswers { from: gone.store_id, seen: answers.clone() });
    let removed_earlier =
        proto::metapb::Peer { id: 999, store_id: leader.store_id, ..Default::default() };
    // The tombstone keeps the region as the removed peer last knew it (with or without its
    // own removal: see the test above), so "older" is relative to the tombstone's epoch.
    let tombstone_epoch = cluster
        .region_local_state(gone.store_id, 1)
        .and_then(|s| s.region?.region_epoch)
        .expect("the tombstone's region");
    let mut older = tombstone_epoch;
    older.conf_ver -= 1;
    cluster
        .router(gone.store_id)
        .send_raft_message(vote_from(&removed_earlier, older, gone.id))
        .unwrap();
    let answer = wait_for("the tombstone's answer", T, || answers.lock().first().cloned());
    assert_eq!(answer.to_peer.as_ref().map(|p| p.id), Some(999));
    assert_eq!(answer.region_epoch, Some(tombstone_epoch), "the tombstone's epoch");
    assert_eq!(answers.lock().len(), 1, "only the removed sender is answered");
    // From a newer configuration, to a new peer id (the store was added back): a peer is
    // created, uninitialized until a snapshot gives it the region.
    let mut newer = region.region_epoch.unwrap();
    newer.conf_ver += 1;
    cluster.router(gone.store_id).send_raft_message(vote(newer, gone.id + 10_000)).unwrap();
    wait_for("an uninitialized peer", T, || {
        cluster.store_meta(gone.store_id).lock().is_uninitialized(1.into()).then_some(())
    });
    assert!(cluster.store_meta(gone.store_id).lock().region(1.into()).is_none(), "no range yet");
    cluster.must_put(b"k2", b"v2");
}

/// Records the `is_tombstone` answers `from` (a store) sends; passes everything.
struct TombstoneAnswers {
    from: u64,
    seen: std::sync::Arc<parking_lot::Mutex<Vec<proto::raft_serverpb::RaftMessage>>>,
}

impl test_raftstore::Filter for TombstoneAnswers {
    fn verdict(
        &self,
        from: u64,
        msg: &proto::raft_serverpb::RaftMessage,
    ) -> test_raftstore::Verdict {
        if from == self.from && msg.is_tombstone {
            self.seen.lock().push(msg.clone());
        }
        test_raftstore::Verdict::Pass
    }
}

/// A new peer of region 1 on `store_id` (ids as the cluster numbers them).
fn new_peer(store_id: u64) -> proto::metapb::Peer {
    proto::metapb::Peer { id: 1000 + store_id, store_id, ..Default::default() }
}

/// Waits until every acknowledged write is applied on every member of region 1.
fn must_hold_everywhere(cluster: &Cluster, acked: &[Acked]) {
    for member in cluster.region(1).peers {
        for (k, v) in acked {
            cluster.must_applied_on(member.store_id, k, Some(v));
        }
    }
}

#[test]
fn peers_added_and_removed_under_writes_lose_no_acknowledged_write() {
    let mut cluster = Cluster::with_empty_stores(3, 2, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let (removed, acked) = with_load(&cluster, 2, 16, |load| {
        load.wait_more(20);
        // A learner on a new store catches up, then is promoted.
        let four = new_peer(4);
        let r = cluster.change_peer(1, ConfChangeType::AddLearnerNode, four.clone()).unwrap();
        assert_eq!(role_of(&r, four.id), PeerRole::Learner as i32);
        // A learner is promoted once it holds the data (the leader counts it healthy).
        cluster.must_applied_on(four.store_id, b"k", Some(b"v"));
        load.wait_more(20);
        let r = cluster.change_peer(1, ConfChangeType::AddNode, four.clone()).unwrap();
        assert_eq!(role_of(&r, four.id), PeerRole::Voter as i32);
        // A follower goes; a voter is added directly on another new store.
        let a = follower(&cluster, &[four.store_id]);
        cluster.change_peer(1, ConfChangeType::RemoveNode, a.clone()).unwrap();
        load.wait_more(20);
        cluster.change_peer(1, ConfChangeType::AddNode, new_peer(5)).unwrap();
        load.wait_more(20);
        // The leader goes too: leadership moves first.
        let old = cluster.wait_leader(1);
        if old.store_id != four.store_id {
            cluster.must_transfer_leader(1, &four);
        }
        let b = if old.store_id == four.store_id { follower(&cluster, &[5]) } else { old };
        cluster.change_peer(1, ConfChangeType::RemoveNode, b.clone()).unwrap();
        load.wait_more(20);
        [a, b]
    });
    let region = cluster.region(1);
    assert_eq!(region.peers.len(), 3, "{region:?}");
    assert_eq!(region.region_epoch.unwrap().conf_ver, 1 + 5);
    must_hold_everywhere(&cluster, &acked);
    for gone in removed {
        wait_tombstone(&cluster, gone.store_id);
        for (k, _) in acked.iter().take(10) {
            assert_eq!(cluster.get_from_engine(gone.store_id, k), None, "data range deleted");
        }
    }
}

#[test]
fn joint_consensus_replaces_two_voters_at_once() {
    let mut cluster = Cluster::with_empty_stores(3, 2, &[], Config::for_tests());
    cluster.start();
    put_range(&cluster, 0..20);
    let (four, five) = (new_peer(4), new_peer(5));
    let (_, acked) = with_load(&cluster, 2, 16, |load| {
        for p in [&four, &five] {
            cluster.change_peer(1, ConfChangeType::AddLearnerNode, p.clone()).unwrap();
        }
        for s in [four.store_id, five.store_id] {
            cluster.must_applied_on(s, &key(19), Some(&19u32.to_be_bytes()));
        }
        load.wait_more(20);
        let a = follower(&cluster, &[4, 5]);
        let b = follower(&cluster, &[4, 5, a.store_id]);
        // One joint step: the learners come in as the two followers go out.
        let joint = cluster
            .change_peer_v2(
                1,
                vec![
                    (ConfChangeType::AddNode, four.clone()),
                    (ConfChangeType::AddNode, five.clone()),
                    (ConfChangeType::AddLearnerNode, a.clone()),
                    (ConfChangeType::AddLearnerNode, b.clone()),
                ],
            )
            .unwrap();
        assert_eq!(role_of(&joint, four.id), PeerRole::IncomingVoter as i32);
        assert_eq!(role_of(&joint, a.id), PeerRole::DemotingVoter as i32);
        wait_for("the joint state to be left", T, || {
            let r = cluster.region(1);
            (role_of(&r, four.id) == PeerRole::Voter as i32
                && role_of(&r, a.id) == PeerRole::Learner as i32)
                .then_some(())
        });
        load.wait_more(20);
        // The demoted learners go. Moving no voter, that needs no joint state: one at a time
        // (a joint change that moves no voter is refused).
        for gone in [&a, &b] {
            cluster.change_peer(1, ConfChangeType::RemoveNode, gone.clone()).unwrap();
        }
        load.wait_more(20);
    });
    let region = cluster.region(1);
    let stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    assert!(stores.contains(&4) && stores.contains(&5), "{region:?}");
    assert!(region.peers.iter().all(|p| p.role == PeerRole::Voter as i32), "{region:?}");
    check_range(&cluster, 0..20);
    must_hold_everywhere(&cluster, &acked);
    // The two old voters are gone for good: the new members commit without them.
    let old: Vec<u64> = (1..=3).filter(|s| !stores.contains(s)).collect();
    assert_eq!(old.len(), 2);
    for s in old {
        wait_tombstone(&cluster, s);
        cluster.stop_store(s);
    }
    cluster.must_put(b"after", b"replacement");
    cluster.must_get_equal(b"after", b"replacement");
}

#[test]
fn a_membership_change_during_a_leader_transfer_is_refused_as_not_leader() {
    // A transfer is given up after an election timeout: make that 2 s, ample for one request.
    let cfg = Config { raft_election_timeout_ticks: 200, ..Config::for_tests() };
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    put_range(&cluster, 0..5);
    let leader = cluster.wait_leader(1);
    let target = follower(&cluster, &[]);
    cluster.must_applied_on(target.store_id, &key(4), Some(&4u32.to_be_bytes()));
    // The target never hears that it should campaign: the transfer stays in progress until the
    // leader gives up on it (an election timeout).
    let f = cluster.hub.add_filter(MessageTypeFilter(MessageType::MsgTimeoutNow));
    let region = cluster.region(1);
    let transfer = transfer_leader_cmd(header(&region, &leader), &target);
    let other = follower(&cluster, &[target.store_id]);
    let change = proto::raft_cmdpb::RaftCmdRequest {
        header: Some(header(&region, &leader)),
        admin_request: Some(proto::raft_cmdpb::AdminRequest {
            cmd_type: proto::raft_cmdpb::AdminCmdType::ChangePeer as i32,
            change_peer: Some(proto::raft_cmdpb::ChangePeerRequest {
                change_type: ConfChangeType::AddLearnerNode as i32,
                peer: Some(other),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Asked right after the transfer started, well inside the election timeout.
    let reply = cluster.call_command_on(leader.store_id, transfer, T).unwrap();
    assert!(reply.error().is_none(), "{:?}", reply.error());
    let reply = cluster.call_command_on(leader.store_id, change, T).unwrap();
    let e = reply.error().expect("refused while transferring");
    assert!(e.not_leader.is_some(), "{e:?}");
    cluster.hub.remove_filter(f);
    assert_eq!(cluster.region(1).region_epoch.unwrap().conf_ver, 1, "nothing changed");
    // The store is fine afterwards: the transfer's end frees the region for writes.
    put_range(&cluster, 5..10);
    check_range(&cluster, 0..10);
}
