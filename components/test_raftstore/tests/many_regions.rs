//! Many regions per store.

use raftstore::Config;
use test_raftstore::Cluster;
use util::config::ReadableDuration;

#[test]
fn thousand_regions_on_three_stores_elect_and_accept_writes() {
    let mut cfg = Config::for_tests();
    // 3,000 peers in one process on two cores: slower ticks keep the tick load sane.
    cfg.raft_base_tick_interval = ReadableDuration::millis(50);
    cfg.raft_heartbeat_ticks = 2;
    cfg.raft_election_timeout_ticks = 10;
    cfg.raft_store_max_leader_lease = ReadableDuration::millis(400);
    let split_keys: Vec<Vec<u8>> = (1..1000u32).map(|i| format!("k{i:04}").into_bytes()).collect();
    let split_refs: Vec<&[u8]> = split_keys.iter().map(|k| k.as_slice()).collect();
    let mut cluster = Cluster::new(3, &split_refs, cfg);
    cluster.start();
    assert_eq!(cluster.regions().len(), 1000);
    for r in cluster.regions().to_vec() {
        cluster.wait_leader(r.id);
    }
    // A write in every region.
    for r in cluster.regions().to_vec() {
        let key = [r.start_key.as_slice(), b"x"].concat();
        cluster.must_put(&key, b"v");
    }
    for r in cluster.regions().iter().step_by(97) {
        let key = [r.start_key.as_slice(), b"x"].concat();
        cluster.must_get_equal(&key, b"v");
    }
    for s in [1, 2, 3] {
        assert_eq!(cluster.store_meta(s).lock().region_count(), 1000);
    }
}
