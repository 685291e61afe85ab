//! [`RocksSstWriter`]: RocksDB's `SstFileWriter` for one CF, and ingestion of its files.
//!
//! rust-rocksdb ties an `SstFileWriter` to a borrow of the `Options` it was created with. Our
//! writer is an owned value (it moves to a worker thread and lives across calls), so it is a
//! `self_cell` that owns a copy of the CF's options, as `snapshot.rs` does for snapshots: no
//! `unsafe`, and the options outlive the writer by construction.
//!
//! Invariants:
//! 1. The writer uses the exact options the engine opened the CF with (kept by
//!    `crate::kv::RocksEngine`), so table format, filters and compression (RocksDB's
//!    `SstFileWriter` picks the last level's codec of `compression_per_level`) match what the
//!    CF's compactions would write.
//! 2. Ingestion moves files (RocksDB hard-links them into the DB and unlinks the original on
//!    success, copying only when linking fails, e.g. across filesystems) and lets RocksDB
//!    assign them a sequence number above everything already written, so ingested keys
//!    shadow older versions and range tombstones written before the ingestion.

use std::path::{Path, PathBuf};

use engine_traits::{Result, SstFileInfo, SstWriter};
use rocksdb::{IngestExternalFileOptions, Options, SstFileWriter, DB};
use self_cell::self_cell;

use crate::snapshot::cf_handle;

self_cell!(
    struct WriterCell {
        owner: Options,
        #[covariant]
        dependent: SstFileWriter,
    }
);

/// Writes one SST file for a CF of a [`crate::RocksEngine`]; see [`SstWriter`].
pub struct RocksSstWriter {
    cell: WriterCell,
    path: PathBuf,
    keys: u64,
}

impl RocksSstWriter {
    /// Creates (or truncates) the file at `path`, to be written with `cf_options`.
    pub(crate) fn create(cf_options: Options, path: &Path) -> Result<RocksSstWriter> {
        let cell = WriterCell::new(cf_options, |opts| SstFileWriter::create(opts));
        cell.borrow_dependent().open(path).map_err(|e| sst_error("sst create", path, e))?;
        Ok(RocksSstWriter { cell, path: path.to_path_buf(), keys: 0 })
    }
}

impl SstWriter for RocksSstWriter {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let path = &self.path;
        self.cell
            .with_dependent_mut(|_, w| w.put(key, value))
            .map_err(|e| sst_error("sst put", path, e))?;
        self.keys += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<SstFileInfo> {
        let path = &self.path;
        self.cell
            .with_dependent_mut(|_, w| w.finish())
            .map_err(|e| sst_error("sst finish", path, e))?;
        let size_bytes = self.cell.borrow_dependent().file_size();
        Ok(SstFileInfo { size_bytes, keys: self.keys })
    }
}

/// Ingests `paths` into `cf`, moving them (invariant 2).
pub(crate) fn ingest(db: &DB, cf: &str, paths: &[&Path]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut opts = IngestExternalFileOptions::default();
    opts.set_move_files(true);
    db.ingest_external_file_cf_opts(cf_handle(db, cf), &opts, paths.to_vec()).map_err(|e| {
        engine_traits::Error::Engine {
            op: "ingest external files",
            message: format!("cf {cf}, files {paths:?}: {}", e.into_string()),
        }
    })
}

/// A RocksDB failure of an SST file operation, naming the file (RocksDB's own message often
/// does not).
fn sst_error(op: &'static str, path: &Path, e: rocksdb::Error) -> engine_traits::Error {
    engine_traits::Error::Engine { op, message: format!("{}: {}", path.display(), e.into_string()) }
}
