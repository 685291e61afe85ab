//! The placement driver's client: the calls a store and the ctl make, with one retry policy.
//!
//! Every call carries the cluster id learned from `GetMembers` at connect time; a response
//! whose header carries another cluster id is refused (a store MUST NOT join a foreign
//! cluster). Transport errors reconnect (at most once per `RECONNECT_INTERVAL`) and retry up to
//! `RETRIES` times; PD-level errors are returned as they are.
//!
//! The region heartbeat stream is long-lived: [`PdClient::region_heartbeat`] queues a
//! heartbeat on a bounded channel feeding the stream (a full channel drops the heartbeat: the
//! next one carries the same information) and the stream is re-opened when it breaks.
//! Responses carrying an operator are handed to whoever took
//! [`PdClient::take_operator_receiver`] (the store), on a bounded channel: when it is full or
//! nobody listens the operator is dropped, and PD sends it again with the next heartbeat.

use std::time::{Duration, Instant};

use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient as GrpcClient};
use slog::{debug, warn, Logger};
use tokio::sync::{mpsc, Mutex};
use tonic::transport::{Channel, Endpoint};

const RETRIES: usize = 10;
const RECONNECT_INTERVAL: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Region heartbeats queued for the stream before new ones are dropped.
const HEARTBEAT_QUEUE: usize = 4096;
/// Operators from PD waiting for the store before new ones are dropped.
const OPERATOR_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach PD at {endpoints:?}: {message}")]
    Unreachable { endpoints: Vec<String>, message: String },
    #[error("PD answered with gRPC status {0}")]
    Grpc(#[from] tonic::Status),
    #[error("PD error {kind:?}: {message}")]
    Pd { kind: pdpb::ErrorType, message: String },
    #[error("response from cluster {got}, expected cluster {expected}")]
    ClusterMismatch { expected: u64, got: u64 },
    #[error("PD response without {0}")]
    Missing(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A region as PD knows it, with its leader if PD has heard of one.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    pub region: metapb::Region,
    pub leader: Option<metapb::Peer>,
}

struct Conn {
    client: GrpcClient<Channel>,
    connected_at: Instant,
}

pub struct PdClient {
    endpoints: Vec<String>,
    cluster_id: u64,
    conn: Mutex<Conn>,
    heartbeats: mpsc::Sender<pdpb::RegionHeartbeatRequest>,
    operators: std::sync::Mutex<Option<mpsc::Receiver<pdpb::RegionHeartbeatResponse>>>,
    logger: Logger,
}

fn normalize(ep: &str) -> String {
    if ep.starts_with("http://") || ep.starts_with("https://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

async fn connect_one(url: &str) -> std::result::Result<GrpcClient<Channel>, String> {
    let ep = Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?;
    let channel = ep
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(GrpcClient::new(channel))
}

/// Connects to the first reachable endpoint and asks it for the leader and the cluster id.
async fn connect_leader(
    endpoints: &[String],
) -> std::result::Result<(GrpcClient<Channel>, u64), String> {
    let mut last = String::from("no endpoints");
    for ep in endpoints {
        let mut client = match connect_one(&normalize(ep)).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("{ep}: {e}");
                continue;
            }
        };
        let resp = match client.get_members(pdpb::GetMembersRequest::default()).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                last = format!("{ep}: {e}");
                continue;
            }
        };
        let cluster_id = resp.header.map(|h| h.cluster_id).unwrap_or_default();
        let leader_url = resp.leader.and_then(|l| l.client_urls.into_iter().next());
        if let Some(url) = leader_url.filter(|u| normalize(u) != normalize(ep)) {
            match connect_one(&normalize(&url)).await {
                Ok(c) => return Ok((c, cluster_id)),
                Err(e) => last = format!("leader {url}: {e}"),
            }
            continue;
        }
        return Ok((client, cluster_id));
    }
    Err(last)
}

impl PdClient {
    /// Connects, retrying for up to `wait` (PD may be starting at the same time).
    pub async fn connect(
        endpoints: Vec<String>,
        wait: Duration,
        logger: Logger,
    ) -> Result<PdClient> {
        let deadline = Instant::now() + wait;
        let (client, cluster_id) = loop {
            match connect_leader(&endpoints).await {
                Ok(c) => break c,
                Err(message) if Instant::now() >= deadline => {
                    return Err(Error::Unreachable { endpoints, message })
                }
                Err(_) => tokio::time::sleep(RECONNECT_INTERVAL).await,
            }
        };
        let (tx, rx) = mpsc::channel(HEARTBEAT_QUEUE);
        let (op_tx, op_rx) = mpsc::channel(OPERATOR_QUEUE);
        let pd = PdClient {
            endpoints,
            cluster_id,
            conn: Mutex::new(Conn { client, connected_at: Instant::now() }),
            heartbeats: tx,
            operators: std::sync::Mutex::new(Some(op_rx)),
            logger,
        };
        pd.spawn_heartbeat_stream(rx, op_tx);
        Ok(pd)
    }

    /// The operators PD answers region heartbeats with; the first caller gets them, later
    /// callers `None`.
    pub fn take_operator_receiver(&self) -> Option<mpsc::Receiver<pdpb::RegionHeartbeatResponse>> {
        self.operators.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn header(&self) -> Option<pdpb::RequestHeader> {
        Some(pdpb::RequestHeader { cluster_id: self.cluster_id, sender_id: 0 })
    }

    fn check(&self, header: Option<pdpb::ResponseHeader>) -> Result<()> {
        let h = header.ok_or(Error::Missing("header"))?;
        if h.cluster_id != self.cluster_id && h.cluster_id != 0 {
            return Err(Error::ClusterMismatch { expected: self.cluster_id, got: h.cluster_id });
        }
        match h.error {
            Some(e) if e.r#type != pdpb::ErrorType::Ok as i32 => Err(Error::Pd {
                kind: pdpb::ErrorType::try_from(e.r#type).unwrap_or(pdpb::ErrorType::Unknown),
                message: e.message,
            }),
            _ => Ok(()),
        }
    }

    async fn client(&self) -> GrpcClient<Channel> {
        self.conn.lock().await.client.clone()
    }

    async fn reconnect(&self) {
        let mut conn = self.conn.lock().await;
        if conn.connected_at.elapsed() < RECONNECT_INTERVAL {
            return;
        }
        match connect_leader(&self.endpoints).await {
            Ok((client, cluster_id)) if cluster_id == self.cluster_id => {
                *conn = Conn { client, connected_at: Instant::now() };
            }
            Ok((_, other)) => {
                warn!(self.logger, "PD reports another cluster"; "cluster_id" => other)
            }
            Err(e) => warn!(self.logger, "PD reconnect failed"; "err" => e),
        }
    }

    /// Runs `call` with reconnects and retries on transport errors.
    async fn call<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(GrpcClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for _ in 0..RETRIES {
            match call(self.client().await).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Unknown
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                    ) =>
                {
                    last = Some(s);
                    self.reconnect().await;
                    tokio::time::sleep(RECONNECT_INTERVAL).await;
                }
                Err(s) => return Err(Error::Grpc(s)),
            }
        }
        Err(Error::Grpc(last.expect("at least one attempt")))
    }

    pub async fn alloc_id(&self) -> Result<u64> {
        let req = pdpb::AllocIdRequest { header: self.header() };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.alloc_id(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.id)
    }

    pub async fn is_bootstrapped(&self) -> Result<bool> {
        let req = pdpb::IsBootstrappedRequest { header: self.header() };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.is_bootstrapped(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.bootstrapped)
    }

    pub async fn put_store(&self, store: metapb::Store) -> Result<()> {
        let req = pdpb::PutStoreRequest { header: self.header(), store: Some(store) };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.put_store(req).await }
            })
            .await?;
        self.check(r.header)
    }

    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        let req = pdpb::GetStoreRequest { header: self.header(), store_id };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_store(req).await }
            })
            .await?;
        self.check(r.header)?;
        r.store.ok_or(Error::Missing("store"))
    }

    pub async fn get_all_stores(&self) -> Result<Vec<metapb::Store>> {
        let req =
            pdpb::GetAllStoresRequest { header: self.header(), exclude_tombstone_stores: true };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_all_stores(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.stores)
    }

    /// The region holding `key`, if PD knows one.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
            need_buckets: false,
        };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_region(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.region.map(|region| RegionInfo { region, leader: r.leader }))
    }

    pub async fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>> {
        let req =
            pdpb::GetRegionByIdRequest { header: self.header(), region_id, need_buckets: false };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_region_by_id(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.region.map(|region| RegionInfo { region, leader: r.leader }))
    }

    /// Up to `limit` regions from `start_key` on (empty `end_key`: to the end).
    pub async fn scan_regions(
        &self,
        start_key: &[u8],
        end_key: &[u8],
        limit: i32,
    ) -> Result<Vec<RegionInfo>> {
        let req = pdpb::ScanRegionsRequest {
            header: self.header(),
            start_key: start_key.to_vec(),
            end_key: end_key.to_vec(),
            limit,
            ..Default::default()
        };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.scan_regions(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.regions
            .into_iter()
            .filter_map(|r| r.region.map(|region| RegionInfo { region, leader: r.leader }))
            .collect())
    }

    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<()> {
        let req = pdpb::StoreHeartbeatRequest {
            header: self.header(),
            stats: Some(stats),
            ..Default::default()
        };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.store_heartbeat(req).await }
            })
            .await?;
        self.check(r.header)
    }

    /// Queues a region heartbeat; drops it when the queue is full (see the crate doc).
    pub fn region_heartbeat(&self, mut req: pdpb::RegionHeartbeatRequest) -> bool {
        req.header = self.header();
        self.heartbeats.try_send(req).is_ok()
    }

    pub async fn ask_batch_split(
        &self,
        region: metapb::Region,
        count: u32,
    ) -> Result<Vec<pdpb::SplitId>> {
        let req = pdpb::AskBatchSplitRequest {
            header: self.header(),
            region: Some(region),
            split_count: count,
        };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.ask_batch_split(req).await }
            })
            .await?;
        self.check(r.header)?;
        Ok(r.ids)
    }

    pub async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        let req = pdpb::ReportBatchSplitRequest { header: self.header(), regions };
        let r = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.report_batch_split(req).await }
            })
            .await?;
        self.check(r.header)
    }

    /// Keeps one region-heartbeat stream open, feeding it from the queue; re-opens it when it
    /// breaks. Responses go to `operators` (see the crate doc).
    fn spawn_heartbeat_stream(
        &self,
        mut rx: mpsc::Receiver<pdpb::RegionHeartbeatRequest>,
        operators: mpsc::Sender<pdpb::RegionHeartbeatResponse>,
    ) {
        let endpoints = self.endpoints.clone();
        let logger = self.logger.clone();
        tokio::spawn(async move {
            // Heartbeats are taken from `rx` one stream at a time; a broken stream loses at most
            // what it had buffered, and the next heartbeats carry the same information.
            loop {
                let Ok((mut client, _)) = connect_leader(&endpoints).await else {
                    tokio::time::sleep(RECONNECT_INTERVAL).await;
                    continue;
                };
                let (tx, stream_rx) = mpsc::channel(64);
                let outbound = tokio_stream::wrappers::ReceiverStream::new(stream_rx);
                let mut responses = match client.region_heartbeat(outbound).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => {
                        warn!(logger, "cannot open region heartbeat stream"; "err" => %e);
                        tokio::time::sleep(RECONNECT_INTERVAL).await;
                        continue;
                    }
                };
                loop {
                    tokio::select! {
                        hb = rx.recv() => match hb {
                            Some(hb) => if tx.send(hb).await.is_err() { break },
                            None => return, // the client was dropped
                        },
                        resp = responses.message() => match resp {
                            Ok(Some(resp)) => {
                                if let Some(e) = resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                                    debug!(logger, "region heartbeat refused by PD";
                                        "region_id" => resp.region_id, "err" => &e.message);
                                } else if operators.try_send(resp).is_err() {
                                    debug!(logger, "operator dropped: the store is behind or not listening");
                                }
                            }
                            Ok(None) | Err(_) => break,
                        },
                    }
                }
                tokio::time::sleep(RECONNECT_INTERVAL).await;
            }
        });
    }
}
