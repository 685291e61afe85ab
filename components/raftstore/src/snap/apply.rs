//! Applying a received (`rev_`) snapshot to the KV engine.
//!
//! Steps (the caller holds the key's `rev_` side alone, and has persisted
//! `PeerState::Applying`):
//! 1. Check `meta` (data CFs only, each once) and every CF file against it: size and crc32,
//!    read from disk again, since files may have rotted since they were received. A mismatch
//!    stops here, before the engine is touched.
//! 2. Delete the region's data range (`keys::data_key(start)..keys::enc_end_key(end)`) in every
//!    data CF with one write batch, so no stale key of the range survives in a CF the
//!    snapshot has no file for.
//! 3. For each CF with a file: hard-link it to `<file>.clone` (replacing a stale clone) and
//!    ingest the clone; RocksDB moves the clone into the engine and the `rev_` file stays.
//!    Ingested keys get sequence numbers above the range tombstones of step 2.
//! 4. Sync the KV engine's WAL: step 2's tombstones in CFs without a file are durable too.
//!
//! Crash semantics: every step can run again with the same result. A crash after step 2 or in
//! step 3 leaves the range partly applied; the region is still `Applying` on disk, so the
//! restart runs the whole apply again: step 2 deletes what step 3 had ingested, step 3
//! ingests it again from the `rev_` files, which ingestion never consumed.

use std::fs;
use std::path::Path;
use std::time::Instant;

use engine_traits::{KvEngine, DATA_CFS};
use proto::metapb::Region;
use proto::raft_serverpb::SnapshotMeta;
use slog::info;

use crate::snap::error::{io_error, Result};
use crate::snap::file;
use crate::snap::manager::UseGuard;
use crate::snap::{Side, SnapKey};

/// See the module doc. `guard` is the caller's exclusive use of the key's `rev_` side.
pub(crate) fn apply<EK: KvEngine>(
    guard: &UseGuard,
    kv: &EK,
    region: &Region,
    key: SnapKey,
    meta: &SnapshotMeta,
) -> Result<()> {
    let started = Instant::now();
    let dir = &guard.shared.dir;
    // Step 1.
    file::validate_meta(&file::meta_file_path(dir, Side::Rev, key), meta)?;
    let files: Vec<_> = meta
        .cf_files
        .iter()
        .filter(|f| f.size > 0)
        .map(|f| (f.cf.as_str(), file::cf_file_path(dir, Side::Rev, key, &f.cf), f))
        .collect();
    for (_, path, f) in &files {
        file::verify_file(path, f.size, f.checksum)?;
    }
    // Step 2.
    let (start, end) = (keys::data_key(&region.start_key), keys::enc_end_key(&region.end_key));
    kv.delete_range_cfs(DATA_CFS, &start, &end)?;
    // Step 3.
    for (cf, path, _) in &files {
        let clone = file::with_suffix(path, file::CLONE_SUFFIX);
        link_or_copy(path, &clone)?;
        kv.ingest_external_files_cf(cf, &[&clone])?;
    }
    // Step 4.
    kv.sync_wal()?;
    info!(guard.shared.logger, "snapshot files ingested";
        "region_id" => key.region_id, "term" => key.term, "index" => key.index,
        "files" => files.len(), "duration_ms" => started.elapsed().as_millis() as u64);
    Ok(())
}

/// Makes `to` a hard link of `from` (a copy where links are unsupported), replacing `to`.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    file::remove_file(to)?;
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(io_error("copy", from))?;
    }
    Ok(())
}
