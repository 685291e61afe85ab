//! The one service behind PD's port: gRPC by path (`/pdpb.PD/*`, `/keyspacepb.Keyspace/*`),
//! everything else is the HTTP API.
//!
//! | path | answer |
//! |---|---|
//! | `GET /pd/api/v1/regions` | `{"count": N, "regions": [...]}` |
//! | `GET /pd/api/v1/stores` | `{"count": N, "stores": [...]}` |
//! | another gRPC path | gRPC status UNIMPLEMENTED |
//! | anything else | 404 (405 for another method on a known path) |
//!
//! Answers are built from a snapshot of the state taken under the read lock; they list every
//! region, so their size grows with the cluster (fine for tests and small clusters; paging
//! arrives with the operator API).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use proto::keyspacepb::keyspace_server::KeyspaceServer;
use proto::metapb;
use proto::pdpb::pd_server::PdServer as PdGrpcServer;
use serde::Serialize;
use tonic::body::Body;
use tower_service::Service;

use crate::cluster::Cluster;
use crate::service::{KeyspaceService, PdService};

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
        let resp = if is_grpc {
            tonic::Status::unimplemented(format!("no gRPC method {path}")).into_http()
        } else {
            route(&self.cluster, req.method(), path)
        };
        Box::pin(async move { Ok(resp) })
    }
}

fn route(cluster: &Cluster, method: &Method, path: &str) -> Response<Body> {
    let body = match path.trim_end_matches('/') {
        "/pd/api/v1/regions" => regions_json(cluster),
        "/pd/api/v1/stores" => stores_json(cluster),
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let mut resp = Response::new(full(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    resp
}

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(msg.as_bytes().to_vec()));
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
                approximate_size: info.approximate_size,
                approximate_keys: info.approximate_keys,
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
