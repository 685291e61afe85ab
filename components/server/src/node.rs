//! `Node`: one store process's lifecycle around the raftstore: identity, registration with
//! PD, joining the first region, serving, heartbeats, shutdown.
//!
//! Start-up order: store identity (allocated by PD on first start, persisted) → `PutStore` →
//! if the store hosts no region yet and PD's first region has a peer here, write that region's
//! initial state (see "Bootstrap" in the README) → start the raftstore → serve gRPC and the
//! status port → heartbeat loops. Both listeners are bound before `PutStore`, so a bad address
//! fails start-up before the store is announced; the status port answers once the raftstore
//! runs (while the store waits for PD, connections wait in the accept backlog). Shutdown: stop
//! gRPC, the status port, heartbeats, then the raftstore. Region heartbeats are not sent from
//! here: each leader peer reports its region on a tick (and on election and split).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine_traits::{KvEngine, RaftEngine};
use parking_lot::Mutex;
use pd_client::PdClient;
use proto::metapb;
use proto::pdpb;
use proto::tikvpb::tikv_server::TikvServer;
use raftstore::{
    bootstrap_region, bootstrap_store, create_store_system, load_store_ident, Engines, RaftRouter,
    StoreMeta, StoreSystem,
};
use slog::{info, warn, Logger};
use tokio::sync::{oneshot, watch};
use util::{ClusterId, StoreId};

use crate::metrics::Metrics;
use crate::raft_client::RaftClient;
use crate::service::Service;
use crate::status::{StatusService, StoreInfo};
use crate::storage::{Limits, Storage};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("placement driver: {0}")]
    Pd(#[from] pd_client::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] raftstore::BootstrapError),
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    #[error("raftstore cannot start: {0}")]
    Start(#[from] raftstore::StartError),
    #[error("engine: {0}")]
    Engine(#[from] engine_traits::Error),
    #[error("this store belongs to cluster {stored}, but PD serves cluster {pd}")]
    ClusterMismatch { stored: u64, pd: u64 },
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: String, message: String },
}

/// What a node needs to know about itself.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub addr: String,
    pub advertise_addr: String,
    /// Where `/metrics` and `/status` are served; empty: no status port (in-process tests).
    /// Port 0 picks a free port, and the bound address is what PD is told.
    pub status_addr: String,
    pub store_heartbeat_interval: Duration,
    pub region_heartbeat_interval: Duration,
    pub limits: Limits,
    /// Where region snapshots are built and received (`<data-dir>/snap`).
    pub snap_dir: std::path::PathBuf,
}

pub struct Node<EK: KvEngine, ER: RaftEngine> {
    store_id: StoreId,
    router: RaftRouter<EK, ER>,
    system: StoreSystem<EK, ER>,
    meta: Arc<Mutex<StoreMeta>>,
    stop: watch::Sender<bool>,
    server_done: Option<oneshot::Receiver<()>>,
    local_addr: SocketAddr,
    status_addr: Option<SocketAddr>,
    logger: Logger,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl<EK: KvEngine, ER: RaftEngine> Node<EK, ER> {
    /// Starts the store: see the module doc for the order. MUST run inside a tokio runtime.
    pub async fn start(
        cfg: NodeConfig,
        raft_cfg: raftstore::Config,
        engines: Engines<EK, ER>,
        pd: Arc<PdClient>,
        logger: Logger,
    ) -> Result<Self, Error> {
        let store_id = Self::store_identity(&engines, &pd, &logger).await?;
        let logger = logger.new(slog::o!("store_id" => store_id.get()));
        let listener = tokio::net::TcpListener::bind(&cfg.addr)
            .await
            .map_err(|e| Error::Listen { addr: cfg.addr.clone(), message: e.to_string() })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::Listen { addr: cfg.addr.clone(), message: e.to_string() })?;
        let advertise = if cfg.advertise_addr.is_empty() {
            local_addr.to_string()
        } else {
            cfg.advertise_addr.clone()
        };
        let (status_listener, status_addr) = bind_status(&cfg.status_addr).await?;
        let info = StoreInfo {
            store_id,
            address: advertise.clone(),
            status_address: match status_addr {
                Some(a) if cfg.status_addr.ends_with(":0") => a.to_string(),
                _ => cfg.status_addr.clone(),
            },
            version: env!("CARGO_PKG_VERSION"),
            start_timestamp: now_secs(),
            started: Instant::now(),
        };
        pd.put_store(metapb::Store {
            id: store_id.get(),
            address: advertise.clone(),
            status_address: info.status_address.clone(),
            version: info.version.into(),
            start_timestamp: info.start_timestamp,
            ..Default::default()
        })
        .await?;
        Self::join_first_region(&engines, store_id, &pd, &logger).await?;

        // Leaders report their regions on a peer tick (see `raftstore::Peer::heartbeat_pd`).
        let raft_cfg = Arc::new(raftstore::Config {
            region_heartbeat_interval: util::config::ReadableDuration(
                cfg.region_heartbeat_interval,
            ),
            ..raft_cfg
        });
        let (router, mut system) = create_store_system::<EK, ER>(&raft_cfg, &logger)?;
        let meta = Arc::new(Mutex::new(StoreMeta::new(store_id)));
        let snap_mgr = raftstore::SnapManager::new(
            cfg.snap_dir.clone(),
            &raft_cfg,
            EK::sst_key_range,
            logger.new(slog::o!("worker" => "snap")),
        )
        .map_err(|e| Error::Start(raftstore::StartError::Snapshots(e)))?;
        let transport = RaftClient::new(
            pd.clone(),
            snap_mgr.clone(),
            tokio::runtime::Handle::current(),
            logger.clone(),
        );
        let pd_worker = Arc::new(crate::pd_worker::PdWorker::new(
            pd.clone(),
            tokio::runtime::Handle::current(),
            engines.kv.clone(),
            logger.clone(),
        ));
        system.start(
            store_id,
            raft_cfg,
            engines.clone(),
            transport,
            pd_worker,
            meta.clone(),
            snap_mgr.clone(),
        )?;

        let metrics = Arc::new(Metrics::new(system.stats().clone(), meta.clone()));
        let storage = Storage::new(router.clone(), cfg.limits.clone());
        let service =
            Service::new(storage, router.clone(), snap_mgr.clone(), metrics.grpc(), logger.clone());
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = oneshot::channel();
        // `Server::tcp_nodelay` applies only to listeners tonic binds itself; ours must set it
        // on each accepted socket, or Nagle + delayed ACKs add ~40 ms to small responses.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            .add_service(
                TikvServer::new(service)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20),
            )
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
        let srv_logger = logger.clone();
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(srv_logger, "gRPC server stopped with an error"; "err" => %e);
            }
            let _ = done_tx.send(());
        });
        if let Some(listener) = status_listener {
            let status = StatusService::new(info, metrics, system.stats().clone(), meta.clone());
            crate::status::spawn(listener, Arc::new(status), stop_rx.clone(), logger.clone());
        }
        if let Some(operators) = pd.take_operator_receiver() {
            crate::pd_worker::spawn_operator_executor(
                operators,
                router.clone(),
                stop_rx.clone(),
                logger.clone(),
            );
        }
        let sources = HeartbeatSources { meta: meta.clone(), snaps: snap_mgr };
        spawn_heartbeats(&cfg, store_id, pd, sources, stop_rx, logger.clone());
        info!(logger, "store is serving"; "addr" => %local_addr, "advertise" => advertise, "status_addr" => ?status_addr);
        Ok(Node {
            store_id,
            router,
            system,
            meta,
            stop,
            server_done: Some(done_rx),
            local_addr,
            status_addr,
            logger,
        })
    }

    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound status address (`/metrics`, `/status`), if the node serves one.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status_addr
    }

    pub fn router(&self) -> &RaftRouter<EK, ER> {
        &self.router
    }

    pub fn stats(&self) -> raftstore::StoreStatsSnapshot {
        self.system.stats().snapshot()
    }

    pub fn region_count(&self) -> usize {
        self.meta.lock().region_count()
    }

    /// Stops serving, then the raftstore. Every round's raft write is synced already, so
    /// nothing else needs flushing.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(done) = self.server_done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
        let mut system = self.system;
        let logger = self.logger.clone();
        // Joining pollers blocks; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || system.shutdown()).await;
        info!(logger, "store stopped");
    }

    async fn store_identity(
        engines: &Engines<EK, ER>,
        pd: &PdClient,
        logger: &Logger,
    ) -> Result<StoreId, Error> {
        if let Some(ident) = load_store_ident(&engines.kv)? {
            if ident.cluster_id != pd.cluster_id() {
                return Err(Error::ClusterMismatch {
                    stored: ident.cluster_id,
                    pd: pd.cluster_id(),
                });
            }
            return Ok(StoreId(ident.store_id));
        }
        let store_id = StoreId(pd.alloc_id().await?);
        bootstrap_store(engines, ClusterId(pd.cluster_id()), store_id)?;
        info!(logger, "store bootstrapped"; "store_id" => store_id.get(), "cluster_id" => pd.cluster_id());
        Ok(store_id)
    }

    /// A store with no region joins PD's first region if PD placed a peer of it here. PD
    /// creates that region once `max-replicas` stores registered; until then we wait.
    async fn join_first_region(
        engines: &Engines<EK, ER>,
        store_id: StoreId,
        pd: &PdClient,
        logger: &Logger,
    ) -> Result<(), Error> {
        let has_regions = {
            let meta_lower = vec![keys::LOCAL_PREFIX, keys::REGION_META_PREFIX];
            let meta_upper = vec![keys::LOCAL_PREFIX, keys::REGION_META_PREFIX + 1];
            let mut any = false;
            engines.kv.scan(engine_traits::CF_RAFT, &meta_lower, &meta_upper, false, |_, _| {
                any = true;
                Ok(false)
            })?;
            any
        };
        if has_regions {
            return Ok(());
        }
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(200);
        loop {
            if pd.is_bootstrapped().await? {
                if let Some(info) = pd.get_region(b"").await? {
                    if info.region.peers.iter().any(|p| p.store_id == store_id.get()) {
                        // Only the first region, before anything happened to it, is created
                        // this way; later peers arrive through raft (membership issue).
                        let epoch = info.region.region_epoch.unwrap_or_default();
                        if epoch.version == 1 && epoch.conf_ver == 1 {
                            bootstrap_region(engines, store_id, &info.region)?;
                            info!(logger, "joined the cluster's first region"; "region_id" => info.region.id);
                        }
                    }
                    return Ok(());
                }
            }
            if waited.as_secs() % 5 == 0 && waited.subsec_millis() < step.as_millis() as u32 {
                info!(
                    logger,
                    "waiting for PD to bootstrap the cluster (it needs max-replicas stores)"
                );
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }
}

/// What the store heartbeat reports.
struct HeartbeatSources {
    meta: Arc<Mutex<StoreMeta>>,
    snaps: raftstore::SnapManager,
}

/// The store heartbeat: regions, snapshots being sent and received. (Region heartbeats come from
/// the leaders' peers on their tick.)
fn spawn_heartbeats(
    cfg: &NodeConfig,
    store_id: StoreId,
    pd: Arc<PdClient>,
    sources: HeartbeatSources,
    stop: watch::Receiver<bool>,
    logger: Logger,
) {
    let store_every = cfg.store_heartbeat_interval;
    tokio::spawn(async move {
        let start = now_secs() as u32;
        let mut store_tick = tokio::time::interval(store_every);
        let stopped = stopped(stop);
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = store_tick.tick() => {
                    let (sending, receiving) = sources.snaps.in_flight();
                    let stats = pdpb::StoreStats {
                        store_id: store_id.get(),
                        region_count: sources.meta.lock().region_count() as u32,
                        sending_snap_count: sending as u32,
                        receiving_snap_count: receiving as u32,
                        start_time: start,
                        ..Default::default()
                    };
                    if let Err(e) = pd.store_heartbeat(stats).await {
                        warn!(logger, "store heartbeat failed"; "err" => %e);
                    }
                }
            }
        }
    });
}

/// The region's data size and key count estimated from RocksDB's index (cheap; no scan).
pub(crate) fn approximate_stats<EK: KvEngine>(
    kv: &EK,
    region: &metapb::Region,
) -> engine_traits::RangeStats {
    let start = keys::enc_start_key(&region.start_key);
    let end = keys::enc_end_key(&region.end_key);
    let mut total = engine_traits::RangeStats::default();
    for cf in engine_traits::DATA_CFS {
        if let Ok(s) = kv.approximate_size_and_keys(cf, &start, &end) {
            total.size_bytes += s.size_bytes;
            total.keys += s.keys;
        }
    }
    total
}

/// Binds the status port, unless `addr` is empty.
async fn bind_status(
    addr: &str,
) -> Result<(Option<tokio::net::TcpListener>, Option<SocketAddr>), Error> {
    if addr.is_empty() {
        return Ok((None, None));
    }
    let listen_err =
        |e: std::io::Error| Error::Listen { addr: addr.to_owned(), message: e.to_string() };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen_err)?;
    let local = listener.local_addr().map_err(listen_err)?;
    Ok((Some(listener), Some(local)))
}

/// Resolves once the stop flag is raised (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
