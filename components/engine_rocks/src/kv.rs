//! [`RocksEngine`]: the KV engine over one RocksDB instance with every CF of
//! [`engine_traits::ALL_CFS`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use engine_traits::{
    IterOptions, Iterable, KvEngine, Peekable, RangeStats, Result, WriteOptions, ALL_CFS,
};
use rocksdb::{FlushOptions, DB};
use slog::Logger;

use crate::config::RocksDbConfig;
use crate::db::open_db;
use crate::error::{engine_error, OpenError};
use crate::raw_ttl::{tune_cf_options, ValueFormat};
use crate::size::approximate_size_and_keys;
use crate::snapshot::{cf_handle, RocksIterator, RocksSnapshot};
use crate::write_batch::RocksWriteBatch;

/// Opens the KV engine at `path`, creating it and its CFs if `create-if-missing` allows. Values
/// are opaque ([`ValueFormat::Opaque`]): compaction never removes anything by its value.
pub fn open_kv_engine(
    path: impl AsRef<Path>,
    cfg: &RocksDbConfig,
    logger: &Logger,
) -> std::result::Result<RocksEngine, OpenError> {
    open_kv_engine_with_format(path, cfg, ValueFormat::Opaque, logger)
}

/// Opens the KV engine at `path` as [`open_kv_engine`] does, for data CF values in `format`.
///
/// The caller MUST only write values in `format` to data keys of the data CFs while the engine
/// is open with [`ValueFormat::RawTtl`] (and must not reopen a store written otherwise with it):
/// compaction reads the last 8 bytes of every such value as an expiry and deletes the key once
/// that time has passed.
pub fn open_kv_engine_with_format(
    path: impl AsRef<Path>,
    cfg: &RocksDbConfig,
    format: ValueFormat,
    logger: &Logger,
) -> std::result::Result<RocksEngine, OpenError> {
    let tune = |cf: &str, opts: &mut rocksdb::Options| tune_cf_options(format, cf, opts);
    let db = open_db(path.as_ref(), cfg, ALL_CFS, tune, "kv", logger)?;
    slog::info!(logger, "KV engine value format"; "format" => ?format);
    Ok(RocksEngine { db })
}

/// The KV engine. Clones share one database, closed when the last clone, snapshot and iterator
/// drop.
#[derive(Clone)]
pub struct RocksEngine {
    pub(crate) db: Arc<DB>,
}

impl fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksEngine").field("path", &self.db.path()).finish()
    }
}

impl Peekable for RocksEngine {
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(cf_handle(&self.db, cf), key).map_err(|e| engine_error("get", e))
    }
}

impl Iterable for RocksEngine {
    type Iterator = RocksIterator;

    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> RocksIterator {
        RocksIterator::over_db(self.db.clone(), cf, opts)
    }
}

impl KvEngine for RocksEngine {
    type Snapshot = RocksSnapshot;
    type WriteBatch = RocksWriteBatch;

    fn snapshot(&self) -> RocksSnapshot {
        RocksSnapshot::new(self.db.clone())
    }

    fn write_batch_with_cap(&self, cap_bytes: usize) -> RocksWriteBatch {
        RocksWriteBatch::new(self.db.clone(), cap_bytes)
    }

    fn write(&self, batch: &mut RocksWriteBatch, opts: &WriteOptions) -> Result<()> {
        let batch = batch.take();
        if batch.is_empty() {
            return Ok(());
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(opts.sync);
        self.db.write_opt(batch, &wo).map_err(|e| engine_error("write batch", e))
    }

    fn delete_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        self.db
            .delete_range_cf(cf_handle(&self.db, cf), start, end)
            .map_err(|e| engine_error("delete range", e))
    }

    fn approximate_size_and_keys(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<RangeStats> {
        approximate_size_and_keys(&self.db, cf_handle(&self.db, cf), start, end)
    }

    fn flush_cf(&self, cf: &str) -> Result<()> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        self.db.flush_cf_opt(cf_handle(&self.db, cf), &opts).map_err(|e| engine_error("flush", e))
    }

    fn sync_wal(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(|e| engine_error("sync wal", e))
    }
}
