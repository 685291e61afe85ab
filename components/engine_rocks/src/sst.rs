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

/// The smallest and largest key of the SST file at `path` (`None`: it holds no key), read
/// without touching any engine: RocksDB's C API has no SST reader, so a hard link of the file
/// is ingested into a throwaway database created at `scratch_dir` (which MUST NOT exist, on
/// the same filesystem as `path`), whose file metadata names the bounds. The file itself is
/// left as it was; `scratch_dir` is removed. A file that is not a valid SST is an error.
pub(crate) fn sst_key_range(path: &Path, scratch_dir: &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let io = |op: &'static str, e: std::io::Error| engine_traits::Error::Engine {
        op,
        message: format!("{}: {e}", scratch_dir.display()),
    };
    std::fs::create_dir_all(scratch_dir).map_err(|e| io("create scratch directory", e))?;
    let result = (|| {
        let link = scratch_dir.join("probe.sst");
        std::fs::hard_link(path, &link).map_err(|e| io("link into scratch directory", e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, scratch_dir.join("db"))
            .map_err(|e| sst_error("open scratch database", scratch_dir, e))?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        db.ingest_external_file_opts(&ingest, vec![&link])
            .map_err(|e| sst_error("ingest for its key range", path, e))?;
        let files = db.live_files().map_err(|e| sst_error("list scratch files", path, e))?;
        let bounds = files.into_iter().find_map(|f| Some((f.start_key?, f.end_key?)));
        Ok(bounds)
    })();
    let _ = std::fs::remove_dir_all(scratch_dir);
    result
}
