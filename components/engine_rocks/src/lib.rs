//! The RocksDB implementations of the engine traits: [`RocksEngine`] (KV engine) and
//! [`RocksRaftEngine`] (raft engine), each over its own RocksDB instance.
//!
//! Architecture invariant: this is the only crate that names a `rocksdb` type; everything above
//! it programs against `engine_traits`. Both engines are `Arc<DB>` handles: clones are cheap
//! and the database closes when the last clone (and snapshot, and iterator) drops.
//!
//! Opened with [`ValueFormat::RawTtl`], the KV engine also removes expired raw KV values from
//! its data CFs during compaction (`raw_ttl.rs`); [`open_kv_engine`] leaves values opaque.

mod config;
mod db;
mod error;
mod kv;
mod raft_engine;
mod raw_ttl;
mod size;
mod snapshot;
mod sst;
mod write_batch;

pub use crate::config::{Compression, RocksDbConfig, NUM_LEVELS};
pub use crate::error::OpenError;
pub use crate::kv::{
    open_kv_engine, open_kv_engine_losing_unsynced_writes,
    open_kv_engine_losing_unsynced_writes_with_format, open_kv_engine_with_format, RocksEngine,
};
pub use crate::raft_engine::{
    open_raft_engine, RocksLogBatch, RocksRaftEngine, GC_KEYS_PER_WRITE_MAX, TAIL_POINT_DELETES_MAX,
};
pub use crate::raw_ttl::ValueFormat;
pub use crate::snapshot::{RocksIterator, RocksSnapshot};
pub use crate::sst::RocksSstWriter;
pub use crate::write_batch::RocksWriteBatch;
