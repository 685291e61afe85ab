//! The gRPC services `pdpb.PD` and `keyspacepb.Keyspace`: thin adapters from requests to
//! [`Cluster`] operations.
//!
//! Rules every method follows:
//! 1. The response always carries `header` with the cluster id; a refused request sets
//!    `header.error` (see `error.rs`) and keeps the gRPC status OK. `Status` errors are only
//!    for broken streams.
//! 2. Nothing panics on client input: requests are validated in `cluster.rs`.
//! 3. Streams are bounded: each has a channel of fixed capacity to its client. TSO waits for
//!    room (back-pressure on that client's stream); region heartbeat answers are dropped and
//!    logged when the channel is full (the store repeats its heartbeat anyway). A stream ends
//!    when its client closes it or when PD shuts down.
//! 4. Metadata writes (synced) run inline on the runtime's threads: PD's write rate (ids in
//!    batches, TSO windows every 3 s, region changes) is low enough that moving them to a
//!    blocking pool is not worth a hop per request.

use std::sync::Arc;

use proto::keyspacepb::{self, keyspace_server::Keyspace};
use proto::metapb;
use proto::pdpb::{self, pd_server::Pd};
use slog::{debug, warn, Logger};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::{leader_or_first, Cluster};
use crate::error::RpcError;
use crate::region_tree::RegionInfo;

/// Responses buffered per TSO stream before PD stops reading that stream's requests.
pub const TSO_STREAM_BUFFER: usize = 16;
/// Heartbeat responses buffered per region heartbeat stream before new ones are dropped.
pub const HEARTBEAT_STREAM_BUFFER: usize = 64;

/// The `pdpb.PD` service.
#[derive(Clone)]
pub struct PdService {
    cluster: Arc<Cluster>,
    /// This PD as a member; PD is a single member until the membership issue lands.
    member: pdpb::Member,
    /// Flips to `true` when PD shuts down; open streams end.
    shutdown: watch::Receiver<bool>,
    logger: Logger,
}

/// Responses that carry a `pdpb.ResponseHeader`.
trait WithHeader: Default {
    fn set_header(&mut self, header: pdpb::ResponseHeader);
}

macro_rules! with_header {
    ($($t:ty),* $(,)?) => {$(
        impl WithHeader for $t {
            fn set_header(&mut self, header: pdpb::ResponseHeader) {
                self.header = Some(header);
            }
        }
    )*};
}

with_header!(
    pdpb::GetMembersResponse,
    pdpb::TsoResponse,
    pdpb::BootstrapResponse,
    pdpb::IsBootstrappedResponse,
    pdpb::AllocIdResponse,
    pdpb::GetStoreResponse,
    pdpb::PutStoreResponse,
    pdpb::GetAllStoresResponse,
    pdpb::StoreHeartbeatResponse,
    pdpb::RegionHeartbeatResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::AskBatchSplitResponse,
    pdpb::ReportBatchSplitResponse,
    pdpb::GetClusterConfigResponse,
    pdpb::PutClusterConfigResponse,
    pdpb::ScatterRegionResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::UpdateGcSafePointResponse,
    keyspacepb::LoadKeyspaceResponse,
);

/// Fills in the header (rule 1).
fn respond<R: WithHeader>(cluster_id: u64, result: Result<R, RpcError>) -> R {
    let (mut resp, error) = match result {
        Ok(resp) => (resp, None),
        Err(e) => (R::default(), Some(e.to_pb())),
    };
    resp.set_header(pdpb::ResponseHeader { cluster_id, error });
    resp
}

/// Resolves once PD shuts down (or the sender is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

fn region_response(info: Option<RegionInfo>) -> pdpb::GetRegionResponse {
    match info {
        Some(info) => pdpb::GetRegionResponse {
            leader: leader_or_first(&info),
            region: Some(info.region),
            ..Default::default()
        },
        None => pdpb::GetRegionResponse::default(),
    }
}

impl PdService {
    pub fn new(
        cluster: Arc<Cluster>,
        client_url: String,
        shutdown: watch::Receiver<bool>,
        logger: Logger,
    ) -> PdService {
        let member = pdpb::Member {
            name: "pd".to_owned(),
            // One member per cluster for now, so the cluster id names it uniquely.
            member_id: cluster.cluster_id(),
            peer_urls: vec![client_url.clone()],
            client_urls: vec![client_url],
            ..Default::default()
        };
        PdService { cluster, member, shutdown, logger }
    }

    fn ok<R: WithHeader>(&self, result: Result<R, RpcError>) -> Result<Response<R>, Status> {
        if let Err(e @ RpcError::Storage(_)) = &result {
            warn!(self.logger, "request failed on the metadata store"; "err" => %e);
        }
        Ok(Response::new(respond(self.cluster.cluster_id(), result)))
    }

    fn check(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), RpcError> {
        self.cluster.check_header(header)
    }
}

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _request: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        self.ok(Ok(pdpb::GetMembersResponse {
            members: vec![self.member.clone()],
            leader: Some(self.member.clone()),
            etcd_leader: Some(self.member.clone()),
            ..Default::default()
        }))
    }

    type TsoStream = ReceiverStream<Result<pdpb::TsoResponse, Status>>;

    async fn tso(
        &self,
        request: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(TSO_STREAM_BUFFER);
        let cluster = self.cluster.clone();
        let stopped = stopped(self.shutdown.clone());
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let req = tokio::select! {
                    req = inbound.message() => req,
                    () = &mut stopped => break,
                };
                let req = match req {
                    Ok(Some(req)) => req,
                    Ok(None) | Err(_) => break,
                };
                let result = cluster.check_header(req.header.as_ref()).and_then(|()| {
                    let ts = cluster.tso(req.count)?;
                    Ok(pdpb::TsoResponse {
                        count: req.count,
                        timestamp: Some(ts),
                        ..Default::default()
                    })
                });
                // Waits for room: a slow reader slows only its own stream (rule 3).
                if tx.send(Ok(respond(cluster.cluster_id(), result))).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn bootstrap(
        &self,
        request: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.bootstrap(req.store, req.region))
            .map(|()| pdpb::BootstrapResponse::default()))
    }

    async fn is_bootstrapped(
        &self,
        request: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).map(|()| pdpb::IsBootstrappedResponse {
            bootstrapped: self.cluster.is_bootstrapped(),
            ..Default::default()
        }))
    }

    async fn alloc_id(
        &self,
        request: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).and_then(|()| {
            let id = self.cluster.alloc_ids(1)?;
            Ok(pdpb::AllocIdResponse { id, ..Default::default() })
        }))
    }

    async fn get_store(
        &self,
        request: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).and_then(|()| {
            let info = self.cluster.get_store(req.store_id)?;
            Ok(pdpb::GetStoreResponse {
                store: Some(info.meta),
                stats: info.stats,
                ..Default::default()
            })
        }))
    }

    async fn put_store(
        &self,
        request: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.put_store(req.store))
            .map(|()| pdpb::PutStoreResponse::default()))
    }

    async fn get_all_stores(
        &self,
        request: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).map(|()| pdpb::GetAllStoresResponse {
            stores: self.cluster.all_stores(req.exclude_tombstone_stores),
            ..Default::default()
        }))
    }

    async fn store_heartbeat(
        &self,
        request: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.store_heartbeat(req.stats))
            .map(|()| pdpb::StoreHeartbeatResponse::default()))
    }

    type RegionHeartbeatStream = ReceiverStream<Result<pdpb::RegionHeartbeatResponse, Status>>;

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(HEARTBEAT_STREAM_BUFFER);
        // Commands PD sends unasked (a new operator's first step, `cluster.rs` invariant 6).
        let (push_tx, mut push_rx) = mpsc::channel(HEARTBEAT_STREAM_BUFFER);
        let cluster = self.cluster.clone();
        let stopped = stopped(self.shutdown.clone());
        let logger = self.logger.clone();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut registered_store = None;
            loop {
                let req = tokio::select! {
                    req = inbound.message() => req,
                    Some(command) = push_rx.recv() => {
                        match tx.try_send(Ok(respond(cluster.cluster_id(), Ok(command)))) {
                            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    () = &mut stopped => break,
                };
                let req = match req {
                    Ok(Some(req)) => req,
                    Ok(None) | Err(_) => break,
                };
                // The sending store is the one whose peer leads the region it reports.
                let store_id = req.leader.as_ref().map(|l| l.store_id).filter(|&id| id != 0);
                if store_id.is_some() && store_id != registered_store {
                    if let Some(id) = store_id {
                        cluster.register_pusher(id, push_tx.clone());
                    }
                    registered_store = store_id;
                }
                let region_id = req.region.as_ref().map_or(0, |r| r.id);
                let answer = match cluster.check_header(req.header.as_ref()) {
                    Ok(()) => cluster.region_heartbeat(req).transpose(),
                    Err(e) => Some(Err(e)),
                };
                let Some(answer) = answer else { continue };
                if let Err(e) = &answer {
                    debug!(logger, "region heartbeat refused"; "region_id" => region_id, "err" => %e);
                }
                match tx.try_send(Ok(respond(cluster.cluster_id(), answer))) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        warn!(logger, "region heartbeat stream full, answer dropped"; "region_id" => region_id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.get_region(&req.region_key))
            .map(region_response))
    }

    async fn get_prev_region(
        &self,
        request: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.get_prev_region(&req.region_key))
            .map(region_response))
    }

    async fn get_region_by_id(
        &self,
        request: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.get_region_by_id(req.region_id))
            .map(region_response))
    }

    async fn scan_regions(
        &self,
        request: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).and_then(|()| {
            let infos = self.cluster.scan_regions(&req.start_key, &req.end_key, req.limit)?;
            let mut resp = pdpb::ScanRegionsResponse::default();
            for info in infos {
                let leader = leader_or_first(&info);
                resp.region_metas.push(info.region.clone());
                resp.leaders.push(leader.clone().unwrap_or_default());
                resp.regions.push(pdpb::Region {
                    region: Some(info.region),
                    leader,
                    ..Default::default()
                });
            }
            Ok(resp)
        }))
    }

    async fn ask_batch_split(
        &self,
        request: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).and_then(|()| {
            let ids = self.cluster.ask_batch_split(req.region, req.split_count)?;
            Ok(pdpb::AskBatchSplitResponse { ids, ..Default::default() })
        }))
    }

    async fn report_batch_split(
        &self,
        request: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        let req = request.into_inner();
        self.ok(self
            .check(req.header.as_ref())
            .and_then(|()| self.cluster.report_batch_split(req.regions))
            .map(|()| pdpb::ReportBatchSplitResponse::default()))
    }

    async fn get_cluster_config(
        &self,
        request: Request<pdpb::GetClusterConfigRequest>,
    ) -> Result<Response<pdpb::GetClusterConfigResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).map(|()| pdpb::GetClusterConfigResponse {
            cluster: Some(metapb::Cluster {
                id: self.cluster.cluster_id(),
                max_peer_count: self.cluster.max_replicas() as u32,
            }),
            ..Default::default()
        }))
    }

    async fn put_cluster_config(
        &self,
        _request: Request<pdpb::PutClusterConfigRequest>,
    ) -> Result<Response<pdpb::PutClusterConfigResponse>, Status> {
        // The replica count comes from PD's config file; changing it at runtime needs the
        // scheduler to act on it.
        self.ok(Err(RpcError::Unsupported("PutClusterConfig")))
    }

    async fn scatter_region(
        &self,
        request: Request<pdpb::ScatterRegionRequest>,
    ) -> Result<Response<pdpb::ScatterRegionResponse>, Status> {
        // Without a scheduler there is nothing to move; report the scatter as done so clients
        // that scatter after splitting carry on.
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).map(|()| pdpb::ScatterRegionResponse {
            finished_percentage: 100,
            ..Default::default()
        }))
    }

    async fn get_gc_safe_point(
        &self,
        request: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).map(|()| pdpb::GetGcSafePointResponse {
            safe_point: self.cluster.gc_safe_point(),
            ..Default::default()
        }))
    }

    async fn update_gc_safe_point(
        &self,
        request: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let req = request.into_inner();
        self.ok(self.check(req.header.as_ref()).and_then(|()| {
            let new_safe_point = self.cluster.update_gc_safe_point(req.safe_point)?;
            Ok(pdpb::UpdateGcSafePointResponse { new_safe_point, ..Default::default() })
        }))
    }
}

/// The `keyspacepb.Keyspace` service: only the `DEFAULT` keyspace (id 0) exists.
#[derive(Clone)]
pub struct KeyspaceService {
    cluster: Arc<Cluster>,
}

impl KeyspaceService {
    pub fn new(cluster: Arc<Cluster>) -> KeyspaceService {
        KeyspaceService { cluster }
    }
}

/// The name of the keyspace every cluster has.
pub const DEFAULT_KEYSPACE: &str = "DEFAULT";

#[tonic::async_trait]
impl Keyspace for KeyspaceService {
    async fn load_keyspace(
        &self,
        request: Request<keyspacepb::LoadKeyspaceRequest>,
    ) -> Result<Response<keyspacepb::LoadKeyspaceResponse>, Status> {
        let req = request.into_inner();
        let result = self.cluster.check_header(req.header.as_ref()).map(|()| {
            let keyspace = (req.name == DEFAULT_KEYSPACE).then(|| keyspacepb::KeyspaceMeta {
                id: 0,
                name: DEFAULT_KEYSPACE.to_owned(),
                state: keyspacepb::KeyspaceState::Enabled as i32,
                ..Default::default()
            });
            keyspacepb::LoadKeyspaceResponse { keyspace, ..Default::default() }
        });
        Ok(Response::new(respond(self.cluster.cluster_id(), result)))
    }
}
