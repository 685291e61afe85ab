//! The multi-raft core: one raft peer per region, driven by the batch system, persisted in the
//! shared engines, applied by a second batch system.
//!
//! Entry points: [`create_store_system`] + [`StoreSystem::start`] run a store over its
//! [`Engines`] and a [`Transport`]; the [`RaftRouter`] delivers raft messages and commands;
//! [`bootstrap_store`] and [`bootstrap_region`] prepare new engines. The crate is generic over
//! `engine_traits` and `Transport`: it names no RocksDB, gRPC or async runtime type.

pub mod apply;
pub mod callback;
pub mod clock;
pub mod config;
pub mod error;
pub mod log_gc;
pub mod msg;
pub mod pd;
pub mod peer;
pub mod region_snapshot;
pub mod snap;
pub mod snap_apply;
pub mod snap_gen;
pub mod split;
pub mod stats;
pub mod store;
pub mod transport;
pub mod util;

pub use callback::{Callback, CmdResponse, CmdResult};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use error::{Error, Result, StartError};
pub use msg::{PeerMsg, RaftCommand, SplitSource, StoreMsg};
pub use pd::{
    operator_command, OperatorError, PdError, PdHandle, RegionCallback, RegionHeartbeat,
    SplitIdsCallback,
};
pub use peer::storage::{Engines, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use region_snapshot::RegionSnapshot;
pub use snap::{SnapKey, SnapManager};
pub use split::SplitConfig;
pub use stats::{DroppedMessage, LeaderGuard, StoreStats, StoreStatsSnapshot};
pub use store::{
    bootstrap_region, bootstrap_store, create_store_system, load_store_ident, BootstrapError,
    RaftRouter, StoreMeta, StoreSystem,
};
pub use transport::{SnapshotDone, Transport, TransportError};
