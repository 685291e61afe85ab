//! PD over real gRPC on loopback (port 0, so tests run in parallel), with restarts on the same
//! data directory.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use pd_server::{PdConfig, PdServer, ReplicationConfig, ScheduleConfig};
use proto::keyspacepb::{keyspace_client::KeyspaceClient, LoadKeyspaceRequest};
use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(10);

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

async fn start(dir: &Path, max_replicas: usize) -> PdServer {
    let cfg = PdConfig {
        addr: "127.0.0.1:0".to_owned(),
        data_dir: dir.to_owned(),
        replication: ReplicationConfig { max_replicas },
        ..PdConfig::default()
    };
    pd_server::start(cfg, logger()).await.expect("start PD")
}

async fn client(pd: &PdServer) -> PdClient<Channel> {
    PdClient::connect(pd.client_url().to_owned()).await.expect("connect to PD")
}

fn header(pd: &PdServer) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader { cluster_id: pd.cluster_id(), sender_id: 0 })
}

fn error_type(h: &Option<pdpb::ResponseHeader>) -> Option<pdpb::ErrorType> {
    let h = h.as_ref().expect("every response has a header");
    h.error.as_ref().map(|e| pdpb::ErrorType::try_from(e.r#type).unwrap())
}

async fn alloc_id(c: &mut PdClient<Channel>, pd: &PdServer) -> u64 {
    let resp = c.alloc_id(pdpb::AllocIdRequest { header: header(pd) }).await.unwrap().into_inner();
    assert_eq!(error_type(&resp.header), None);
    resp.id
}

async fn put_store(c: &mut PdClient<Channel>, pd: &PdServer, id: u64) {
    let store =
        metapb::Store { id, address: format!("127.0.0.1:{}", 20000 + id), ..Default::default() };
    let resp = c
        .put_store(pdpb::PutStoreRequest { header: header(pd), store: Some(store) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
}

async fn is_bootstrapped(c: &mut PdClient<Channel>, pd: &PdServer) -> bool {
    c.is_bootstrapped(pdpb::IsBootstrappedRequest { header: header(pd) })
        .await
        .unwrap()
        .into_inner()
        .bootstrapped
}

async fn get_region(
    c: &mut PdClient<Channel>,
    pd: &PdServer,
    key: &[u8],
) -> pdpb::GetRegionResponse {
    c.get_region(pdpb::GetRegionRequest {
        header: header(pd),
        region_key: key.to_vec(),
        need_buckets: false,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn region_by_id(
    c: &mut PdClient<Channel>,
    pd: &PdServer,
    id: u64,
) -> pdpb::GetRegionResponse {
    c.get_region_by_id(pdpb::GetRegionByIdRequest {
        header: header(pd),
        region_id: id,
        need_buckets: false,
    })
    .await
    .unwrap()
    .into_inner()
}

/// Three stores registered; PD has bootstrapped the first region on them.
async fn bootstrapped(pd: &PdServer) -> (PdClient<Channel>, Vec<u64>, metapb::Region) {
    let mut c = client(pd).await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        let id = alloc_id(&mut c, pd).await;
        put_store(&mut c, pd, id).await;
        stores.push(id);
    }
    let region = get_region(&mut c, pd, b"").await.region.expect("first region");
    (c, stores, region)
}

/// Polls `cond` until it holds or the deadline passes.
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn with_range(
    region: &metapb::Region,
    start: &[u8],
    end: &[u8],
    conf_ver: u64,
    version: u64,
) -> metapb::Region {
    metapb::Region {
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
        ..region.clone()
    }
}

fn heartbeat(
    pd: &PdServer,
    region: &metapb::Region,
    leader: usize,
    term: u64,
) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: header(pd),
        region: Some(region.clone()),
        leader: Some(region.peers[leader].clone()),
        term,
        approximate_size: 1024,
        approximate_keys: 10,
        ..Default::default()
    }
}

#[tokio::test]
async fn get_members_names_one_leader_with_header() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let resp = c.get_members(pdpb::GetMembersRequest { header: None }).await.unwrap().into_inner();
    let h = resp.header.as_ref().unwrap();
    assert_eq!(h.cluster_id, pd.cluster_id());
    assert!(h.error.is_none());
    assert_ne!(pd.cluster_id(), 0);
    let leader = resp.leader.expect("leader");
    assert_eq!(resp.members, [leader.clone()]);
    assert_eq!(leader.client_urls, [format!("http://{}", pd.addr())]);

    // A request for another cluster is refused in the header.
    let resp = c
        .alloc_id(pdpb::AllocIdRequest {
            header: Some(pdpb::RequestHeader { cluster_id: 1, sender_id: 0 }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(pdpb::ErrorType::Unknown));

    let mut ks = KeyspaceClient::connect(pd.client_url().to_owned()).await.unwrap();
    let resp = ks
        .load_keyspace(LoadKeyspaceRequest { header: header(&pd), name: "DEFAULT".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.header.is_some());
    assert_eq!(resp.keyspace.unwrap().id, 0);
    let resp = ks
        .load_keyspace(LoadKeyspaceRequest { header: header(&pd), name: "nope".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.header.is_some() && resp.keyspace.is_none());
    drop((c, ks));
    pd.shutdown().await;
}

#[tokio::test]
async fn alloc_id_is_unique_and_monotonic_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let cluster_id = pd.cluster_id();
    let mut c = client(&pd).await;
    let mut last = 0;
    for _ in 0..50 {
        let id = alloc_id(&mut c, &pd).await;
        assert!(id > last, "{id} after {last}");
        last = id;
    }
    drop(c);
    pd.shutdown().await;

    let pd = start(dir.path(), 3).await;
    assert_eq!(pd.cluster_id(), cluster_id, "cluster id is persisted");
    let mut c = client(&pd).await;
    let id = alloc_id(&mut c, &pd).await;
    assert!(id > last, "{id} after restart, {last} before");
    drop(c);
    pd.shutdown().await;
}

async fn tso_batch(
    tx: &mpsc::Sender<pdpb::TsoRequest>,
    rx: &mut tonic::Streaming<pdpb::TsoResponse>,
    pd: &PdServer,
    count: u32,
) -> (i64, i64) {
    tx.send(pdpb::TsoRequest { header: header(pd), count, dc_location: String::new() })
        .await
        .unwrap();
    let resp = rx.message().await.unwrap().expect("a response per request");
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(resp.count, count);
    let ts = resp.timestamp.unwrap();
    assert!(ts.logical >= i64::from(count), "the largest of the batch: {ts:?}");
    (ts.physical, ts.logical)
}

#[tokio::test]
async fn tso_is_monotonic_in_a_stream_and_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let (tx, rx) = mpsc::channel(4);
    let mut stream = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut last = (0, 0);
    for i in 0..200 {
        let count = 1 + (i % 7);
        let ts = tso_batch(&tx, &mut stream, &pd, count).await;
        // The batch is logical - count + 1 ..= logical: its first must be above the last.
        assert!((ts.0, ts.1 - i64::from(count) + 1) > last, "{ts:?} after {last:?}");
        last = ts;
    }
    // count 0 is refused in the header; the stream stays usable.
    tx.send(pdpb::TsoRequest { header: header(&pd), count: 0, dc_location: String::new() })
        .await
        .unwrap();
    let resp = stream.message().await.unwrap().unwrap();
    assert_eq!(error_type(&resp.header), Some(pdpb::ErrorType::InvalidValue));
    drop((tx, stream, c));
    pd.shutdown().await;

    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let (tx, rx) = mpsc::channel(4);
    let mut stream = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let ts = tso_batch(&tx, &mut stream, &pd, 1).await;
    assert!(ts > last, "{ts:?} after restart, {last:?} before");
    drop((tx, stream, c));
    pd.shutdown().await;
}

#[tokio::test]
async fn stores_are_registered_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let id = alloc_id(&mut c, &pd).await;
    put_store(&mut c, &pd, id).await;

    let resp = c
        .get_store(pdpb::GetStoreRequest { header: header(&pd), store_id: id })
        .await
        .unwrap()
        .into_inner();
    let store = resp.store.unwrap();
    assert_eq!(store.address, format!("127.0.0.1:{}", 20000 + id));
    assert_eq!(store.state, metapb::StoreState::Up as i32);

    let resp = c
        .get_store(pdpb::GetStoreRequest { header: header(&pd), store_id: 999_999 })
        .await
        .unwrap()
        .into_inner();
    assert!(error_type(&resp.header).is_some());

    // Another store may not take the same address.
    let dup = metapb::Store { id: id + 1000, address: store.address.clone(), ..Default::default() };
    let resp = c
        .put_store(pdpb::PutStoreRequest { header: header(&pd), store: Some(dup) })
        .await
        .unwrap()
        .into_inner();
    assert!(error_type(&resp.header).is_some());

    let stats = pdpb::StoreStats { store_id: id, capacity: 100, ..Default::default() };
    let resp = c
        .store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: header(&pd),
            stats: Some(stats),
            store_report: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);

    let resp = c
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(&pd),
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.stores.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    drop(c);
    pd.shutdown().await;
}

#[tokio::test]
async fn pd_bootstraps_once_max_replicas_stores_registered() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let mut stores = Vec::new();
    for _ in 0..2 {
        let id = alloc_id(&mut c, &pd).await;
        put_store(&mut c, &pd, id).await;
        stores.push(id);
    }
    assert!(!is_bootstrapped(&mut c, &pd).await);
    let resp = get_region(&mut c, &pd, b"k").await;
    assert_eq!(error_type(&resp.header), Some(pdpb::ErrorType::NotBootstrapped));

    let id = alloc_id(&mut c, &pd).await;
    put_store(&mut c, &pd, id).await;
    stores.push(id);
    assert!(is_bootstrapped(&mut c, &pd).await);

    let resp = get_region(&mut c, &pd, b"any key").await;
    assert_eq!(error_type(&resp.header), None);
    let region = resp.region.unwrap();
    assert!(region.start_key.is_empty() && region.end_key.is_empty());
    assert_eq!(region.region_epoch, Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }));
    assert_eq!(region.peers.iter().map(|p| p.store_id).collect::<Vec<_>>(), stores);
    assert_eq!(resp.leader.as_ref(), region.peers.first(), "no heartbeat yet: the first peer");
    let ids: HashSet<u64> = region.peers.iter().map(|p| p.id).chain([region.id]).collect();
    assert_eq!(ids.len(), 4, "region and peer ids are distinct");

    // A fourth store changes nothing, and a store-initiated bootstrap is refused.
    let id = alloc_id(&mut c, &pd).await;
    put_store(&mut c, &pd, id).await;
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: header(&pd),
            store: Some(metapb::Store { id, address: "127.0.0.1:1".into(), ..Default::default() }),
            region: Some(region.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(pdpb::ErrorType::AlreadyBootstrapped));
    assert_eq!(get_region(&mut c, &pd, b"").await.region, Some(region));
    drop(c);
    pd.shutdown().await;
}

#[tokio::test]
async fn store_initiated_bootstrap_works() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let mut c = client(&pd).await;
    let (store_id, region_id, peer_id) =
        (alloc_id(&mut c, &pd).await, alloc_id(&mut c, &pd).await, alloc_id(&mut c, &pd).await);
    let region = metapb::Region {
        id: region_id,
        region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
        peers: vec![metapb::Peer { id: peer_id, store_id, ..Default::default() }],
        ..Default::default()
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: header(&pd),
            store: Some(metapb::Store {
                id: store_id,
                address: "127.0.0.1:20160".into(),
                ..Default::default()
            }),
            region: Some(region.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert!(is_bootstrapped(&mut c, &pd).await);
    assert_eq!(get_region(&mut c, &pd, b"x").await.region, Some(region));
    drop(c);
    pd.shutdown().await;
}

#[tokio::test]
async fn region_heartbeats_update_routing_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (mut c, stores, r1) = bootstrapped(&pd).await;
    let (tx, rx) = mpsc::channel(16);
    let _responses = c.region_heartbeat(ReceiverStream::new(rx)).await.unwrap().into_inner();

    // 1. A heartbeat names the leader.
    tx.send(heartbeat(&pd, &r1, 1, 1)).await.unwrap();
    let c2 = c.clone();
    let want = r1.peers[1].clone();
    wait_until("leader from heartbeat", || {
        let (mut c, pd, want) = (c2.clone(), &pd, want.clone());
        async move { get_region(&mut c, pd, b"a").await.leader == Some(want) }
    })
    .await;

    // 2. Split at "m": ids from AskBatchSplit, then both halves report with version 2.
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: header(&pd),
            region: Some(r1.clone()),
            split_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    let split = &resp.ids[0];
    assert_eq!(split.new_peer_ids.len(), r1.peers.len());
    let left = with_range(&r1, b"", b"m", 1, 2);
    let right = metapb::Region {
        id: split.new_region_id,
        peers: r1
            .peers
            .iter()
            .zip(&split.new_peer_ids)
            .map(|(p, &id)| metapb::Peer { id, store_id: p.store_id, ..Default::default() })
            .collect(),
        ..with_range(&r1, b"m", b"", 1, 2)
    };
    tx.send(heartbeat(&pd, &left, 1, 1)).await.unwrap();
    tx.send(heartbeat(&pd, &right, 1, 1)).await.unwrap();
    let right_id = right.id;
    wait_until("right half routed", || {
        let (mut c, pd) = (c2.clone(), &pd);
        async move { get_region(&mut c, pd, b"z").await.region.is_some_and(|r| r.id == right_id) }
    })
    .await;
    assert_eq!(get_region(&mut c, &pd, b"a").await.region, Some(left.clone()));
    let prev = c
        .get_prev_region(pdpb::GetRegionRequest {
            header: header(&pd),
            region_key: b"z".to_vec(),
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prev.region, Some(left.clone()));
    let scan = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(&pd),
            start_key: b"b".to_vec(),
            limit: 0,
            end_key: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        scan.regions.iter().map(|r| r.region.as_ref().unwrap().id).collect::<Vec<_>>(),
        [r1.id, right_id]
    );
    assert_eq!(scan.region_metas.len(), 2);
    let scan = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: header(&pd),
            start_key: vec![],
            limit: 1,
            end_key: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.regions.len(), 1);

    // 3. The parent's stale heartbeat (old epoch, even with a higher term) is ignored. The
    //    leader change of the right half sent after it shows the stream got past it.
    tx.send(heartbeat(&pd, &r1, 0, 9)).await.unwrap();
    tx.send(heartbeat(&pd, &right, 2, 2)).await.unwrap();
    let want = right.peers[2].clone();
    wait_until("right leader change", || {
        let (mut c, pd, want) = (c2.clone(), &pd, want.clone());
        async move { get_region(&mut c, pd, b"z").await.leader == Some(want) }
    })
    .await;
    let resp = get_region(&mut c, &pd, b"a").await;
    assert_eq!(resp.region, Some(left.clone()));
    assert_eq!(resp.leader, Some(left.peers[1].clone()));

    // 4. A merge into the right region (newer version, covering the left) removes the left.
    let merged = with_range(&right, b"", b"", 1, 3);
    tx.send(heartbeat(&pd, &merged, 2, 2)).await.unwrap();
    let r1_id = r1.id;
    wait_until("left region removed", || {
        let (mut c, pd) = (c2.clone(), &pd);
        async move { region_by_id(&mut c, pd, r1_id).await.region.is_none() }
    })
    .await;
    assert_eq!(get_region(&mut c, &pd, b"a").await.region, Some(merged.clone()));

    // 5. All of it survives a restart.
    drop((tx, _responses, c, c2));
    let cluster_id = pd.cluster_id();
    pd.shutdown().await;
    let pd = start(dir.path(), 3).await;
    assert_eq!(pd.cluster_id(), cluster_id);
    let mut c = client(&pd).await;
    assert!(is_bootstrapped(&mut c, &pd).await);
    let resp = get_region(&mut c, &pd, b"q").await;
    assert_eq!(resp.region, Some(merged.clone()));
    assert_eq!(resp.leader, Some(merged.peers[2].clone()));
    assert!(region_by_id(&mut c, &pd, r1_id).await.region.is_none());
    let all = c
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(&pd),
            exclude_tombstone_stores: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.stores.iter().map(|s| s.id).collect::<Vec<_>>(), stores);
    drop(c);
    pd.shutdown().await;
}

#[tokio::test]
async fn report_batch_split_updates_routing() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (mut c, _stores, r1) = bootstrapped(&pd).await;
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: header(&pd),
            region: Some(r1.clone()),
            split_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let split = &resp.ids[0];
    let left = metapb::Region {
        id: split.new_region_id,
        peers: r1
            .peers
            .iter()
            .zip(&split.new_peer_ids)
            .map(|(p, &id)| metapb::Peer { id, store_id: p.store_id, ..Default::default() })
            .collect(),
        ..with_range(&r1, b"", b"k", 1, 2)
    };
    let right = with_range(&r1, b"k", b"", 1, 2);
    let resp = c
        .report_batch_split(pdpb::ReportBatchSplitRequest {
            header: header(&pd),
            regions: vec![left.clone(), right.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    assert_eq!(get_region(&mut c, &pd, b"a").await.region, Some(left));
    assert_eq!(get_region(&mut c, &pd, b"x").await.region, Some(right));
    drop(c);
    pd.shutdown().await;
}

#[tokio::test]
async fn ask_batch_split_ids_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (mut c, _stores, r1) = bootstrapped(&pd).await;
    let before = alloc_id(&mut c, &pd).await;
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let resp = c
            .ask_batch_split(pdpb::AskBatchSplitRequest {
                header: header(&pd),
                region: Some(r1.clone()),
                split_count: 5,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(error_type(&resp.header), None);
        assert_eq!(resp.ids.len(), 5);
        for split in &resp.ids {
            assert_eq!(split.new_peer_ids.len(), 3);
            for id in split.new_peer_ids.iter().chain([&split.new_region_id]) {
                assert!(*id > before);
                assert!(seen.insert(*id), "id {id} handed out twice");
            }
        }
    }
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: header(&pd),
            region: Some(r1.clone()),
            split_count: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), Some(pdpb::ErrorType::InvalidValue));
    drop(c);
    pd.shutdown().await;
}

/// One HTTP/1.1 GET over a plain TCP connection; returns (status line, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_lists_regions_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (c, stores, region) = bootstrapped(&pd).await;
    let addr = pd.addr();
    let (regions, stores_json, missing) = tokio::task::spawn_blocking(move || {
        (
            http_get(addr, "/pd/api/v1/regions"),
            http_get(addr, "/pd/api/v1/stores"),
            http_get(addr, "/nope"),
        )
    })
    .await
    .unwrap();

    assert!(regions.0.contains("200"), "{regions:?}");
    let v: serde_json::Value = serde_json::from_str(&regions.1).unwrap();
    assert_eq!(v["count"], 1);
    let r = &v["regions"][0];
    assert_eq!(r["id"], region.id);
    assert_eq!(r["start_key"], "");
    assert_eq!(r["epoch"]["version"], 1);
    assert_eq!(r["peers"].as_array().unwrap().len(), 3);
    assert!(r["leader"].is_null());

    assert!(stores_json.0.contains("200"), "{stores_json:?}");
    let v: serde_json::Value = serde_json::from_str(&stores_json.1).unwrap();
    assert_eq!(v["count"], 3);
    let listed: Vec<u64> =
        v["stores"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, stores);
    assert_eq!(v["stores"][0]["region_count"], 1);
    assert_eq!(v["stores"][0]["state"], "Up");

    assert!(missing.0.contains("404"), "{missing:?}");
    drop(c);
    pd.shutdown().await;
}

/// One HTTP/1.1 request with an optional body; returns (status line, body).
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Operators over the HTTP API: created and checked against the region, dispatched on the
/// leader's heartbeats until the heartbeats show them done, cancelled; bad requests refused
/// with the HTTP status and reason the API documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_dispatched_on_heartbeats_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (mut c, stores, region) = bootstrapped(&pd).await;
    for &store_id in &stores {
        let stats = pdpb::StoreStats { store_id, ..Default::default() };
        let req = pdpb::StoreHeartbeatRequest {
            header: header(&pd),
            stats: Some(stats),
            ..Default::default()
        };
        c.store_heartbeat(req).await.unwrap();
    }
    let (tx, rx) = mpsc::channel(16);
    let mut responses = c.region_heartbeat(ReceiverStream::new(rx)).await.unwrap().into_inner();
    // With no operator, PD answers nothing; the heartbeat makes peer 0 the known leader.
    // (GetRegion answers the first peer before any heartbeat, so the wait reads the HTTP
    // API, which shows only a reported leader.)
    tx.send(heartbeat(&pd, &region, 0, 1)).await.unwrap();
    let addr = pd.addr();
    let want = region.peers[0].id;
    wait_until("leader from heartbeat", || async move {
        let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/pd/api/v1/regions"))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["regions"][0]["leader"]["id"] == want
    })
    .await;

    let rid = region.id;
    let to = region.peers[2].clone();
    let post = |body: String| {
        tokio::task::spawn_blocking(move || http(addr, "POST", "/pd/api/v1/operators", &body))
    };
    let call = |method: &'static str, path: String| {
        tokio::task::spawn_blocking(move || http(addr, method, &path, ""))
    };
    let created = post(format!(
        r#"{{"name": "transfer-leader", "region_id": {rid}, "to_store_id": {}}}"#,
        to.store_id
    ))
    .await
    .unwrap();
    assert!(created.0.contains("200"), "{created:?}");
    let op: serde_json::Value = serde_json::from_str(&created.1).unwrap();
    assert_eq!(op["status"], "running");
    assert_eq!(op["kind"], "transfer-leader");

    // A second operator for the region waits for the first.
    let busy = post(format!(
        r#"{{"name": "remove-peer", "region_id": {rid}, "store_id": {}}}"#,
        stores[1]
    ))
    .await
    .unwrap();
    assert!(busy.0.contains("409") && busy.1.contains("cancel it first"), "{busy:?}");

    // The step's command goes out at once on the leader's stream, before any new heartbeat
    // (PD's DispatchFromCreate), addressed to the leader; and it answers the next heartbeat
    // again while the step is not done.
    for when in ["at creation", "on the next heartbeat"] {
        let resp = tokio::time::timeout(DEADLINE, responses.message())
            .await
            .unwrap_or_else(|_| panic!("no command {when}"))
            .unwrap()
            .unwrap();
        assert_eq!(resp.region_id, rid, "{when}");
        assert_eq!(resp.target_peer.as_ref(), Some(&region.peers[0]), "{when}");
        assert_eq!(resp.region_epoch, region.region_epoch, "{when}");
        assert_eq!(resp.transfer_leader.unwrap().peer, Some(to.clone()), "{when}");
        tx.send(heartbeat(&pd, &region, 0, 1)).await.unwrap();
    }

    // The new leader's heartbeat shows it done.
    tx.send(heartbeat(&pd, &region, 2, 2)).await.unwrap();
    wait_until("the operator to succeed", || {
        let call = call("GET", format!("/pd/api/v1/operators/{rid}"));
        async move { call.await.unwrap().1.contains(r#""status":"success""#) }
    })
    .await;
    let running = call("GET", "/pd/api/v1/operators".into()).await.unwrap();
    assert!(running.1.contains(r#""count":0"#), "{running:?}");
    let records = call("GET", "/pd/api/v1/operators/records".into()).await.unwrap();
    assert!(records.1.contains(r#""count":1"#), "{records:?}");

    // Cancel: the operator ends `canceled`; a second cancel finds nothing to cancel.
    let created = post(format!(
        r#"{{"name": "transfer-leader", "region_id": {rid}, "to_store_id": {}}}"#,
        stores[0]
    ))
    .await
    .unwrap();
    assert!(created.0.contains("200"), "{created:?}");
    let canceled = call("DELETE", format!("/pd/api/v1/operators/{rid}")).await.unwrap();
    assert!(canceled.1.contains(r#""status":"canceled""#), "{canceled:?}");
    let again = call("DELETE", format!("/pd/api/v1/operators/{rid}")).await.unwrap();
    assert!(again.0.contains("404") && again.1.contains("no running operator"), "{again:?}");

    // Refusals.
    let cases = [
        ("{", "400", "bad operator body"),
        (r#"{"name": "split-region", "region_id": 1}"#, "400", "unknown operator"),
        (r#"{"name": "merge-region", "source_region_id": 1}"#, "400", "needs source_region_id"),
        (r#"{"name": "add-peer", "region_id": 1, "store": 2}"#, "400", "unknown field"),
        (
            r#"{"name": "add-peer", "region_id": 999999, "store_id": 2}"#,
            "404",
            "region 999999 not found",
        ),
        (
            &*format!(r#"{{"name": "add-peer", "region_id": {rid}, "store_id": 77}}"#),
            "400",
            "max-replicas",
        ),
        (
            &*format!(r#"{{"name": "remove-peer", "region_id": {rid}, "store_id": 77}}"#),
            "400",
            "has no peer on store 77",
        ),
        (&*format!(r#"{{"name": "remove-peer", "region_id": {rid}}}"#), "400", "needs a store"),
    ];
    for (body, status, reason) in cases {
        let got = post(body.to_string()).await.unwrap();
        assert!(got.0.contains(status) && got.1.contains(reason), "{body}: {got:?}");
    }
    let huge = post(format!(r#"{{"name": "{}"}}"#, "x".repeat(pd_server::HTTP_BODY_BYTES_MAX)))
        .await
        .unwrap();
    assert!(huge.0.contains("413"), "{huge:?}");
    let bad_id = call("GET", "/pd/api/v1/operators/abc".into()).await.unwrap();
    assert!(bad_id.0.contains("400"), "{bad_id:?}");
    let bad_method = call("PUT", "/pd/api/v1/operators".into()).await.unwrap();
    assert!(bad_method.0.contains("405"), "{bad_method:?}");
    drop(tx);
    drop(c);
    pd.shutdown().await;
}

/// Splits `r1` at `key` through AskBatchSplit + ReportBatchSplit; answers (left, right), the
/// right half keeping `r1`'s id.
async fn split(
    c: &mut PdClient<Channel>,
    pd: &PdServer,
    r1: &metapb::Region,
    key: &[u8],
) -> (metapb::Region, metapb::Region) {
    let resp = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: header(pd),
            region: Some(r1.clone()),
            split_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let ids = &resp.ids[0];
    let epoch = r1.region_epoch.unwrap();
    let left = metapb::Region {
        id: ids.new_region_id,
        peers: r1
            .peers
            .iter()
            .zip(&ids.new_peer_ids)
            .map(|(p, &id)| metapb::Peer { id, store_id: p.store_id, ..Default::default() })
            .collect(),
        ..with_range(r1, &r1.start_key, key, epoch.conf_ver, epoch.version + 1)
    };
    let right = with_range(r1, key, &r1.end_key, epoch.conf_ver, epoch.version + 1);
    let req = pdpb::ReportBatchSplitRequest {
        header: header(pd),
        regions: vec![left.clone(), right.clone()],
    };
    let resp = c.report_batch_split(req).await.unwrap().into_inner();
    assert_eq!(error_type(&resp.header), None);
    (left, right)
}

async fn store_heartbeats(c: &mut PdClient<Channel>, pd: &PdServer, stores: &[u64]) {
    for &store_id in stores {
        let stats = pdpb::StoreStats { store_id, ..Default::default() };
        let req = pdpb::StoreHeartbeatRequest {
            header: header(pd),
            stats: Some(stats),
            ..Default::default()
        };
        c.store_heartbeat(req).await.unwrap();
    }
}

/// `merge-region` over the HTTP API (#14 item 2), driven by simulated heartbeats (the store
/// side is not needed): refusals, the Merge command to the source's leader, the target locked,
/// PrepareMerge's epoch bump tolerated, success on the widened target's heartbeat, which also
/// drops the source from the routing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_region_operator_over_http_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let pd = start(dir.path(), 3).await;
    let (mut c, stores, r1) = bootstrapped(&pd).await;
    store_heartbeats(&mut c, &pd, &stores).await;
    let addr = pd.addr();
    let call = |method: &'static str, path: String, body: String| {
        tokio::task::spawn_blocking(move || http(addr, method, &path, &body))
    };
    let merge = |s: u64, t: u64| {
        call(
            "POST",
            "/pd/api/v1/operators".into(),
            format!(
                r#"{{"name": "merge-region", "source_region_id": {s}, "target_region_id": {t}}}"#
            ),
        )
    };

    let (left, right) = split(&mut c, &pd, &r1, b"m").await;
    let (tx, rx) = mpsc::channel(16);
    let mut responses = c.region_heartbeat(ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(heartbeat(&pd, &left, 0, 1)).await.unwrap();
    tx.send(heartbeat(&pd, &right, 0, 1)).await.unwrap();
    wait_until("both leaders known", || {
        let call = call("GET", "/pd/api/v1/regions".into(), String::new());
        async move {
            let v: serde_json::Value = serde_json::from_str(&call.await.unwrap().1).unwrap();
            v["count"] == 2
                && v["regions"].as_array().unwrap().iter().all(|r| !r["leader"].is_null())
        }
    })
    .await;
    // Refusals with the reason.
    let same = merge(left.id, left.id).await.unwrap();
    assert!(same.0.contains("400") && same.1.contains("into itself"), "{same:?}");
    let unknown = merge(999_999, right.id).await.unwrap();
    assert!(unknown.0.contains("404") && unknown.1.contains("region 999999 not found"));
    // The right half asks for split ids: from now until the split ends, no merge.
    let asked = c
        .ask_batch_split(pdpb::AskBatchSplitRequest {
            header: header(&pd),
            region: Some(right.clone()),
            split_count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&asked.header), None);
    let splitting = merge(left.id, right.id).await.unwrap();
    assert!(
        splitting.0.contains("409")
            && splitting.1.contains(&format!("region {} is being split", right.id)),
        "{splitting:?}"
    );
    // A heartbeat at a newer version ends the split for PD (it was abandoned here: same range).
    let right = with_range(&right, b"m", b"", 1, 3);
    tx.send(heartbeat(&pd, &right, 0, 2)).await.unwrap();
    wait_until("the split to end", || {
        let call = call("GET", "/pd/api/v1/regions".into(), String::new());
        async move { call.await.unwrap().1.contains(r#""version":3"#) }
    })
    .await;

    // Created: shown under both ids; the target is locked.
    let created = merge(left.id, right.id).await.unwrap();
    assert!(created.0.contains("200"), "{created:?}");
    let op: serde_json::Value = serde_json::from_str(&created.1).unwrap();
    assert_eq!(op["kind"], "merge-region");
    assert_eq!(op["region_id"], left.id);
    assert_eq!(op["target_region_id"], right.id);
    assert_eq!(op["steps"][0], format!("merge region {} into region {}", left.id, right.id));
    let by_target = call("GET", format!("/pd/api/v1/operators/{}", right.id), String::new());
    assert!(by_target.await.unwrap().1.contains(r#""kind":"merge-region""#));
    let busy = call(
        "POST",
        "/pd/api/v1/operators".into(),
        format!(
            r#"{{"name": "transfer-leader", "region_id": {}, "to_store_id": {}}}"#,
            right.id, stores[1]
        ),
    )
    .await
    .unwrap();
    assert!(busy.0.contains("409") && busy.1.contains("merge-region"), "{busy:?}");
    let again = merge(left.id, right.id).await.unwrap();
    assert!(again.0.contains("409"), "{again:?}");

    // The source's leader gets Merge{target}, with its epoch and itself as target peer: at
    // once (pushed on creation), and again on its next heartbeat.
    tx.send(heartbeat(&pd, &left, 0, 1)).await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, responses.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(resp.region_id, left.id);
    assert_eq!(resp.region_epoch, left.region_epoch);
    assert_eq!(resp.target_peer.as_ref(), Some(&left.peers[0]));
    assert_eq!(resp.merge.unwrap().target, Some(right.clone()));
    // PrepareMerge applied (version and conf_ver + 1): still running.
    let merging = with_range(&left, b"", b"m", 2, 3);
    tx.send(heartbeat(&pd, &merging, 0, 1)).await.unwrap();
    // CommitMerge: the target covers both at version max(3, 3) + 1.
    let merged = with_range(&right, b"", b"", 1, 4);
    tx.send(heartbeat(&pd, &merged, 0, 2)).await.unwrap();
    wait_until("the merge to succeed", || {
        let call = call("GET", format!("/pd/api/v1/operators/{}", left.id), String::new());
        async move { call.await.unwrap().1.contains(r#""status":"success""#) }
    })
    .await;
    let regions = call("GET", "/pd/api/v1/regions".into(), String::new()).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&regions.1).unwrap();
    assert_eq!(v["count"], 1, "the source left the routing table: {v}");
    assert_eq!(v["regions"][0]["id"], right.id);
    assert_eq!(get_region(&mut c, &pd, b"a").await.region.map(|r| r.id), Some(right.id));
    let records = call("GET", "/pd/api/v1/operators/records".into(), String::new()).await.unwrap();
    assert!(records.1.contains(r#""kind":"merge-region""#), "{records:?}");
    drop(tx);
    drop(c);
    pd.shutdown().await;
}

/// The merge checker runs by itself once `split-merge-interval` allows: two small halves of a
/// split get a merge-region operator without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merge_checker_merges_small_neighbours_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PdConfig {
        addr: "127.0.0.1:0".to_owned(),
        data_dir: dir.path().to_owned(),
        replication: ReplicationConfig { max_replicas: 3 },
        schedule: ScheduleConfig {
            max_merge_region_size: 1,
            max_merge_region_keys: 100,
            split_merge_interval: "0s".parse().unwrap(),
            ..ScheduleConfig::default()
        },
        ..PdConfig::default()
    };
    let pd = pd_server::start(cfg, logger()).await.expect("start PD");
    let (mut c, stores, r1) = bootstrapped(&pd).await;
    store_heartbeats(&mut c, &pd, &stores).await;
    let (left, right) = split(&mut c, &pd, &r1, b"m").await;
    let (tx, rx) = mpsc::channel(16);
    let _responses = c.region_heartbeat(ReceiverStream::new(rx)).await.unwrap().into_inner();
    // 1 KiB and 10 keys each (the heartbeat helper's sizes): both below the limits.
    tx.send(heartbeat(&pd, &left, 0, 1)).await.unwrap();
    tx.send(heartbeat(&pd, &right, 0, 1)).await.unwrap();
    let addr = pd.addr();
    wait_until("the checker's merge operator", || async move {
        let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/pd/api/v1/operators"))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["count"] == 1 && v["operators"][0]["kind"] == "merge-region"
    })
    .await;
    let (_, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/pd/api/v1/operators")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let op = &v["operators"][0];
    assert_eq!(
        (op["region_id"].as_u64(), op["target_region_id"].as_u64()),
        (Some(left.id), Some(right.id))
    );
    drop(tx);
    drop(c);
    pd.shutdown().await;
}
