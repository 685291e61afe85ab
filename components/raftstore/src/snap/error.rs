//! Errors of the snapshot file layer. Each says what was being done to which file or snapshot,
//! because the caller's log line is all an operator gets.
//!
//! Kinds, for the caller to tell apart:
//! - `Io` and `Engine` are **storage errors** on this store (a full disk, a dead device).
//! - `Corrupted` and `TooLarge` say the **snapshot** is bad (bits rotted on disk, a sender or
//!   network that delivered other bytes than it declared); the files involved are already
//!   deleted when the error is returned by a receiver, and the snapshot is generated or sent
//!   again.
//! - `Busy` and `InUse`/`Exists` are **flow control**: try again later, or not at all.

use std::path::PathBuf;

use crate::snap::{Side, SnapKey};

/// A snapshot file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filesystem refused operation `op` on `path`.
    #[error("snapshot file {op} failed for {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file at `path` (or the snapshot meta describing it) is not what it must be.
    #[error("snapshot file {path:?} is corrupted: {reason}")]
    Corrupted { path: PathBuf, reason: String },
    /// A sender delivered more bytes than the snapshot's meta declares; nothing past the
    /// declared size was written.
    #[error(
        "snapshot {key}: received {received_bytes} bytes, more than the {declared_bytes} declared"
    )]
    TooLarge { key: SnapKey, declared_bytes: u64, received_bytes: u64 },
    /// `limit` snapshots are already being sent (`side` = [`Side::Gen`]) or received
    /// ([`Side::Rev`]); `concurrent-send-snap-limit` / `concurrent-recv-snap-limit`.
    #[error("too many {side:?} snapshot transfers in progress (limit {limit})")]
    Busy { side: Side, limit: usize },
    /// The snapshot's files on `side` are being built, sent, received, applied or deleted by
    /// someone else right now.
    #[error("snapshot {key} ({side:?}) is in use")]
    InUse { key: SnapKey, side: Side },
    /// The snapshot was already received completely: there is nothing to receive again.
    #[error("snapshot {key} was already received")]
    Exists { key: SnapKey },
    /// The KV engine failed (reading a region, writing or ingesting an SST file).
    #[error("snapshot engine operation: {0}")]
    Engine(#[from] engine_traits::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Builds the [`Error::Io`] for `op` on `path`; for `map_err`.
pub(crate) fn io_error(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
