//! [`RocksEngine`]: the KV engine over one RocksDB instance with every CF of
//! [`engine_traits::ALL_CFS`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use engine_traits::{
    CfName, IterOptions, Iterable, KvEngine, Peekable, RangeStats, Result, WriteOptions, ALL_CFS,
};
use rocksdb::{FlushOptions, Options, DB};
use slog::Logger;

use crate::config::RocksDbConfig;
use crate::db::{open_db, OpenedDb};
use crate::error::{engine_error, OpenError};
use crate::raw_ttl::{tune_cf_options, ValueFormat};
use crate::size::approximate_size_and_keys;
use crate::snapshot::{cf_handle, RocksIterator, RocksSnapshot};
use crate::sst::{ingest, RocksSstWriter};
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
    let opened = open_db(path.as_ref(), cfg, ALL_CFS, tune, "", "kv", logger)?;
    slog::info!(logger, "KV engine value format"; "format" => ?format);
    Ok(RocksEngine::new(opened, Durability::Wal))
}

/// Opens the KV engine at `path` for **power-cut tests**: what was not made durable is lost
/// when the engine closes, as it would be in a power cut, while the process keeps running.
///
/// How: unsynced writes skip the WAL (they live only in memtables), the DB is opened with
/// `avoid_flush_during_shutdown` (closing drops the memtables) and `atomic_flush` (a memtable
/// flush persists one prefix of the writes across every CF, never the raft CF's apply state
/// without the data it describes). What makes writes durable is what makes them durable in
/// production: a synced write, or [`KvEngine::sync_wal`]; here both flush the memtables of
/// every CF. RocksDB may also flush on its own (a full memtable), which persists more than
/// the last sync, as a real power cut may. Never use it for a real store.
pub fn open_kv_engine_losing_unsynced_writes(
    path: impl AsRef<Path>,
    cfg: &RocksDbConfig,
    logger: &Logger,
) -> std::result::Result<RocksEngine, OpenError> {
    open_kv_engine_losing_unsynced_writes_with_format(path, cfg, ValueFormat::Opaque, logger)
}

/// As [`open_kv_engine_losing_unsynced_writes`], with the server's value format: the nemesis
/// harness runs real stores this way, so that its kill -9 is a power cut of the KV engine.
pub fn open_kv_engine_losing_unsynced_writes_with_format(
    path: impl AsRef<Path>,
    cfg: &RocksDbConfig,
    format: ValueFormat,
    logger: &Logger,
) -> std::result::Result<RocksEngine, OpenError> {
    let tune = |cf: &str, opts: &mut rocksdb::Options| tune_cf_options(format, cf, opts);
    let extra = "atomic_flush=true;avoid_flush_during_shutdown=true";
    let opened =
        open_db(path.as_ref(), cfg, ALL_CFS, tune, extra, "kv (losing unsynced writes)", logger)?;
    Ok(RocksEngine::new(opened, Durability::MemtableFlush))
}

/// What makes a KV write durable (see [`open_kv_engine_losing_unsynced_writes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Writes go to the WAL; syncing it makes them durable. Every real store.
    Wal,
    /// Writes skip the WAL; flushing every CF's memtable makes them durable. Tests only.
    MemtableFlush,
}

/// The KV engine. Clones share one database, closed when the last clone, snapshot and iterator
/// drop.
#[derive(Clone)]
pub struct RocksEngine {
    pub(crate) db: Arc<DB>,
    durability: Durability,
    /// The options each CF was opened with, for SST writers (`sst.rs`, invariant 1).
    cf_options: Arc<Vec<(CfName, Options)>>,
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
    type SstWriter = RocksSstWriter;

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
        match self.durability {
            Durability::Wal => wo.set_sync(opts.sync),
            Durability::MemtableFlush => wo.disable_wal(true),
        }
        self.db.write_opt(batch, &wo).map_err(|e| engine_error("write batch", e))?;
        if opts.sync && self.durability == Durability::MemtableFlush {
            self.flush_all()?;
        }
        Ok(())
    }

    fn delete_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        // Through a batch, so it follows the engine's durability like every other write.
        let mut wb = self.write_batch();
        engine_traits::Mutable::delete_range_cf(&mut wb, cf, start, end);
        self.write(&mut wb, &WriteOptions::default())
    }

    fn sst_writer(&self, cf: &str, path: &Path) -> Result<RocksSstWriter> {
        RocksSstWriter::create(self.cf_options(cf).clone(), path)
    }

    fn ingest_external_files_cf(&self, cf: &str, paths: &[&Path]) -> Result<()> {
        ingest(&self.db, cf, paths)
    }

    fn sst_key_range(path: &Path, scratch_dir: &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        crate::sst::sst_key_range(path, scratch_dir)
    }

    fn approximate_size_and_keys(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<RangeStats> {
        approximate_size_and_keys(&self.db, cf_handle(&self.db, cf), start, end)
    }

    fn flush_cf(&self, cf: &str) -> Result<()> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        self.db.flush_cf_opt(cf_handle(&self.db, cf), &opts).map_err(|e| engine_error("flush", e))
    }

    fn compact_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        // RocksDB reports no error from a manual compaction; a failing one shows in its log.
        self.db.compact_range_cf(cf_handle(&self.db, cf), Some(start), Some(end));
        Ok(())
    }

    fn sync_wal(&self) -> Result<()> {
        match self.durability {
            Durability::Wal => self.db.flush_wal(true).map_err(|e| engine_error("sync wal", e)),
            Durability::MemtableFlush => self.flush_all(),
        }
    }
}

impl RocksEngine {
    fn new(opened: OpenedDb, durability: Durability) -> RocksEngine {
        RocksEngine { db: opened.db, durability, cf_options: Arc::new(opened.cf_options) }
    }

    /// The options `cf` was opened with.
    ///
    /// # Panics
    /// If the engine has no such CF: CF names are constants, so this is a programmer error.
    fn cf_options(&self, cf: &str) -> &Options {
        self.cf_options
            .iter()
            .find_map(|(name, opts)| (*name == cf).then_some(opts))
            .unwrap_or_else(|| panic!("RocksDB has no column family {cf:?}"))
    }

    /// Flushes every CF's memtable at once (one prefix of the writes, see `atomic_flush`).
    fn flush_all(&self) -> Result<()> {
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        let cfs: Vec<_> = ALL_CFS.iter().map(|cf| cf_handle(&self.db, cf)).collect();
        self.db.flush_cfs_opt(&cfs, &opts).map_err(|e| engine_error("flush", e))
    }
}
