//! The first election of regions a split creates (#11): the followers learn the split's
//! commit without waiting for a heartbeat, so the new regions elect at once; and commands that
//! reach a new peer before its first leader wait for it, bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use proto::errorpb;
use proto::metapb;
use proto::raft_serverpb::RaftMessage;
use raft::eraftpb::MessageType;
use raftstore::{Callback, Config};
use test_raftstore::util::{cmd, header, put_req, region_leader_cmd, wait_for};
use test_raftstore::{msg_type, Cluster, Filter, RegionFilter, Verdict};
use util::config::ReadableDuration;

const T: Duration = Duration::from_secs(10);

/// The term a store's peer of `region_id` is in.
fn term_on(cluster: &Cluster, store_id: u64, region_id: u64) -> u64 {
    let resp = cluster.call_command_on(store_id, region_leader_cmd(region_id), T).unwrap();
    resp.response.header.expect("a status answer has a header").current_term
}

/// Every store has `region` at its version.
fn wait_everywhere(cluster: &Cluster, region: &metapb::Region) {
    for &s in cluster.store_ids() {
        cluster.wait_region_version(s, region.id, region.region_epoch.unwrap().version);
    }
}

/// Heartbeats of the parent region are dropped from before the split on: the followers can
/// only learn the split's commit from the leader's commit broadcast. Without it they would wait
/// until the leader, hearing nobody, stepped down and a new leader's first append carried
/// the commit: the parent's term would change. The election timeout (3 s) is far beyond the
/// time the split and the elections take, so nothing times out meanwhile.
#[test]
fn followers_apply_a_split_and_new_regions_elect_without_heartbeats() {
    let cfg = Config { raft_election_timeout_ticks: 300, ..Config::for_tests() };
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    cluster.must_put(b"a", b"1");
    let leader = cluster.wait_leader(1);
    let term = term_on(&cluster, leader.store_id, 1);
    cluster.hub.add_filter(RegionFilter {
        region_id: 1,
        msg_type: Some(MessageType::MsgHeartbeat),
        to_store: None,
    });

    let (left, right) = cluster.must_split(b"m");
    wait_everywhere(&cluster, &left);
    wait_everywhere(&cluster, &right);
    let new_leader = cluster.wait_leader(left.id);

    assert_eq!(cluster.leader_of(1).map(|l| l.id), Some(leader.id), "the parent kept its leader");
    assert_eq!(term_on(&cluster, leader.store_id, 1), term, "no election in the parent");
    assert_eq!(
        new_leader.store_id, leader.store_id,
        "the new region's peer on the parent leader's store won its first campaign"
    );
    wait_for("the new region's split-to-leader time", T, || {
        let measured: u64 = cluster.stats(leader.store_id).split_to_leader_ms.iter().sum();
        (measured == 1).then_some(())
    });
    // Both halves serve.
    cluster.must_put(b"b", b"left");
    cluster.must_put(b"n", b"right");
    cluster.must_get_equal(b"a", b"1");
    cluster.must_get_equal(b"b", b"left");
    cluster.must_get_equal(b"n", b"right");
}

/// Drops election messages of every region but 1 while `on`.
struct BlockNewElections {
    on: Arc<AtomicBool>,
}

impl Filter for BlockNewElections {
    fn verdict(&self, _from: u64, msg: &RaftMessage) -> Verdict {
        let election = matches!(
            msg_type(msg),
            Some(MessageType::MsgRequestPreVote | MessageType::MsgRequestVote)
        );
        if self.on.load(Ordering::SeqCst) && msg.region_id != 1 && election {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Sends a put to `peer`'s store without waiting; the receiver gets the region error, if any.
fn send_put(
    cluster: &Cluster,
    region: &metapb::Region,
    peer: &metapb::Peer,
    key: &[u8],
) -> mpsc::Receiver<Option<errorpb::Error>> {
    let (tx, rx) = mpsc::channel();
    cluster.router(peer.store_id).send_command(
        cmd(header(region, peer), vec![put_req(key, b"v")]),
        Callback::new(region.id.into(), move |resp| {
            let _ = tx.send(resp.err().map(|e| e.into_region_error()));
        }),
    );
    rx
}

/// A cluster with `leader-wait-timeout = wait`, split at `m` while new regions cannot elect
/// (until the returned switch is turned off). Returns the new (left) region and its peer on
/// the parent leader's store, which is campaigning.
fn split_leaderless(
    wait: ReadableDuration,
) -> (Cluster, Arc<AtomicBool>, metapb::Region, metapb::Peer) {
    let cfg = Config { leader_wait_timeout: wait, ..Config::for_tests() };
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    cluster.must_put(b"a", b"1");
    let blocked = Arc::new(AtomicBool::new(true));
    cluster.hub.add_filter(BlockNewElections { on: blocked.clone() });
    let leader = cluster.wait_leader(1);
    let (left, _) = cluster.must_split(b"m");
    let peer = left.peers.iter().find(|p| p.store_id == leader.store_id).unwrap().clone();
    (cluster, blocked, left, peer)
}

/// A write that reaches the new region's campaigning peer before the election is held until
/// the region has a leader: no `NotLeader` without a leader for the client to back off on.
#[test]
fn a_command_waits_for_the_new_regions_first_leader() {
    let (cluster, blocked, left, peer) = split_leaderless(ReadableDuration::secs(30));
    let held_before = cluster.stats(peer.store_id).commands_held_for_leader;

    let answer = send_put(&cluster, &left, &peer, b"b");
    wait_for("the put to be held", T, || {
        (cluster.stats(peer.store_id).commands_held_for_leader > held_before).then_some(())
    });
    assert!(answer.try_recv().is_err(), "held, not answered");
    // The election goes through (the candidate campaigns again after its timeout).
    blocked.store(false, Ordering::SeqCst);
    // Whichever peer wins, the answer is useful: the put is served by the campaigning peer,
    // or answered with the new leader, where it then succeeds at once (as the client does).
    match answer.recv_timeout(T).expect("answered once a leader is known") {
        None => {}
        Some(e) => {
            let leader = e.not_leader.and_then(|n| n.leader).expect("NotLeader naming the leader");
            let err = send_put(&cluster, &left, &leader, b"b").recv_timeout(T).expect("answered");
            assert_eq!(err, None, "the put succeeds at the named leader");
        }
    }
    cluster.must_get_equal(b"b", b"v");
}

/// A region that gets no leader within `leader-wait-timeout` answers its held commands
/// `NotLeader` without a leader; after that, commands are not held any more: a leaderless
/// region answers at once.
#[test]
fn a_new_region_without_a_leader_answers_not_leader_after_the_wait() {
    let (cluster, _blocked, left, peer) = split_leaderless(ReadableDuration::secs(1));
    let held_before = cluster.stats(peer.store_id).commands_held_for_leader;

    let err = send_put(&cluster, &left, &peer, b"b").recv_timeout(T).expect("answered");
    let not_leader = err.and_then(|e| e.not_leader).expect("NotLeader");
    assert_eq!(not_leader.leader, None, "no leader to name");
    // The split applied moments before the put was sent, well inside the wait: it was held,
    // then answered at the deadline.
    let held = cluster.stats(peer.store_id).commands_held_for_leader;
    assert_eq!(held, held_before + 1, "the put waited");

    // The wait is over: a command now is answered without being held.
    let err = send_put(&cluster, &left, &peer, b"c").recv_timeout(T).expect("answered");
    assert!(err.and_then(|e| e.not_leader).is_some(), "NotLeader at once");
    assert_eq!(cluster.stats(peer.store_id).commands_held_for_leader, held, "not held");
}
