//! [`Cluster`]: PD's state (ids, TSO, stores, routing table) and the operations the RPCs call.
//! No gRPC types beyond the protobuf messages: `service.rs` adapts these to `pdpb.PD`.
//!
//! Invariants:
//! 1. Persist, then change memory (see `storage.rs`): every mutation builds one `MetaBatch`,
//!    commits it synced, and only then updates the in-memory state, under the same lock.
//! 2. Lock order: `checker` before `meta` before `ids` and before `operators`; `tso` is taken
//!    alone; nothing is taken while `operators` or `pushers` is held. No lock is held across
//!    an await (there are none here: this module is synchronous).
//! 3. Bootstrap happens once: the `bootstrapped` key is written in the same batch as the first
//!    region, so a crash leaves either both or neither.
//! 4. Once bootstrapped, the regions in the tree cover the key space except for the short gaps
//!    of invariant 3 in `region_tree.rs`.
//! 5. Operators are created through one path, [`Cluster::add_operator`], whether a user asks
//!    (HTTP API) or the merge checker does; it re-checks everything against the current state.
//! 6. A new operator's first command goes out at once (PD's `DispatchFromCreate`), on the
//!    heartbeat stream of the store that led the region at its last heartbeat, as if that
//!    heartbeat had just come: the operator sees the same state it would see then. Later
//!    commands answer heartbeats. A push that cannot be delivered (no stream from that store,
//!    its buffer full, leadership moved) is dropped: the next heartbeat carries the command.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use proto::{metapb, pdpb};
use slog::{debug, info, Logger};

use crate::config::ScheduleConfig;
use crate::error::{Error, RpcError};
use crate::id::{IdAllocator, ALLOC_COUNT_MAX};
use crate::merge_checker::{MergeChecker, MergeContext};
use crate::operator::{self, Kind, Operator, PlanError, Registry, StoreView};
use crate::region_tree::{epoch_key, RegionInfo, RegionStats, RegionTree};
use crate::splits::SplitTracker;
use crate::storage::MetaStore;
use crate::tso::{Tso, TSO_COUNT_MAX};

/// Most splits one AskBatchSplit / ReportBatchSplit may carry.
pub const SPLIT_COUNT_MAX: u32 = 1_000;

/// Most regions one ScanRegions answers, whatever the limit asked.
pub const SCAN_REGIONS_MAX: usize = 10_000;

/// What PD knows about one store.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    pub meta: metapb::Store,
    /// From the last store heartbeat; soft state, not persisted.
    pub stats: Option<pdpb::StoreStats>,
    /// 0 until the first heartbeat after PD started.
    pub last_heartbeat_unix_ms: u64,
}

#[derive(Debug)]
struct ClusterMeta {
    bootstrapped: bool,
    stores: BTreeMap<u64, StoreInfo>,
    regions: RegionTree,
    /// Soft state, fed by the split RPCs and region updates.
    splits: SplitTracker,
    gc_safe_point: u64,
}

/// The placement driver's state.
#[derive(Debug)]
pub struct Cluster {
    cluster_id: u64,
    max_replicas: usize,
    schedule: ScheduleConfig,
    store: MetaStore,
    meta: RwLock<ClusterMeta>,
    ids: Mutex<IdAllocator>,
    tso: Mutex<Tso>,
    operators: Mutex<Registry>,
    checker: Mutex<MergeChecker>,
    /// Per store, the region heartbeat stream's channel for commands sent unasked
    /// (invariant 6); registered by `service.rs`.
    pushers: Mutex<HashMap<u64, Pusher>>,
    logger: Logger,
}

/// Where commands for a store's region heartbeat stream go, unasked (bounded; full drops).
pub type Pusher = tokio::sync::mpsc::Sender<pdpb::RegionHeartbeatResponse>;

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The leader to tell clients: the one heartbeats reported, else the first peer (the client
/// follows the store's NotLeader hint from there).
pub fn leader_or_first(info: &RegionInfo) -> Option<metapb::Peer> {
    info.leader.clone().or_else(|| info.region.peers.first().cloned())
}

impl Cluster {
    /// Loads everything from `store`, creating the cluster id on first start.
    pub fn load(
        store: MetaStore,
        max_replicas: usize,
        schedule: ScheduleConfig,
        logger: Logger,
    ) -> Result<Cluster, Error> {
        let cluster_id = match store.cluster_id()? {
            Some(id) => id,
            None => {
                // As TiKV's PD: creation time in the high half, randomness in the low half.
                let id = ((unix_ms() / 1000) << 32) | u64::from(rand::random::<u32>());
                let mut batch = store.batch();
                batch.put_cluster_id(id);
                batch.commit()?;
                info!(logger, "created a new cluster"; "cluster_id" => id);
                id
            }
        };
        let mut meta = ClusterMeta {
            bootstrapped: store.bootstrapped()?,
            stores: BTreeMap::new(),
            regions: RegionTree::default(),
            splits: SplitTracker::new(unix_ms()),
            gc_safe_point: store.gc_safe_point()?,
        };
        for s in store.stores()? {
            let info = StoreInfo { meta: s, stats: None, last_heartbeat_unix_ms: 0 };
            meta.stores.insert(info.meta.id, info);
        }
        for record in store.regions()? {
            let Some(region) = record.region else {
                return Err(Error::Corrupted { what: "a region record without a region".into() });
            };
            let id = region.id;
            let info = RegionInfo { region, leader: record.leader, ..RegionInfo::default() };
            // Stored regions were accepted one by one, so they must not conflict.
            match meta.regions.plan(info) {
                Ok(plan) if plan.removed.is_empty() => meta.regions.apply(plan),
                other => {
                    return Err(Error::Corrupted {
                        what: format!("stored region {id} conflicts with another: {other:?}"),
                    })
                }
            }
        }
        let ids = IdAllocator::new(store.alloc_id()?);
        let tso = Tso::new(store.tso_window()?);
        info!(logger, "metadata loaded";
            "cluster_id" => cluster_id, "bootstrapped" => meta.bootstrapped,
            "stores" => meta.stores.len(), "regions" => meta.regions.len());
        Ok(Cluster {
            cluster_id,
            max_replicas,
            schedule,
            store,
            meta: RwLock::new(meta),
            ids: Mutex::new(ids),
            tso: Mutex::new(tso),
            operators: Mutex::new(Registry::default()),
            checker: Mutex::new(MergeChecker::default()),
            pushers: Mutex::new(HashMap::new()),
            logger,
        })
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn max_replicas(&self) -> usize {
        self.max_replicas
    }

    /// Refuses requests addressed to another cluster. A missing header or id 0 is accepted.
    pub fn check_header(&self, header: Option<&pdpb::RequestHeader>) -> Result<(), RpcError> {
        match header {
            Some(h) if h.cluster_id != 0 && h.cluster_id != self.cluster_id => {
                Err(RpcError::ClusterIdMismatch { expected: self.cluster_id, got: h.cluster_id })
            }
            _ => Ok(()),
        }
    }

    /// Hands out `count` new ids, returning the first (invariant of `id.rs`).
    pub fn alloc_ids(&self, count: u64) -> Result<u64, RpcError> {
        if count == 0 || count > ALLOC_COUNT_MAX {
            return Err(RpcError::invalid(format!(
                "id count {count} not in 1..={ALLOC_COUNT_MAX}"
            )));
        }
        let mut ids = self.ids.lock();
        if let Some(end) = ids.bound_needed(count) {
            let mut batch = self.store.batch();
            batch.put_alloc_id(end);
            self.commit(batch, "persist id bound")?;
            ids.bound_persisted(end);
        }
        Ok(ids.take(count))
    }

    /// The largest of `count` new timestamps (invariants of `tso.rs`).
    pub fn tso(&self, count: u32) -> Result<pdpb::Timestamp, RpcError> {
        if count == 0 || count > TSO_COUNT_MAX {
            return Err(RpcError::invalid(format!("tso count {count} not in 1..={TSO_COUNT_MAX}")));
        }
        let mut tso = self.tso.lock();
        let ((physical, logical), window) = tso.next(unix_ms() as i64, count);
        if let Some(end) = window {
            let mut batch = self.store.batch();
            batch.put_tso_window(end);
            self.commit(batch, "persist tso window")?;
            tso.window_persisted(end);
        }
        Ok(pdpb::Timestamp { physical, logical, suffix_bits: 0 })
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.meta.read().bootstrapped
    }

    /// The store-initiated bootstrap: `store` and the first `region` come from the request.
    pub fn bootstrap(
        &self,
        store: Option<metapb::Store>,
        region: Option<metapb::Region>,
    ) -> Result<(), RpcError> {
        // Checked first: a store retrying its bootstrap must learn that the cluster exists.
        let mut meta = self.meta.write();
        if meta.bootstrapped {
            return Err(RpcError::AlreadyBootstrapped);
        }
        let mut store = store.ok_or_else(|| RpcError::invalid("bootstrap without a store"))?;
        check_store(&store)?;
        let region = region.ok_or_else(|| RpcError::invalid("bootstrap without a region"))?;
        check_region(&region)?;
        if !region.start_key.is_empty() || !region.end_key.is_empty() {
            return Err(RpcError::invalid("the first region must cover the whole key space"));
        }
        if !region.peers.iter().any(|p| p.store_id == store.id) {
            return Err(RpcError::invalid(format!(
                "no peer of region {} on store {}",
                region.id, store.id
            )));
        }
        store.state = metapb::StoreState::Up as i32;
        let mut batch = self.store.batch();
        batch.put_store(&store);
        batch.put_region(&region, None);
        batch.put_bootstrapped();
        self.commit(batch, "bootstrap")?;
        info!(self.logger, "cluster bootstrapped by a store";
            "store_id" => store.id, "region_id" => region.id);
        meta.stores
            .insert(store.id, StoreInfo { meta: store, stats: None, last_heartbeat_unix_ms: 0 });
        let plan = meta.regions.plan(RegionInfo { region, ..RegionInfo::default() });
        meta.regions.apply(plan.expect("the first region of an empty tree is never stale"));
        meta.bootstrapped = true;
        Ok(())
    }

    /// Registers or updates a store; bootstraps the cluster once `max_replicas` stores are up
    /// (the documented PD-side bootstrap, see the crate docs).
    pub fn put_store(&self, store: Option<metapb::Store>) -> Result<(), RpcError> {
        let mut store = store.ok_or_else(|| RpcError::invalid("PutStore without a store"))?;
        check_store(&store)?;
        let mut meta = self.meta.write();
        if let Some(old) = meta.stores.get(&store.id) {
            if old.meta.state == metapb::StoreState::Tombstone as i32 {
                return Err(RpcError::StoreTombstone(store.id));
            }
            // The state is PD's to change (offline, tombstone), not the store's.
            store.state = old.meta.state;
        } else {
            store.state = metapb::StoreState::Up as i32;
        }
        let duplicate = meta.stores.values().find(|s| {
            s.meta.id != store.id
                && s.meta.address == store.address
                && s.meta.state != metapb::StoreState::Tombstone as i32
        });
        if let Some(dup) = duplicate {
            return Err(RpcError::invalid(format!(
                "address {} is already used by store {}",
                store.address, dup.meta.id
            )));
        }
        let mut batch = self.store.batch();
        batch.put_store(&store);
        let first_region = if meta.bootstrapped { None } else { self.first_region(&meta, &store)? };
        if let Some(region) = &first_region {
            batch.put_region(region, None);
            batch.put_bootstrapped();
        }
        self.commit(batch, "put store")?;
        debug!(self.logger, "store registered"; "store_id" => store.id, "address" => &store.address);
        let id = store.id;
        match meta.stores.get_mut(&id) {
            Some(info) => info.meta = store,
            None => {
                meta.stores
                    .insert(id, StoreInfo { meta: store, stats: None, last_heartbeat_unix_ms: 0 });
            }
        }
        if let Some(region) = first_region {
            info!(self.logger, "cluster bootstrapped by PD";
                "region_id" => region.id, "stores" => ?region.peers.iter().map(|p| p.store_id).collect::<Vec<_>>());
            let plan = meta.regions.plan(RegionInfo { region, ..RegionInfo::default() });
            meta.regions.apply(plan.expect("the first region of an empty tree is never stale"));
            meta.bootstrapped = true;
        }
        Ok(())
    }

    /// The first region if `incoming` (not yet in `meta`) completes `max_replicas` live stores:
    /// one peer on each of the lowest store ids, epoch (conf_ver 1, version 1).
    fn first_region(
        &self,
        meta: &ClusterMeta,
        incoming: &metapb::Store,
    ) -> Result<Option<metapb::Region>, RpcError> {
        let mut live: Vec<u64> = meta
            .stores
            .values()
            .filter(|s| s.meta.state != metapb::StoreState::Tombstone as i32)
            .map(|s| s.meta.id)
            .chain(std::iter::once(incoming.id))
            .collect();
        live.sort_unstable();
        live.dedup();
        if live.len() < self.max_replicas {
            return Ok(None);
        }
        live.truncate(self.max_replicas);
        let first = self.alloc_ids(1 + live.len() as u64)?;
        let peers = live
            .iter()
            .zip(first + 1..)
            .map(|(&store_id, id)| metapb::Peer { id, store_id, ..metapb::Peer::default() })
            .collect();
        Ok(Some(metapb::Region {
            id: first,
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
            peers,
            ..metapb::Region::default()
        }))
    }

    pub fn get_store(&self, store_id: u64) -> Result<StoreInfo, RpcError> {
        self.meta.read().stores.get(&store_id).cloned().ok_or(RpcError::StoreNotFound(store_id))
    }

    pub fn all_stores(&self, exclude_tombstone: bool) -> Vec<metapb::Store> {
        let meta = self.meta.read();
        meta.stores
            .values()
            .filter(|s| !exclude_tombstone || s.meta.state != metapb::StoreState::Tombstone as i32)
            .map(|s| s.meta.clone())
            .collect()
    }

    /// Every store with the number of region peers it holds, for the HTTP API.
    pub fn stores_with_region_counts(&self) -> Vec<(StoreInfo, usize)> {
        let meta = self.meta.read();
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for info in meta.regions.iter() {
            for peer in &info.region.peers {
                *counts.entry(peer.store_id).or_default() += 1;
            }
        }
        meta.stores
            .values()
            .map(|s| (s.clone(), counts.get(&s.meta.id).copied().unwrap_or(0)))
            .collect()
    }

    /// Records a store's statistics and the time of its heartbeat (memory only).
    pub fn store_heartbeat(&self, stats: Option<pdpb::StoreStats>) -> Result<(), RpcError> {
        let stats = stats.ok_or_else(|| RpcError::invalid("store heartbeat without stats"))?;
        let mut meta = self.meta.write();
        let info =
            meta.stores.get_mut(&stats.store_id).ok_or(RpcError::StoreNotFound(stats.store_id))?;
        if info.meta.state == metapb::StoreState::Tombstone as i32 {
            return Err(RpcError::StoreTombstone(stats.store_id));
        }
        info.last_heartbeat_unix_ms = unix_ms();
        info.stats = Some(stats);
        Ok(())
    }

    /// Folds a region heartbeat into the routing table. Returns the scheduling command for the
    /// region, if any.
    pub fn region_heartbeat(
        &self,
        req: pdpb::RegionHeartbeatRequest,
    ) -> Result<Option<pdpb::RegionHeartbeatResponse>, RpcError> {
        let region = req.region.ok_or_else(|| RpcError::invalid("heartbeat without a region"))?;
        check_region(&region)?;
        let info = RegionInfo {
            region,
            leader: req.leader,
            term: req.term,
            stats: Some(RegionStats {
                approximate_size: req.approximate_size,
                approximate_keys: req.approximate_keys,
            }),
            pending_peers: req.pending_peers,
        };
        let info = self.update_region(info)?;
        Ok(info.and_then(|info| self.pending_operator(&info)))
    }

    /// The command of the operator locking this region, if any (`operator.rs`, step 2; a
    /// merge's target heartbeats drive its operator too). Only a heartbeat from the leader PD
    /// knows drives it: a deposed leader's late heartbeat would show an older configuration.
    fn pending_operator(&self, info: &RegionInfo) -> Option<pdpb::RegionHeartbeatResponse> {
        let dispatch = self.operators.lock().on_heartbeat(info, unix_ms());
        if let Some(op) = &dispatch.finished {
            self.log_finished(op);
        }
        dispatch.command
    }

    fn log_finished(&self, op: &Operator) {
        info!(self.logger, "operator finished";
            "region_id" => op.region_id, "target_region_id" => op.target_region_id(),
            "kind" => op.kind.name(), "status" => ?op.status);
    }

    fn check_operator_timeouts(&self, ops: &mut Registry, now_ms: u64) {
        for op in ops.check_timeouts(now_ms) {
            self.log_finished(&op);
        }
    }

    /// Creates an operator (`operator.rs`, step 1; invariant 5).
    pub fn add_operator(&self, req: operator::Request) -> Result<Operator, RpcError> {
        self.add_operator_at(req, unix_ms())
    }

    fn add_operator_at(&self, req: operator::Request, now: u64) -> Result<Operator, RpcError> {
        let meta = self.read_regions()?;
        let region =
            meta.regions.get(req.region_id).ok_or(RpcError::RegionNotFound(req.region_id))?;
        let store = |id: u64| {
            meta.stores.get(&id).map(|s| StoreView {
                state: metapb::StoreState::try_from(s.meta.state)
                    .unwrap_or(metapb::StoreState::Offline),
                last_heartbeat_unix_ms: s.last_heartbeat_unix_ms,
            })
        };
        let op = match req.kind {
            Kind::MergeRegion => {
                let target_id = req
                    .target_region_id
                    .ok_or(PlanError::Missing { kind: req.kind.name(), what: "a target region" })?;
                if target_id == req.region_id {
                    return Err(PlanError::SameRegion(target_id).into());
                }
                let target =
                    meta.regions.get(target_id).ok_or(RpcError::RegionNotFound(target_id))?;
                for id in [req.region_id, target_id] {
                    if let Some(since_ms) = meta.splits.in_split_ms(id, now) {
                        return Err(PlanError::InSplit { region: id, since_ms }.into());
                    }
                }
                // Allocated before the remaining checks: ids wasted on a refusal cost nothing.
                let needed = operator::merge::new_peers_needed(&region.region, &target.region);
                let first = if needed > 0 { self.alloc_ids(needed as u64)? } else { 0 };
                let ids: Vec<u64> = (first..first + needed as u64).collect();
                operator::plan_merge(region, target, store, now, &ids)?
            }
            Kind::AddPeer | Kind::RemovePeer | Kind::TransferLeader | Kind::TransferPeer => {
                let new_peer_id = if req.kind.adds_a_peer() { self.alloc_ids(1)? } else { 0 };
                operator::plan(&req, region, store, self.max_replicas, now, new_peer_id)?
            }
        };
        let mut ops = self.operators.lock();
        self.check_operator_timeouts(&mut ops, now);
        for id in [Some(op.region_id), op.target_region_id()].into_iter().flatten() {
            if let Some(running) = ops.busy(id) {
                return Err(PlanError::Busy { region: id, kind: running.kind.name() }.into());
            }
        }
        info!(self.logger, "operator created";
            "region_id" => op.region_id, "target_region_id" => op.target_region_id(),
            "kind" => op.kind.name(),
            "steps" => ?op.steps.iter().map(ToString::to_string).collect::<Vec<_>>());
        ops.insert(op.clone());
        // Invariant 6: dispatch now, against the region as its last heartbeat showed it.
        let dispatch = ops.on_heartbeat(region, now);
        drop(ops);
        let leader_store = region.leader.as_ref().map(|l| l.store_id);
        drop(meta);
        if let Some(finished) = &dispatch.finished {
            self.log_finished(finished);
        }
        if let (Some(command), Some(store_id)) = (dispatch.command, leader_store) {
            self.push(store_id, command);
        }
        Ok(op)
    }

    /// Registers `pusher` as the way to send commands unasked to store `store_id` (its region
    /// heartbeat stream), replacing an older stream's. Only for a store PD knows: the map holds
    /// at most one entry per registered store, whatever ids heartbeats name.
    pub fn register_pusher(&self, store_id: u64, pusher: Pusher) {
        if !self.meta.read().stores.contains_key(&store_id) {
            return;
        }
        self.pushers.lock().insert(store_id, pusher);
    }

    /// Sends `command` on store `store_id`'s heartbeat stream, if it has a live one with room
    /// (invariant 6). A closed stream's channel is forgotten.
    fn push(&self, store_id: u64, command: pdpb::RegionHeartbeatResponse) {
        let mut pushers = self.pushers.lock();
        let Some(pusher) = pushers.get(&store_id) else { return };
        match pusher.try_send(command) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(c)) => {
                debug!(self.logger, "operator command not pushed: stream full";
                    "store_id" => store_id, "region_id" => c.region_id);
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                pushers.remove(&store_id);
            }
        }
    }

    /// Cancels the operator locking a region (a merge by either of its regions); answers it.
    pub fn cancel_operator(&self, region_id: u64) -> Result<Operator, RpcError> {
        let mut ops = self.operators.lock();
        let now = unix_ms();
        self.check_operator_timeouts(&mut ops, now);
        let op = ops.cancel(region_id, now).ok_or(RpcError::NoOperator(region_id))?;
        info!(self.logger, "operator canceled"; "region_id" => op.region_id, "kind" => op.kind.name());
        Ok(op)
    }

    /// The running operators, by region id.
    pub fn operators(&self) -> Vec<Operator> {
        let mut ops = self.operators.lock();
        self.check_operator_timeouts(&mut ops, unix_ms());
        ops.running()
    }

    /// Finished operators, oldest first.
    pub fn operator_records(&self) -> Vec<Operator> {
        let mut ops = self.operators.lock();
        self.check_operator_timeouts(&mut ops, unix_ms());
        ops.history()
    }

    /// The operator locking a region, else the latest finished one that involved it.
    pub fn operator(&self, region_id: u64) -> Option<Operator> {
        let mut ops = self.operators.lock();
        self.check_operator_timeouts(&mut ops, unix_ms());
        ops.get(region_id)
    }

    /// One round of the merge checker (`merge_checker.rs`), run every
    /// [`MERGE_CHECK_INTERVAL`](crate::merge_checker::MERGE_CHECK_INTERVAL): proposes merges
    /// of small neighbours and creates them through [`Cluster::add_operator`] (invariant 5).
    pub fn merge_check(&self, now_ms: u64) {
        let interval_ms = self.schedule.split_merge_interval.as_millis();
        let pairs = {
            let mut checker = self.checker.lock();
            let mut meta = self.meta.write();
            meta.splits.prune(interval_ms, now_ms);
            if !meta.bootstrapped {
                return;
            }
            let mut ops = self.operators.lock();
            self.check_operator_timeouts(&mut ops, now_ms);
            let cx = MergeContext {
                cfg: &self.schedule,
                max_replicas: self.max_replicas,
                splits: &meta.splits,
                busy: &|id| ops.busy(id).is_some(),
                running_merges: ops.count(Kind::MergeRegion),
                now_ms,
            };
            checker.check(&meta.regions, &cx)
        };
        for (source, target) in pairs {
            let req = operator::Request {
                kind: Kind::MergeRegion,
                region_id: source,
                target_region_id: Some(target),
                from_store: None,
                to_store: None,
            };
            match self.add_operator_at(req, now_ms) {
                Ok(_) => info!(self.logger, "merge checker merges a small region";
                    "region_id" => source, "target_region_id" => target),
                Err(e) => debug!(self.logger, "merge checker's merge refused";
                    "region_id" => source, "target_region_id" => target, "err" => %e),
            }
        }
    }

    /// Persists and applies one region update; `Ok(None)` when it was stale.
    fn update_region(&self, info: RegionInfo) -> Result<Option<RegionInfo>, RpcError> {
        let mut meta = self.meta.write();
        if !meta.bootstrapped {
            return Err(RpcError::NotBootstrapped);
        }
        let region_id = info.region.id;
        let split_seen = match meta.regions.get(region_id) {
            None => true,
            Some(old) => shrank(&old.region, &info.region),
        };
        let version = epoch_key(&info.region).0;
        let plan = match meta.regions.plan(info) {
            Ok(plan) => plan,
            Err(stale) => {
                debug!(self.logger, "stale region update ignored"; "region_id" => region_id, "why" => ?stale);
                return Ok(None);
            }
        };
        if plan.meta_changed {
            let mut batch = self.store.batch();
            batch.put_region(&plan.info.region, plan.info.leader.as_ref());
            for id in &plan.removed {
                batch.delete_region(*id);
            }
            self.commit(batch, "update region")?;
            if !plan.removed.is_empty() {
                debug!(self.logger, "overlapped regions removed";
                    "region_id" => region_id, "removed" => ?plan.removed);
            }
        }
        let info = plan.info.clone();
        meta.regions.apply(plan);
        meta.splits.on_region_update(region_id, version, split_seen, unix_ms());
        Ok(Some(info))
    }

    fn read_regions(&self) -> Result<parking_lot::RwLockReadGuard<'_, ClusterMeta>, RpcError> {
        let meta = self.meta.read();
        if !meta.bootstrapped {
            return Err(RpcError::NotBootstrapped);
        }
        Ok(meta)
    }

    /// The region holding `key` and its leader; `None` only in a gap (see `region_tree.rs`).
    pub fn get_region(&self, key: &[u8]) -> Result<Option<RegionInfo>, RpcError> {
        Ok(self.read_regions()?.regions.search(key).cloned())
    }

    /// The region before the one holding `key`.
    pub fn get_prev_region(&self, key: &[u8]) -> Result<Option<RegionInfo>, RpcError> {
        let meta = self.read_regions()?;
        let start = match meta.regions.search(key) {
            Some(info) => info.region.start_key.clone(),
            None => key.to_vec(),
        };
        Ok(meta.regions.prev(&start).cloned())
    }

    pub fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>, RpcError> {
        Ok(self.read_regions()?.regions.get(region_id).cloned())
    }

    /// Regions from the one holding `start` up to `end`; `limit <= 0` or above
    /// [`SCAN_REGIONS_MAX`] is clamped to it.
    pub fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i32,
    ) -> Result<Vec<RegionInfo>, RpcError> {
        let limit = usize::try_from(limit)
            .ok()
            .filter(|&l| l > 0)
            .map_or(SCAN_REGIONS_MAX, |l| l.min(SCAN_REGIONS_MAX));
        Ok(self.read_regions()?.regions.scan(start, end, limit).into_iter().cloned().collect())
    }

    /// Every region, for the HTTP API.
    pub fn all_regions(&self) -> Vec<RegionInfo> {
        self.meta.read().regions.iter().cloned().collect()
    }

    /// New ids for `split_count` splits of `region`: a region id and one peer id per peer.
    pub fn ask_batch_split(
        &self,
        region: Option<metapb::Region>,
        split_count: u32,
    ) -> Result<Vec<pdpb::SplitId>, RpcError> {
        let region = region.ok_or_else(|| RpcError::invalid("AskBatchSplit without a region"))?;
        if split_count == 0 || split_count > SPLIT_COUNT_MAX {
            return Err(RpcError::invalid(format!(
                "split count {split_count} not in 1..={SPLIT_COUNT_MAX}"
            )));
        }
        if self.read_regions()?.regions.get(region.id).is_none() {
            return Err(RpcError::RegionNotFound(region.id));
        }
        // Recorded before answering: from now a merge of this region is refused.
        let version = epoch_key(&region).0;
        self.meta.write().splits.on_ask(region.id, version, unix_ms());
        let per_split = 1 + region.peers.len() as u64;
        let total = per_split * u64::from(split_count);
        let mut next = self.alloc_ids(total)?;
        let mut ids = Vec::with_capacity(split_count as usize);
        for _ in 0..split_count {
            let new_peer_ids = (next + 1..next + per_split).collect();
            ids.push(pdpb::SplitId { new_region_id: next, new_peer_ids });
            next += per_split;
        }
        Ok(ids)
    }

    /// Folds the regions of a finished split into the routing table. New regions inherit the
    /// leader's store from the region that kept its id (they elect a leader there first).
    pub fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<(), RpcError> {
        if regions.is_empty() || regions.len() > SPLIT_COUNT_MAX as usize + 1 {
            return Err(RpcError::invalid(format!("{} regions in a split report", regions.len())));
        }
        for region in &regions {
            check_region(region)?;
        }
        let leader_store = {
            let meta = self.read_regions()?;
            regions
                .iter()
                .filter_map(|r| meta.regions.get(r.id))
                .find_map(|info| info.leader.as_ref().map(|l| l.store_id))
        };
        let ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
        for region in regions {
            let leader =
                leader_store.and_then(|s| region.peers.iter().find(|p| p.store_id == s).cloned());
            self.update_region(RegionInfo { region, leader, ..RegionInfo::default() })?;
        }
        self.meta.write().splits.on_report(ids, unix_ms());
        Ok(())
    }

    pub fn gc_safe_point(&self) -> u64 {
        self.meta.read().gc_safe_point
    }

    /// Raises the GC safe point (it never moves backwards) and returns the one in force.
    pub fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64, RpcError> {
        let mut meta = self.meta.write();
        if safe_point > meta.gc_safe_point {
            let mut batch = self.store.batch();
            batch.put_gc_safe_point(safe_point);
            self.commit(batch, "update gc safe point")?;
            meta.gc_safe_point = safe_point;
        }
        Ok(meta.gc_safe_point)
    }

    fn commit(
        &self,
        batch: crate::storage::MetaBatch<'_>,
        what: &'static str,
    ) -> Result<(), RpcError> {
        batch.commit().map_err(|e| {
            // An operator must look: PD's disk is failing and PD refuses changes until it works.
            slog::error!(self.logger, "metadata write failed"; "what" => what, "err" => %e);
            RpcError::Storage(e)
        })
    }
}

/// Whether `new` is `old` after a split: a higher version and a range that lost keys.
fn shrank(old: &metapb::Region, new: &metapb::Region) -> bool {
    let lost_end = match (old.end_key.is_empty(), new.end_key.is_empty()) {
        (true, false) => true,
        (false, false) => new.end_key < old.end_key,
        (_, true) => false,
    };
    epoch_key(new).0 > epoch_key(old).0 && (new.start_key > old.start_key || lost_end)
}

fn check_store(store: &metapb::Store) -> Result<(), RpcError> {
    if store.id == 0 {
        return Err(RpcError::invalid("store id 0"));
    }
    if store.address.is_empty() {
        return Err(RpcError::invalid(format!("store {} has no address", store.id)));
    }
    Ok(())
}

fn check_region(region: &metapb::Region) -> Result<(), RpcError> {
    if region.id == 0 {
        return Err(RpcError::invalid("region id 0"));
    }
    if region.region_epoch.is_none() {
        return Err(RpcError::invalid(format!("region {} has no epoch", region.id)));
    }
    if region.peers.is_empty() || region.peers.iter().any(|p| p.id == 0 || p.store_id == 0) {
        return Err(RpcError::invalid(format!(
            "region {} has no peers or a peer without ids",
            region.id
        )));
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return Err(RpcError::invalid(format!(
            "region {} has an empty or inverted range",
            region.id
        )));
    }
    Ok(())
}
