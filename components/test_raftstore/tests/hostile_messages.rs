//! Raft messages from the network can be stale, corrupt or forged: none may abort a store.
//! Each kind is dropped before raft sees it and counted by reason, and the cluster keeps
//! serving. Without the checks, raft-rs panics on several of these (a commit index past the
//! log's end, an append whose entries leave a gap, an acknowledgement of entries the leader
//! never had), and an unexpected snapshot aborted the store through an assertion.

use std::time::Duration;

use proto::metapb;
use proto::raft_serverpb::RaftMessage;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message, MessageType};
use raftstore::{Config, DroppedMessage};
use test_raftstore::util::region_leader_cmd;
use test_raftstore::Cluster;

const T: Duration = Duration::from_secs(10);

fn term_on(cluster: &Cluster, store_id: u64) -> u64 {
    let resp = cluster.call_command_on(store_id, region_leader_cmd(1), T).unwrap();
    resp.response.header.unwrap().current_term
}

fn envelope(
    region: &metapb::Region,
    from: &metapb::Peer,
    to: &metapb::Peer,
    m: &Message,
) -> RaftMessage {
    RaftMessage {
        region_id: region.id,
        from_peer: Some(from.clone()),
        to_peer: Some(to.clone()),
        message: m.write_to_bytes().unwrap(),
        region_epoch: region.region_epoch,
        start_key: region.start_key.clone(),
        end_key: region.end_key.clone(),
        ..Default::default()
    }
}

fn raft_msg(t: MessageType, from: &metapb::Peer, to: &metapb::Peer, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(t);
    m.from = from.id;
    m.to = to.id;
    m.term = term;
    m
}

fn dropped(cluster: &Cluster, store_id: u64, why: DroppedMessage) -> u64 {
    let i = DroppedMessage::ALL.iter().position(|d| *d == why).unwrap();
    cluster.stats(store_id).raft_messages_dropped[i]
}

/// Sends `msg` to its store and waits until the store counted it as dropped for `why`.
fn must_drop(cluster: &Cluster, msg: RaftMessage, why: DroppedMessage) {
    let store = msg.to_peer.as_ref().unwrap().store_id;
    let before = dropped(cluster, store, why);
    cluster.router(store).send_raft_message(msg).unwrap();
    util::wait::wait_for(&format!("store {store} to drop a message as {why:?}"), T, || {
        (dropped(cluster, store, why) > before).then_some(())
    });
}

#[test]
fn forged_and_malformed_raft_messages_are_dropped_and_counted() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"k0", b"v0");
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);
    let follower = region.peers.iter().find(|p| p.id != leader.id).unwrap().clone();
    cluster.must_applied_on(follower.store_id, b"k0", Some(b"v0"));
    let term = term_on(&cluster, leader.store_id);

    // An older term, of a type raft-rs ignores then: dropped and counted, as a stale term.
    assert!(term > 1, "elected past the first term");
    let m = raft_msg(MessageType::MsgRequestVoteResponse, &follower, &leader, term - 1);
    must_drop(&cluster, envelope(&region, &follower, &leader, &m), DroppedMessage::StaleTerm);

    // A heartbeat committing far past the follower's log (raft-rs: "to_commit out of range").
    let mut m = raft_msg(MessageType::MsgHeartbeat, &leader, &follower, term);
    m.commit = 1_000_000;
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::InvalidLog);

    // An append whose entries leave a gap after `index`.
    let mut m = raft_msg(MessageType::MsgAppend, &leader, &follower, term);
    m.index = 1;
    m.log_term = 1;
    let mut e = Entry::default();
    e.index = 5;
    e.term = term;
    m.mut_entries().push(e);
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::InvalidLog);

    // An acknowledgement, to the leader, of entries it never had.
    let mut m = raft_msg(MessageType::MsgAppendResponse, &follower, &leader, term);
    m.index = 1_000_000;
    must_drop(&cluster, envelope(&region, &follower, &leader, &m), DroppedMessage::InvalidLog);

    // A snapshot whose files never arrived (it used to trip an assertion), and one whose data
    // is not a region snapshot at all.
    let mut m = raft_msg(MessageType::MsgSnapshot, &leader, &follower, term + 1);
    m.mut_snapshot().mut_metadata().index = 1_000;
    m.mut_snapshot().mut_metadata().term = term + 1;
    let data = proto::raft_serverpb::RaftSnapshotData {
        region: Some(region.clone()),
        ..Default::default()
    };
    m.mut_snapshot().set_data(prost::Message::encode_to_vec(&data).into());
    // Its conf state is not the region's (raft-rs would abort restoring a bad one).
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::Malformed);
    *m.mut_snapshot().mut_metadata().mut_conf_state() =
        raftstore::util::conf_state_from_region(&region);
    must_drop(
        &cluster,
        envelope(&region, &leader, &follower, &m),
        DroppedMessage::SnapshotRejected,
    );
    m.mut_snapshot().set_data(vec![0xff; 9].into());
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::Malformed);

    // Proposals from the network (raft-rs aborts on an empty one; a garbage one would commit
    // an entry nobody can apply), and a message without a term.
    for (from, to) in [(&leader, &follower), (&follower, &leader)] {
        let mut m = raft_msg(MessageType::MsgPropose, from, to, term);
        if from.id == leader.id {
            m.mut_entries().push(Entry::default());
        }
        must_drop(&cluster, envelope(&region, from, to, &m), DroppedMessage::Malformed);
    }
    let m = raft_msg(MessageType::MsgHeartbeat, &leader, &follower, 0);
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::Malformed);

    // An append whose previous entry claims a term older than the follower's committed one
    // (raft-rs walks the log down by term and aborts below the compacted index).
    let mut m = raft_msg(MessageType::MsgAppend, &leader, &follower, term);
    m.index = 1_000;
    m.log_term = 0;
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::InvalidLog);

    // A follower asking for a snapshot (no peer here ever does).
    let mut m = raft_msg(MessageType::MsgAppendResponse, &follower, &leader, term);
    m.reject = true;
    m.request_snapshot = 1_000_000;
    must_drop(&cluster, envelope(&region, &follower, &leader, &m), DroppedMessage::InvalidLog);

    // Garbage bytes, a raft-local message type, and a `from` that disagrees with the envelope.
    let mut garbage = envelope(&region, &leader, &follower, &Message::default());
    garbage.message = vec![0xff; 7];
    must_drop(&cluster, garbage, DroppedMessage::Malformed);
    let m = raft_msg(MessageType::MsgHup, &leader, &follower, term);
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::Malformed);
    let mut m = raft_msg(MessageType::MsgHeartbeat, &leader, &follower, term);
    m.from = 12_345;
    must_drop(&cluster, envelope(&region, &leader, &follower, &m), DroppedMessage::Malformed);

    // Addressed to a peer that is not the one on that store.
    let mut stranger = follower.clone();
    stranger.id = 54_321;
    let m = raft_msg(MessageType::MsgHeartbeat, &leader, &stranger, term);
    must_drop(&cluster, envelope(&region, &leader, &stranger, &m), DroppedMessage::WrongPeer);

    // Nothing was hurt: same leader, same term, writes and reads go on everywhere.
    assert_eq!(cluster.leader_of(1).map(|l| l.id), Some(leader.id));
    assert_eq!(term_on(&cluster, leader.store_id), term);
    cluster.must_put(b"k1", b"v1");
    cluster.must_get_equal(b"k0", b"v0");
    for &s in cluster.store_ids() {
        cluster.must_applied_on(s, b"k1", Some(b"v1"));
    }
}

#[test]
fn an_append_for_a_region_a_split_here_will_create_is_dropped() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let region = cluster.region(1);
    let leader = cluster.wait_leader(1);
    let follower = region.peers.iter().find(|p| p.id != leader.id).unwrap().clone();
    // A region this store has never heard of whose range overlaps region 1 (every range
    // does): a split here will create it, so only votes are kept, the rest dropped.
    let mut other = region.clone();
    other.id = 500;
    let from = metapb::Peer { id: 500_001, store_id: leader.store_id, ..Default::default() };
    let to = metapb::Peer { id: 500_002, store_id: follower.store_id, ..Default::default() };
    let m = raft_msg(MessageType::MsgAppend, &from, &to, 7);
    must_drop(&cluster, envelope(&other, &from, &to, &m), DroppedMessage::RegionNotSplitYet);
    assert!(!cluster.store_meta(follower.store_id).lock().is_uninitialized(500.into()));
    cluster.must_put(b"k2", b"v2");
}
