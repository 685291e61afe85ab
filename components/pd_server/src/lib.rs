//! The placement driver (PD): owns cluster-wide metadata — the cluster id, unique ids,
//! timestamps (TSO), stores and the region routing table — and serves it over TiKV's `pdpb.PD`
//! and `keyspacepb.Keyspace` gRPC services plus a small HTTP API on the same port.
//!
//! Start one in-process with [`start`]; stop it with [`PdServer::shutdown`].
//!
//! **Bootstrap by PD** (until the membership issue lands): while the cluster is not
//! bootstrapped, the `PutStore` that brings the number of live stores to
//! `replication.max-replicas` also creates the first region — id from the allocator, whole key
//! space, epoch `(conf_ver 1, version 1)`, one peer on each of the lowest store ids — and marks
//! the cluster bootstrapped, atomically. Stores learn of it by polling `IsBootstrapped` /
//! `GetRegion` and write the region's initial state locally. A store-initiated `Bootstrap` RPC
//! works too; whichever comes first wins and the other gets `ALREADY_BOOTSTRAPPED`.
//!
//! Architecture invariant: a PD restart loses nothing acknowledged. Every change is persisted
//! (synced) in PD's own RocksDB before memory changes and before the answer (see
//! `storage.rs`). Soft state — store statistics, heartbeat times, region sizes, leader terms —
//! is rebuilt from heartbeats.
//!
//! Periodic work: one task runs the merge checker every [`MERGE_CHECK_INTERVAL`]
//! (`merge_checker.rs`); it ends with the server.

mod cluster;
mod config;
mod error;
mod http;
mod id;
mod merge_checker;
pub mod operator;
mod region_tree;
mod service;
mod splits;
mod storage;
mod tso;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use proto::keyspacepb::keyspace_server::KeyspaceServer;
use proto::pdpb::pd_server::PdServer as PdGrpcServer;
use slog::{info, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use crate::cluster::{SCAN_REGIONS_MAX, SPLIT_COUNT_MAX};
pub use crate::config::{
    LoadError, Overrides, PdConfig, ReplicationConfig, ScheduleConfig, MAX_REPLICAS_MAX,
};
pub use crate::error::{Error, RpcError};
pub use crate::http::BODY_BYTES_MAX as HTTP_BODY_BYTES_MAX;
pub use crate::id::{ALLOC_COUNT_MAX, ID_BATCH};
pub use crate::merge_checker::{MERGE_CHECK_INTERVAL, MERGE_CHECK_REGIONS_MAX};
pub use crate::service::{DEFAULT_KEYSPACE, HEARTBEAT_STREAM_BUFFER, TSO_STREAM_BUFFER};
pub use crate::tso::{MAX_LOGICAL, TSO_COUNT_MAX, TSO_WINDOW_MS};

/// Largest gRPC message PD accepts or sends. Clients refuse answers above 4 MiB; the biggest
/// answer, a full ScanRegions, stays below that for regions of ordinary key sizes.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Concurrent gRPC streams per connection.
pub const GRPC_STREAMS_PER_CONNECTION_MAX: u32 = 1024;

/// How long [`PdServer::shutdown`] waits for connections and streams to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running placement driver.
pub struct PdServer {
    addr: SocketAddr,
    client_url: String,
    cluster_id: u64,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Lets shutdown wait until every handle on the metadata store is gone, so the store is
    /// closed (and its lock released) when shutdown returns.
    cluster: Weak<cluster::Cluster>,
    logger: Logger,
}

/// Opens the metadata store under `cfg.data-dir`, binds `cfg.addr` and serves until
/// [`PdServer::shutdown`]. Must be called within a tokio runtime (with IO and time enabled).
///
/// # Errors
/// An invalid config, an unopenable or inconsistent metadata store, or an address that cannot
/// be bound. Nothing is served then.
pub async fn start(cfg: PdConfig, logger: Logger) -> Result<PdServer, Error> {
    cfg.validate()?;
    let meta_path = cfg.meta_path();
    std::fs::create_dir_all(&meta_path)
        .map_err(|source| Error::DataDir { path: meta_path.clone(), source })?;
    let store = storage::MetaStore::open(&meta_path, &logger)?;
    let cluster = Arc::new(cluster::Cluster::load(
        store,
        cfg.replication.max_replicas,
        cfg.schedule.clone(),
        logger.clone(),
    )?);

    let listener = TcpListener::bind(&cfg.addr)
        .await
        .map_err(|source| Error::Bind { addr: cfg.addr.clone(), source })?;
    let addr = listener.local_addr().map_err(Error::LocalAddr)?;
    let advertise =
        if cfg.advertise_addr.is_empty() { addr.to_string() } else { cfg.advertise_addr.clone() };
    let client_url = format!("http://{advertise}");

    let (shutdown, shutdown_rx) = watch::channel(false);
    let pd = service::PdService::new(
        cluster.clone(),
        client_url.clone(),
        shutdown_rx.clone(),
        logger.clone(),
    );
    let keyspace = service::KeyspaceService::new(cluster.clone());
    let router = http::PdRouter {
        pd: PdGrpcServer::new(pd)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        keyspace: KeyspaceServer::new(keyspace).max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        cluster: cluster.clone(),
    };
    tokio::spawn(run_merge_checker(cluster.clone(), shutdown_rx.clone()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut signal = shutdown_rx;
    // HTTP/1.1 is accepted for the HTTP API; gRPC clients use h2c on the same port.
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(Some(GRPC_STREAMS_PER_CONNECTION_MAX))
            .serve_with_incoming_shutdown(router, incoming, async move {
                let _ = signal.wait_for(|down| *down).await;
            }),
    );
    let cluster_id = cluster.cluster_id();
    info!(logger, "PD serving"; "addr" => %addr, "client_url" => &client_url, "cluster_id" => cluster_id);
    Ok(PdServer {
        addr,
        client_url,
        cluster_id,
        shutdown,
        serve,
        cluster: Arc::downgrade(&cluster),
        logger,
    })
}

/// Runs the merge checker every [`MERGE_CHECK_INTERVAL`] until PD shuts down. A round that
/// runs late is not made up for (the next round looks at the state as it is).
async fn run_merge_checker(cluster: Arc<cluster::Cluster>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MERGE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => cluster.merge_check(cluster::unix_ms()),
            _ = shutdown.wait_for(|down| *down) => return,
        }
    }
}

impl PdServer {
    /// The address actually bound (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients are told to use (`http://<advertise-addr>`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Stops accepting connections, ends open streams, waits (at most [`SHUTDOWN_GRACE`]) for
    /// connections to finish and for the metadata store to close. Everything acknowledged is
    /// already on disk, so nothing needs flushing.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut serve = self.serve;
        match tokio::time::timeout_at(deadline, &mut serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(self.logger, "gRPC server ended with an error"; "err" => %e),
            Ok(Err(e)) => warn!(self.logger, "gRPC server task failed"; "err" => %e),
            Err(_) => {
                warn!(self.logger, "connections still open after the grace period, closing them");
                serve.abort();
            }
        }
        // Stream tasks and per-request futures drop their handles right after the connections
        // close; wait for that, bounded, so a restart in this process can reopen the store.
        while self.cluster.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.cluster.strong_count() > 0 {
            warn!(self.logger, "metadata store still in use after shutdown");
        }
        info!(self.logger, "PD stopped");
    }
}
