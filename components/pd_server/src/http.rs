//! The one service behind PD's port: gRPC by path (`/pdpb.PD/*`, `/keyspacepb.Keyspace/*`),
//! everything else is the HTTP API.
//!
//! | path | answer |
//! |---|---|
//! | `GET /pd/api/v1/regions` | `{"count": N, "regions": [...]}` |
//! | `GET /pd/api/v1/stores` | `{"count": N, "stores": [...]}` |
//! | `GET /pd/api/v1/operators` | `{"count": N, "operators": [...]}`, the running ones |
//! | `GET /pd/api/v1/operators/records` | the same for finished ones, oldest first |
//! | `GET /pd/api/v1/operators/{region_id}` | the operator locking the region, else its last one |
//! | `POST /pd/api/v1/operators` | creates one (PD's body, below); answers it |
//! | `DELETE /pd/api/v1/operators/{region_id}` | cancels the operator locking the region |
//! | another gRPC path | gRPC status UNIMPLEMENTED |
//! | anything else | 404 (405 for another method on a known path) |
//!
//! Operator bodies, as PD's API takes them: `{"name": "add-peer", "region_id": R, "store_id":
//! S}`, `{"name": "remove-peer", "region_id": R, "store_id": S}`, `{"name": "transfer-leader",
//! "region_id": R, "to_store_id": S}`, `{"name": "transfer-peer", "region_id": R,
//! "from_store_id": S1, "to_store_id": S2}`, `{"name": "merge-region", "source_region_id": S,
//! "target_region_id": T}`. Bodies above [`BODY_BYTES_MAX`] are refused (413).
//!
//! An operator answers as `{"region_id", "target_region_id" (a merge's target, else null),
//! "kind", "status" (running, success, timeout, canceled), "reason", "steps", "current_step",
//! "created_unix_ms", "finished_unix_ms"}`. A merge is listed once, under its source; both
//! its regions find it by id.
//!
//! Refusals answer a one-line text reason with 400 (bad request), 404 (unknown region, store
//! or operator), 409 (an operator already runs, or a region is being split: retry later), 503
//! (not bootstrapped) or 500 (PD's storage).
//!
//! Answers are built from a snapshot of the state taken under the read lock; they list every
//! region, so their size grows with the cluster (fine for tests and small clusters; paging
//! is left for large clusters).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use proto::keyspacepb::keyspace_server::KeyspaceServer;
use proto::metapb;
use proto::pdpb::pd_server::PdServer as PdGrpcServer;
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tower_service::Service;

use crate::cluster::Cluster;
use crate::error::RpcError;
use crate::operator::{self, Operator, PlanError};
use crate::service::{KeyspaceService, PdService};

/// Largest request body the HTTP API reads.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Routes a request to the PD or keyspace gRPC service or to the HTTP API.
#[derive(Clone)]
pub struct PdRouter {
    pub pd: PdGrpcServer<PdService>,
    pub keyspace: KeyspaceServer<KeyspaceService>,
    pub cluster: Arc<Cluster>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<Request<Body>> for PdRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Generated tonic services are always ready and reserve nothing.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        if path.starts_with("/pdpb.PD/") {
            return Box::pin(self.pd.call(req));
        }
        if path.starts_with("/keyspacepb.Keyspace/") {
            return Box::pin(self.keyspace.call(req));
        }
        let is_grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if is_grpc {
            let resp = tonic::Status::unimplemented(format!("no gRPC method {path}")).into_http();
            return Box::pin(async move { Ok(resp) });
        }
        let cluster = self.cluster.clone();
        Box::pin(async move { Ok(route(&cluster, req).await) })
    }
}

async fn route(cluster: &Cluster, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    let only = |allowed: &[Method]| {
        if allowed.contains(&method) {
            Ok(())
        } else {
            Err(text(StatusCode::METHOD_NOT_ALLOWED, format!("only {allowed:?}\n")))
        }
    };
    let answer = match path.as_str() {
        "/pd/api/v1/regions" => only(&[Method::GET]).map(|()| json(regions_json(cluster))),
        "/pd/api/v1/stores" => only(&[Method::GET]).map(|()| json(stores_json(cluster))),
        "/pd/api/v1/operators" => match only(&[Method::GET, Method::POST]) {
            Err(e) => Err(e),
            Ok(()) if method == Method::GET => Ok(json(operators_json(&cluster.operators()))),
            Ok(()) => create_operator(cluster, req.into_body()).await,
        },
        "/pd/api/v1/operators/records" => {
            only(&[Method::GET]).map(|()| json(operators_json(&cluster.operator_records())))
        }
        p => match p.strip_prefix("/pd/api/v1/operators/").map(str::parse::<u64>) {
            Some(Ok(region_id)) => match only(&[Method::GET, Method::DELETE]) {
                Err(e) => Err(e),
                Ok(()) if method == Method::GET => match cluster.operator(region_id) {
                    Some(op) => Ok(json(to_json(&operator_json(&op)))),
                    None => Err(refusal(&RpcError::NoOperator(region_id))),
                },
                Ok(()) => cluster
                    .cancel_operator(region_id)
                    .map(|op| json(to_json(&operator_json(&op))))
                    .map_err(|e| refusal(&e)),
            },
            Some(Err(_)) => Err(text(StatusCode::BAD_REQUEST, "region id is not a number\n")),
            None => Err(text(StatusCode::NOT_FOUND, "not found\n")),
        },
    };
    answer.unwrap_or_else(|e| e)
}

/// The body of `POST /pd/api/v1/operators`, PD's field names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorBody {
    name: String,
    region_id: Option<u64>,
    source_region_id: Option<u64>,
    target_region_id: Option<u64>,
    store_id: Option<u64>,
    from_store_id: Option<u64>,
    to_store_id: Option<u64>,
}

async fn create_operator(cluster: &Cluster, body: Body) -> Result<Response<Body>, Response<Body>> {
    let bytes = match Limited::new(body, BODY_BYTES_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let status = if e.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return Err(text(status, format!("cannot read the body: {e}\n")));
        }
    };
    let body: OperatorBody = serde_json::from_slice(&bytes)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("bad operator body: {e}\n")))?;
    let Some(kind) = operator::Kind::parse(&body.name) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown operator {:?}: add-peer, remove-peer, transfer-leader, transfer-peer or \
                 merge-region\n",
                body.name
            ),
        ));
    };
    let (from_store, to_store) = match kind {
        operator::Kind::AddPeer => (None, body.store_id.or(body.to_store_id)),
        operator::Kind::RemovePeer => (body.store_id.or(body.from_store_id), None),
        operator::Kind::TransferLeader => (None, body.to_store_id.or(body.store_id)),
        operator::Kind::TransferPeer => (body.from_store_id, body.to_store_id),
        operator::Kind::MergeRegion => (None, None),
    };
    let (region_id, missing) = match kind {
        operator::Kind::MergeRegion => {
            (body.source_region_id.or(body.region_id), "source_region_id and target_region_id")
        }
        operator::Kind::AddPeer
        | operator::Kind::RemovePeer
        | operator::Kind::TransferLeader
        | operator::Kind::TransferPeer => (body.region_id, "region_id"),
    };
    let target_missing = kind == operator::Kind::MergeRegion && body.target_region_id.is_none();
    let Some(region_id) = region_id.filter(|_| !target_missing) else {
        return Err(text(StatusCode::BAD_REQUEST, format!("{} needs {missing}\n", kind.name())));
    };
    let req = operator::Request {
        kind,
        region_id,
        from_store,
        to_store,
        target_region_id: body.target_region_id.filter(|_| kind == operator::Kind::MergeRegion),
    };
    cluster.add_operator(req).map(|op| json(to_json(&operator_json(&op)))).map_err(|e| refusal(&e))
}

/// The one place an operator API refusal gets its HTTP status.
fn refusal(e: &RpcError) -> Response<Body> {
    let status = match e {
        RpcError::RegionNotFound(_)
        | RpcError::StoreNotFound(_)
        | RpcError::NoOperator(_)
        | RpcError::Operator(PlanError::StoreNotFound(_)) => StatusCode::NOT_FOUND,
        RpcError::Operator(PlanError::Busy { .. } | PlanError::InSplit { .. }) => {
            StatusCode::CONFLICT
        }
        RpcError::NotBootstrapped => StatusCode::SERVICE_UNAVAILABLE,
        RpcError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RpcError::Operator(_)
        | RpcError::Invalid(_)
        | RpcError::AlreadyBootstrapped
        | RpcError::ClusterIdMismatch { .. }
        | RpcError::StoreTombstone(_)
        | RpcError::Unsupported(_) => StatusCode::BAD_REQUEST,
    };
    text(status, format!("{e}\n"))
}

fn json(body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    resp
}

fn to_json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data serializes")
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(full(msg.into().into_bytes()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, "text/plain".parse().expect("static"));
    resp
}

fn full(bytes: Vec<u8>) -> Body {
    Body::new(Full::new(Bytes::from(bytes)))
}

#[derive(Serialize)]
struct PeerJson {
    id: u64,
    store_id: u64,
}

#[derive(Serialize)]
struct EpochJson {
    conf_ver: u64,
    version: u64,
}

#[derive(Serialize)]
struct RegionJson {
    id: u64,
    start_key: String,
    end_key: String,
    epoch: EpochJson,
    peers: Vec<PeerJson>,
    leader: Option<PeerJson>,
    approximate_size: u64,
    approximate_keys: u64,
}

#[derive(Serialize)]
struct RegionsJson {
    count: usize,
    regions: Vec<RegionJson>,
}

#[derive(Serialize)]
struct StoreJson {
    id: u64,
    address: String,
    state: &'static str,
    last_heartbeat_unix_ms: u64,
    region_count: usize,
}

#[derive(Serialize)]
struct StoresJson {
    count: usize,
    stores: Vec<StoreJson>,
}

#[derive(Serialize)]
struct OperatorJson {
    region_id: u64,
    /// A merge's target region (locked by the operator too).
    target_region_id: Option<u64>,
    kind: &'static str,
    status: &'static str,
    /// Why it timed out or was canceled.
    reason: Option<String>,
    steps: Vec<String>,
    /// Index of the step being executed (`steps.len()` when all are done).
    current_step: usize,
    created_unix_ms: u64,
    finished_unix_ms: Option<u64>,
}

#[derive(Serialize)]
struct OperatorsJson {
    count: usize,
    operators: Vec<OperatorJson>,
}

fn operator_json(op: &Operator) -> OperatorJson {
    OperatorJson {
        region_id: op.region_id,
        target_region_id: op.target_region_id(),
        kind: op.kind.name(),
        status: op.status.name(),
        reason: match &op.status {
            operator::Status::Timeout(r) | operator::Status::Canceled(r) => Some(r.clone()),
            operator::Status::Running | operator::Status::Success => None,
        },
        steps: op.steps.iter().map(ToString::to_string).collect(),
        current_step: op.current,
        created_unix_ms: op.created_unix_ms,
        finished_unix_ms: op.finished_unix_ms,
    }
}

fn operators_json(ops: &[Operator]) -> Vec<u8> {
    let operators: Vec<OperatorJson> = ops.iter().map(operator_json).collect();
    to_json(&OperatorsJson { count: operators.len(), operators })
}

fn peer_json(p: &metapb::Peer) -> PeerJson {
    PeerJson { id: p.id, store_id: p.store_id }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn regions_json(cluster: &Cluster) -> Vec<u8> {
    let regions: Vec<RegionJson> = cluster
        .all_regions()
        .into_iter()
        .map(|info| {
            let epoch = info.region.region_epoch.unwrap_or_default();
            RegionJson {
                id: info.region.id,
                start_key: hex(&info.region.start_key),
                end_key: hex(&info.region.end_key),
                epoch: EpochJson { conf_ver: epoch.conf_ver, version: epoch.version },
                peers: info.region.peers.iter().map(peer_json).collect(),
                leader: info.leader.as_ref().map(peer_json),
                // 0 while unknown, as before sizes were reported.
                approximate_size: info.stats.map_or(0, |s| s.approximate_size),
                approximate_keys: info.stats.map_or(0, |s| s.approximate_keys),
            }
        })
        .collect();
    serde_json::to_vec(&RegionsJson { count: regions.len(), regions })
        .expect("plain data serializes")
}

fn stores_json(cluster: &Cluster) -> Vec<u8> {
    let stores: Vec<StoreJson> = cluster
        .stores_with_region_counts()
        .into_iter()
        .map(|(info, region_count)| StoreJson {
            id: info.meta.id,
            state: metapb::StoreState::try_from(info.meta.state)
                .map_or("Unknown", |s| s.as_str_name()),
            address: info.meta.address,
            last_heartbeat_unix_ms: info.last_heartbeat_unix_ms,
            region_count,
        })
        .collect();
    serde_json::to_vec(&StoresJson { count: stores.len(), stores }).expect("plain data serializes")
}
