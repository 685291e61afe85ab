//! `Cluster`: N stores in one process over the in-memory transport.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_rocks::{
    open_kv_engine, open_kv_engine_losing_unsynced_writes, open_raft_engine, RocksDbConfig,
    RocksEngine, RocksRaftEngine, RocksSnapshot,
};
use engine_traits::{KvEngine, Peekable, RaftEngine, CF_DEFAULT, CF_RAFT};
use parking_lot::Mutex;
use proto::errorpb;
use proto::metapb;
use proto::metapb::ConfChangeType;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, ChangePeerV2Request, PrepareMergeRequest,
    RaftCmdRequest, RaftCmdResponse, Request,
};
use proto::raft_serverpb::RaftApplyState;
use raftstore::{
    bootstrap_region, bootstrap_store, create_store_system, Callback, Clock, CmdResult, Config,
    SnapManager, StoreMeta, StoreStatsSnapshot, StoreSystem,
};
use slog::Logger;
use tempfile::TempDir;
use util::config::ReadableSize;
use util::{ClusterId, RegionId, StoreId};

use crate::pd::TestPd;
use crate::transport::{Hub, Router, SimTransport};
use crate::util::*;
use ::util::wait::poll_until;

pub type Engines = raftstore::Engines<RocksEngine, RocksRaftEngine>;

/// Default deadline of the `must_*` helpers: generous, because a loaded CI machine is slow.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Node {
    system: StoreSystem<RocksEngine, RocksRaftEngine>,
    router: Router,
    engines: Engines,
    meta: Arc<Mutex<StoreMeta>>,
}

/// The outcome of a read through the raftstore.
pub type ReadResult = Result<Option<Vec<u8>>, errorpb::Error>;

pub struct Cluster {
    pub cfg: Arc<Config>,
    pub hub: Arc<Hub>,
    store_ids: Vec<u64>,
    dirs: HashMap<u64, TempDir>,
    nodes: BTreeMap<u64, Node>,
    /// The regions as bootstrapped; splits change them (see [`Cluster::region`]).
    regions: Vec<metapb::Region>,
    pub pd: Arc<TestPd>,
    leader_hints: Mutex<HashMap<u64, metapb::Peer>>,
    /// The clock the stores' peers read; the system clock unless set.
    clock: Option<Arc<dyn Clock>>,
    /// See [`Cluster::simulate_power_cuts`].
    power_cuts: bool,
    logger: Logger,
}

/// Peer ids are `region_id * 1000 + store_id`: unique, and readable in logs.
pub fn peer_id(region_id: u64, store_id: u64) -> u64 {
    region_id * 1000 + store_id
}

impl Cluster {
    /// `stores` stores (ids 1..=stores), and regions cut at `split_keys` (sorted), ids 1..,
    /// each with a peer on every store. Nothing runs until [`Cluster::start`].
    pub fn new(stores: u64, split_keys: &[&[u8]], cfg: Config) -> Cluster {
        Cluster::with_empty_stores(stores, 0, split_keys, cfg)
    }

    /// As [`Cluster::new`], plus `empty` more stores (ids `stores+1..`) that hold no region:
    /// they get one when a membership change adds a peer there.
    pub fn with_empty_stores(
        stores: u64,
        empty: u64,
        split_keys: &[&[u8]],
        cfg: Config,
    ) -> Cluster {
        cfg.validate().expect("test config is valid");
        let region_stores: Vec<u64> = (1..=stores).collect();
        let store_ids: Vec<u64> = (1..=stores + empty).collect();
        let mut bounds: Vec<Vec<u8>> = vec![vec![]];
        bounds.extend(split_keys.iter().map(|k| k.to_vec()));
        bounds.push(vec![]);
        let regions: Vec<metapb::Region> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let id = i as u64 + 1;
                metapb::Region {
                    id,
                    start_key: w[0].clone(),
                    end_key: w[1].clone(),
                    region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
                    peers: region_stores
                        .iter()
                        .map(|&s| metapb::Peer {
                            id: peer_id(id, s),
                            store_id: s,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect();
        let logger = test_logger();
        let mut dirs = HashMap::new();
        for &s in &store_ids {
            let dir = tempfile::Builder::new()
                .prefix(&format!("store-{s}-"))
                .tempdir()
                .expect("temp dir");
            let engines = open_engines(&dir, false, &logger);
            bootstrap_store(&engines, ClusterId(1), StoreId(s)).expect("bootstrap store");
            if region_stores.contains(&s) {
                for r in &regions {
                    bootstrap_region(&engines, StoreId(s), r).expect("bootstrap region");
                }
            }
            dirs.insert(s, dir);
        }
        Cluster {
            cfg: Arc::new(cfg),
            hub: Arc::new(Hub::default()),
            store_ids,
            dirs,
            nodes: BTreeMap::new(),
            regions,
            pd: Arc::new(TestPd::default()),
            leader_hints: Mutex::new(HashMap::new()),
            clock: None,
            power_cuts: false,
            logger,
        }
    }

    /// Makes every store started from now on read `clock` (e.g. a [`raftstore::ManualClock`]
    /// to move leases and deadlines by hand).
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = Some(clock);
    }

    pub fn start(&mut self) {
        for s in self.store_ids.clone() {
            self.start_store(s);
        }
    }

    pub fn store_ids(&self) -> &[u64] {
        &self.store_ids
    }

    /// The regions as bootstrapped.
    pub fn bootstrapped_regions(&self) -> &[metapb::Region] {
        &self.regions
    }

    /// Every region the running stores know, each in its newest version.
    pub fn regions(&self) -> Vec<metapb::Region> {
        let mut newest: HashMap<u64, metapb::Region> = HashMap::new();
        for node in self.nodes.values() {
            for r in node.meta.lock().regions() {
                match newest.get(&r.id) {
                    Some(old) if !is_newer(r, old) => {}
                    _ => {
                        newest.insert(r.id, r.clone());
                    }
                }
            }
        }
        for r in &self.regions {
            newest.entry(r.id).or_insert_with(|| r.clone());
        }
        let mut out: Vec<_> = newest.into_values().collect();
        out.sort_by(|a, b| {
            a.start_key.cmp(&b.start_key).then(
                b.region_epoch
                    .unwrap_or_default()
                    .version
                    .cmp(&a.region_epoch.unwrap_or_default().version),
            )
        });
        out
    }

    /// Opens every store's KV engine from now on so that closing it loses what it did not make
    /// durable, as a power cut would (`engine_rocks::open_kv_engine_losing_unsynced_writes`):
    /// [`Cluster::stop_store`] then acts as a power cut of that store's KV engine. The raft
    /// engine keeps its synced writes, as it would. Call before starting the stores.
    pub fn simulate_power_cuts(&mut self) {
        assert!(self.nodes.is_empty(), "set before the stores start");
        self.power_cuts = true;
    }

    /// Starts (or restarts) a store from its data directory.
    pub fn start_store(&mut self, store_id: u64) {
        self.try_start_store(store_id).expect("store starts");
    }

    /// Starts (or restarts) a store; the error if it refuses to (e.g. corrupted state).
    pub fn try_start_store(&mut self, store_id: u64) -> Result<(), raftstore::StartError> {
        assert!(!self.nodes.contains_key(&store_id), "store {store_id} is running");
        let engines = open_engines(&self.dirs[&store_id], self.power_cuts, &self.logger);
        let logger = self.logger.new(slog::o!("store_id" => store_id));
        let (router, mut system) = create_store_system(&self.cfg, &logger).expect("store system");
        if let Some(clock) = &self.clock {
            system.set_clock(clock.clone());
        }
        let meta = Arc::new(Mutex::new(StoreMeta::new(StoreId(store_id))));
        let snaps = SnapManager::new(
            self.dirs[&store_id].path().join("snap"),
            &self.cfg,
            <RocksEngine as KvEngine>::sst_key_range,
            logger.clone(),
        )
        .expect("snapshot directory");
        self.hub.register(store_id, router.clone(), snaps.clone());
        let transport = SimTransport::new(StoreId(store_id), self.hub.clone());
        let started = system.start(
            StoreId(store_id),
            self.cfg.clone(),
            engines.clone(),
            transport,
            self.pd.clone(),
            meta.clone(),
            snaps,
        );
        if let Err(e) = started {
            self.hub.unregister(store_id);
            return Err(e);
        }
        self.nodes.insert(store_id, Node { system, router, engines, meta });
        Ok(())
    }

    /// Stops a store: its pollers stop between rounds, as after a crash at a round boundary
    /// (every round's raft write is synced; nothing else is flushed on shutdown).
    pub fn stop_store(&mut self, store_id: u64) {
        self.hub.unregister(store_id);
        let mut node = self.nodes.remove(&store_id).expect("store is running");
        node.system.shutdown();
        drop(node);
        self.leader_hints.lock().retain(|_, p| p.store_id != store_id);
    }

    pub fn shutdown(&mut self) {
        for s in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.stop_store(s);
        }
    }

    pub fn is_running(&self, store_id: u64) -> bool {
        self.nodes.contains_key(&store_id)
    }

    pub fn engines(&self, store_id: u64) -> &Engines {
        &self.nodes[&store_id].engines
    }

    pub fn router(&self, store_id: u64) -> &Router {
        &self.nodes[&store_id].router
    }

    pub fn store_meta(&self, store_id: u64) -> Arc<Mutex<StoreMeta>> {
        self.nodes[&store_id].meta.clone()
    }

    pub fn stats(&self, store_id: u64) -> StoreStatsSnapshot {
        self.nodes[&store_id].system.stats().snapshot()
    }

    /// The region holding `key`, in the newest version any running store knows (a store that
    /// has not applied a split still has the old, lower-versioned region).
    pub fn region_for_key(&self, key: &[u8]) -> metapb::Region {
        let mut best: Option<metapb::Region> = None;
        for node in self.nodes.values() {
            if let Some(r) = node.meta.lock().region_for_key(key) {
                if best.as_ref().is_none_or(|b| {
                    r.region_epoch.unwrap_or_default().version
                        > b.region_epoch.unwrap_or_default().version
                }) {
                    best = Some(r.clone());
                }
            }
        }
        best.or_else(|| {
            self.regions.iter().find(|r| raftstore::util::key_in_region(key, r)).cloned()
        })
        .expect("regions cover the key space")
    }

    /// A region in the newest version any running store knows.
    pub fn region(&self, region_id: u64) -> metapb::Region {
        let mut best: Option<metapb::Region> = None;
        for node in self.nodes.values() {
            if let Some(r) = node.meta.lock().region(region_id.into()) {
                if best.as_ref().is_none_or(|b| is_newer(r, b)) {
                    best = Some(r.clone());
                }
            }
        }
        best.or_else(|| self.regions.iter().find(|r| r.id == region_id).cloned())
            .expect("known region")
    }

    /// Waits until `store_id` has region `region_id` at `version` or later; returns it.
    pub fn wait_region_version(
        &self,
        store_id: u64,
        region_id: u64,
        version: u64,
    ) -> metapb::Region {
        wait_for(
            &format!("store {store_id} to have region {region_id} at version {version}"),
            TIMEOUT,
            || {
                let meta = self.nodes.get(&store_id)?.meta.lock();
                meta.region(region_id.into())
                    .filter(|r| r.region_epoch.unwrap_or_default().version >= version)
                    .cloned()
            },
        )
    }

    // ---- commands ----

    /// Sends `req` to `store_id` and waits for the answer.
    pub fn call_command_on(
        &self,
        store_id: u64,
        req: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let node =
            self.nodes.get(&store_id).ok_or_else(|| format!("store {store_id} is stopped"))?;
        let region_id = req.header.as_ref().map_or(0, |h| h.region_id);
        let (tx, rx) = mpsc::channel();
        node.router.send_command(
            req,
            Callback::new(region_id.into(), move |resp| {
                let _ = tx.send(resp);
            }),
        );
        rx.recv_timeout(timeout)
            .map(Reply::from)
            .map_err(|_| format!("no answer from store {store_id} in {timeout:?}"))
    }

    /// Which peer the region's peers agree is leader: a peer that says it leads itself.
    pub fn leader_of(&self, region_id: u64) -> Option<metapb::Peer> {
        for (&s, _) in &self.nodes {
            let Ok(resp) =
                self.call_command_on(s, region_leader_cmd(region_id), Duration::from_secs(5))
            else {
                continue;
            };
            let leader =
                resp.response.status_response.and_then(|s| s.region_leader).and_then(|l| l.leader);
            if let Some(l) = leader {
                if l.store_id == s {
                    return Some(l);
                }
            }
        }
        None
    }

    pub fn wait_leader(&self, region_id: u64) -> metapb::Peer {
        let leader = wait_for(&format!("a leader of region {region_id}"), TIMEOUT, || {
            self.leader_of(region_id)
        });
        self.leader_hints.lock().insert(region_id, leader.clone());
        leader
    }

    /// Runs `requests` on the region's leader, following `NotLeader` hints and waiting out
    /// elections, until it succeeds, fails with another error, or `timeout` passes. The
    /// region's epoch is the newest known; an `EpochNotMatch` is returned.
    pub fn request(
        &self,
        region_id: u64,
        requests: Vec<Request>,
        timeout: Duration,
    ) -> Result<Reply, errorpb::Error> {
        self.request_with(|| self.region(region_id), requests, timeout, false)
    }

    /// Runs `requests` (about `key`) on the leader of the region holding `key`, following
    /// splits: on `EpochNotMatch` or `KeyNotInRegion` it routes again, as a client does.
    pub fn request_for_key(
        &self,
        key: &[u8],
        requests: Vec<Request>,
        timeout: Duration,
    ) -> Result<Reply, errorpb::Error> {
        self.request_with(|| self.region_for_key(key), requests, timeout, true)
    }

    fn request_with(
        &self,
        route: impl Fn() -> metapb::Region,
        requests: Vec<Request>,
        timeout: Duration,
        follow_epoch: bool,
    ) -> Result<Reply, errorpb::Error> {
        let deadline = Instant::now() + timeout;
        let mut last_err = None;
        while Instant::now() < deadline {
            let region = route();
            let region_id = region.id;
            let hint = self.leader_hints.lock().get(&region_id).cloned();
            let leader = match hint.or_else(|| self.leader_of(region_id)) {
                Some(l) if self.is_running(l.store_id) => l,
                _ => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let req = cmd(header(&region, &leader), requests.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = match self.call_command_on(leader.store_id, req, left) {
                Ok(resp) => resp,
                Err(_) => break,
            };
            match resp.error().cloned() {
                None => {
                    self.leader_hints.lock().insert(region_id, leader);
                    return Ok(resp);
                }
                // A merging region answers these until its merge ends: back off and retry,
                // as a client does.
                Some(e)
                    if e.not_leader.is_some()
                        || e.region_not_found.is_some()
                        || e.stale_command.is_some()
                        || e.proposal_in_merging_mode.is_some()
                        || e.read_index_not_ready.is_some() =>
                {
                    let next = e.not_leader.as_ref().and_then(|n| n.leader.clone());
                    match next {
                        Some(l) if l.id != leader.id => {
                            self.leader_hints.lock().insert(region_id, l);
                        }
                        _ => {
                            self.leader_hints.lock().remove(&region_id);
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    last_err = Some(e);
                }
                Some(e)
                    if follow_epoch
                        && (e.epoch_not_match.is_some() || e.key_not_in_region.is_some()) =>
                {
                    // Rejected under the layout `route` gave. Either the answering peer is
                    // behind that layout (a follower applied the split first; epochs are
                    // checked strictly, as TiKV does, so the peer refuses a newer one until
                    // it applies it too): retry the same layout. Or the layout is stale: retry
                    // once a store knows a newer one (a split answers its commands just before
                    // its peer updates the meta).
                    let peer_behind = e.epoch_not_match.as_ref().is_some_and(|m| {
                        m.current_regions.iter().any(|r| r.id == region_id && is_newer(&region, r))
                    });
                    let left = deadline.saturating_duration_since(Instant::now());
                    let caught_up = || {
                        let meta = self.nodes.get(&leader.store_id)?.meta.lock();
                        meta.region(region_id.into()).filter(|r| !is_newer(&region, r)).map(|_| ())
                    };
                    let waited = if peer_behind {
                        poll_until(left, caught_up)
                    } else {
                        poll_until(left, || (route() != region).then_some(()))
                    };
                    if waited.is_none() {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
                Some(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| errorpb::Error {
            message: format!("no answer within {timeout:?}"),
            ..Default::default()
        }))
    }

    // ---- splits ----

    /// Splits `region_id` at `keys` through its leader (as the `SplitRegion` RPC does), with
    /// the newest epoch known. Returns every resulting region.
    pub fn split_region(
        &self,
        region_id: u64,
        keys: &[&[u8]],
    ) -> Result<Vec<metapb::Region>, errorpb::Error> {
        let region = self.region(region_id);
        self.split_region_with_epoch(region_id, region.region_epoch.unwrap_or_default(), keys)
    }

    /// As [`Cluster::split_region`], under a given epoch (to test stale ones).
    pub fn split_region_with_epoch(
        &self,
        region_id: u64,
        epoch: metapb::RegionEpoch,
        keys: &[&[u8]],
    ) -> Result<Vec<metapb::Region>, errorpb::Error> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let leader = self.wait_leader(region_id);
            let (tx, rx) = mpsc::channel();
            self.router(leader.store_id).split_region(
                region_id.into(),
                epoch,
                keys.iter().map(|k| k.to_vec()).collect(),
                Callback::new(region_id.into(), move |resp| {
                    let _ = tx.send(to_response(resp));
                }),
            );
            let resp = rx.recv_timeout(TIMEOUT).expect("split answered");
            match resp.header.as_ref().and_then(|h| h.error.clone()) {
                Some(e) if e.not_leader.is_some() => {
                    self.leader_hints.lock().remove(&region_id);
                    // Leadership moved: retry once another peer leads.
                    let left = deadline.saturating_duration_since(Instant::now());
                    let moved = poll_until(left, || {
                        self.leader_of(region_id).filter(|l| l.id != leader.id)
                    });
                    if moved.is_none() {
                        return Err(e);
                    }
                }
                Some(e) => return Err(e),
                None => {
                    let regions = resp
                        .admin_response
                        .and_then(|a| a.splits)
                        .map(|s| s.regions)
                        .expect("a split answers with its regions");
                    // Answered once applied; the leader's peer learns the result just after.
                    for r in &regions {
                        self.wait_region_version(
                            leader.store_id,
                            r.id,
                            r.region_epoch.unwrap_or_default().version,
                        );
                    }
                    return Ok(regions);
                }
            }
        }
    }

    /// Splits the region holding `key` at `key`; panics on failure. Returns (left, right).
    pub fn must_split(&self, key: &[u8]) -> (metapb::Region, metapb::Region) {
        let region = self.region_for_key(key);
        let regions = self
            .split_region(region.id, &[key])
            .unwrap_or_else(|e| panic!("split at {key:?} failed: {e:?}"));
        assert_eq!(regions.len(), 2);
        (regions[0].clone(), regions[1].clone())
    }

    /// Asks region `source`'s leader to merge it into region `target` (PrepareMerge, at the
    /// newest known target); the rest of the merge runs by itself. Answers when the
    /// PrepareMerge applied, or with the refusal.
    pub fn try_merge(&self, source: u64, target: u64) -> Result<RaftCmdResponse, errorpb::Error> {
        let target = self.region(target);
        self.admin(
            source,
            AdminRequest {
                cmd_type: AdminCmdType::PrepareMerge as i32,
                prepare_merge: Some(PrepareMergeRequest { min_index: 0, target: Some(target) }),
                ..Default::default()
            },
        )
    }

    /// Merges region `source` into region `target` and waits until every running store
    /// has the widened target and no peer of the source; returns the target.
    pub fn must_merge(&self, source: u64, target: u64) -> metapb::Region {
        self.try_merge(source, target)
            .unwrap_or_else(|e| panic!("merge of {source} into {target} refused: {e:?}"));
        self.wait_merged(source, target)
    }

    /// Waits until every running store has region `target` covering `source`'s range (as
    /// the newest store knows it now) and no peer of `source`; returns the target.
    pub fn wait_merged(&self, source: u64, target: u64) -> metapb::Region {
        let src = self.region(source);
        wait_for(&format!("region {source} merged into {target} everywhere"), TIMEOUT, || {
            let mut merged = None;
            for node in self.nodes.values() {
                let meta = node.meta.lock();
                if meta.region(source.into()).is_some() {
                    return None;
                }
                let t = meta.region(target.into())?;
                let covers = t.start_key <= src.start_key
                    && (t.end_key.is_empty()
                        || (!src.end_key.is_empty() && t.end_key >= src.end_key));
                if !covers {
                    return None;
                }
                merged = Some(t.clone());
            }
            merged
        })
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), errorpb::Error> {
        self.request_for_key(key, vec![put_req(key, value)], TIMEOUT).map(|_| ())
    }

    pub fn must_put(&self, key: &[u8], value: &[u8]) {
        if let Err(e) = self.put(key, value) {
            panic!("put {key:?} failed: {e:?}");
        }
    }

    pub fn must_delete(&self, key: &[u8]) {
        self.request_for_key(key, vec![delete_req(key)], TIMEOUT).expect("delete");
    }

    /// Deletes `[start, end)`, which MUST lie in one region.
    pub fn must_delete_range(&self, start: &[u8], end: &[u8]) {
        self.request_for_key(start, vec![delete_range_req(start, end)], TIMEOUT)
            .expect("delete range");
    }

    /// A linearizable read through the leader.
    pub fn get(&self, key: &[u8]) -> ReadResult {
        let resp = self.request_for_key(key, vec![snap_req()], TIMEOUT)?;
        let snap = resp.snapshot.expect("a read answers with a snapshot");
        Ok(snap.get_value_cf(CF_DEFAULT, key).expect("snapshot read"))
    }

    pub fn must_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key).unwrap_or_else(|e| panic!("get {key:?} failed: {e:?}"))
    }

    pub fn must_get_equal(&self, key: &[u8], value: &[u8]) {
        assert_eq!(self.must_get(key).as_deref(), Some(value), "key {key:?}");
    }

    pub fn must_get_none(&self, key: &[u8]) {
        assert_eq!(self.must_get(key), None, "key {key:?}");
    }

    /// Reads `key` straight from a store's KV engine (what that store has applied).
    pub fn get_from_engine(&self, store_id: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.engines(store_id)
            .kv
            .get_value_cf(CF_DEFAULT, &keys::data_key(key))
            .expect("engine read")
    }

    /// The apply state of `region_id` on a running store, as its KV engine holds it.
    pub fn apply_state(&self, store_id: u64, region_id: u64) -> RaftApplyState {
        self.engines(store_id)
            .kv
            .get_msg_cf(CF_RAFT, &keys::apply_state_key(RegionId(region_id)))
            .expect("engine read")
            .unwrap_or_default()
    }

    /// The truncated log index of `region_id` on a running store (its apply state's).
    pub fn truncated_index(&self, store_id: u64, region_id: u64) -> u64 {
        self.apply_state(store_id, region_id).truncated_state.unwrap_or_default().index
    }

    /// The first log entry `region_id` still has in a running store's raft engine.
    pub fn first_log_entry(&self, store_id: u64, region_id: u64) -> Option<u64> {
        self.engines(store_id)
            .raft
            .first_index(RegionId(region_id))
            .expect("raft engine read")
            .map(|i| i.get())
    }

    /// Waits until store `store_id` has applied `key = value` (`None`: deleted).
    pub fn must_applied_on(&self, store_id: u64, key: &[u8], value: Option<&[u8]>) {
        wait_for(&format!("store {store_id} to apply {key:?}"), TIMEOUT, || {
            (self.get_from_engine(store_id, key).as_deref() == value).then_some(())
        });
    }

    pub fn must_transfer_leader(&self, region_id: u64, to: &metapb::Peer) {
        let region = self.region(region_id);
        wait_for(&format!("peer {} to lead region {region_id}", to.id), TIMEOUT, || {
            let leader = self.leader_of(region_id)?;
            if leader.id == to.id {
                return Some(());
            }
            let req = transfer_leader_cmd(header(&region, &leader), to);
            let _ = self.call_command_on(leader.store_id, req, Duration::from_secs(1));
            // Give the transfer a few election rounds before asking again.
            let deadline = Instant::now() + self.cfg.election_timeout() * 2;
            while Instant::now() < deadline {
                if self.leader_of(region_id).is_some_and(|l| l.id == to.id) {
                    return Some(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        });
        self.leader_hints.lock().insert(region_id, to.clone());
    }

    /// Runs an admin command on the region's leader under the newest known epoch, following
    /// leadership changes; any other error is returned.
    pub fn admin(
        &self,
        region_id: u64,
        admin: AdminRequest,
    ) -> Result<RaftCmdResponse, errorpb::Error> {
        // The last retryable error, answered if the deadline passes.
        let mut last = None;
        let attempt = || -> Option<Result<RaftCmdResponse, errorpb::Error>> {
            let leader = self.wait_leader(region_id);
            let region = self.region(region_id);
            let req = RaftCmdRequest {
                header: Some(header(&region, &leader)),
                admin_request: Some(admin.clone()),
                ..Default::default()
            };
            let reply = match self.call_command_on(leader.store_id, req, TIMEOUT) {
                Ok(reply) => reply,
                Err(m) => return Some(Err(errorpb::Error { message: m, ..Default::default() })),
            };
            // The views disagree, which a retry with a fresh view settles: the leader may not
            // have applied what a follower already did (the newest layout routed this
            // request: its epoch is older than the request's), or the leader has applied and
            // answered the previous change before any store's meta shows it (the meta follows
            // the apply result: the request's epoch is the older one).
            let views_differ = |e: &errorpb::Error| {
                e.epoch_not_match.as_ref().is_some_and(|m| {
                    m.current_regions.iter().any(|r| {
                        r.id == region_id && (is_newer(&region, r) || is_newer(r, &region))
                    })
                })
            };
            match reply.error() {
                None => Some(Ok(reply.response)),
                // Busy: the previous membership change is applied (and answered) before the
                // leader's raft learns it, so a next one may briefly find it in progress.
                Some(e)
                    if e.not_leader.is_some()
                        || e.stale_command.is_some()
                        || e.server_is_busy.is_some()
                        || views_differ(e) =>
                {
                    self.leader_hints.lock().remove(&region_id);
                    last = Some(e.clone());
                    None
                }
                Some(e) => Some(Err(e.clone())),
            }
        };
        let outcome = poll_until(TIMEOUT, attempt);
        outcome.unwrap_or_else(|| Err(last.unwrap_or_default()))
    }

    /// A membership change (`ChangePeer`); the region after it, as the leader applied it.
    pub fn change_peer(
        &self,
        region_id: u64,
        change_type: ConfChangeType,
        peer: metapb::Peer,
    ) -> Result<metapb::Region, errorpb::Error> {
        let resp = self.admin(
            region_id,
            AdminRequest {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerRequest {
                    change_type: change_type as i32,
                    peer: Some(peer),
                }),
                ..Default::default()
            },
        )?;
        Ok(resp.admin_response.and_then(|a| a.change_peer).and_then(|c| c.region).expect("region"))
    }

    /// A joint membership change (`ChangePeerV2`; no changes: leave the joint state).
    pub fn change_peer_v2(
        &self,
        region_id: u64,
        changes: Vec<(ConfChangeType, metapb::Peer)>,
    ) -> Result<metapb::Region, errorpb::Error> {
        let changes = changes
            .into_iter()
            .map(|(t, p)| ChangePeerRequest { change_type: t as i32, peer: Some(p) })
            .collect();
        let resp = self.admin(
            region_id,
            AdminRequest {
                cmd_type: AdminCmdType::ChangePeerV2 as i32,
                change_peer_v2: Some(ChangePeerV2Request { changes }),
                ..Default::default()
            },
        )?;
        Ok(resp
            .admin_response
            .and_then(|a| a.change_peer_v2)
            .and_then(|c| c.region)
            .expect("region"))
    }

    /// The region state store `store_id` keeps of `region_id` (running store).
    pub fn region_local_state(
        &self,
        store_id: u64,
        region_id: u64,
    ) -> Option<proto::raft_serverpb::RegionLocalState> {
        self.engines(store_id)
            .kv
            .get_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(region_id)))
            .expect("engine read")
    }

    pub fn peer_on(&self, region_id: u64, store_id: u64) -> metapb::Peer {
        self.region(region_id).peers.into_iter().find(|p| p.store_id == store_id).expect("peer")
    }
}

/// Whether `a` is a newer version of a region than `b` (version first, then conf_ver).
fn is_newer(a: &metapb::Region, b: &metapb::Region) -> bool {
    let (a, b) = (a.region_epoch.unwrap_or_default(), b.region_epoch.unwrap_or_default());
    (a.version, a.conf_ver) > (b.version, b.conf_ver)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn open_engines(dir: &TempDir, power_cuts: bool, logger: &Logger) -> Engines {
    let cfg = RocksDbConfig {
        block_cache_size: ReadableSize::mib(8),
        write_buffer_size: ReadableSize::mib(4),
        ..RocksDbConfig::default()
    };
    let path = dir.path().join("db");
    let kv = if power_cuts {
        open_kv_engine_losing_unsynced_writes(path, &cfg, logger)
    } else {
        open_kv_engine(path, &cfg, logger)
    }
    .expect("open kv engine");
    let raft = open_raft_engine(dir.path().join("raft"), &cfg, logger).expect("open raft engine");
    raftstore::Engines::new(kv, raft)
}

/// Logs to stderr at warning level (set `REGIONSTORE_TEST_LOG=debug` for more); the test
/// harness captures it per test.
fn test_logger() -> Logger {
    use slog::Drain;
    let level = match std::env::var("REGIONSTORE_TEST_LOG").as_deref() {
        Ok("debug") => slog::Level::Debug,
        Ok("info") => slog::Level::Info,
        _ => slog::Level::Warning,
    };
    let decorator = slog_term::PlainSyncDecorator::new(slog_term::TestStdoutWriter);
    let drain = slog_term::FullFormat::new(decorator).build().filter_level(level).fuse();
    Logger::root(std::sync::Mutex::new(drain).fuse(), slog::o!())
}

/// A command's answer as a client sees it: a failure is an `errorpb` in the response header,
/// mapped as the gRPC edge maps it (`raftstore::Error::into_region_error`).
pub struct Reply {
    pub response: RaftCmdResponse,
    /// Set for a successful read.
    pub snapshot: Option<raftstore::RegionSnapshot<RocksSnapshot>>,
}

impl Reply {
    /// The region error, if the command failed.
    pub fn error(&self) -> Option<&errorpb::Error> {
        self.response.header.as_ref().and_then(|h| h.error.as_ref())
    }
}

impl From<CmdResult<RocksSnapshot>> for Reply {
    fn from(r: CmdResult<RocksSnapshot>) -> Reply {
        match r {
            Ok(r) => Reply { response: r.response, snapshot: r.snapshot },
            Err(e) => Reply { response: to_response::<RocksSnapshot>(Err(e)), snapshot: None },
        }
    }
}

/// The raft response a client would see for `r` (see [`Reply`]).
pub fn to_response<S>(r: CmdResult<S>) -> RaftCmdResponse {
    match r {
        Ok(r) => r.response,
        Err(e) => RaftCmdResponse {
            header: Some(proto::raft_cmdpb::RaftResponseHeader {
                error: Some(e.into_region_error()),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}
