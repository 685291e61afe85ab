//! gRPC naming tests: service names and method paths are part of the wire
//! protocol (`/tikvpb.Tikv/RawGet`), so they must match kvproto exactly.
//!
//! Method paths are checked through the generated clients: each client is
//! given a recording transport that stores the request's URI path and fails
//! the call, so every call completes on its first poll without a network.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::tokio_stream;
use tonic::server::NamedService;

use proto::keyspacepb::keyspace_client::KeyspaceClient;
use proto::keyspacepb::keyspace_server::{Keyspace, KeyspaceServer};
use proto::keyspacepb::{LoadKeyspaceRequest, LoadKeyspaceResponse};
use proto::pdpb::pd_client::PdClient;
use proto::tikvpb::tikv_client::TikvClient;
use proto::{keyspacepb, pdpb, tikvpb};

/// A transport that records the path of every request and fails it.
#[derive(Clone, Default)]
struct PathRecorder {
    paths: Arc<Mutex<Vec<String>>>,
}

impl PathRecorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.paths.lock().expect("recorder lock"))
    }
}

impl tonic::codegen::Service<http::Request<Body>> for PathRecorder {
    type Response = http::Response<Body>;
    type Error = tonic::codegen::StdError;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.paths.lock().expect("recorder lock").push(req.uri().path().to_owned());
        std::future::ready(Err("recorded, not sent".into()))
    }
}

/// Drives a future that never waits on I/O to completion.
///
/// # Panics
/// If the future is still pending after a bounded number of polls, which
/// would mean the client waited on something the recorder never provides.
fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..16 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("client call did not complete against the recording transport");
}

fn empty<T>() -> tokio_stream::Iter<std::vec::IntoIter<T>> {
    tokio_stream::iter(Vec::new())
}

#[test]
fn service_names_match_kvproto() {
    assert_eq!(tikvpb::tikv_server::SERVICE_NAME, "tikvpb.Tikv");
    assert_eq!(pdpb::pd_server::SERVICE_NAME, "pdpb.PD");
    assert_eq!(keyspacepb::keyspace_server::SERVICE_NAME, "keyspacepb.Keyspace");
}

struct NoKeyspaces;

#[tonic::async_trait]
impl Keyspace for NoKeyspaces {
    async fn load_keyspace(
        &self,
        _request: tonic::Request<LoadKeyspaceRequest>,
    ) -> Result<tonic::Response<LoadKeyspaceResponse>, tonic::Status> {
        Err(tonic::Status::not_found("no keyspaces"))
    }
}

#[test]
fn generated_server_reports_its_name_through_named_service() {
    fn name_of<S: NamedService>(_: &S) -> &'static str {
        S::NAME
    }
    assert_eq!(name_of(&KeyspaceServer::new(NoKeyspaces)), "keyspacepb.Keyspace");
}

#[test]
fn tikv_method_paths_match_kvproto() {
    let rec = PathRecorder::default();
    let mut c = TikvClient::new(rec.clone());
    assert!(run(c.raw_get(proto::kvrpcpb::RawGetRequest::default())).is_err());
    assert!(run(c.raw_batch_get(proto::kvrpcpb::RawBatchGetRequest::default())).is_err());
    assert!(run(c.raw_put(proto::kvrpcpb::RawPutRequest::default())).is_err());
    assert!(run(c.raw_batch_put(proto::kvrpcpb::RawBatchPutRequest::default())).is_err());
    assert!(run(c.raw_delete(proto::kvrpcpb::RawDeleteRequest::default())).is_err());
    assert!(run(c.raw_batch_delete(proto::kvrpcpb::RawBatchDeleteRequest::default())).is_err());
    assert!(run(c.raw_scan(proto::kvrpcpb::RawScanRequest::default())).is_err());
    assert!(run(c.raw_delete_range(proto::kvrpcpb::RawDeleteRangeRequest::default())).is_err());
    assert!(run(c.raw_batch_scan(proto::kvrpcpb::RawBatchScanRequest::default())).is_err());
    assert!(run(c.raw_get_key_ttl(proto::kvrpcpb::RawGetKeyTtlRequest::default())).is_err());
    assert!(run(c.raw_compare_and_swap(proto::kvrpcpb::RawCasRequest::default())).is_err());
    assert!(
        run(c.unsafe_destroy_range(proto::kvrpcpb::UnsafeDestroyRangeRequest::default())).is_err()
    );
    assert!(run(c.kv_scan_lock(proto::kvrpcpb::ScanLockRequest::default())).is_err());
    assert!(run(c.split_region(proto::kvrpcpb::SplitRegionRequest::default())).is_err());
    assert!(run(c.raft(empty::<proto::raft_serverpb::RaftMessage>())).is_err());
    assert!(run(c.batch_raft(empty::<tikvpb::BatchRaftMessage>())).is_err());
    assert!(run(c.snapshot(empty::<proto::raft_serverpb::SnapshotChunk>())).is_err());

    let expected: Vec<String> = [
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
    ]
    .iter()
    .map(|m| format!("/tikvpb.Tikv/{m}"))
    .collect();
    assert_eq!(rec.take(), expected);
}

#[test]
fn pd_method_paths_match_kvproto() {
    let rec = PathRecorder::default();
    let mut c = PdClient::new(rec.clone());
    assert!(run(c.get_members(pdpb::GetMembersRequest::default())).is_err());
    assert!(run(c.tso(empty::<pdpb::TsoRequest>())).is_err());
    assert!(run(c.bootstrap(pdpb::BootstrapRequest::default())).is_err());
    assert!(run(c.is_bootstrapped(pdpb::IsBootstrappedRequest::default())).is_err());
    assert!(run(c.alloc_id(pdpb::AllocIdRequest::default())).is_err());
    assert!(run(c.get_store(pdpb::GetStoreRequest::default())).is_err());
    assert!(run(c.put_store(pdpb::PutStoreRequest::default())).is_err());
    assert!(run(c.get_all_stores(pdpb::GetAllStoresRequest::default())).is_err());
    assert!(run(c.store_heartbeat(pdpb::StoreHeartbeatRequest::default())).is_err());
    assert!(run(c.region_heartbeat(empty::<pdpb::RegionHeartbeatRequest>())).is_err());
    assert!(run(c.get_region(pdpb::GetRegionRequest::default())).is_err());
    assert!(run(c.get_prev_region(pdpb::GetRegionRequest::default())).is_err());
    assert!(run(c.get_region_by_id(pdpb::GetRegionByIdRequest::default())).is_err());
    assert!(run(c.scan_regions(pdpb::ScanRegionsRequest::default())).is_err());
    assert!(run(c.ask_batch_split(pdpb::AskBatchSplitRequest::default())).is_err());
    assert!(run(c.report_batch_split(pdpb::ReportBatchSplitRequest::default())).is_err());
    assert!(run(c.get_cluster_config(pdpb::GetClusterConfigRequest::default())).is_err());
    assert!(run(c.put_cluster_config(pdpb::PutClusterConfigRequest::default())).is_err());
    assert!(run(c.scatter_region(pdpb::ScatterRegionRequest::default())).is_err());
    assert!(run(c.get_gc_safe_point(pdpb::GetGcSafePointRequest::default())).is_err());
    assert!(run(c.update_gc_safe_point(pdpb::UpdateGcSafePointRequest::default())).is_err());

    let expected: Vec<String> = [
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
    ]
    .iter()
    .map(|m| format!("/pdpb.PD/{m}"))
    .collect();
    assert_eq!(rec.take(), expected);
}

#[test]
fn keyspace_method_path_matches_kvproto() {
    let rec = PathRecorder::default();
    let mut c = KeyspaceClient::new(rec.clone());
    assert!(run(c.load_keyspace(LoadKeyspaceRequest::default())).is_err());
    assert_eq!(rec.take(), ["/keyspacepb.Keyspace/LoadKeyspace"]);
}
