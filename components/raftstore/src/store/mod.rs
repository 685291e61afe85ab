//! The store: its control FSM, the raft poller, the router, start-up and bootstrap.

mod bootstrap;
mod fsm;
pub(crate) mod life;
mod meta;
mod poller;
mod router;
mod system;
mod ticker;

use std::sync::Arc;

use engine_traits::{KvEngine, RaftEngine};
use parking_lot::Mutex;
use util::StoreId;

use crate::apply::ApplyRouter;
use crate::clock::Clock;
use crate::config::Config;
use crate::log_gc::LogGcScheduler;
use crate::pd::PdHandle;
use crate::peer::storage::Engines;
use crate::split::SplitChecker;
use crate::stats::StoreStats;

pub use bootstrap::{bootstrap_region, bootstrap_store, load_store_ident, BootstrapError};
pub use fsm::StoreFsm;
pub use meta::StoreMeta;
pub use router::{RaftRouter, SendError};
pub use system::{create_store_system, StoreSystem};
pub use ticker::Ticker;

/// What the peers of one raft poller share during a round.
pub struct PollContext<EK: KvEngine, ER: RaftEngine, T> {
    pub cfg: Arc<Config>,
    pub store_id: StoreId,
    pub engines: Engines<EK, ER>,
    pub transport: T,
    pub apply_router: ApplyRouter<EK>,
    /// The round's one raft-engine batch.
    pub raft_wb: ER::LogBatch,
    /// Client commands proposed this round: they are made durable by this round's fsync.
    pub proposals_in_round: u64,
    /// Something in the round's raft batch must be synced (entries, a new term or vote).
    pub sync_needed: bool,
    pub stats: StoreStats,
    pub store_meta: Arc<Mutex<StoreMeta>>,
    /// To create and reach peers (splits) and to route answers from other threads.
    pub router: RaftRouter<EK, ER>,
    pub pd: Arc<dyn PdHandle>,
    pub split_checker: SplitChecker,
    /// Deletes compacted raft log entries (`log_gc`).
    pub log_gc: LogGcScheduler,
    /// The store's snapshot files.
    pub snap_mgr: crate::snap::SnapManager,
    /// One-shot ticks at an instant (deadlines finer than the base tick).
    pub ticker: Ticker,
    /// The time peer logic reads (`clock.rs`).
    pub clock: Arc<dyn Clock>,
    /// The store's logger, for peers created at run time.
    pub logger: slog::Logger,
}

impl<EK: KvEngine, ER: RaftEngine, T> PollContext<EK, ER, T> {
    /// What creating or removing a region's FSMs needs (`store::life`).
    pub(crate) fn fsm_handles(&self) -> life::FsmHandles<'_, EK, ER> {
        life::FsmHandles {
            cfg: &self.cfg,
            store_id: self.store_id,
            engines: &self.engines,
            router: &self.router,
            apply_router: &self.apply_router,
            logger: &self.logger,
        }
    }
}
