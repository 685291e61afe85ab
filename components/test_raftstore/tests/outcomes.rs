//! Honest answers: a command is answered with a definite failure (`StaleCommand`,
//! `NotLeader`, ...) only when it provably did not apply. When its peer can no longer tell,
//! the answer is `UndeterminedResult`. Found by the nemesis harness's rule (a definite
//! failure whose effect shows up later is an anomaly).

use std::time::Duration;

use raftstore::Config;
use test_raftstore::util::{cmd, header, put_req, wait_for};
use test_raftstore::{Cluster, IsolateStore, RegionFilter};
use util::config::ReadableDuration;

const T: Duration = Duration::from_secs(30);

/// 1. The leader proposes a put; its appends reach the followers, their answers never reach
///    it, so it does not learn that the entry committed.
/// 2. The leader is cut off; a new leader commits the entry (and more), and compacts its log.
/// 3. The old leader comes back behind the compacted log: a snapshot replaces its log. The
///    put's entry is inside the snapshot, but nothing in a snapshot says so.
///
/// The put was applied, so `StaleCommand` (what the peer answered before) would be a lie the
/// client acts on; the answer is `UndeterminedResult`, and the value is there.
#[test]
fn a_proposal_covered_by_a_snapshot_is_answered_undetermined_not_stale() {
    let cfg = Config {
        raft_log_gc_tick_interval: ReadableDuration::millis(50),
        raft_log_gc_threshold: 10,
        raft_log_reserve_max_ticks: 2,
        raft_log_gc_count_limit: Some(20),
        ..Config::for_tests()
    };
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    cluster.must_put(b"k0", b"v0");
    let leader = cluster.wait_leader(1);
    let old = leader.store_id;
    let region = cluster.region(1);
    let before = last_index(&cluster, old);

    // 1. Answers to the leader are dropped; the put is proposed on it directly.
    let deaf =
        cluster.hub.add_filter(RegionFilter { region_id: 1, msg_type: None, to_store: Some(old) });
    let req = cmd(header(&region, &leader), vec![put_req(b"k1", b"v1")]);
    let answer = {
        let router = cluster.router(old).clone();
        let (tx, rx) = std::sync::mpsc::channel();
        router.send_command(
            req,
            raftstore::Callback::new(util::RegionId(1), move |r| {
                let _ = tx.send(r.map(|_| ()));
            }),
        );
        rx
    };
    let put_index = wait_for("the leader to append the put", T, || {
        Some(last_index(&cluster, old)).filter(|&i| i > before)
    });
    let others: Vec<u64> = cluster.store_ids().iter().copied().filter(|&s| s != old).collect();
    for &s in &others {
        wait_for(&format!("store {s} to hold the put's entry"), T, || {
            (last_index(&cluster, s) >= put_index).then_some(())
        });
    }

    // 2. Cut off; the others elect a leader, commit the put and compact past it.
    let cut = cluster.hub.add_filter(IsolateStore(old));
    cluster.hub.remove_filter(deaf);
    // (`wait_leader` also points the cluster's requests at it.)
    wait_for("a leader on another store", T, || {
        Some(cluster.wait_leader(1)).filter(|l| l.store_id != old)
    });
    for i in 0..60u32 {
        cluster.must_put(format!("more{i:03}").as_bytes(), b"x");
    }
    for &s in &others {
        cluster.must_applied_on(s, b"k1", Some(b"v1"));
        wait_for(&format!("store {s} to compact"), T, || {
            (cluster.truncated_index(s, 1) > 40).then_some(())
        });
    }

    // 3. Back: the old leader catches up by snapshot.
    cluster.hub.remove_filter(cut);
    let got = answer.recv_timeout(T).expect("the put is answered");
    let err = got.expect_err("the old leader cannot know the put's result");
    assert!(
        matches!(err, raftstore::Error::Undetermined(_)),
        "a put that applied was answered {err:?}"
    );
    cluster.must_applied_on(old, b"k1", Some(b"v1"));
    assert_eq!(cluster.must_get(b"k1").as_deref(), Some(&b"v1"[..]));
}

fn last_index(cluster: &Cluster, s: u64) -> u64 {
    use engine_traits::RaftEngine;
    cluster.engines(s).raft.last_index(util::RegionId(1)).unwrap().map_or(0, |i| i.get())
}
