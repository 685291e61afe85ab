//! `StoreSystem`: the two batch systems of a store (raft and apply), their start-up from the
//! engines, the one timer thread (`store::ticker`), and shutdown.
//!
//! Start-up order: load every region in state `Normal` from the KV engine's `raft` CF, build
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
use proto::raft_serverpb::{PeerState, RegionLocalState};
use slog::{info, o, Logger};
use util::{RegionId, StoreId, Term};

use super::fsm::StoreFsm;
use super::meta::StoreMeta;
use super::poller::RaftPollerBuilder;
use super::router::RaftRouter;
use super::ticker::{self, TickerThread};
use super::PollContext;
use crate::apply::{ApplyControlFsm, ApplyFsm, ApplyPollerBuilder};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pd::PdHandle;
use crate::peer::fsm::PeerFsm;
use crate::peer::storage::{Engines, PeerStorage};
use crate::peer::Peer;
use crate::stats::StoreStats;
use crate::transport::Transport;
use crate::util::find_peer;

pub struct StoreSystem<EK: KvEngine, ER: RaftEngine> {
    router: RaftRouter<EK, ER>,
    raft_system: BatchSystem<PeerFsm<EK, ER>, StoreFsm>,
    apply_router: Router<ApplyFsm<EK>, ApplyControlFsm>,
    apply_system: BatchSystem<ApplyFsm<EK>, ApplyControlFsm>,
    stats: StoreStats,
    ticker: Option<TickerThread>,
    split_checker: Option<(Sender<()>, JoinHandle<()>)>,
    log_gc: Option<(Sender<()>, JoinHandle<()>)>,
    clock: Arc<dyn Clock>,
    logger: Logger,
}

/// Creates a store's systems; nothing runs until [`StoreSystem::start`]. The router can be
/// handed out at once (messages sent before start wait in mailboxes or are refused
/// `RegionNotFound` for regions not loaded yet).
pub fn create_store_system<EK: KvEngine, ER: RaftEngine>(
    cfg: &Config,
    logger: &Logger,
) -> Result<(RaftRouter<EK, ER>, StoreSystem<EK, ER>)> {
    let batch_err = |e: batch_system::Error| Error::InvalidRequest(format!("batch system: {e}"));
    let (control_tx, control_rx) = batch_system::inbox(cfg.notify_capacity);
    let store_fsm = Box::new(StoreFsm::new(control_rx, logger.new(o!("fsm" => "store"))));
    let (router, raft_system) = batch_system::create_system(
        &cfg.store_batch_system(),
        logger.new(o!("system" => "raft")),
        control_tx,
        store_fsm,
    )
    .map_err(batch_err)?;
    let (apply_tx, apply_rx) = batch_system::inbox(cfg.notify_capacity);
    let (apply_router, apply_system) = batch_system::create_system(
        &cfg.apply_batch_system(),
        logger.new(o!("system" => "apply")),
        apply_tx,
        Box::new(ApplyControlFsm::new(apply_rx)),
    )
    .map_err(batch_err)?;
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
    ) -> Result<()> {
        assert!(self.ticker.is_none(), "store system started twice");
        let regions = load_regions(&engines.kv, &self.logger)?;
        let mut peers = Vec::with_capacity(regions.len());
        let mut applies = Vec::with_capacity(regions.len());
        for state in regions {
            let region = state.region.expect("checked by load_regions");
            let region_id = RegionId(region.id);
            let Some(meta) = find_peer(&region, store_id).cloned() else {
                return Err(Error::Engine(engine_traits::Error::Corrupted {
                    what: format!(
                        "region {region_id} is stored but has no peer on store {store_id}"
                    ),
                }));
            };
            let logger = self.logger.new(o!("region_id" => region.id, "peer_id" => meta.id));
            let storage = PeerStorage::load(engines.clone(), region.clone(), logger.clone())?;
            let apply_state = storage.apply_state().clone();
            let applied_term = Term(apply_state.commit_term);
            let peer = Peer::new(&cfg, meta, storage, logger.clone())?;
            let (tx, rx) = self.router.inner().create_inbox();
            peers.push((region.id, tx, Box::new(PeerFsm::new(peer, rx))));
            let (tx, rx) = self.apply_router.create_inbox();
            let apply = ApplyFsm::new(region.clone(), apply_state, applied_term, rx, logger);
            applies.push((region.id, tx, Box::new(apply)));
            store_meta.lock().set_region(region);
        }
        info!(self.logger, "loaded regions"; "count" => peers.len(), "store_id" => store_id);
        self.apply_router.register_all(applies);
        self.router.inner().register_all(peers);

        let batch_err =
            |e: batch_system::Error| Error::InvalidRequest(format!("batch system: {e}"));
        let apply_builder = ApplyPollerBuilder::new(
            engines.kv.clone(),
            self.router.clone(),
            cfg.messages_per_tick,
            self.stats.clone(),
            self.logger.new(o!("system" => "apply")),
        );
        self.apply_system.spawn("apply", apply_builder).map_err(batch_err)?;
        let (stop_checker, stop_rx) = crossbeam_channel::bounded(0);
        let (split_checker, checker_handle) = crate::split::check::spawn(
            engines.kv.clone(),
            self.router.clone(),
            cfg.coprocessor.clone(),
            stop_rx,
            self.logger.new(o!("worker" => "split-check")),
        )
        .map_err(|e| Error::InvalidRequest(format!("cannot start the split checker: {e}")))?;
        self.split_checker = Some((stop_checker, checker_handle));
        let (stop_gc, stop_rx) = crossbeam_channel::bounded(0);
        let (log_gc, gc_handle) = crate::log_gc::spawn(
            engines.kv.clone(),
            engines.raft.clone(),
            self.stats.clone(),
            stop_rx,
            self.logger.new(o!("worker" => "raft-log-gc")),
        )
        .map_err(|e| Error::InvalidRequest(format!("cannot start the raft log GC worker: {e}")))?;
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
                ticker,
                clock: self.clock.clone(),
                logger: self.logger.clone(),
            },
            logger: self.logger.new(o!("system" => "raft")),
        };
        self.ticker = Some(ticker_thread);
        self.raft_system.spawn("raftstore", raft_builder).map_err(batch_err)?;
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
        for (stop, handle) in [self.split_checker.take(), self.log_gc.take()].into_iter().flatten()
        {
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

/// Every region of this store in state `Normal`, in region id order.
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
                Ok(PeerState::Normal) if state.region.is_some() => out.push(state),
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
