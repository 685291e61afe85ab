//! `StoreSystem`: the two batch systems of a store (raft and apply), their start-up from the
//! engines, the one timer thread (`store::ticker`), and shutdown.
//!
//! Start-up order: load every region in state `Normal`, `Applying` or `Merging` from the KV engine's `raft` CF, build
//! its `PeerFsm` and `ApplyFsm`, register both, then start the apply pollers, the split
//! checker, the raft log GC worker, the ticker (the pollers need its scheduling handle) and
//! finally the raft pollers.
//! Shutdown: ticker, raft pollers (no new committed entries), apply pollers, split checker,
//! log GC worker.
//! Commands still queued are answered `RegionNotFound` as their FSMs drop.

use std::sync::Arc;
use std::thread::JoinHandle;

use batch_system::{BatchSystem, Router};
use crossbeam_channel::Sender;
use engine_traits::{EngineIterator, IterOptions, KvEngine, RaftEngine, CF_RAFT};
use parking_lot::Mutex;
use prost::Message as _;
use proto::metapb;
use proto::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};
use slog::{info, o, Logger};
use util::{LogIndex, RegionId, StoreId, Term};

use super::fsm::StoreFsm;
use super::life::{self, FsmHandles};
use super::meta::StoreMeta;
use super::poller::RaftPollerBuilder;
use super::router::RaftRouter;
use super::ticker::{self, TickerThread};
use super::PollContext;
use crate::apply::{ApplyControlFsm, ApplyFsm, ApplyPollerBuilder, ApplyTask};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result, StartError};
use crate::pd::PdHandle;
use crate::peer::fsm::PeerFsm;
use crate::peer::storage::Engines;
use crate::snap::{SnapKey, SnapManager};
use crate::stats::StoreStats;
use crate::transport::Transport;

pub struct StoreSystem<EK: KvEngine, ER: RaftEngine> {
    router: RaftRouter<EK, ER>,
    raft_system: BatchSystem<PeerFsm<EK, ER>, StoreFsm>,
    apply_router: Router<ApplyFsm<EK>, ApplyControlFsm>,
    apply_system: BatchSystem<ApplyFsm<EK>, ApplyControlFsm>,
    stats: StoreStats,
    ticker: Option<TickerThread>,
    split_checker: Option<(Sender<()>, JoinHandle<()>)>,
    log_gc: Option<(Sender<()>, JoinHandle<()>)>,
    snap_gen: Option<(Sender<()>, JoinHandle<()>)>,
    snap_apply: Option<(Sender<()>, JoinHandle<()>)>,
    clock: Arc<dyn Clock>,
    logger: Logger,
}

/// Creates a store's systems; nothing runs until [`StoreSystem::start`]. The router can be
/// handed out at once (messages sent before start wait in mailboxes or are refused
/// `RegionNotFound` for regions not loaded yet).
pub fn create_store_system<EK: KvEngine, ER: RaftEngine>(
    cfg: &Config,
    logger: &Logger,
) -> std::result::Result<(RaftRouter<EK, ER>, StoreSystem<EK, ER>), StartError> {
    let (control_tx, control_rx) = batch_system::inbox(cfg.notify_capacity);
    let store_fsm = Box::new(StoreFsm::new(control_rx, logger.new(o!("fsm" => "store"))));
    let (router, raft_system) = batch_system::create_system(
        &cfg.store_batch_system(),
        logger.new(o!("system" => "raft")),
        control_tx,
        store_fsm,
    )?;
    let (apply_tx, apply_rx) = batch_system::inbox(cfg.notify_capacity);
    let (apply_router, apply_system) = batch_system::create_system(
        &cfg.apply_batch_system(),
        logger.new(o!("system" => "apply")),
        apply_tx,
        Box::new(ApplyControlFsm::new(apply_rx)),
    )?;
    let router = RaftRouter::new(router);
    let system = StoreSystem {
        router: router.clone(),
        raft_system,
        apply_router,
        apply_system,
        stats: StoreStats::default(),
        ticker: None,
        split_checker: None,
        log_gc: None,
        snap_gen: None,
        snap_apply: None,
        clock: Arc::new(SystemClock),
        logger: logger.clone(),
    };
    Ok((router, system))
}

impl<EK: KvEngine, ER: RaftEngine> StoreSystem<EK, ER> {
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Replaces the system clock the peers read (tests: a [`crate::ManualClock`]). MUST be
    /// called before [`StoreSystem::start`].
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        assert!(self.ticker.is_none(), "the clock is set before the store starts");
        self.clock = clock;
    }

    /// Loads the store's regions and starts the pollers, the split checker and the ticker.
    /// `store_meta` is filled with the loaded regions.
    ///
    /// # Panics
    /// If called twice.
    pub fn start<T: Transport>(
        &mut self,
        store_id: StoreId,
        cfg: Arc<Config>,
        engines: Engines<EK, ER>,
        transport: T,
        pd: Arc<dyn PdHandle>,
        store_meta: Arc<Mutex<StoreMeta>>,
        snap_mgr: SnapManager,
    ) -> std::result::Result<(), StartError> {
        assert!(self.ticker.is_none(), "store system started twice");
        let regions = load_regions(&engines.kv, &self.logger)?;
        // Snapshots being applied when the store stopped are applied again; every other
        // snapshot file is worthless now (senders regenerate, leaders resend).
        let applying: Vec<(metapb::Region, SnapKey)> = regions
            .iter()
            .filter(|s| s.state == PeerState::Applying as i32)
            .map(|s| {
                let region = s.region.clone().expect("checked by load_regions");
                let key = applying_snapshot_key(&engines.kv, &region)?;
                Ok((region, key))
            })
            .collect::<Result<_>>()?;
        snap_mgr
            .gc_at_start(|k| applying.iter().any(|(_, key)| key == k))
            .map_err(StartError::Snapshots)?;
        let handles = FsmHandles {
            cfg: &cfg,
            store_id,
            engines: &engines,
            router: &self.router,
            apply_router: &self.apply_router,
            logger: &self.logger,
        };
        let mut fsms = Vec::with_capacity(regions.len());
        let mut merging_sources = Vec::new();
        for state in regions {
            let merging = (state.state == PeerState::Merging as i32)
                .then(|| state.merge_state.clone().unwrap_or_default());
            let region = state.region.expect("checked by load_regions");
            if let Some(target) = merging.as_ref().and_then(|m| m.target.clone()) {
                merging_sources.push((RegionId(region.id), target));
            }
            fsms.push(life::build_region(&handles, &region, merging)?);
        }
        info!(self.logger, "loaded regions"; "count" => fsms.len(), "store_id" => store_id);
        {
            let mut meta = store_meta.lock();
            life::register_regions(&handles, &mut meta, fsms);
            for (source, target) in merging_sources {
                meta.set_merge_source(source, target);
            }
        }
        for (region, key) in applying {
            info!(self.logger, "applying a snapshot again"; "region_id" => region.id, "key" => %key);
            let _ =
                self.apply_router.force_send(region.id, ApplyTask::ApplySnapshot { region, key });
        }

        let (stop_gen, stop_rx) = crossbeam_channel::bounded(0);
        let (snap_gen, gen_handle) = crate::snap_gen::spawn(
            engines.kv.clone(),
            snap_mgr.clone(),
            self.stats.clone(),
            stop_rx,
            self.logger.new(o!("worker" => "snap-generator")),
        )
        .map_err(|source| StartError::Spawn { thread: "snap-generator", source })?;
        self.snap_gen = Some((stop_gen, gen_handle));
        let (stop_applier, stop_rx) = crossbeam_channel::bounded(0);
        let (snap_apply, applier_handle) =
            crate::snap_apply::spawn(engines.kv.clone(), snap_mgr.clone(), stop_rx)
                .map_err(|source| StartError::Spawn { thread: "snap-applier", source })?;
        self.snap_apply = Some((stop_applier, applier_handle));
        let apply_builder = ApplyPollerBuilder::new(
            engines.kv.clone(),
            self.router.clone(),
            snap_mgr.clone(),
            snap_gen,
            snap_apply,
            self.apply_router.clone(),
            cfg.messages_per_tick,
            self.stats.clone(),
            self.logger.new(o!("system" => "apply")),
        );
        self.apply_system.spawn("apply", apply_builder)?;
        let (stop_checker, stop_rx) = crossbeam_channel::bounded(0);
        let (split_checker, checker_handle) = crate::split::check::spawn(
            engines.kv.clone(),
            self.router.clone(),
            cfg.coprocessor.clone(),
            cfg.split_check_diff(),
            stop_rx,
            self.logger.new(o!("worker" => "split-check")),
        )
        .map_err(|source| StartError::Spawn { thread: "split-check", source })?;
        self.split_checker = Some((stop_checker, checker_handle));
        let (stop_gc, stop_rx) = crossbeam_channel::bounded(0);
        let (log_gc, gc_handle) = crate::log_gc::spawn(
            engines.kv.clone(),
            engines.raft.clone(),
            self.stats.clone(),
            stop_rx,
            self.logger.new(o!("worker" => "raft-log-gc")),
        )
        .map_err(|source| StartError::Spawn { thread: "raft-log-gc", source })?;
        self.log_gc = Some((stop_gc, gc_handle));
        // The ticker's thread starts now; its ticks reach peers once the pollers run.
        let (ticker, ticker_thread) =
            ticker::spawn(self.router.clone(), cfg.raft_base_tick_interval.as_duration())?;
        let raft_builder = RaftPollerBuilder {
            ctx_template: PollContext {
                cfg: cfg.clone(),
                store_id,
                raft_wb: engines.raft.log_batch(0),
                engines,
                transport,
                apply_router: self.apply_router.clone(),
                proposals_in_round: 0,
                sync_needed: false,
                stats: self.stats.clone(),
                store_meta,
                router: self.router.clone(),
                pd,
                split_checker,
                log_gc,
                snap_mgr,
                ticker,
                clock: self.clock.clone(),
                logger: self.logger.clone(),
            },
            logger: self.logger.new(o!("system" => "raft")),
        };
        self.ticker = Some(ticker_thread);
        self.raft_system.spawn("raftstore", raft_builder)?;
        Ok(())
    }

    /// Stops everything (see the module doc for the order). Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(TickerThread { stop, handle }) = self.ticker.take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Err(e) = self.raft_system.shutdown() {
            slog::error!(self.logger, "raft poller panicked"; "err" => %e);
        }
        if let Err(e) = self.apply_system.shutdown() {
            slog::error!(self.logger, "apply poller panicked"; "err" => %e);
        }
        let workers = [
            self.split_checker.take(),
            self.log_gc.take(),
            self.snap_gen.take(),
            self.snap_apply.take(),
        ];
        for (stop, handle) in workers.into_iter().flatten() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Drop for StoreSystem<EK, ER> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The snapshot a region in `Applying` was applying: its apply state names it (applied and
/// truncated at the snapshot's index and term).
fn applying_snapshot_key<EK: KvEngine>(kv: &EK, region: &metapb::Region) -> Result<SnapKey> {
    let region_id = RegionId(region.id);
    let state: RaftApplyState =
        kv.get_msg_cf(CF_RAFT, &keys::apply_state_key(region_id))?.ok_or_else(|| {
            Error::Engine(engine_traits::Error::Corrupted {
                what: format!("region {region_id} is applying a snapshot but has no apply state"),
            })
        })?;
    let t = state.truncated_state.unwrap_or_default();
    Ok(SnapKey { region_id, term: Term(t.term), index: LogIndex(t.index) })
}

/// Every region of this store in state `Normal`, `Applying` or `Merging` (a merge source
/// resumes its merge, `peer::merge`), in region id order.
fn load_regions<EK: KvEngine>(kv: &EK, logger: &Logger) -> Result<Vec<RegionLocalState>> {
    let lower = vec![keys::LOCAL_PREFIX, keys::REGION_META_PREFIX];
    let upper = vec![keys::LOCAL_PREFIX, keys::REGION_META_PREFIX + 1];
    let mut it = kv.iterator_opt(CF_RAFT, IterOptions::new(Some(lower), Some(upper)));
    let mut out = Vec::new();
    let mut valid = it.seek_to_first()?;
    while valid {
        if let Ok(region_id) = keys::decode_region_state_key(it.key()) {
            let state = RegionLocalState::decode(it.value()).map_err(|e| {
                Error::Engine(engine_traits::Error::Codec {
                    what: "RegionLocalState",
                    key: it.key().to_vec(),
                    message: e.to_string(),
                })
            })?;
            match PeerState::try_from(state.state) {
                Ok(PeerState::Normal | PeerState::Applying) if state.region.is_some() => {
                    out.push(state)
                }
                Ok(PeerState::Merging) if state.region.is_some() => {
                    if state.merge_state.as_ref().is_none_or(|m| m.target.is_none()) {
                        return Err(Error::Engine(engine_traits::Error::Corrupted {
                            what: format!("region {region_id} is merging without a target"),
                        }));
                    }
                    out.push(state)
                }
                Ok(PeerState::Tombstone) => {}
                other => {
                    slog::warn!(logger, "skipping region in unexpected state"; "region_id" => region_id, "state" => ?other);
                }
            }
        }
        valid = it.next()?;
    }
    Ok(out)
}
