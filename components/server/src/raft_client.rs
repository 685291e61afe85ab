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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pd_client::PdClient;
use proto::raft_serverpb::RaftMessage;
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::BatchRaftMessage;
use raftstore::{Transport, TransportError};
use slog::{info, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use util::StoreId;

const BATCH_MSGS_MAX: usize = 4096;
const QUEUE_BATCHES_MAX: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

struct Conn {
    tx: mpsc::Sender<BatchRaftMessage>,
    unreachable: Arc<AtomicBool>,
}

struct Shared {
    conns: Mutex<HashMap<u64, Conn>>,
    pd: Arc<PdClient>,
    runtime: Handle,
    dropped_batches: AtomicU64,
    logger: Logger,
}

#[derive(Clone)]
pub struct RaftClient {
    shared: Arc<Shared>,
    buffers: HashMap<u64, Vec<RaftMessage>>,
}

impl RaftClient {
    pub fn new(pd: Arc<PdClient>, runtime: Handle, logger: Logger) -> Self {
        RaftClient {
            shared: Arc::new(Shared {
                conns: Mutex::new(HashMap::new()),
                pd,
                runtime,
                dropped_batches: AtomicU64::new(0),
                logger,
            }),
            buffers: HashMap::new(),
        }
    }

    /// Batches dropped because a destination's queue was full.
    pub fn dropped_batches(&self) -> u64 {
        self.shared.dropped_batches.load(Ordering::Relaxed)
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

    fn flush(&mut self) {
        for (store_id, buf) in self.buffers.iter_mut() {
            if buf.is_empty() {
                continue;
            }
            let batch = BatchRaftMessage { msgs: std::mem::take(buf) };
            let mut conns = self.shared.conns.lock();
            let conn =
                conns.entry(*store_id).or_insert_with(|| spawn_conn(&self.shared, *store_id));
            if conn.tx.try_send(batch).is_err() {
                self.shared.dropped_batches.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
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
        let store = self.pd.get_store(self.store_id).await.map_err(|e| e.to_string())?;
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
        let mut client = TikvClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let (tx, stream_rx) = mpsc::channel::<BatchRaftMessage>(64);
        let call = tokio::spawn(async move {
            client.batch_raft(tokio_stream::wrappers::ReceiverStream::new(stream_rx)).await
        });
        if self.unreachable.swap(false, Ordering::Relaxed) {
            info!(self.logger, "raft connection re-established"; "addr" => &url);
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
