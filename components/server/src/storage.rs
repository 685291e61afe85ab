//! Raw KV on top of the raftstore: turns `kvrpcpb` raw requests into raft commands and reads,
//! and owns the value format and the per-key latches.
//!
//! Value format (every value written through this layer): `user value ++ expire_at (u64, big
//! endian, unix seconds; 0 = never)`, TiKV's API-V1TTL layout. Reads treat an expired value as
//! absent; expired values are removed from disk by compaction (see `engine_rocks`).
//!
//! Atomicity: compare-and-swap, and writes in atomic mode (`for_cas`), take the latch of their
//! key(s) for the whole read-check-write, so a CAS never interleaves with another atomic write
//! of the same key. Plain writes skip latches (the client refuses to mix modes).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use engine_traits::{KvEngine, RaftEngine};
use proto::errorpb;
use proto::kvrpcpb::Context;
use proto::raft_cmdpb::{
    CmdType, DeleteRangeRequest, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader,
    Request, SnapRequest,
};
use raftstore::{Callback, RaftRouter, RegionSnapshot};
use tokio::sync::oneshot;

use crate::latch::Latches;

/// Limits on one request, checked before anything is proposed.
#[derive(Debug, Clone)]
pub struct Limits {
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub batch_keys_max: usize,
    pub scan_limit_max: u32,
    /// Scans and batch gets whose response would pass this are refused (the client decodes
    /// at most 4 MiB); a short page would read as the end of the range.
    pub response_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // TiKV's defaults: 8 KiB keys (`max-key-size`), values bounded by the raft entry.
            key_bytes_max: 8 * 1024,
            value_bytes_max: 6 * 1024 * 1024,
            batch_keys_max: 100_000,
            scan_limit_max: 10_240,
            response_bytes_max: 3 * 1024 * 1024 + 512 * 1024,
        }
    }
}

/// Why a raw request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Retry elsewhere: goes to `region_error`.
    #[error("region error: {}", .0.message)]
    Region(errorpb::Error),
    /// The request is invalid: goes to the string `error` field (the client does not retry).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Stored data cannot be read.
    #[error("storage error: {0}")]
    Engine(String),
    /// A service the request needs (PD) cannot answer now; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<raftstore::Error> for Error {
    /// What a raw KV client sees of a raftstore error. Errors stay typed up to here; this and
    /// `raftstore::Error::into_region_error` (the `errorpb` shape) are the only mapping.
    fn from(e: raftstore::Error) -> Error {
        use raftstore::Error as E;
        match e {
            E::NotLeader { .. }
            | E::RegionNotFound(_)
            | E::KeyNotInRegion { .. }
            | E::EpochNotMatch { .. }
            | E::StoreNotMatch { .. }
            | E::RaftEntryTooLarge { .. }
            | E::StaleCommand
            | E::Undetermined(_)
            | E::ServerIsBusy(_)
            | E::ProposalInMergingMode(_)
            | E::ReadIndexNotReady { .. } => Error::Region(e.into_region_error()),
            E::Pd(e) => Error::Unavailable(format!("placement driver: {e}")),
            E::InvalidRequest(m) => Error::Invalid(m),
            E::Engine(e) => Error::Engine(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

const TTL_SUFFIX_LEN: usize = 8;

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Encodes a value with its expiry (`ttl_secs == 0`: never expires).
pub fn encode_value(value: &[u8], ttl_secs: u64) -> Vec<u8> {
    let expire_at = if ttl_secs == 0 { 0 } else { now_secs().saturating_add(ttl_secs) };
    let mut v = Vec::with_capacity(value.len() + TTL_SUFFIX_LEN);
    v.extend_from_slice(value);
    v.extend_from_slice(&expire_at.to_be_bytes());
    v
}

/// Splits a stored value into the user value and its expiry; `None` if malformed.
pub fn decode_value(stored: &[u8]) -> Option<(&[u8], u64)> {
    let split = stored.len().checked_sub(TTL_SUFFIX_LEN)?;
    let (value, ts) = stored.split_at(split);
    Some((value, u64::from_be_bytes(ts.try_into().ok()?)))
}

/// The live user value of a stored value at `now`: `None` if expired.
pub fn live_value(stored: &[u8], now: u64) -> Result<Option<&[u8]>> {
    let (value, expire_at) =
        decode_value(stored).ok_or_else(|| Error::Engine("stored value is too short".into()))?;
    Ok((expire_at == 0 || expire_at > now).then_some(value))
}

pub fn data_cf(cf: &str) -> Result<&'static str> {
    raftstore::apply::data_cf(cf).map_err(|e| Error::Invalid(e.to_string()))
}

/// How long a request waits for room in a full region mailbox before `ServerIsBusy`.
const MAILBOX_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Storage<EK: KvEngine, ER: RaftEngine> {
    router: RaftRouter<EK, ER>,
    latches: Arc<Latches>,
    pub limits: Limits,
}

impl<EK: KvEngine, ER: RaftEngine> Clone for Storage<EK, ER> {
    fn clone(&self) -> Self {
        Storage {
            router: self.router.clone(),
            latches: self.latches.clone(),
            limits: self.limits.clone(),
        }
    }
}

fn header(ctx: &Context) -> RaftRequestHeader {
    RaftRequestHeader {
        region_id: ctx.region_id,
        peer: ctx.peer.clone(),
        region_epoch: ctx.region_epoch,
        term: ctx.term,
        ..Default::default()
    }
}

impl<EK: KvEngine, ER: RaftEngine> Storage<EK, ER> {
    pub fn new(router: RaftRouter<EK, ER>, limits: Limits) -> Self {
        Storage { router, latches: Arc::new(Latches::new(2048)), limits }
    }

    pub fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::Invalid("empty key".into()));
        }
        if key.len() > self.limits.key_bytes_max {
            return Err(Error::Invalid(format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                self.limits.key_bytes_max
            )));
        }
        Ok(())
    }

    pub fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.limits.value_bytes_max {
            return Err(Error::Invalid(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                self.limits.value_bytes_max
            )));
        }
        Ok(())
    }

    pub fn check_batch(&self, n: usize) -> Result<()> {
        if n > self.limits.batch_keys_max {
            return Err(Error::Invalid(format!(
                "batch of {n} keys exceeds {}",
                self.limits.batch_keys_max
            )));
        }
        Ok(())
    }

    async fn call(&self, req: RaftCmdRequest) -> Result<raftstore::CmdResponse<EK::Snapshot>> {
        let (tx, rx) = oneshot::channel();
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let cmd = raftstore::RaftCommand::new(
            req,
            Callback::new(region_id.into(), move |resp| {
                let _ = tx.send(resp);
            }),
        );
        self.send_waiting(cmd).await;
        // Callbacks always answer (even when dropped); only a dropped sender makes `rx` fail.
        let resp = rx.await.unwrap_or(Err(raftstore::Error::RegionNotFound(region_id.into())))?;
        Ok(resp)
    }

    /// Hands `cmd` to its region. A full mailbox is waited out (backing off up to
    /// `MAILBOX_WAIT_MAX`) rather than answered `ServerIsBusy` at once: the official client
    /// does not retry that error, it fails the user's request. The wait is bounded by the
    /// requests in flight, which the clients and gRPC bound.
    async fn send_waiting(&self, mut cmd: raftstore::RaftCommand<EK::Snapshot>) {
        let deadline = tokio::time::Instant::now() + MAILBOX_WAIT_MAX;
        let mut backoff = std::time::Duration::from_millis(1);
        loop {
            match self.router.try_send_command(cmd) {
                Ok(()) => return,
                Err(back) if tokio::time::Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(50));
                    cmd = back;
                }
                Err(back) => {
                    let region_id = back.request.header.as_ref().map_or(0, |h| h.region_id);
                    let e = raftstore::Error::ServerIsBusy(format!(
                        "mailbox of region {region_id} stayed full for {MAILBOX_WAIT_MAX:?}"
                    ));
                    back.callback.invoke_with_error(e);
                    return;
                }
            }
        }
    }

    /// A linearizable snapshot of the context's region.
    pub async fn snapshot(&self, ctx: &Context) -> Result<RegionSnapshot<EK::Snapshot>> {
        let req = RaftCmdRequest {
            header: Some(header(ctx)),
            requests: vec![Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            }],
            ..Default::default()
        };
        let resp = self.call(req).await?;
        resp.snapshot.ok_or_else(|| Error::Engine("read answered without a snapshot".into()))
    }

    /// Proposes `requests` as one raft command and waits for it to apply.
    pub async fn write(&self, ctx: &Context, requests: Vec<Request>) -> Result<()> {
        let req = RaftCmdRequest { header: Some(header(ctx)), requests, ..Default::default() };
        self.call(req).await.map(|_| ())
    }

    /// Splits the context's region at `keys` (checked by the caller: sorted, distinct, not
    /// empty) and returns every resulting region in key order. The leader allocates ids from
    /// PD; the split is done when it has applied.
    pub async fn split_region(
        &self,
        ctx: &Context,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<proto::metapb::Region>> {
        let (tx, rx) = oneshot::channel();
        let region_id = ctx.region_id;
        let epoch = ctx.region_epoch.unwrap_or_default();
        self.router.split_region(
            region_id.into(),
            epoch,
            keys,
            Callback::new(region_id.into(), move |resp| {
                let _ = tx.send(resp);
            }),
        );
        let resp = rx.await.unwrap_or(Err(raftstore::Error::RegionNotFound(region_id.into())))?;
        resp.response
            .admin_response
            .and_then(|a| a.splits)
            .map(|s| s.regions)
            .ok_or_else(|| Error::Engine("split answered without regions".into()))
    }

    pub fn latches(&self) -> &Latches {
        &self.latches
    }
}

pub fn put_request(cf: &str, key: &[u8], stored_value: Vec<u8>) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest { cf: cf.to_string(), key: key.to_vec(), value: stored_value }),
        ..Default::default()
    }
}

pub fn delete_request(cf: &str, key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Delete as i32,
        delete: Some(DeleteRequest { cf: cf.to_string(), key: key.to_vec() }),
        ..Default::default()
    }
}

pub fn delete_range_request(cf: &str, start: &[u8], end: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::DeleteRange as i32,
        delete_range: Some(DeleteRangeRequest {
            cf: cf.to_string(),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            notify_only: false,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_format_round_trips_and_expires() {
        let v = encode_value(b"abc", 0);
        assert_eq!(decode_value(&v), Some((&b"abc"[..], 0)));
        assert_eq!(live_value(&v, u64::MAX - 1).unwrap(), Some(&b"abc"[..]));
        let v = encode_value(b"", 10);
        let (val, exp) = decode_value(&v).unwrap();
        assert!(val.is_empty());
        assert!(exp >= now_secs() + 9);
        assert_eq!(live_value(&v, exp).unwrap(), None, "expired at its deadline");
        assert!(live_value(b"short", 0).is_err());
    }
}
