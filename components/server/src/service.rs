//! `tikvpb.Tikv`: the gRPC edge of a store. Handlers validate, call [`Storage`], and map the
//! outcome: region problems into `region_error` (the client retries elsewhere), invalid input
//! into the string `error` (the client gives up) or, for responses without one (batch get,
//! scans), an `INVALID_ARGUMENT` status; never a panic, and never a gRPC status for a region
//! problem (the client would not retry a scan).
//!
//! Every raw KV request is counted and timed by method and result (`metrics::GrpcMetrics`).
//!
//! Raft traffic from other stores arrives on `BatchRaft` (and the older `Raft`) streams and is
//! handed to the raftstore router.

use engine_traits::{KvEngine, RaftEngine};
use proto::errorpb;
use proto::kvrpcpb::*;
use proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use proto::tikvpb::tikv_server::Tikv;
use proto::tikvpb::BatchRaftMessage;
use raftstore::{snap, RaftRouter, SnapManager};
use slog::{debug, Logger};
use tonic::{Request, Response, Status, Streaming};

use crate::fault;
use crate::metrics::{GrpcMetrics, RpcMethod, RpcResult, RpcTimer};
use crate::storage::{Error, Storage};

/// Longest wait for the next chunk of a snapshot stream before it is abandoned.
const SNAP_CHUNK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The next chunk of a snapshot stream, waiting at most `SNAP_CHUNK_WAIT_MAX`.
async fn next_snapshot_chunk(
    stream: &mut Streaming<SnapshotChunk>,
) -> Result<Option<SnapshotChunk>, Status> {
    match tokio::time::timeout(SNAP_CHUNK_WAIT_MAX, stream.message()).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("snapshot stream stalled")),
    }
}

pub struct Service<EK: KvEngine, ER: RaftEngine> {
    storage: Storage<EK, ER>,
    router: RaftRouter<EK, ER>,
    /// Receives snapshot files (`snapshot`).
    snap_mgr: SnapManager,
    metrics: GrpcMetrics,
    logger: Logger,
}

impl<EK: KvEngine, ER: RaftEngine> Service<EK, ER> {
    pub fn new(
        storage: Storage<EK, ER>,
        router: RaftRouter<EK, ER>,
        snap_mgr: SnapManager,
        metrics: GrpcMetrics,
        logger: Logger,
    ) -> Self {
        Service { storage, router, snap_mgr, metrics, logger }
    }
}

fn ctx(c: &Option<Context>) -> Result<Context, Error> {
    if fault::kv_refused() {
        return Err(Error::Unavailable("fault injected: request refused".into()));
    }
    c.clone().ok_or_else(|| Error::Invalid("request without a context".into()))
}

/// What every raw response has: a region error, and (most) an error string.
trait RawResponse: Default {
    fn set_region_error(&mut self, e: errorpb::Error);
    /// Puts a non-region error in the response; gives it back if the response has no
    /// error field (it then travels as a gRPC status).
    fn set_error(&mut self, e: String) -> Result<(), String>;
}

macro_rules! raw_response {
    (string: $($t:ty),*) => {$(impl RawResponse for $t {
        fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
        fn set_error(&mut self, e: String) -> Result<(), String> { self.error = e; Ok(()) }
    })*};
    (no_string: $($t:ty),*) => {$(impl RawResponse for $t {
        fn set_region_error(&mut self, e: errorpb::Error) { self.region_error = Some(e); }
        fn set_error(&mut self, e: String) -> Result<(), String> { Err(e) }
    })*};
}
raw_response!(string: RawGetResponse, RawPutResponse, RawBatchPutResponse, RawDeleteResponse,
    RawBatchDeleteResponse, RawDeleteRangeResponse, RawGetKeyTtlResponse, RawCasResponse);
raw_response!(no_string: RawBatchGetResponse, RawScanResponse, RawBatchScanResponse);

/// Records the request in `timer`, then builds its response.
fn respond<T: RawResponse, V>(
    timer: RpcTimer<'_>,
    res: Result<V, Error>,
    fill: impl FnOnce(&mut T, V),
) -> Result<Response<T>, Status> {
    timer.finish(match &res {
        Ok(_) => RpcResult::Ok,
        Err(Error::Region(_)) => RpcResult::RegionError,
        Err(Error::Invalid(_) | Error::Engine(_) | Error::Unavailable(_)) => RpcResult::Error,
    });
    if fault::kv_response_lost() {
        return Err(Status::unavailable("fault injected: response lost"));
    }
    let mut resp = T::default();
    match res {
        Ok(v) => fill(&mut resp, v),
        Err(Error::Region(e)) => resp.set_region_error(e),
        Err(Error::Invalid(m)) => resp.set_error(m).map_err(Status::invalid_argument)?,
        Err(Error::Engine(m)) => resp.set_error(m).map_err(Status::internal)?,
        Err(Error::Unavailable(m)) => return Err(Status::unavailable(m)),
    }
    Ok(Response::new(resp))
}

#[tonic::async_trait]
impl<EK: KvEngine, ER: RaftEngine> Tikv for Service<EK, ER> {
    async fn raw_get(
        &self,
        req: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawGet);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_get(&c, &r.cf, &r.key).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawGetResponse, v| match v {
            Some(v) => resp.value = v,
            None => resp.not_found = true,
        })
    }

    async fn raw_batch_get(
        &self,
        req: Request<RawBatchGetRequest>,
    ) -> Result<Response<RawBatchGetResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawBatchGet);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_batch_get(&c, &r.cf, &r.keys).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawBatchGetResponse, pairs| resp.pairs = pairs)
    }

    async fn raw_put(
        &self,
        req: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawPut);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_put(&c, &r.cf, &r.key, &r.value, r.ttl, r.for_cas).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |_r: &mut RawPutResponse, _x| {})
    }

    async fn raw_batch_put(
        &self,
        req: Request<RawBatchPutRequest>,
    ) -> Result<Response<RawBatchPutResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawBatchPut);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_batch_put(&c, &r.cf, &r.pairs, &r.ttls, r.for_cas).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |_r: &mut RawBatchPutResponse, _x| {})
    }

    async fn raw_delete(
        &self,
        req: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawDelete);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_delete(&c, &r.cf, &r.key, r.for_cas).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |_r: &mut RawDeleteResponse, _x| {})
    }

    async fn raw_batch_delete(
        &self,
        req: Request<RawBatchDeleteRequest>,
    ) -> Result<Response<RawBatchDeleteResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawBatchDelete);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_batch_delete(&c, &r.cf, &r.keys).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |_r: &mut RawBatchDeleteResponse, _x| {})
    }

    async fn raw_scan(
        &self,
        req: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawScan);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => {
                self.storage
                    .raw_scan(&c, &r.cf, &r.start_key, &r.end_key, r.limit, r.key_only, r.reverse)
                    .await
            }
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawScanResponse, kvs| resp.kvs = kvs)
    }

    async fn raw_delete_range(
        &self,
        req: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawDeleteRange);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_delete_range(&c, &r.cf, &r.start_key, &r.end_key).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |_r: &mut RawDeleteRangeResponse, _x| {})
    }

    async fn raw_batch_scan(
        &self,
        req: Request<RawBatchScanRequest>,
    ) -> Result<Response<RawBatchScanResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawBatchScan);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => {
                self.storage
                    .raw_batch_scan(&c, &r.cf, &r.ranges, r.each_limit, r.key_only, r.reverse)
                    .await
            }
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawBatchScanResponse, kvs| resp.kvs = kvs)
    }

    async fn raw_get_key_ttl(
        &self,
        req: Request<RawGetKeyTtlRequest>,
    ) -> Result<Response<RawGetKeyTtlResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawGetKeyTtl);
        let r = req.into_inner();
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_get_key_ttl(&c, &r.cf, &r.key).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawGetKeyTtlResponse, ttl| match ttl {
            Some(t) => resp.ttl = t,
            None => resp.not_found = true,
        })
    }

    async fn raw_compare_and_swap(
        &self,
        req: Request<RawCasRequest>,
    ) -> Result<Response<RawCasResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::RawCompareAndSwap);
        let r = req.into_inner();
        let expected = (!r.previous_not_exist).then_some(r.previous_value.as_slice());
        let res = match ctx(&r.context) {
            Ok(c) => self.storage.raw_cas(&c, &r.cf, &r.key, &r.value, expected, r.ttl).await,
            Err(e) => Err(e),
        };
        respond(timer, res, |resp: &mut RawCasResponse, x| {
            let (previous, succeed) = x;
            resp.succeed = succeed;
            match previous {
                Some(v) => resp.previous_value = v,
                None => resp.previous_not_exist = true,
            }
        })
    }

    async fn unsafe_destroy_range(
        &self,
        _req: Request<UnsafeDestroyRangeRequest>,
    ) -> Result<Response<UnsafeDestroyRangeResponse>, Status> {
        // TODO(#4 follow-up): a store-level range delete for GC; the raw client only uses it in
        // its test harness.
        Ok(Response::new(UnsafeDestroyRangeResponse {
            error: "unsafe destroy range is not supported yet".into(),
            ..Default::default()
        }))
    }

    async fn kv_scan_lock(
        &self,
        _req: Request<ScanLockRequest>,
    ) -> Result<Response<ScanLockResponse>, Status> {
        // Raw KV keeps no locks.
        Ok(Response::new(ScanLockResponse::default()))
    }

    /// Splits a region at raw keys. Invalid keys (none, empty, too long, unsorted, repeated,
    /// too many, or encoded txn keys) are an `INVALID_ARGUMENT` status, as is a key at the
    /// region's start (the leader checks order and range); a key outside the region, a stale epoch or a follower answer with the
    /// region error telling the caller where to go; PD being unreachable is `UNAVAILABLE`.
    async fn split_region(
        &self,
        req: Request<SplitRegionRequest>,
    ) -> Result<Response<SplitRegionResponse>, Status> {
        let timer = self.metrics.start(RpcMethod::SplitRegion);
        let r = req.into_inner();
        let checked = self.check_split_request(&r);
        let (ctx, keys) = match checked {
            Ok(v) => v,
            Err(e) => {
                timer.finish(RpcResult::Error);
                return Err(Status::invalid_argument(e));
            }
        };
        match self.storage.split_region(&ctx, keys).await {
            Ok(regions) => {
                timer.finish(RpcResult::Ok);
                let mut resp = SplitRegionResponse::default();
                if regions.len() == 2 {
                    resp.left = Some(regions[0].clone());
                    resp.right = Some(regions[1].clone());
                }
                resp.regions = regions;
                Ok(Response::new(resp))
            }
            Err(Error::Region(e)) => {
                timer.finish(RpcResult::RegionError);
                Ok(Response::new(SplitRegionResponse {
                    region_error: Some(e),
                    ..Default::default()
                }))
            }
            Err(Error::Invalid(m)) => {
                timer.finish(RpcResult::Error);
                Err(Status::invalid_argument(m))
            }
            Err(Error::Unavailable(m)) => {
                timer.finish(RpcResult::Error);
                Err(Status::unavailable(m))
            }
            Err(Error::Engine(m)) => {
                timer.finish(RpcResult::Error);
                Err(Status::internal(m))
            }
        }
    }

    async fn raft(&self, req: Request<Streaming<RaftMessage>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(msg) = stream.message().await? {
            self.deliver(msg);
        }
        Ok(Response::new(Done {}))
    }

    async fn batch_raft(
        &self,
        req: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            for msg in batch.msgs {
                self.deliver(msg);
            }
        }
        Ok(Response::new(Done {}))
    }

    /// A snapshot from another store: the first chunk carries the raft message, the rest the
    /// files' bytes in the meta's order. The files are received and checked (sizes, crc32,
    /// keys inside the region) before the message is handed to the peer; a stream that breaks, lies about its sizes
    /// or stalls longer than `SNAP_CHUNK_WAIT_MAX` leaves nothing behind. Beyond
    /// `concurrent-recv-snap-limit` streams the answer is RESOURCE_EXHAUSTED (the sender
    /// retries later).
    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        let first = next_snapshot_chunk(&mut stream)
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let msg = first
            .message
            .ok_or_else(|| Status::invalid_argument("the first chunk carries no raft message"))?;
        let (key, meta, region) = raftstore::transport::snapshot_files(&msg)
            .ok_or_else(|| Status::invalid_argument("the raft message is not a region snapshot"))?;
        let mut receiver = match self.snap_mgr.receiver(key, &meta, &region) {
            Ok(r) => Some(r),
            // Received before (a resend): deliver the message again, skip the bytes.
            Err(snap::Error::Exists { .. }) => None,
            Err(e @ (snap::Error::Busy { .. } | snap::Error::InUse { .. })) => {
                return Err(Status::resource_exhausted(e.to_string()))
            }
            Err(e) => return Err(Status::invalid_argument(e.to_string())),
        };
        let mut write = |data: &[u8]| -> Result<(), Status> {
            match receiver.as_mut() {
                // File writes block: keep them off the async workers' hot path.
                Some(r) => tokio::task::block_in_place(|| r.write(data))
                    .map_err(|e| Status::invalid_argument(e.to_string())),
                None => Ok(()),
            }
        };
        write(&first.data)?;
        while let Some(chunk) = next_snapshot_chunk(&mut stream).await? {
            write(&chunk.data)?;
        }
        if let Some(r) = receiver {
            tokio::task::block_in_place(|| r.finish())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        debug!(self.logger, "snapshot received"; "key" => %key);
        self.deliver(msg);
        Ok(Response::new(Done {}))
    }
}

impl<EK: KvEngine, ER: RaftEngine> Service<EK, ER> {
    /// The context and the split keys of a split request, or why it is invalid.
    fn check_split_request(
        &self,
        r: &SplitRegionRequest,
    ) -> Result<(Context, Vec<Vec<u8>>), String> {
        let ctx = r.context.clone().ok_or("request without a context")?;
        if !r.is_raw_kv {
            // Txn keys are split in their memcomparable encoding, which this raw store does
            // not use: boundaries would fall between the wrong keys.
            return Err("only raw key splits are supported: set is_raw_kv".into());
        }
        let keys = match (r.split_key.is_empty(), r.split_keys.is_empty()) {
            (false, false) => return Err("set split_key or split_keys, not both".into()),
            (false, true) => vec![r.split_key.clone()],
            (true, false) => r.split_keys.clone(),
            (true, true) => return Err("no split key".into()),
        };
        if keys.len() > raftstore::apply::split::SPLIT_KEYS_MAX {
            return Err(format!(
                "{} split keys; at most {} per request",
                keys.len(),
                raftstore::apply::split::SPLIT_KEYS_MAX
            ));
        }
        // Order, distinctness and the region's range are checked by the region's leader
        // (`raftstore::util::validate_split_keys`), which knows the range.
        for (i, k) in keys.iter().enumerate() {
            self.storage.check_key(k).map_err(|e| format!("split key {i}: {e}"))?;
        }
        Ok((ctx, keys))
    }

    fn deliver(&self, msg: RaftMessage) {
        let region_id = msg.region_id;
        if let Err(e) = self.router.send_raft_message(msg) {
            // A full mailbox or a stopping store: raft retransmits.
            debug!(self.logger, "raft message dropped"; "region_id" => region_id, "err" => %e);
        }
    }
}
