//! `RaftClient`: the raftstore's [`Transport`] over gRPC `BatchRaft` streams.
//!
//! Each store poller holds a clone with its own per-destination buffers: `send` appends,
//! `flush` (once per poll round) hands each destination ONE `BatchRaftMessage` through a
//! bounded channel to that destination's connection task. The task resolves the store's
//! address through PD (cached until the connection fails), keeps one client stream open,
//! and reconnects with exponential backoff.
//!
//! Bounds and full behaviour: a poller buffers at most `BATCH_MSGS_MAX` messages per
//! destination (`send` answers `Full` beyond, the message is dropped and raft retransmits);
//! each connection queues at most `QUEUE_BATCHES_MAX` batches (a full queue drops the batch).
//! While a destination is unreachable, `send` answers `Unreachable` so raft reports it and
//! probes gently.
//!
//! Snapshots go apart, one `Snapshot` client stream each (`send_snapshot`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pd_client::PdClient;
use proto::raft_serverpb::RaftMessage;
use proto::raft_serverpb::SnapshotChunk;
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::BatchRaftMessage;
use raftstore::{SnapManager, SnapshotDone, Transport, TransportError};
use slog::{info, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use util::StoreId;

use crate::fault;

const BATCH_MSGS_MAX: usize = 4096;
const QUEUE_BATCHES_MAX: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Bytes per snapshot chunk (TiKV's).
const SNAP_CHUNK_BYTES: usize = 1 << 20;
/// The shortest deadline of a snapshot send; longer snapshots get a second per MiB.
const SNAP_SEND_TIMEOUT_MIN: Duration = Duration::from_secs(600);

struct Conn {
    tx: mpsc::Sender<BatchRaftMessage>,
    unreachable: Arc<AtomicBool>,
}

struct Shared {
    conns: Mutex<HashMap<u64, Conn>>,
    pd: Arc<PdClient>,
    /// Reads the snapshots sent (`send_snapshot`).
    snap_mgr: SnapManager,
    runtime: Handle,
    dropped_batches: AtomicU64,
    /// Batches and snapshots dropped by an injected partition (`fault::DROP_RAFT_TO`).
    fault_dropped_batches: AtomicU64,
    logger: Logger,
}

#[derive(Clone)]
pub struct RaftClient {
    shared: Arc<Shared>,
    buffers: HashMap<u64, Vec<RaftMessage>>,
}

impl RaftClient {
    pub fn new(pd: Arc<PdClient>, snap_mgr: SnapManager, runtime: Handle, logger: Logger) -> Self {
        RaftClient {
            shared: Arc::new(Shared {
                conns: Mutex::new(HashMap::new()),
                pd,
                snap_mgr,
                runtime,
                dropped_batches: AtomicU64::new(0),
                fault_dropped_batches: AtomicU64::new(0),
                logger,
            }),
            buffers: HashMap::new(),
        }
    }

    /// Batches dropped because a destination's queue was full.
    pub fn dropped_batches(&self) -> u64 {
        self.shared.dropped_batches.load(Ordering::Relaxed)
    }

    /// Batches and snapshots (one each) dropped by an injected partition (`fault`).
    pub fn fault_dropped_batches(&self) -> u64 {
        self.shared.fault_dropped_batches.load(Ordering::Relaxed)
    }

    fn is_unreachable(&self, store_id: u64) -> bool {
        self.shared
            .conns
            .lock()
            .get(&store_id)
            .is_some_and(|c| c.unreachable.load(Ordering::Relaxed))
    }
}

impl Transport for RaftClient {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        if self.is_unreachable(to) {
            return Err(TransportError::Unreachable(StoreId(to)));
        }
        let buf = self.buffers.entry(to).or_default();
        if buf.len() >= BATCH_MSGS_MAX {
            return Err(TransportError::Full(StoreId(to)));
        }
        buf.push(msg);
        Ok(())
    }

    /// Streams the snapshot on a task of its own (see `send_snapshot` below).
    fn send_snapshot(&mut self, msg: RaftMessage, done: SnapshotDone) {
        let shared = self.shared.clone();
        self.shared.runtime.spawn(async move {
            let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
            let started = std::time::Instant::now();
            match send_snapshot(&shared, msg).await {
                Ok(bytes) => {
                    info!(shared.logger, "snapshot sent"; "to_store" => to, "bytes" => bytes,
                        "duration_ms" => started.elapsed().as_millis() as u64);
                    done(true);
                }
                Err(e) => {
                    warn!(shared.logger, "snapshot not sent"; "to_store" => to, "err" => e);
                    done(false);
                }
            }
        });
    }

    fn flush(&mut self) {
        for (store_id, buf) in self.buffers.iter_mut() {
            if buf.is_empty() {
                continue;
            }
            let batch = BatchRaftMessage { msgs: std::mem::take(buf) };
            if fault::raft_dropped_to(*store_id) {
                self.shared.fault_dropped_batches.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut conns = self.shared.conns.lock();
            let conn =
                conns.entry(*store_id).or_insert_with(|| spawn_conn(&self.shared, *store_id));
            if conn.tx.try_send(batch).is_err() {
                self.shared.dropped_batches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One snapshot over the `Snapshot` client stream: the message first, then the `gen_` files
/// in chunks of `SNAP_CHUNK_BYTES`, read on a blocking thread (file reads, and the shared I/O
/// limiter may sleep). Bounded: `concurrent-send-snap-limit` readers at once (beyond it the
/// send fails and raft retries later), and a deadline of `SNAP_SEND_TIMEOUT_MIN` or one
/// second per MiB, whichever is longer. Returns the bytes sent.
async fn send_snapshot(shared: &Shared, msg: RaftMessage) -> Result<u64, String> {
    let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
    if fault::raft_dropped_to(to) {
        shared.fault_dropped_batches.fetch_add(1, Ordering::Relaxed);
        return Err("dropped by an injected partition".into());
    }
    let (key, _, _) = raftstore::transport::snapshot_files(&msg).ok_or("not a region snapshot")?;
    let reader = shared.snap_mgr.reader(key, SNAP_CHUNK_BYTES).map_err(|e| e.to_string())?;
    let bytes = reader.total_bytes();
    let deadline = SNAP_SEND_TIMEOUT_MIN.max(Duration::from_secs(bytes >> 20));
    let mut client = connect(&shared.pd, to).await?;
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let feed = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let first = SnapshotChunk { message: Some(msg), data: Vec::new() };
        tx.blocking_send(first).map_err(|_| "stream closed")?;
        for chunk in reader {
            let data = chunk.map_err(|e| e.to_string())?;
            tx.blocking_send(SnapshotChunk { message: None, data }).map_err(|_| "stream closed")?;
        }
        Ok(())
    });
    let call = client.snapshot(tokio_stream::wrappers::ReceiverStream::new(rx));
    let answer = tokio::time::timeout(deadline, call).await.map_err(|_| "timed out")?;
    feed.await.map_err(|e| e.to_string())??;
    answer.map_err(|s| s.to_string())?;
    Ok(bytes)
}

/// A client of store `store_id`'s gRPC service, its address resolved through PD.
async fn connect(
    pd: &PdClient,
    store_id: u64,
) -> Result<TikvClient<tonic::transport::Channel>, String> {
    let store = pd.get_store(store_id).await.map_err(|e| e.to_string())?;
    let addr = if store.peer_address.is_empty() { store.address } else { store.peer_address };
    let url = if addr.starts_with("http") { addr } else { format!("http://{addr}") };
    let channel = Endpoint::from_shared(url.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(TikvClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

fn spawn_conn(shared: &Arc<Shared>, store_id: u64) -> Conn {
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES_MAX);
    let unreachable = Arc::new(AtomicBool::new(false));
    let task = ConnTask {
        store_id,
        pd: shared.pd.clone(),
        unreachable: unreachable.clone(),
        logger: shared.logger.new(slog::o!("to_store" => store_id)),
    };
    shared.runtime.spawn(task.run(rx));
    Conn { tx, unreachable }
}

struct ConnTask {
    store_id: u64,
    pd: Arc<PdClient>,
    unreachable: Arc<AtomicBool>,
    logger: Logger,
}

impl ConnTask {
    async fn run(self, mut rx: mpsc::Receiver<BatchRaftMessage>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            match self.stream_once(&mut rx).await {
                Ok(()) => return, // every sender is gone: the store is shutting down
                Err(e) => {
                    if !self.unreachable.swap(true, Ordering::Relaxed) {
                        // It was up (or never tried): start backing off from the bottom.
                        warn!(self.logger, "raft connection failed"; "err" => e);
                        backoff = BACKOFF_MIN;
                    }
                    // Drop what queued up while down: raft retransmits what still matters.
                    while rx.try_recv().is_ok() {}
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Resolves, connects and streams until the stream breaks (`Err`) or the queue closes.
    async fn stream_once(&self, rx: &mut mpsc::Receiver<BatchRaftMessage>) -> Result<(), String> {
        let mut client = connect(&self.pd, self.store_id).await?;
        let (tx, stream_rx) = mpsc::channel::<BatchRaftMessage>(64);
        let call = tokio::spawn(async move {
            client.batch_raft(tokio_stream::wrappers::ReceiverStream::new(stream_rx)).await
        });
        if self.unreachable.swap(false, Ordering::Relaxed) {
            info!(self.logger, "raft connection re-established");
        }
        loop {
            let Some(batch) = rx.recv().await else {
                drop(tx);
                let _ = call.await;
                return Ok(());
            };
            if tx.send(batch).await.is_err() {
                let res = call.await.map_err(|e| e.to_string())?;
                return Err(match res {
                    Ok(_) => "peer closed the raft stream".into(),
                    Err(s) => s.to_string(),
                });
            }
        }
    }
}
