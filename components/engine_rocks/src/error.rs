//! Errors of opening an engine, and the mapping of RocksDB failures to
//! [`engine_traits::Error`]. Every RocksDB error is reported with the operation that failed,
//! because RocksDB's own message rarely says what we were doing.

use std::path::PathBuf;

use util::config::ConfigError;

/// Why an engine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid; nothing was touched on disk.
    #[error("invalid RocksDB config: {0}")]
    Config(#[from] ConfigError),
    /// RocksDB refused to open (or create) the database at `path`.
    #[error("cannot open RocksDB at {path:?}: {message}")]
    Open { path: PathBuf, message: String },
}

/// Wraps a RocksDB failure of operation `op`.
pub(crate) fn engine_error(op: &'static str, e: rocksdb::Error) -> engine_traits::Error {
    engine_traits::Error::Engine { op, message: e.into_string() }
}
