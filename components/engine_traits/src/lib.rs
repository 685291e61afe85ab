//! What the raftstore may ask of its two storage engines, with no RocksDB type in sight.
//!
//! * [`KvEngine`] holds region data (data keys, see the `keys` crate) and each region's
//!   `RaftApplyState` / `RegionLocalState` in [`CF_RAFT`], so applied data and apply progress
//!   commit in one atomic [`WriteBatch`].
//! * [`RaftEngine`] holds every region's raft log and `RaftLocalState`; a [`RaftLogBatch`]
//!   carries many regions' appends so a poll round costs one write and one fsync.
//!
//! Architecture invariant: this crate depends on no storage library. `engine_rocks` implements
//! it over RocksDB; tests and the raftstore only see these traits.

mod cf;
mod error;
mod kv;
mod options;
mod raft_engine;
mod sst;

pub use crate::cf::{CfName, ALL_CFS, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, DATA_CFS};
pub use crate::error::{Error, Result};
pub use crate::kv::{
    EngineIterator, Iterable, KvEngine, Mutable, Peekable, RangeStats, Snapshot, WriteBatch,
};
pub use crate::options::{IterOptions, WriteOptions};
pub use crate::raft_engine::{RaftEngine, RaftLogBatch};
pub use crate::sst::{SstFileInfo, SstWriter};
