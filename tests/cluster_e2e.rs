//! A real cluster: `regionstore-pd` and three `regionstore-server` processes on loopback.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_for, Client, RaftTiming, TestCluster};
use proto::kvrpcpb;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Index in `cluster.stores` of the store that leads `key`'s region now.
async fn leader_index(cluster: &TestCluster, client: &Client, key: &[u8]) -> usize {
    let (ctx, _) = client.route(key).await;
    let store = client.pd.get_store(ctx.peer.unwrap().store_id).await.unwrap();
    cluster.stores.iter().position(|s| s.addr == store.address).expect("leader is one of ours")
}

/// Writes `key{from..}` until told to stop; returns the acknowledged keys and counts them
/// in `acked` as it goes. The client retries each put (it follows leaders and backs off), so
/// a put fails only after the client's deadline.
fn spawn_writer(
    rt: &tokio::runtime::Runtime,
    pd_addr: String,
    from: u32,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<Vec<u32>, String>> {
    rt.spawn(async move {
        let client = Client::connect(&pd_addr, Duration::from_secs(30)).await;
        let mut done = Vec::new();
        let mut i = from;
        while !stop.load(Ordering::Relaxed) {
            let k = format!("key{i:05}");
            client
                .put(k.as_bytes(), format!("v{i}").as_bytes())
                .await
                .map_err(|e| format!("put {k}: {e}"))?;
            done.push(i);
            acked.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        Ok(done)
    })
}

/// Waits until a store accepts connections on its gRPC address (it binds once it knows its
/// identity, before it joins raft).
fn wait_listening(addr: &str) {
    wait_for(&format!("{addr} to listen"), Duration::from_secs(60), || {
        std::net::TcpStream::connect(addr).ok().map(drop)
    });
}

#[test]
fn three_stores_serve_raw_kv_and_survive_kill9_and_restarts() {
    let mut cluster = TestCluster::start(3);
    let rt = runtime();
    let mut acked: Vec<u32> = Vec::new();
    let client = rt.block_on(Client::connect(&cluster.pd_addr, Duration::from_secs(30)));
    rt.block_on(async {
        for i in 0..50u32 {
            let k = format!("key{i:05}");
            client
                .put(k.as_bytes(), format!("v{i}").as_bytes())
                .await
                .unwrap_or_else(|e| panic!("put {k}: {e}\n{}", cluster.logs()));
            acked.push(i);
        }
        for i in 0..50u32 {
            let k = format!("key{i:05}");
            assert_eq!(client.get(k.as_bytes()).await.unwrap(), Some(format!("v{i}").into_bytes()));
        }
        assert_eq!(client.get(b"absent").await.unwrap(), None);
    });

    // kill -9 the leader's store while a client writes: the writer keeps going (its puts wait
    // out the election), and every acknowledged put is there afterwards.
    let victim = rt.block_on(leader_index(&cluster, &client, b"key00000"));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let writer = spawn_writer(&rt, cluster.pd_addr.clone(), 50, count.clone(), stop.clone());
    wait_for("the writer to get going", Duration::from_secs(30), || {
        (count.load(Ordering::Relaxed) >= 30).then_some(())
    });
    cluster.stores[victim].proc.kill9();
    let at_kill = count.load(Ordering::Relaxed);
    wait_for("writes after the kill", Duration::from_secs(60), || {
        (count.load(Ordering::Relaxed) >= at_kill + 30).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let written =
        rt.block_on(writer).unwrap().unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    acked.extend(written);

    // Bring the victim back, then take down another store: the restarted one must now be
    // part of every quorum, so reads succeed only if it caught up.
    cluster.start_store(victim);
    let other = (victim + 1) % 3;
    rt.block_on(async {
        // Wait for the victim to serve raft again (a write needs it once `other` is gone).
        client.put(b"probe", b"1").await.unwrap();
    });
    cluster.stores[other].proc.kill9();
    rt.block_on(async {
        let client = Client::connect(&cluster.pd_addr, Duration::from_secs(30)).await;
        for &i in &acked {
            let k = format!("key{i:05}");
            let got = client
                .get(k.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("get {k}: {e}\n{}", cluster.logs()));
            assert_eq!(got, Some(format!("v{i}").into_bytes()), "acknowledged {k} lost");
        }
    });
    cluster.start_store(other);
    for s in &cluster.stores {
        wait_listening(&s.addr);
    }

    // Restart everything: PD and all stores, then every acknowledged write is there.
    for s in cluster.stores.iter_mut() {
        let status = s.proc.terminate().expect("running");
        assert!(status.success(), "store exit on SIGTERM: {status:?}");
    }
    let pd_status = cluster.pd.terminate().expect("pd running");
    assert!(pd_status.success(), "pd exit {pd_status:?}");
    cluster.start_pd();
    for i in 0..3 {
        cluster.start_store(i);
    }
    rt.block_on(async {
        let client = Client::connect(&cluster.pd_addr, Duration::from_secs(30)).await;
        for &i in &acked {
            let k = format!("key{i:05}");
            let got = client
                .get(k.as_bytes())
                .await
                .unwrap_or_else(|e| panic!("get {k}: {e}\n{}", cluster.logs()));
            assert_eq!(
                got,
                Some(format!("v{i}").into_bytes()),
                "acknowledged {k} lost across restart"
            );
        }
    });
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let cluster = TestCluster::start(3);
    let rt = runtime();
    rt.block_on(async {
        let client = Client::connect(&cluster.pd_addr, Duration::from_secs(30)).await;
        client.put(b"k", b"v").await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        let (ctx, mut store) = client.route(b"k").await;

        // Unknown region.
        let mut bad = ctx.clone();
        bad.region_id = 999_999;
        let r = store
            .raw_get(kvrpcpb::RawGetRequest {
                context: Some(bad),
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.unwrap().region_not_found.is_some());

        // Stale epoch.
        let mut bad = ctx.clone();
        bad.region_epoch = Some(proto::metapb::RegionEpoch { conf_ver: 1, version: 0 });
        let r = store
            .raw_put(kvrpcpb::RawPutRequest {
                context: Some(bad),
                key: b"k".to_vec(),
                value: b"x".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.region_error.unwrap().epoch_not_match.is_some());

        // Wrong store.
        let mut bad = ctx.clone();
        bad.peer.as_mut().unwrap().store_id = 424_242;
        let r = store
            .raw_get(kvrpcpb::RawGetRequest {
                context: Some(bad),
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let re = r.region_error.expect("region error");
        assert!(re.store_not_match.is_some() || re.not_leader.is_some(), "{re:?}");

        // Empty key, oversized key and value: a clear error string, nothing written.
        let r = store
            .raw_put(kvrpcpb::RawPutRequest {
                context: Some(ctx.clone()),
                key: vec![],
                value: b"x".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.contains("empty key"), "{r:?}");
        let r = store
            .raw_put(kvrpcpb::RawPutRequest {
                context: Some(ctx.clone()),
                key: vec![b'k'; 9000],
                value: b"x".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.contains("exceeds"), "{r:?}");
        let r = store
            .raw_put(kvrpcpb::RawPutRequest {
                context: Some(ctx.clone()),
                key: b"big".to_vec(),
                value: vec![0; 7 << 20],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.error.is_empty() || r.region_error.is_some(), "7 MiB value accepted");

        // Scan limit 0.
        let status = store
            .raw_scan(kvrpcpb::RawScanRequest {
                context: Some(ctx.clone()),
                start_key: b"a".to_vec(),
                limit: 0,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

        // No context at all.
        let r = store
            .raw_get(kvrpcpb::RawGetRequest {
                context: None,
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.error.is_empty());

        // Still serving.
        assert_eq!(client.get(b"k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(client.get(b"big").await.unwrap(), None);
    });
}

/// Fast ticks, and a log compacted past a lagging store after 20 entries.
const FAST_TICKS_SMALL_LOG: RaftTiming = RaftTiming(
    r#"raft-base-tick-interval = "50ms"
raft-heartbeat-ticks = 2
raft-election-timeout-ticks = 10
raft-store-max-leader-lease = "400ms"
raft-log-gc-tick-interval = "100ms"
raft-log-gc-threshold = 5
raft-log-gc-count-limit = 20"#,
);

/// A store killed -9 comes back after the others compacted their logs past it: it catches up
/// by a snapshot sent over the gRPC `Snapshot` stream, and then serves as a member of the
/// quorum that keeps every acknowledged write when one of the others dies.
#[test]
fn a_store_behind_a_compacted_log_catches_up_by_snapshot_over_grpc_even_killed_mid_apply() {
    let rt = runtime();
    let mut cluster = TestCluster::start_with_timing(3, FAST_TICKS_SMALL_LOG, "");
    let client = rt.block_on(Client::connect(&cluster.pd_addr, Duration::from_secs(60)));
    let key = |i: u32| format!("snap{i:04}").into_bytes();
    let put = |i: u32| rt.block_on(client.put(&key(i), format!("v{i}").as_bytes()));
    for i in 0..20 {
        put(i).unwrap();
    }
    let victim = (rt.block_on(leader_index(&cluster, &client, &key(0))) + 1) % 3;
    cluster.stores[victim].proc.kill9();
    for i in 20..300 {
        put(i).unwrap_or_else(|e| panic!("put {i}: {e}\n{}", cluster.logs()));
    }
    // It comes back held inside the snapshot's apply, after the data is in and before the
    // region is `Normal`; it is killed there, then restarted for good.
    let log = cluster.store_log(victim);
    let log_since = |from: usize| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.get(from..).unwrap_or_default().to_owned()
    };
    let from = log_since(0).len();
    let pause = "raftstore::apply::snapshot_before_normal=pause";
    cluster.start_store_with_env(victim, &[("FAILPOINTS", pause)]);
    wait_for("the restarted store to ingest a snapshot", Duration::from_secs(60), || {
        let text = log_since(from);
        (text.contains("snapshot received") && text.contains("snapshot files ingested"))
            .then_some(())
    });
    let held = log_since(from);
    assert!(!held.contains("snapshot applied"), "held before the region is Normal:\n{held}");
    cluster.stores[victim].proc.kill9();
    let from = log_since(0).len();
    cluster.start_store(victim);
    wait_for("the store to finish the snapshot on restart", Duration::from_secs(60), || {
        log_since(from).contains("snapshot applied").then_some(())
    });
    // The quorum is now the snapshot's receiver and one other: every write is still there.
    let other = (victim + 1) % 3;
    cluster.stores[other].proc.kill9();
    for i in 0..300 {
        let got = rt.block_on(client.get(&key(i))).unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()), "key {i}");
    }
    put(300).unwrap();
}
