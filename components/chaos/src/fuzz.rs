//! The network fuzzer: malformed and hostile requests against a running cluster, for a
//! bounded time, while a well-formed client keeps working.
//!
//! What is sent (each a seeded random choice, `fuzzers` tasks at once):
//! 1. **Random bytes** as the messages of every gRPC method of `tikvpb.Tikv` (ours, and TiKV's
//!    methods we do not serve) and `pdpb.PD`, 0 to 3 messages per call, sometimes megabytes.
//! 2. **Hostile raw KV requests**, well-formed protobuf: unknown and real regions, forged
//!    epochs and peers, empty and 1 MiB keys, thousands of keys in a batch, a scan with
//!    `limit = u32::MAX`, inverted ranges, unknown column families, huge TTLs. Writes stay
//!    under `fuzz/` so the well-formed client's data is left alone.
//! 3. **Forged raft messages** on `BatchRaft`: real and unknown regions, random senders, every
//!    raft message type with random terms, indexes, entries and snapshot metadata.
//! 4. **Forged snapshots** on `Snapshot`: a real region's snapshot message with random meta
//!    and random file bytes.
//! 5. **Garbage HTTP** on the stores' status ports and PD's HTTP API: random methods, paths,
//!    headers and bodies, oversized heads, connections that send nothing.
//!
//! What must hold (checked by [`FuzzReport::failures`]): every process is alive at the end
//! (nothing panicked or aborted), each process's resident memory stays under
//! [`RSS_BYTES_MAX`], and the well-formed client (puts read back through `tikv-client`) gets
//! answers during the fuzzing and reads back every value it wrote.
//!
//! Deliberately not sent: messages that claim a NEWER peer of a real region on the target store
//! with a newer `conf_ver` (the raft port trusts its peers' identity, as TiKV's does: such a
//! message removes the local peer, by design, and TLS is what keeps strangers off the port),
//! and well-formed control-plane writes to PD (`PutStore`, `RegionHeartbeat`, `Bootstrap`,
//! `ReportBatchSplit`) with the real cluster id, which PD accepts from any caller by design.
//! Both get random bytes and wrong cluster ids instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::{Buf, BufMut};
use parking_lot::Mutex;
use proto::kvrpcpb::{self, Context};
use proto::metapb;
use proto::raft_serverpb::{RaftMessage, SnapshotChunk};
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::BatchRaftMessage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::Status;

use crate::cluster::Cluster;

/// Most resident memory any process may reach during the fuzzing.
pub const RSS_BYTES_MAX: u64 = 2 << 30;
/// Longest a fuzz call may take before it is abandoned.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// `tikvpb.Tikv` methods: ours, then some of TiKV's that we do not serve.
const TIKV_METHODS: &[&str] = &[
    "RawGet",
    "RawBatchGet",
    "RawPut",
    "RawBatchPut",
    "RawDelete",
    "RawBatchDelete",
    "RawScan",
    "RawDeleteRange",
    "RawBatchScan",
    "RawGetKeyTTL",
    "RawCompareAndSwap",
    "UnsafeDestroyRange",
    "KvScanLock",
    "SplitRegion",
    "Raft",
    "BatchRaft",
    "Snapshot",
    "KvGet",
    "KvScan",
    "KvPrewrite",
    "KvCommit",
    "KvPessimisticLock",
    "KvBatchGet",
    "KvResolveLock",
    "KvGC",
    "Coprocessor",
    "CoprocessorStream",
    "BatchCommands",
    "MvccGetByKey",
    "RawCoprocessor",
    "GetStoreSafeTS",
    "KvCheckTxnStatus",
    "DebugGetRegionProperties",
];
/// `pdpb.PD` methods: ours, then some of PD's that we do not serve.
const PD_METHODS: &[&str] = &[
    "GetMembers",
    "Tso",
    "Bootstrap",
    "IsBootstrapped",
    "AllocID",
    "GetStore",
    "PutStore",
    "GetAllStores",
    "StoreHeartbeat",
    "RegionHeartbeat",
    "GetRegion",
    "GetPrevRegion",
    "GetRegionByID",
    "ScanRegions",
    "AskBatchSplit",
    "ReportBatchSplit",
    "GetClusterConfig",
    "PutClusterConfig",
    "ScatterRegion",
    "GetGCSafePoint",
    "UpdateGCSafePoint",
    "GetOperator",
    "SyncRegions",
    "WatchGlobalConfig",
    "ReportMinResolvedTS",
    "GetAllMembers",
];

/// Messages as raw bytes: the codec of the random-bytes calls.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// What the fuzzer knows of the cluster: addresses and the regions' peers.
#[derive(Clone)]
struct Target {
    stores: Vec<(u64, String, String)>, // (id, grpc addr, status addr)
    pd: String,
    regions: Vec<metapb::Region>,
}

/// What a fuzzing run did and found.
#[derive(Default)]
pub struct FuzzReport {
    pub sent: BTreeMap<&'static str, u64>,
    pub client_ok: u64,
    pub client_err: u64,
    pub longest_client_gap: Duration,
    /// Values the well-formed client wrote and then read back differently.
    pub client_mismatches: u64,
    /// Processes that died, and processes over the memory bound.
    pub dead: Vec<String>,
    pub rss_max_bytes: u64,
}

impl FuzzReport {
    /// What broke the rules of the module doc; empty when the run passed.
    pub fn failures(&self) -> Vec<String> {
        let mut f = self.dead.clone();
        if self.rss_max_bytes > RSS_BYTES_MAX {
            f.push(format!("a process reached {} MiB resident", self.rss_max_bytes >> 20));
        }
        if self.client_ok == 0 {
            f.push("the well-formed client was never served".into());
        }
        if self.client_mismatches > 0 {
            f.push(format!("{} values read back wrong", self.client_mismatches));
        }
        f
    }
}

impl std::fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "== fuzz summary ==")?;
        for (what, n) in &self.sent {
            writeln!(f, "{what:<24} {n:>8}")?;
        }
        writeln!(
            f,
            "well-formed client: {} ok, {} errors, longest gap {:.2}s, {} mismatches",
            self.client_ok,
            self.client_err,
            self.longest_client_gap.as_secs_f64(),
            self.client_mismatches
        )?;
        writeln!(f, "largest resident memory: {} MiB", self.rss_max_bytes >> 20)?;
        let failures = self.failures();
        write!(f, "fuzz: failures={}", failures.len())?;
        for x in failures {
            write!(f, "\n  FAILURE: {x}")?;
        }
        Ok(())
    }
}

/// Fuzzes the running `cluster` for `duration` with `fuzzers` concurrent senders.
pub fn run(
    cluster: &Arc<Mutex<Cluster>>,
    seed: u64,
    duration: Duration,
    fuzzers: usize,
) -> Result<FuzzReport> {
    let target = learn(&cluster.lock())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = Arc::new(Mutex::new(FuzzReport::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let rss = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let client = crate::workload::connect_with_retries(&target.pd).await?;
        let good = tokio::spawn(well_formed_client(client, stop.clone(), report.clone()));
        let mut tasks = Vec::new();
        for i in 0..fuzzers {
            let (t, r, s) = (target.clone(), report.clone(), stop.clone());
            tasks.push(tokio::spawn(fuzzer(t, seed.wrapping_add(i as u64), s, r)));
        }
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss.fetch_max(cluster.lock().rss_max_bytes(), Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await?;
        }
        good.await?;
        anyhow::Ok(())
    })?;
    let mut r = std::mem::take(&mut *report.lock());
    r.rss_max_bytes = rss.load(Ordering::Relaxed);
    let mut c = cluster.lock();
    r.dead = c.crashes();
    Ok(r)
}

/// Regions and stores from PD (through the ctl).
fn learn(c: &Cluster) -> Result<Target> {
    let stores: serde_json::Value = serde_json::from_str(&c.ctl(&["--json", "store", "list"])?)?;
    let mut out = Target { stores: Vec::new(), pd: c.pd_addr().to_string(), regions: Vec::new() };
    for s in stores.as_array().context("store list")? {
        let id = s["id"].as_u64().context("store id")?;
        let i = c.store_index(id).context("unknown store")?;
        out.stores.push((
            id,
            s["address"].as_str().unwrap_or_default().to_string(),
            c.status_addr(i),
        ));
    }
    let regions: serde_json::Value = serde_json::from_str(&c.ctl(&["--json", "region", "list"])?)?;
    for r in regions.as_array().context("region list")? {
        let peers = r["peers"].as_array().context("peers")?;
        out.regions.push(metapb::Region {
            id: r["id"].as_u64().unwrap_or(0),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: r["epoch"]["conf_ver"].as_u64().unwrap_or(1),
                version: r["epoch"]["version"].as_u64().unwrap_or(1),
            }),
            peers: peers
                .iter()
                .map(|p| metapb::Peer {
                    id: p["id"].as_u64().unwrap_or(0),
                    store_id: p["store_id"].as_u64().unwrap_or(0),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Puts and reads back under `good/` until `stop`, counting answers and the longest gap.
async fn well_formed_client(
    client: tikv_client::RawClient,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<FuzzReport>>,
) {
    let mut last_ok = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (k, v) = (format!("good/{}", n % 100), format!("v{n}"));
        let put =
            tokio::time::timeout(Duration::from_secs(10), client.put(k.clone(), v.clone())).await;
        let got = match put {
            Ok(Ok(())) => tokio::time::timeout(Duration::from_secs(10), client.get(k)).await,
            _ => {
                report.lock().client_err += 1;
                continue;
            }
        };
        {
            let mut r = report.lock();
            match got {
                Ok(Ok(Some(x))) if x == v.as_bytes() => {
                    r.client_ok += 1;
                    r.longest_client_gap = r.longest_client_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                Ok(Ok(_)) => r.client_mismatches += 1,
                Ok(Err(_)) | Err(_) => r.client_err += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut r = report.lock();
    r.longest_client_gap = r.longest_client_gap.max(last_ok.elapsed());
}

async fn fuzzer(t: Target, seed: u64, stop: Arc<AtomicBool>, report: Arc<Mutex<FuzzReport>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut channels: BTreeMap<String, Channel> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let what = match rng.gen_range(0..100) {
            0..=24 => "tikv random bytes",
            25..=34 => "pd random bytes",
            35..=59 => "hostile kv request",
            60..=79 => "forged raft batch",
            80..=89 => "forged snapshot",
            _ => "garbage http",
        };
        let store = rng.gen_range(0..t.stores.len());
        let addr = match what {
            "pd random bytes" => t.pd.clone(),
            _ => t.stores[store].1.clone(),
        };
        let ch = match channels.get(&addr) {
            Some(c) => c.clone(),
            None => match connect(&addr).await {
                Some(c) => {
                    channels.insert(addr.clone(), c.clone());
                    c
                }
                None => continue,
            },
        };
        let call = async {
            match what {
                "tikv random bytes" => random_call(ch, "tikvpb.Tikv", TIKV_METHODS, &mut rng).await,
                "pd random bytes" => random_call(ch, "pdpb.PD", PD_METHODS, &mut rng).await,
                "hostile kv request" => hostile_kv(ch, &t, store, &mut rng).await,
                "forged raft batch" => forged_raft(ch, &t, store, &mut rng).await,
                "forged snapshot" => forged_snapshot(ch, &t, store, &mut rng).await,
                _ => garbage_http(&t, store, &mut rng).await,
            }
        };
        let _ = tokio::time::timeout(CALL_TIMEOUT * 2, call).await;
        *report.lock().sent.entry(what).or_default() += 1;
    }
}

async fn connect(addr: &str) -> Option<Channel> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
    let ep = ep.timeout(CALL_TIMEOUT).connect_timeout(CALL_TIMEOUT);
    ep.connect().await.ok()
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.gen_range(0..100) {
        0..=79 => rng.gen_range(0..256),
        80..=97 => rng.gen_range(256..65_536),
        _ => rng.gen_range(1 << 20..8 << 20),
    };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// 0 to 3 messages of random bytes to a random method of `service`.
async fn random_call(ch: Channel, service: &str, methods: &[&str], rng: &mut StdRng) {
    let method = methods[rng.gen_range(0..methods.len())];
    let msgs: Vec<Vec<u8>> = (0..rng.gen_range(0..4)).map(|_| random_bytes(rng)).collect();
    let Ok(path) = http::uri::PathAndQuery::try_from(format!("/{service}/{method}")) else {
        return;
    };
    let mut grpc = tonic::client::Grpc::new(ch);
    if grpc.ready().await.is_err() {
        return;
    }
    let req = tonic::Request::new(tokio_stream::iter(msgs));
    if let Ok(resp) = grpc.streaming(req, path, RawCodec).await {
        let mut s = resp.into_inner();
        while let Ok(Some(_)) = s.message().await {}
    }
}

/// A key under `fuzz/`; a single-key request sometimes gets a 1 MiB one (a batch never, or a
/// request would be gigabytes).
fn random_key(rng: &mut StdRng) -> Vec<u8> {
    let huge = rng.gen_bool(0.05);
    random_key_of(rng, huge)
}

fn small_key(rng: &mut StdRng) -> Vec<u8> {
    random_key_of(rng, false)
}

fn random_key_of(rng: &mut StdRng, huge: bool) -> Vec<u8> {
    let mut k = b"fuzz/".to_vec();
    let len = match rng.gen_range(0..10) {
        _ if huge => 1 << 20,
        0 => 0,
        _ => rng.gen_range(1..64),
    };
    k.extend((0..len).map(|_| rng.gen::<u8>()));
    k
}

/// A context: a real region with a forged epoch or peer, or an unknown region.
fn random_context(t: &Target, store: usize, rng: &mut StdRng) -> Context {
    let mut ctx = Context::default();
    if let Some(r) = t.regions.get(rng.gen_range(0..t.regions.len().max(1))) {
        ctx.region_id = r.id;
        ctx.region_epoch = r.region_epoch;
        ctx.peer = r.peers.iter().find(|p| p.store_id == t.stores[store].0).cloned();
    }
    match rng.gen_range(0..5) {
        0 => ctx.region_id = rng.gen(),
        1 => {
            ctx.region_epoch = Some(metapb::RegionEpoch { conf_ver: rng.gen(), version: rng.gen() })
        }
        2 => {
            ctx.peer =
                Some(metapb::Peer { id: rng.gen(), store_id: rng.gen(), ..Default::default() })
        }
        3 => ctx.term = rng.gen(),
        _ => {}
    }
    ctx
}

fn random_cf(rng: &mut StdRng) -> String {
    ["", "default", "raft", "lock", "write", "\u{0}bogus"][rng.gen_range(0..6)].to_string()
}

/// One well-formed request with hostile values.
async fn hostile_kv(ch: Channel, t: &Target, store: usize, rng: &mut StdRng) {
    let mut c = TikvClient::new(ch).max_decoding_message_size(64 << 20);
    let context = Some(random_context(t, store, rng));
    let cf = random_cf(rng);
    match rng.gen_range(0..8) {
        0 => {
            let mut value = vec![0u8; rng.gen_range(0..2 << 20)];
            rng.fill(&mut value[..]);
            let ttl = if rng.gen_bool(0.3) { u64::MAX } else { 0 };
            let req = kvrpcpb::RawPutRequest {
                context,
                key: random_key(rng),
                value,
                cf,
                ttl,
                for_cas: rng.gen(),
            };
            let _ = c.raw_put(req).await;
        }
        1 => {
            let keys = (0..rng.gen_range(0..5_000)).map(|_| small_key(rng)).collect();
            let _ = c.raw_batch_get(kvrpcpb::RawBatchGetRequest { context, keys, cf }).await;
        }
        2 => {
            let pairs = (0..rng.gen_range(0..2_000))
                .map(|_| kvrpcpb::KvPair {
                    key: small_key(rng),
                    value: vec![1; 16],
                    ..Default::default()
                })
                .collect();
            let ttls = (0..rng.gen_range(0..3)).map(|_| rng.gen()).collect();
            let req =
                kvrpcpb::RawBatchPutRequest { context, pairs, cf, ttls, ..Default::default() };
            let _ = c.raw_batch_put(req).await;
        }
        3 => {
            let req = kvrpcpb::RawScanRequest {
                context,
                start_key: random_key(rng),
                end_key: random_key(rng),
                limit: u32::MAX,
                cf,
                reverse: rng.gen(),
                ..Default::default()
            };
            let _ = c.raw_scan(req).await;
        }
        4 => {
            // Inverted or empty ranges, inside `fuzz/`.
            let (a, b) = (random_key(rng), random_key(rng));
            let req = kvrpcpb::RawDeleteRangeRequest {
                context,
                start_key: a.max(b.clone()),
                end_key: b,
                cf,
            };
            let _ = c.raw_delete_range(req).await;
        }
        5 => {
            let ranges = (0..rng.gen_range(0..1_000))
                .map(|_| kvrpcpb::KeyRange { start_key: small_key(rng), end_key: small_key(rng) })
                .collect();
            let req = kvrpcpb::RawBatchScanRequest {
                context,
                ranges,
                each_limit: u32::MAX,
                cf,
                ..Default::default()
            };
            let _ = c.raw_batch_scan(req).await;
        }
        6 => {
            let req = kvrpcpb::RawCasRequest {
                context,
                key: random_key(rng),
                value: random_key(rng),
                previous_not_exist: rng.gen(),
                previous_value: random_key(rng),
                cf,
                ttl: rng.gen(),
            };
            let _ = c.raw_compare_and_swap(req).await;
        }
        _ => {
            let keys = (0..rng.gen_range(0..50)).map(|_| small_key(rng)).collect();
            let req =
                kvrpcpb::SplitRegionRequest { context, split_keys: keys, ..Default::default() };
            let _ = c.split_region(req).await;
        }
    }
}

/// An eraftpb message of a random type with random fields, encoded.
fn random_raft_payload(rng: &mut StdRng, from: u64, to: u64) -> Vec<u8> {
    use protobuf::Message as _;
    use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
    if rng.gen_bool(0.2) {
        return random_bytes(rng);
    }
    let mut m = Message::default();
    let types = [
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
        MessageType::MsgSnapshot,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgTimeoutNow,
        MessageType::MsgPropose,
        MessageType::MsgReadIndex,
        MessageType::MsgTransferLeader,
        MessageType::MsgHup,
        MessageType::MsgUnreachable,
    ];
    m.set_msg_type(types[rng.gen_range(0..types.len())]);
    m.from = if rng.gen_bool(0.8) { from } else { rng.gen() };
    m.to = if rng.gen_bool(0.8) { to } else { rng.gen() };
    let small =
        |rng: &mut StdRng| if rng.gen_bool(0.5) { rng.gen_range(0..100) } else { rng.gen() };
    m.term = small(rng);
    m.log_term = small(rng);
    m.index = small(rng);
    m.commit = small(rng);
    m.reject = rng.gen();
    m.reject_hint = small(rng);
    for _ in 0..rng.gen_range(0..4) {
        let mut e = Entry::default();
        e.index = small(rng);
        e.term = small(rng);
        e.data = random_bytes(rng).into();
        m.mut_entries().push(e);
    }
    if m.get_msg_type() == MessageType::MsgSnapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = small(rng);
        s.mut_metadata().term = small(rng);
        s.data = random_bytes(rng).into();
        m.set_snapshot(s);
    }
    m.write_to_bytes().unwrap_or_default()
}

/// A forged raft message to store `store`: addressed to a real peer there (or to an unknown
/// region), from a random sender; never claiming a newer local peer (see the module doc).
fn forged_message(t: &Target, store: usize, rng: &mut StdRng) -> RaftMessage {
    let store_id = t.stores[store].0;
    let real = t.regions.get(rng.gen_range(0..t.regions.len().max(1))).cloned();
    let (region_id, to, epoch) = match real.filter(|_| rng.gen_bool(0.8)) {
        Some(r) => {
            let to = r.peers.iter().find(|p| p.store_id == store_id).cloned();
            let to = to.unwrap_or(metapb::Peer {
                id: rng.gen_range(1..1_000),
                store_id,
                ..Default::default()
            });
            (r.id, to, r.region_epoch)
        }
        None => {
            let epoch = Some(metapb::RegionEpoch { conf_ver: rng.gen(), version: rng.gen() });
            (rng.gen(), metapb::Peer { id: rng.gen(), store_id, ..Default::default() }, epoch)
        }
    };
    let from = metapb::Peer {
        id: rng.gen_range(1..1_000_000),
        store_id: rng.gen_range(0..10),
        ..Default::default()
    };
    RaftMessage {
        region_id,
        message: random_raft_payload(rng, from.id, to.id),
        from_peer: Some(from),
        to_peer: Some(to),
        region_epoch: epoch,
        is_tombstone: rng.gen_bool(0.02),
        start_key: small_key(rng),
        end_key: small_key(rng),
        disk_usage: rng.gen_range(-1..4),
        ..Default::default()
    }
}

async fn forged_raft(ch: Channel, t: &Target, store: usize, rng: &mut StdRng) {
    let batches: Vec<BatchRaftMessage> = (0..rng.gen_range(1..4))
        .map(|_| BatchRaftMessage {
            msgs: (0..rng.gen_range(0..64)).map(|_| forged_message(t, store, rng)).collect(),
        })
        .collect();
    let mut c = TikvClient::new(ch);
    let _ = c.batch_raft(tokio_stream::iter(batches)).await;
}

async fn forged_snapshot(ch: Channel, t: &Target, store: usize, rng: &mut StdRng) {
    use protobuf::Message as _;
    let mut msg = forged_message(t, store, rng);
    // A snapshot message with random metadata and a random `data` (our snapshot meta).
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
    m.from = msg.from_peer.as_ref().map_or(0, |p| p.id);
    m.to = msg.to_peer.as_ref().map_or(0, |p| p.id);
    m.term = rng.gen_range(1..100);
    let mut s = raft::eraftpb::Snapshot::default();
    s.mut_metadata().index = rng.gen_range(0..1_000_000);
    s.mut_metadata().term = rng.gen_range(0..100);
    s.data = random_bytes(rng).into();
    m.set_snapshot(s);
    msg.message = m.write_to_bytes().unwrap_or_default();
    let mut chunks = vec![SnapshotChunk { message: Some(msg), data: random_bytes(rng) }];
    for _ in 0..rng.gen_range(0..4) {
        chunks.push(SnapshotChunk { message: None, data: random_bytes(rng) });
    }
    let mut c = TikvClient::new(ch).max_encoding_message_size(64 << 20);
    let _ = c.snapshot(tokio_stream::iter(chunks)).await;
}

/// Random HTTP to a status port or PD's API, with a bounded read of the answer.
async fn garbage_http(t: &Target, store: usize, rng: &mut StdRng) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = if rng.gen_bool(0.5) { t.stores[store].2.clone() } else { t.pd.clone() };
    let methods = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "\u{1}\u{2}", ""];
    let paths = [
        "/metrics",
        "/status",
        "/fail",
        "/fail/x",
        "/pd/api/v1/regions",
        "/pd/api/v1/operators",
        "/pd/api/v1/operators/1",
        "/%%%",
        "",
    ];
    let mut req = Vec::new();
    let method = methods[rng.gen_range(0..methods.len())];
    let mut path = paths[rng.gen_range(0..paths.len())].to_string();
    if rng.gen_bool(0.2) {
        path.push_str(&"a".repeat(rng.gen_range(0..100_000)));
    }
    req.extend(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n").into_bytes());
    if rng.gen_bool(0.3) {
        req.extend(format!("Content-Length: {}\r\n", rng.gen::<u64>()).into_bytes());
    }
    if rng.gen_bool(0.2) {
        req.extend(random_bytes(rng));
    }
    if rng.gen_bool(0.9) {
        req.extend(b"\r\n");
        req.extend(random_bytes(rng));
    }
    let Ok(Ok(mut s)) =
        tokio::time::timeout(CALL_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await
    else {
        return;
    };
    if rng.gen_bool(0.05) {
        // A connection that sends nothing: the server's head timeout must close it.
        let mut buf = [0u8; 1024];
        let _ = tokio::time::timeout(CALL_TIMEOUT, s.read(&mut buf)).await;
        return;
    }
    let _ = tokio::time::timeout(CALL_TIMEOUT, s.write_all(&req)).await;
    let mut buf = vec![0u8; 64 << 10];
    let _ = tokio::time::timeout(CALL_TIMEOUT, s.read(&mut buf)).await;
}
