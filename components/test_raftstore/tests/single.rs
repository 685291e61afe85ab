//! One store, and three stores without faults: the basic command paths.

use raftstore::Config;
use test_raftstore::Cluster;

fn run_basic_ops(cluster: &Cluster) {
    cluster.must_put(b"k1", b"v1");
    cluster.must_get_equal(b"k1", b"v1");
    cluster.must_put(b"k1", b"v2");
    cluster.must_get_equal(b"k1", b"v2");
    cluster.must_get_none(b"missing");
    cluster.must_delete(b"k1");
    cluster.must_get_none(b"k1");

    for i in 0..20u8 {
        cluster.must_put(&[b'r', i], &[i]);
    }
    cluster.must_delete_range(&[b'r', 5], &[b'r', 15]);
    for i in 0..20u8 {
        let got = cluster.must_get(&[b'r', i]);
        if (5..15).contains(&i) {
            assert_eq!(got, None, "key {i} was in the deleted range");
        } else {
            assert_eq!(got, Some(vec![i]), "key {i} was outside the deleted range");
        }
    }
}

#[test]
fn single_store_put_get_delete() {
    let mut cluster = Cluster::new(1, &[], Config::for_tests());
    cluster.start();
    run_basic_ops(&cluster);
}

#[test]
fn three_stores_put_get_delete_and_replicate() {
    let mut cluster = Cluster::new(3, &[], Config::for_tests());
    cluster.start();
    run_basic_ops(&cluster);
    cluster.must_put(b"replicated", b"yes");
    for s in [1, 2, 3] {
        cluster.must_applied_on(s, b"replicated", Some(b"yes"));
        cluster.must_applied_on(s, &[b'r', 7], None);
        cluster.must_applied_on(s, &[b'r', 3], Some(&[3]));
    }
}

#[test]
fn proposals_share_fsyncs() {
    let mut cluster = Cluster::new(1, &[], Config::for_tests());
    cluster.start();
    cluster.must_put(b"warm", b"up");
    let leader = cluster.wait_leader(1);
    let before = cluster.stats(leader.store_id);
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let cluster = &cluster;
            s.spawn(move || {
                for i in 0..25u8 {
                    cluster.must_put(&[b'c', t, i], b"v");
                }
            });
        }
    });
    let after = cluster.stats(leader.store_id);
    let proposals = after.proposals_synced - before.proposals_synced;
    let fsyncs = after.raft_fsyncs - before.raft_fsyncs;
    assert_eq!(proposals, 200, "every put was counted once");
    assert!(fsyncs > 0);
    assert!(fsyncs <= proposals, "no put needed more than one fsync of its own");
}
