//! A routing raw-KV client: finds a key's region and leader through PD, caches regions and
//! store channels, follows `NotLeader` hints and retries retryable region errors with backoff
//! — the same rules as the official client, so the ctl and tests take the users' path.
//!
//! It is deliberately small: one key or one region at a time (batches and scans within a
//! region, and scans that walk regions in order). The official `tikv-client` is the real
//! client; this one exists so our own tools need no second gRPC stack.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pd_client::{PdClient, RegionInfo};
use proto::errorpb;
use proto::kvrpcpb::{self, Context, KvPair};
use proto::metapb;
use proto::tikvpb::tikv_client::TikvClient;
use tonic::transport::{Channel, Endpoint};

const BACKOFF_START: Duration = Duration::from_millis(2);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// How long a split waits for PD to route its new regions before it returns anyway.
const PD_ROUTING_WAIT: Duration = Duration::from_secs(10);
/// The server's scan limit (TiKV's, which the official client enforces too).
const SCAN_PAGE_MAX: u32 = 10_240;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pd(#[from] pd_client::Error),
    #[error("no region holds key {0:?} (is the cluster bootstrapped?)")]
    NoRegion(Vec<u8>),
    #[error("store {store_id} at {addr}: {message}")]
    Store { store_id: u64, addr: String, message: String },
    #[error("region error after {attempts} attempts: {last:?}")]
    Region { attempts: usize, last: Box<errorpb::Error> },
    #[error("{0}")]
    Server(String),
    #[error("gRPC: {0}")]
    Grpc(#[from] tonic::Status),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a store answered: a value, or a region error to retry on.
enum Attempt<T> {
    Done(T),
    Retry(errorpb::Error),
}

pub struct RawClient {
    pd: Arc<PdClient>,
    regions: Mutex<HashMap<u64, RegionInfo>>,
    stores: Mutex<HashMap<u64, (String, TikvClient<Channel>)>>,
    timeout: Duration,
}

impl RawClient {
    pub fn new(pd: Arc<PdClient>) -> RawClient {
        RawClient {
            pd,
            regions: Mutex::new(HashMap::new()),
            stores: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    async fn region_for_key(&self, key: &[u8]) -> Result<RegionInfo> {
        let cached = self.regions.lock().values().find(|r| key_in(key, &r.region)).cloned();
        if let Some(r) = cached {
            return Ok(r);
        }
        let info = self.pd.get_region(key).await?.ok_or_else(|| Error::NoRegion(key.to_vec()))?;
        self.regions.lock().insert(info.region.id, info.clone());
        Ok(info)
    }

    async fn store_client(&self, store_id: u64) -> Result<TikvClient<Channel>> {
        if let Some((_, c)) = self.stores.lock().get(&store_id) {
            return Ok(c.clone());
        }
        let store = self.pd.get_store(store_id).await?;
        let addr = store.address.clone();
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Store { store_id, addr: addr.clone(), message: e.to_string() })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| Error::Store { store_id, addr: addr.clone(), message: e.to_string() })?;
        let client = TikvClient::new(channel).max_decoding_message_size(64 << 20);
        self.stores.lock().insert(store_id, (addr, client.clone()));
        Ok(client)
    }

    fn invalidate(&self, region_id: u64, store_id: Option<u64>) {
        self.regions.lock().remove(&region_id);
        if let Some(s) = store_id {
            self.stores.lock().remove(&s);
        }
    }

    /// Runs `call` against the leader of `key`'s region until it succeeds, fails for good,
    /// or the timeout passes.
    async fn with_leader<T, F, Fut>(&self, key: &[u8], mut call: F) -> Result<T>
    where
        F: FnMut(TikvClient<Channel>, Context, metapb::Region) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt<T>>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = BACKOFF_START;
        let mut attempts = 0;
        // The last answer: a region error, or a store that could not be reached.
        let mut last: Option<Error> = None;
        while Instant::now() < deadline {
            attempts += 1;
            let info = match self.region_for_key(key).await {
                Ok(i) => i,
                Err(e) if Instant::now() + backoff >= deadline => return Err(e),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let Some(leader) = info.leader.clone().or_else(|| info.region.peers.first().cloned())
            else {
                return Err(Error::NoRegion(key.to_vec()));
            };
            let ctx = Context {
                region_id: info.region.id,
                region_epoch: info.region.region_epoch,
                peer: Some(leader.clone()),
                ..Default::default()
            };
            let outcome = match self.store_client(leader.store_id).await {
                Ok(c) => call(c, ctx, info.region.clone()).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Attempt::Done(v)) => return Ok(v),
                Ok(Attempt::Retry(e)) => {
                    if let Some(l) = e.not_leader.as_ref().and_then(|n| n.leader.clone()) {
                        // Follow the hint at once.
                        let mut regions = self.regions.lock();
                        if let Some(r) = regions.get_mut(&info.region.id) {
                            r.leader = Some(l);
                        }
                    } else {
                        self.invalidate(
                            info.region.id,
                            e.store_not_match.as_ref().map(|_| leader.store_id),
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    last = Some(Error::Region { attempts, last: Box::new(e) });
                }
                Err(e @ (Error::Grpc(_) | Error::Store { .. })) => {
                    // The store may be down: ask PD again and try another peer.
                    self.invalidate(info.region.id, Some(leader.store_id));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(Error::Region { last, .. }) => Error::Region { attempts, last },
            Some(e) => e,
            None => Error::Region { attempts, last: Box::default() },
        })
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_leader(key, |mut c, ctx, _| {
            let req = kvrpcpb::RawGetRequest {
                context: Some(ctx),
                key: key.to_vec(),
                ..Default::default()
            };
            async move {
                let r = c.raw_get(req).await?.into_inner();
                Ok(match (r.region_error, r.error) {
                    (Some(e), _) => Attempt::Retry(e),
                    (None, e) if !e.is_empty() => return Err(Error::Server(e)),
                    _ => Attempt::Done((!r.not_found).then_some(r.value)),
                })
            }
        })
        .await
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.with_leader(key, |mut c, ctx, _| {
            let req = kvrpcpb::RawPutRequest {
                context: Some(ctx),
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            };
            async move {
                let r = c.raw_put(req).await?.into_inner();
                unit(r.region_error, r.error)
            }
        })
        .await
    }

    /// Splits the region holding `keys[0]` at `keys` (sorted, distinct, all in that region)
    /// and returns every resulting region in key order. With `region_id`, the keys must lie in
    /// that region. Invalid keys are an error at once; region errors are retried as for data.
    pub async fn split_region(
        &self,
        region_id: Option<u64>,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<metapb::Region>> {
        let first = keys.first().ok_or_else(|| Error::Server("no split key".into()))?.clone();
        // Fresh routing: a split is rarely repeated, and a stale cache would only cost a retry.
        let info = self.region_from_pd(&first).await?;
        if let Some(id) = region_id {
            if info.region.id != id {
                let Some(r) = self.pd.get_region_by_id(id).await? else {
                    return Err(Error::Server(format!("PD knows no region {id}")));
                };
                return Err(Error::Server(format!(
                    "key \"{}\" is not in region {id} [\"{}\", \"{}\") but in region {}",
                    first.escape_ascii(),
                    r.region.start_key.escape_ascii(),
                    r.region.end_key.escape_ascii(),
                    info.region.id
                )));
            }
        }
        if let Some(k) = keys.iter().find(|k| !key_in(k, &info.region)) {
            return Err(Error::Server(format!(
                "split keys span regions: \"{}\" is outside region {} [\"{}\", \"{}\"); split each region separately",
                k.escape_ascii(),
                info.region.id,
                info.region.start_key.escape_ascii(),
                info.region.end_key.escape_ascii()
            )));
        }
        let regions = self
            .with_leader(&first, |mut c, ctx, _| {
                let req = kvrpcpb::SplitRegionRequest {
                    context: Some(ctx),
                    split_keys: keys.clone(),
                    is_raw_kv: true,
                    ..Default::default()
                };
                async move {
                    match c.split_region(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            Ok(match r.region_error {
                                Some(e) => Attempt::Retry(e),
                                None => Attempt::Done(r.regions),
                            })
                        }
                        // The request itself is wrong, or PD cannot allocate ids: final.
                        Err(s)
                            if s.code() == tonic::Code::InvalidArgument
                                || s.code() == tonic::Code::Unavailable =>
                        {
                            Err(Error::Server(s.message().to_owned()))
                        }
                        Err(s) => Err(Error::Grpc(s)),
                    }
                }
            })
            .await?;
        self.wait_for_pd_routing(&regions).await;
        Ok(regions)
    }

    /// PD's region for `key`, waiting out a hole in its routing: between a split and the
    /// reports of its regions PD may know no region for a key (the parent's shrunk range
    /// arrived first). Waits at most the client's timeout.
    async fn region_from_pd(&self, key: &[u8]) -> Result<RegionInfo> {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = BACKOFF_START;
        loop {
            match self.pd.get_region(key).await? {
                Some(info) => return Ok(info),
                None if Instant::now() + backoff >= deadline => {
                    return Err(Error::NoRegion(key.to_vec()))
                }
                None => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Waits (at most [`PD_ROUTING_WAIT`]) until PD routes every region of a finished split
    /// at its new epoch, so that the next command (`region list`, another split naming one of
    /// them) sees what the split made. The split is done either way: the store reports it to
    /// PD in the background, and a late report only delays routing.
    async fn wait_for_pd_routing(&self, regions: &[metapb::Region]) {
        let deadline = Instant::now() + PD_ROUTING_WAIT;
        let mut backoff = BACKOFF_START;
        for region in regions {
            let version = region.region_epoch.as_ref().map_or(0, |e| e.version);
            while Instant::now() < deadline {
                let known = self.pd.get_region_by_id(region.id).await.ok().flatten();
                if known.and_then(|i| i.region.region_epoch).is_some_and(|e| e.version >= version) {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        self.with_leader(key, |mut c, ctx, _| {
            let req = kvrpcpb::RawDeleteRequest {
                context: Some(ctx),
                key: key.to_vec(),
                ..Default::default()
            };
            async move {
                let r = c.raw_delete(req).await?.into_inner();
                unit(r.region_error, r.error)
            }
        })
        .await
    }

    /// Up to `limit` pairs in `[start, end)` (empty `end`: to the end), walking regions.
    /// Pages shrink when a store refuses one as too large (big values).
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        key_only: bool,
    ) -> Result<Vec<KvPair>> {
        let mut out = Vec::new();
        let mut cur = start.to_vec();
        let mut page_max = SCAN_PAGE_MAX;
        loop {
            let left = limit.saturating_sub(out.len() as u32);
            if left == 0 || (!end.is_empty() && cur.as_slice() >= end) {
                break;
            }
            let page = left.min(page_max);
            let answer = self
                .with_leader(&cur.clone(), |mut c, ctx, region| {
                    let req = kvrpcpb::RawScanRequest {
                        context: Some(ctx),
                        start_key: cur.clone(),
                        end_key: end.to_vec(),
                        limit: page,
                        key_only,
                        ..Default::default()
                    };
                    async move {
                        match c.raw_scan(req).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                Ok(match r.region_error {
                                    Some(e) => Attempt::Retry(e),
                                    None => Attempt::Done(Ok((r.kvs, region.end_key))),
                                })
                            }
                            // A page too large for one response: the caller shrinks it.
                            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                                Ok(Attempt::Done(Err(s)))
                            }
                            Err(s) => Err(Error::Grpc(s)),
                        }
                    }
                })
                .await?;
            let (mut pairs, region_end) = match answer {
                Ok(a) => a,
                Err(_) if page > 1 => {
                    page_max = (page / 2).max(1);
                    continue;
                }
                Err(s) => return Err(Error::Grpc(s)),
            };
            // While a region returns a full page, ask it again after the last key.
            if pairs.len() as u32 >= page {
                let mut next = pairs.last().expect("a full page is not empty").key.clone();
                next.push(0);
                cur = next;
                out.append(&mut pairs);
                continue;
            }
            out.append(&mut pairs);
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                break;
            }
            cur = region_end;
        }
        Ok(out)
    }
}

fn unit(region_error: Option<errorpb::Error>, error: String) -> Result<Attempt<()>> {
    match (region_error, error) {
        (Some(e), _) => Ok(Attempt::Retry(e)),
        (None, e) if !e.is_empty() => Err(Error::Server(e)),
        _ => Ok(Attempt::Done(())),
    }
}

fn key_in(key: &[u8], r: &metapb::Region) -> bool {
    key >= r.start_key.as_slice() && (r.end_key.is_empty() || key < r.end_key.as_slice())
}
