//! Peers nobody will ever tell that they were removed (a learner, an uninitialized peer) ask
//! PD once they have heard no leader for `max-leader-missing-duration`, and destroy themselves
//! when PD's newer region no longer lists them; members that hear their leader never ask.

use std::time::Duration;

use proto::metapb::{self, ConfChangeType};
use proto::raft_serverpb::{PeerState, RaftMessage};
use raft::eraftpb::{Message, MessageType};
use raftstore::Config;
use test_raftstore::{Cluster, IsolateStore};
use util::config::ReadableDuration;
use util::wait::wait_for;

const T: Duration = Duration::from_secs(20);

/// Checks often, and gives up on a leader after half a second; heartbeats PD often, so PD's
/// region is fresh.
fn stale_config() -> Config {
    Config {
        peer_stale_state_check_interval: ReadableDuration::millis(50),
        abnormal_leader_missing_duration: ReadableDuration::millis(200),
        max_leader_missing_duration: ReadableDuration::millis(500),
        region_heartbeat_interval: ReadableDuration::millis(50),
        ..Config::for_tests()
    }
}

fn wait_pd_conf_ver(cluster: &Cluster, conf_ver: u64) {
    wait_for(&format!("PD to know conf_ver {conf_ver}"), T, || {
        cluster.pd.region(1).filter(|r| r.region_epoch.unwrap().conf_ver >= conf_ver)
    });
}

#[test]
fn a_learner_removed_while_cut_off_asks_pd_and_destroys_itself() {
    let mut cluster = Cluster::new(3, &[], stale_config());
    cluster.start();
    cluster.must_put(b"k", b"v");
    // Every replica has the write: the leader counts both followers healthy, so demoting one
    // leaves a quorum of healthy voters.
    for s in [1, 2, 3] {
        cluster.must_applied_on(s, b"k", Some(b"v"));
    }
    let leader = cluster.wait_leader(1);
    let f = cluster.region(1).peers.into_iter().find(|p| p.id != leader.id).unwrap();
    cluster.change_peer(1, ConfChangeType::AddLearnerNode, f.clone()).unwrap();
    cluster.must_put(b"k2", b"v2");
    cluster.must_applied_on(f.store_id, b"k2", Some(b"v2"));

    cluster.hub.add_filter(IsolateStore(f.store_id));
    let region = cluster.change_peer(1, ConfChangeType::RemoveNode, f.clone()).unwrap();
    wait_pd_conf_ver(&cluster, region.region_epoch.unwrap().conf_ver);
    // A learner never campaigns, so no member will answer it: only PD can tell it.
    cluster.hub.clear_filters();
    wait_for("the removed learner to destroy itself", T, || {
        let tombstone = cluster
            .region_local_state(f.store_id, 1)
            .is_some_and(|s| s.state == PeerState::Tombstone as i32);
        let gone = cluster.store_meta(f.store_id).lock().region(1.into()).is_none();
        (tombstone && gone).then_some(())
    });
    let stats = cluster.stats(f.store_id);
    assert!(stats.stale_peer_checks >= 1 && stats.stale_peers_destroyed == 1, "{stats:?}");
    assert_eq!(cluster.get_from_engine(f.store_id, b"k"), None, "its data is deleted");
    // The members are in the region: whatever they asked PD (a member that misses its
    // leader's heartbeats for abnormal-leader-missing-duration asks too, which a loaded
    // machine can cause), none destroyed itself.
    for s in cluster.store_ids().iter().filter(|&&s| s != f.store_id) {
        assert_eq!(cluster.stats(*s).stale_peers_destroyed, 0, "store {s}");
    }
    cluster.must_put(b"k3", b"v3");
}

#[test]
fn an_uninitialized_peer_no_leader_contacts_is_destroyed_and_the_store_can_take_the_region() {
    let mut cluster = Cluster::with_empty_stores(3, 1, &[], stale_config());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let region = cluster.region(1);
    wait_pd_conf_ver(&cluster, region.region_epoch.unwrap().conf_ver);
    // A vote from a member to a peer on store 4 that no configuration holds (e.g. one being
    // added when the change failed): store 4 creates it, uninitialized, and no leader ever
    // contacts it.
    let from = cluster.peer_on(1, 1);
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgRequestVote);
    m.from = from.id;
    m.to = 1004;
    m.term = 100;
    let vote = RaftMessage {
        region_id: 1,
        from_peer: Some(from),
        to_peer: Some(metapb::Peer { id: 1004, store_id: 4, ..Default::default() }),
        message: protobuf::Message::write_to_bytes(&m).unwrap(),
        region_epoch: region.region_epoch,
        start_key: region.start_key.clone(),
        end_key: region.end_key.clone(),
        ..Default::default()
    };
    cluster.router(4).send_raft_message(vote).unwrap();
    wait_for("an uninitialized peer on store 4", T, || {
        cluster.store_meta(4).lock().is_uninitialized(1.into()).then_some(())
    });
    wait_for("the uninitialized peer to go", T, || {
        (!cluster.store_meta(4).lock().is_uninitialized(1.into())).then_some(())
    });
    assert_eq!(cluster.stats(4).stale_peers_destroyed, 1);

    // The region can still come to store 4, as a real member.
    let added = metapb::Peer { id: 2004, store_id: 4, ..Default::default() };
    cluster.change_peer(1, ConfChangeType::AddLearnerNode, added).unwrap();
    cluster.must_applied_on(4, b"k", Some(b"v"));
}
