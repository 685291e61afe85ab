//! Storage errors. Every variant says what was being done to what, because a storage error is
//! fatal to the store and the log line is all an operator has. Programmer errors (an unknown
//! column family, a non-contiguous append) are `assert!`s, never values of this type.

use util::{LogIndex, RegionId};

/// An engine operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The storage engine (RocksDB) reported a failure for operation `op`.
    #[error("engine operation `{op}` failed: {message}")]
    Engine { op: &'static str, message: String },
    /// A stored value could not be decoded as `what`.
    #[error("cannot decode {what} stored at key {key:?}: {message}")]
    Codec { what: &'static str, key: Vec<u8>, message: String },
    /// A stored key does not have the layout of the `keys` crate.
    #[error("malformed stored key: {0}")]
    Key(#[from] keys::Error),
    /// Raft log entries starting at `low` were compacted away (garbage collected); the first
    /// stored entry is `first_index`. Raft answers this by sending a snapshot.
    #[error("region {region_id}: log entries from {low} are compacted, first stored index is {first_index}")]
    EntriesCompacted { region_id: RegionId, low: LogIndex, first_index: LogIndex },
    /// Raft log entries in `[low, high)` are not stored (yet): the log ends at `last_index`
    /// (0 when the region stores no entry).
    #[error("region {region_id}: log entries [{low}, {high}) are unavailable, last stored index is {last_index}")]
    EntriesUnavailable { region_id: RegionId, low: LogIndex, high: LogIndex, last_index: LogIndex },
    /// Stored data violates an invariant of this store, described by `what`.
    #[error("corrupted storage: {what}")]
    Corrupted { what: String },
}

pub type Result<T> = std::result::Result<T, Error>;
