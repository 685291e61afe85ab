//! Restarts: of one store, of all stores, and from a crash between persisting and applying.

use std::time::Duration;

use raftstore::Config;
use test_raftstore::util::{cmd, header, put_req};
use test_raftstore::Cluster;

#[test]
fn restart_one_store_keeps_its_data_and_catches_up() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    for i in 0..10u8 {
        cluster.must_put(&[b'a', i], &[i]);
    }
    cluster.must_applied_on(2, &[b'a', 9], Some(&[9]));
    cluster.stop_store(2);
    for i in 0..10u8 {
        cluster.must_put(&[b'b', i], &[i]);
    }
    cluster.start_store(2);
    for i in 0..10u8 {
        cluster.must_applied_on(2, &[b'a', i], Some(&[i]));
        cluster.must_applied_on(2, &[b'b', i], Some(&[i]));
    }
}

#[test]
fn restart_all_stores_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::new(3, &[b"m"], Config::for_tests());
    cluster.start();
    let keys: Vec<Vec<u8>> =
        (0..50u8).map(|i| vec![if i % 2 == 0 { b'a' } else { b'x' }, i]).collect();
    for k in &keys {
        cluster.must_put(k, k);
    }
    cluster.must_delete(&keys[0]);
    cluster.shutdown();
    for s in [1, 2, 3] {
        cluster.start_store(s);
    }
    cluster.must_get_none(&keys[0]);
    for k in &keys[1..] {
        cluster.must_get_equal(k, k);
    }
    cluster.must_put(b"after", b"restart");
    cluster.must_get_equal(b"after", b"restart");
}

#[test]
fn single_store_restart_replays_the_log() {
    let mut cluster = Cluster::new(1, &[], Config::for_tests());
    cluster.start();
    for round in 0..3u8 {
        cluster.must_put(b"k", &[round]);
        cluster.stop_store(1);
        cluster.start_store(1);
        cluster.must_get_equal(b"k", &[round]);
    }
}

#[test]
fn commands_to_a_stopped_or_destroyed_peer_are_answered() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.wait_leader(1);
    let region = cluster.region(1);

    // Destroy the leader's peer: queued and later commands are answered RegionNotFound.
    cluster
        .router(leader.store_id)
        .send(1.into(), raftstore::PeerMsg::Destroy)
        .unwrap_or_else(|_| panic!("peer reachable"));
    let write = cmd(header(&region, &leader), vec![put_req(b"k", b"x")]);
    let resp =
        cluster.call_command_on(leader.store_id, write, Duration::from_secs(5)).expect("answered");
    let err = resp.error().expect("a destroyed peer cannot write").clone();
    assert!(err.region_not_found.is_some(), "{err:?}");

    // A stopped store answers too (the router has no peer any more).
    let other = [1, 2, 3].into_iter().find(|&s| s != leader.store_id).unwrap();
    let router = cluster.router(other).clone();
    cluster.stop_store(other);
    let (tx, rx) = std::sync::mpsc::channel();
    let peer = cluster.peer_on(1, other);
    router.send_command(
        cmd(header(&region, &peer), vec![put_req(b"k", b"y")]),
        raftstore::Callback::new(1.into(), move |r| {
            tx.send(test_raftstore::to_response(r)).unwrap()
        }),
    );
    let resp = rx.recv_timeout(Duration::from_secs(5)).expect("answered after shutdown");
    assert!(resp.header.unwrap().error.unwrap().region_not_found.is_some());
}
