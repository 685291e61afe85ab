//! Building a `gen_` snapshot from a consistent KV engine snapshot.
//!
//! Steps, for one region and one [`SnapKey`] (the caller holds the key's `gen_` side alone):
//! 1. Delete leftovers of an earlier build of the key (a crash, a failed build).
//! 2. For each data CF in `DATA_CFS` order: iterate the region's data keys
//!    (`keys::data_key(start)..keys::enc_end_key(end)`) in the KV snapshot without filling the
//!    block cache, and put each pair into an SST writer opened at the first key, charging the
//!    I/O limiter every [`BUILD_GRAIN_BYTES`]. A CF without keys gets a meta entry of size 0
//!    and no file.
//! 3. Finish the file (the writer fsyncs it), read it back for its size and crc32, and
//!    publish it under its final name.
//! 4. Publish the meta: from here on the snapshot is complete.
//!
//! On any error every file of the key's `gen_` side is deleted before the error is returned.
//! Memory: the iterator's current block and the SST writer's current block, whatever the
//! region's size (invariant 8 of `snap/mod.rs`).

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use engine_traits::{EngineIterator, IterOptions, Iterable, KvEngine, SstWriter, DATA_CFS};
use proto::metapb::Region;
use proto::raft_serverpb::{SnapshotCfFile, SnapshotMeta};
use slog::info;

use crate::snap::error::{Error, Result};
use crate::snap::file;
use crate::snap::limiter::{IoLimiter, BUILD_GRAIN_BYTES};
use crate::snap::manager::{GeneratedSnap, UseGuard};
use crate::snap::{Side, SnapKey};

/// See the module doc. `guard` is the caller's exclusive use of the key's `gen_` side.
pub(crate) fn build<EK: KvEngine>(
    guard: &UseGuard,
    kv: &EK,
    snap: &EK::Snapshot,
    region: &Region,
    key: SnapKey,
) -> Result<GeneratedSnap> {
    let dir = &guard.shared.dir;
    let started = Instant::now();
    delete_all(dir, key)?;
    let built = build_files(guard, kv, snap, region, key).and_then(|mut generated| {
        generated.meta.generate_duration_sec = started.elapsed().as_secs();
        file::write_meta(&file::meta_file_path(dir, Side::Gen, key), &generated.meta)?;
        Ok(generated)
    });
    match &built {
        Ok(generated) => info!(guard.shared.logger, "snapshot built";
            "region_id" => key.region_id, "term" => key.term, "index" => key.index,
            "keys" => generated.keys, "bytes" => generated.size_bytes,
            "duration_ms" => started.elapsed().as_millis() as u64),
        // The error to report is the build's; a file we cannot delete is the GC's to delete.
        Err(_) => {
            let _ = delete_all(dir, key);
        }
    }
    built
}

/// Steps 2 and 3 for every data CF; the meta is not written.
fn build_files<EK: KvEngine>(
    guard: &UseGuard,
    kv: &EK,
    snap: &EK::Snapshot,
    region: &Region,
    key: SnapKey,
) -> Result<GeneratedSnap> {
    let start_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut generated = GeneratedSnap {
        meta: SnapshotMeta { start: start_secs, ..SnapshotMeta::default() },
        keys: 0,
        size_bytes: 0,
    };
    let range = (keys::data_key(&region.start_key), keys::enc_end_key(&region.end_key));
    for cf in DATA_CFS {
        let path = file::cf_file_path(&guard.shared.dir, Side::Gen, key, cf);
        let (cf_file, keys) = build_cf(kv, snap, cf, &range, &path, &guard.shared.limiter)?;
        generated.keys += keys;
        generated.size_bytes += cf_file.size;
        generated.meta.cf_files.push(cf_file);
    }
    Ok(generated)
}

/// Writes one CF's keys in `range` to `path` (through its `.tmp`); returns its meta entry
/// and key count.
fn build_cf<EK: KvEngine>(
    kv: &EK,
    snap: &EK::Snapshot,
    cf: &str,
    range: &(Vec<u8>, Vec<u8>),
    path: &Path,
    limiter: &IoLimiter,
) -> Result<(SnapshotCfFile, u64)> {
    let tmp = file::with_suffix(path, file::TMP_SUFFIX);
    let opts = IterOptions::new(Some(range.0.clone()), Some(range.1.clone())).fill_cache(false);
    let mut it = snap.iterator_opt(cf, opts);
    if !it.seek_to_first()? {
        return Ok((SnapshotCfFile { cf: cf.to_owned(), size: 0, checksum: 0 }, 0));
    }
    // Opened at the first key: an SST file cannot be empty.
    let mut writer = kv.sst_writer(cf, &tmp)?;
    let mut unpaid_bytes = 0u64;
    loop {
        let (k, v) = (it.key(), it.value());
        writer.put(k, v)?;
        unpaid_bytes += (k.len() + v.len()) as u64;
        if unpaid_bytes >= BUILD_GRAIN_BYTES {
            limiter.request(unpaid_bytes);
            unpaid_bytes = 0;
        }
        if !it.next()? {
            break;
        }
    }
    limiter.request(unpaid_bytes);
    let info = writer.finish()?;
    let (size, checksum) = file::file_size_and_crc32(&tmp, |_| {})?;
    if size != info.size_bytes {
        let reason = format!("{size} bytes read back, the SST writer wrote {}", info.size_bytes);
        return Err(Error::Corrupted { path: tmp, reason });
    }
    file::publish(&tmp, path)?;
    Ok((SnapshotCfFile { cf: cf.to_owned(), size, checksum }, info.keys))
}

/// Deletes every file of the key's `gen_` side.
fn delete_all(dir: &Path, key: SnapKey) -> Result<()> {
    for path in file::all_paths(dir, Side::Gen, key) {
        file::remove_file(&path)?;
    }
    Ok(())
}
