//! [`SnapManager`]: the store's snapshot directory, who is using which snapshot, and deletion.
//! Building, transfer and apply live in `build.rs`, `transfer.rs` and `apply.rs`; this file
//! owns the entry points and the rules of invariants 5 and 6 of `snap/mod.rs`:
//!
//! - a use of one snapshot side is a [`UseGuard`], taken before any of its files is touched and
//!   released when the guard drops (also on error paths and panics);
//! - reads share a side; a build, receive, apply or deletion has it alone;
//! - reads and receives count against their concurrency limits while their guard lives.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use engine_traits::KvEngine;
use parking_lot::Mutex;
use proto::metapb::Region;
use proto::raft_serverpb::SnapshotMeta;
use slog::{info, Logger};

use crate::config::Config;
use crate::snap::error::{io_error, Error, Result};
use crate::snap::file::{self, ParsedName};
use crate::snap::limiter::IoLimiter;
use crate::snap::transfer::{SnapReader, SnapReceiver};
use crate::snap::{apply, build, Side, SnapKey};

/// What [`SnapManager::build`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedSnap {
    /// One entry per data CF, in `DATA_CFS` order (size 0 and no file for an empty CF).
    pub meta: SnapshotMeta,
    /// Keys in the snapshot, over all CFs.
    pub keys: u64,
    /// Bytes of its CF files on disk, over all CFs.
    pub size_bytes: u64,
}

/// What a deletion or GC pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Files deleted.
    pub files: u64,
    /// Bytes those files held.
    pub bytes: u64,
}

impl GcStats {
    fn add(&mut self, other: GcStats) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// How a snapshot side is being used (invariant 6 of `snap/mod.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Build,
    Read,
    Receive,
    Apply,
    Delete,
}

#[derive(Debug)]
enum Holder {
    /// One user (a build, receive, apply or deletion) has the side alone.
    Exclusive,
    /// This many readers share it.
    Readers(usize),
}

#[derive(Debug, Default)]
struct Active {
    by_snap: HashMap<(SnapKey, Side), Holder>,
    /// Live readers, over all snapshots (`concurrent-send-snap-limit`).
    reads: usize,
    /// Live receivers (`concurrent-recv-snap-limit`).
    receives: usize,
}

/// Reads the smallest and largest key of an SST file (`None`: no key), using `scratch` (a
/// directory that must not exist, removed after) as it needs: the KV engine's
/// `KvEngine::sst_key_range`. Invariant 9 of `snap/mod.rs`.
pub type SstKeyRangeFn = fn(&Path, &Path) -> engine_traits::Result<Option<(Vec<u8>, Vec<u8>)>>;

/// Prefix of the directories where receivers read their files' key ranges (each removed after
/// use; leftovers of a crash are removed at start).
pub(crate) const SCRATCH_PREFIX: &str = "scratch_";

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) sst_key_range: SstKeyRangeFn,
    pub(crate) limiter: IoLimiter,
    send_limit: usize,
    recv_limit: usize,
    gc_timeout: Duration,
    active: Mutex<Active>,
    pub(crate) logger: Logger,
}

/// A use of one snapshot side, released on drop.
#[derive(Debug)]
pub(crate) struct UseGuard {
    pub(crate) shared: Arc<Shared>,
    key: SnapKey,
    side: Side,
    kind: Use,
}

impl UseGuard {
    pub(crate) fn key(&self) -> SnapKey {
        self.key
    }
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        let mut active = self.shared.active.lock();
        match self.kind {
            Use::Read => active.reads -= 1,
            Use::Receive => active.receives -= 1,
            Use::Build | Use::Apply | Use::Delete => {}
        }
        let slot = (self.key, self.side);
        let last = match active.by_snap.get_mut(&slot) {
            Some(Holder::Readers(n)) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(Holder::Readers(_) | Holder::Exclusive) | None => true,
        };
        if last {
            active.by_snap.remove(&slot);
        }
    }
}

fn acquire(shared: &Arc<Shared>, key: SnapKey, side: Side, kind: Use) -> Result<UseGuard> {
    let mut guard = shared.active.lock();
    let active = &mut *guard;
    let join_readers = match active.by_snap.get(&(key, side)) {
        None => false,
        Some(Holder::Readers(_)) if kind == Use::Read => true,
        Some(Holder::Readers(_) | Holder::Exclusive) => return Err(Error::InUse { key, side }),
    };
    match kind {
        Use::Read if active.reads >= shared.send_limit => {
            return Err(Error::Busy { side, limit: shared.send_limit });
        }
        Use::Receive if active.receives >= shared.recv_limit => {
            return Err(Error::Busy { side, limit: shared.recv_limit });
        }
        Use::Read => active.reads += 1,
        Use::Receive => active.receives += 1,
        Use::Build | Use::Apply | Use::Delete => {}
    }
    if join_readers {
        if let Some(Holder::Readers(n)) = active.by_snap.get_mut(&(key, side)) {
            *n += 1;
        }
    } else {
        let holder = if kind == Use::Read { Holder::Readers(1) } else { Holder::Exclusive };
        active.by_snap.insert((key, side), holder);
    }
    Ok(UseGuard { shared: shared.clone(), key, side, kind })
}

/// The store's snapshot files, in one directory (`<data-dir>/snap`). Cheap to clone: clones
/// share the directory, the I/O limiter and the concurrency limits. See `snap/mod.rs` for the
/// invariants and the order in which the raft integration calls it.
#[derive(Debug, Clone)]
pub struct SnapManager {
    shared: Arc<Shared>,
}

impl SnapManager {
    /// A manager over `dir`, created if missing, with the `snap-*` options of `cfg` (which
    /// MUST have passed [`Config::validate`]). Call [`SnapManager::gc_at_start`] before
    /// anything else.
    pub fn new(
        dir: impl Into<PathBuf>,
        cfg: &Config,
        sst_key_range: SstKeyRangeFn,
        logger: Logger,
    ) -> Result<SnapManager> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io_error("list", &dir))? {
            let path = entry.map_err(io_error("list", &dir))?.path();
            let scratch = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(SCRATCH_PREFIX));
            if scratch && path.is_dir() {
                fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
            }
        }
        let shared = Shared {
            dir,
            sst_key_range,
            limiter: IoLimiter::new(cfg.snap_io_max_bytes_per_sec.as_bytes()),
            send_limit: cfg.concurrent_send_snap_limit,
            recv_limit: cfg.concurrent_recv_snap_limit,
            gc_timeout: cfg.snap_gc_timeout.as_duration(),
            active: Mutex::new(Active::default()),
            logger,
        };
        Ok(SnapManager { shared: Arc::new(shared) })
    }

    /// Snapshots being sent and being received now (for PD's store heartbeat).
    pub fn in_flight(&self) -> (usize, usize) {
        let active = self.shared.active.lock();
        (active.reads, active.receives)
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Whether the snapshot is complete on `side` (its meta file exists, invariant 2).
    pub fn exists(&self, key: SnapKey, side: Side) -> bool {
        file::meta_file_path(&self.shared.dir, side, key).exists()
    }

    /// The meta of a complete snapshot, checked (crc, data CFs only). For a restart that finds
    /// a region in `Applying`, and for senders.
    ///
    /// Errors: `Io` (with `NotFound` if the snapshot is not complete), `Corrupted`.
    pub fn load_meta(&self, key: SnapKey, side: Side) -> Result<SnapshotMeta> {
        let path = file::meta_file_path(&self.shared.dir, side, key);
        let meta = file::read_meta(&path)?;
        file::validate_meta(&path, &meta)?;
        Ok(meta)
    }

    /// Builds the `gen_` snapshot `key` of `region` from `snap`, a consistent KV snapshot at
    /// the index `key` names: one SST file per non-empty data CF with every data key in the
    /// region's range, then the meta. Streams key by key through the I/O limiter; blocks the
    /// calling thread for as long as that takes, so call it on a worker thread, never on a
    /// poller. Replaces leftovers of an earlier build of the same key.
    ///
    /// Errors: `InUse` if the key's `gen_` side is being built, read or deleted; `Engine`,
    /// `Io`, `Corrupted` (a file changed while being checksummed). On error no file of the
    /// key's `gen_` side is left.
    pub fn build<EK: KvEngine>(
        &self,
        kv: &EK,
        snap: &EK::Snapshot,
        region: &Region,
        key: SnapKey,
    ) -> Result<GeneratedSnap> {
        let guard = acquire(&self.shared, key, Side::Gen, Use::Build)?;
        build::build(&guard, kv, snap, region, key)
    }

    /// A reader of the complete `gen_` snapshot `key`, yielding its CF files' bytes in chunks
    /// of at most `chunk_bytes` (clamped to `1..=SNAP_CHUNK_BYTES_MAX`; senders use
    /// `SNAP_CHUNK_BYTES`), in the meta's CF order. Holds a send slot until dropped.
    ///
    /// Errors: `Busy` beyond `concurrent-send-snap-limit` readers; `InUse` while the snapshot
    /// is being built or deleted; those of [`SnapManager::load_meta`].
    pub fn reader(&self, key: SnapKey, chunk_bytes: usize) -> Result<SnapReader> {
        let guard = acquire(&self.shared, key, Side::Gen, Use::Read)?;
        let meta = self.load_meta(key, Side::Gen)?;
        Ok(SnapReader::new(guard, meta, chunk_bytes))
    }

    /// A receiver of snapshot `key` of `region` as `meta` declares it (both from the sender's
    /// message). Holds a receive slot until dropped; dropped unfinished, it deletes what it
    /// wrote.
    ///
    /// Errors: `Corrupted` if `meta` names a CF that is not a data CF, or one twice; `Busy`
    /// beyond `concurrent-recv-snap-limit` receivers; `InUse` while another receiver, an
    /// apply or a deletion has the key's `rev_` side; `Exists` if it was received already
    /// (nothing to receive; apply it). `Io` if leftovers cannot be deleted.
    pub fn receiver(
        &self,
        key: SnapKey,
        meta: &SnapshotMeta,
        region: &Region,
    ) -> Result<SnapReceiver> {
        file::validate_meta(&file::meta_file_path(&self.shared.dir, Side::Rev, key), meta)?;
        let guard = acquire(&self.shared, key, Side::Rev, Use::Receive)?;
        if self.exists(key, Side::Rev) {
            return Err(Error::Exists { key });
        }
        let bounds = (keys::data_key(&region.start_key), keys::enc_end_key(&region.end_key));
        SnapReceiver::new(guard, meta.clone(), bounds)
    }

    /// Applies the received snapshot `key` to `kv`: checks every file against `meta` again,
    /// deletes `region`'s data range in every data CF, then ingests each CF's file. When it
    /// returns `Ok`, the region's data in `kv` is exactly the snapshot's, durably. Blocks for
    /// as long as that takes: call it on a worker thread. `region` MUST be the region the
    /// snapshot carries (`RaftSnapshotData.region`): its range is what gets replaced (the
    /// receiver checked the files' keys against it, invariant 9).
    ///
    /// Crash semantics: idempotent. The files stay until [`SnapManager::delete`] (ingestion
    /// moves hard links of them), so running it again after a crash at any point gives the
    /// same result. The caller MUST persist `PeerState::Applying` before calling it and
    /// `PeerState::Normal` only after it returned `Ok`, and MUST NOT serve the region in
    /// between: the range is partly applied while it runs.
    ///
    /// Errors: `InUse` while the `rev_` side is being received or deleted; `Corrupted` if a
    /// file does not match `meta` (nothing was changed in `kv`; receive it again); `Io`,
    /// `Engine`.
    pub fn apply<EK: KvEngine>(
        &self,
        kv: &EK,
        region: &Region,
        key: SnapKey,
        meta: &SnapshotMeta,
    ) -> Result<()> {
        let guard = acquire(&self.shared, key, Side::Rev, Use::Apply)?;
        apply::apply(&guard, kv, region, key, meta)
    }

    /// Deletes every file of snapshot `key` on `side` (the meta first, so a partly deleted
    /// snapshot never looks complete). Deleting nothing is fine.
    ///
    /// Errors: `InUse` while the side is being built, read, received or applied; `Io`.
    pub fn delete(&self, key: SnapKey, side: Side) -> Result<GcStats> {
        let _guard = acquire(&self.shared, key, side, Use::Delete)?;
        let mut stats = GcStats::default();
        for path in file::all_paths(&self.shared.dir, side, key) {
            stats.add(delete_path(&path)?);
        }
        Ok(stats)
    }

    /// The start-up pass, run before any snapshot is built, sent, received or applied:
    /// deletes every `.tmp` and `.clone` file (unfinished work), every `gen_` file (a sender
    /// regenerates on demand) and every `rev_` file except those of snapshots
    /// `is_applying` (regions persisted in `PeerState::Applying` with that snapshot, which
    /// apply them again). A received snapshot not yet applied is worthless after a restart:
    /// the leader sends a new one. Files this module did not name are left alone.
    ///
    /// Errors: `Io` (the directory cannot be listed or a file deleted).
    pub fn gc_at_start(&self, is_applying: impl Fn(&SnapKey) -> bool) -> Result<GcStats> {
        let mut stats = GcStats::default();
        for ((key, side), files) in self.list()? {
            let Ok(_guard) = acquire(&self.shared, key, side, Use::Delete) else {
                continue; // In use: someone started early; the periodic GC sees it later.
            };
            for (path, name) in files {
                let keep = !name.transient && side == Side::Rev && is_applying(&key);
                if !keep {
                    stats.add(delete_path(&path)?);
                }
            }
        }
        self.log_gc("snapshot GC at start", stats);
        Ok(stats)
    }

    /// A periodic pass over snapshots not in use (invariant 6). Deletes a snapshot side
    /// entirely if it is incomplete (no meta: its builder or receiver is gone), if
    /// `is_needed(key, side)` is false, or, for a `gen_` side, if its meta is older than
    /// `snap-gc-timeout`; of the rest it deletes only `.tmp` and `.clone` leftovers.
    ///
    /// `is_needed` answers for `Gen`: a peer may still be sent this snapshot; for `Rev`: a
    /// region is applying (or about to apply) it.
    ///
    /// Errors: `Io` (the directory cannot be listed or a file deleted).
    pub fn gc(&self, is_needed: impl Fn(&SnapKey, Side) -> bool) -> Result<GcStats> {
        let mut stats = GcStats::default();
        for ((key, side), files) in self.list()? {
            let Ok(_guard) = acquire(&self.shared, key, side, Use::Delete) else {
                continue;
            };
            let meta = file::meta_file_path(&self.shared.dir, side, key);
            let delete_all = match fs::metadata(&meta) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => return Err(io_error("stat", &meta)(e)),
                Ok(m) => !is_needed(&key, side) || (side == Side::Gen && self.expired(&m)),
            };
            for (path, name) in files {
                if delete_all || name.transient {
                    stats.add(delete_path(&path)?);
                }
            }
        }
        self.log_gc("snapshot GC", stats);
        Ok(stats)
    }

    /// Whether a `gen_` meta with metadata `m` is older than `snap-gc-timeout`. An unreadable
    /// or future modification time counts as fresh: GC then waits for `is_needed`.
    fn expired(&self, m: &fs::Metadata) -> bool {
        let age = m.modified().ok().and_then(|t| SystemTime::now().duration_since(t).ok());
        age.is_some_and(|age| age > self.shared.gc_timeout)
    }

    /// Our files in the directory, grouped by snapshot side, each group's meta first.
    fn list(&self) -> Result<HashMap<(SnapKey, Side), Vec<SnapFile>>> {
        let dir = &self.shared.dir;
        let mut out: HashMap<_, Vec<_>> = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
            let entry = entry.map_err(io_error("list", dir))?;
            let Some(name) = entry.file_name().to_str().and_then(file::parse_name) else {
                continue;
            };
            out.entry((name.key, name.side)).or_default().push((entry.path(), name));
        }
        for files in out.values_mut() {
            // `false` (the meta) sorts first.
            files.sort_by_key(|(_, name)| name.cf.is_some() || name.transient);
        }
        Ok(out)
    }

    fn log_gc(&self, what: &'static str, stats: GcStats) {
        if stats.files > 0 {
            info!(self.shared.logger, "{}", what; "files" => stats.files, "bytes" => stats.bytes);
        }
    }
}

/// A file of the snapshot directory and what its name says.
type SnapFile = (PathBuf, ParsedName);

/// Deletes one file, counting it.
fn delete_path(path: &Path) -> Result<GcStats> {
    Ok(match file::remove_file(path)? {
        Some(bytes) => GcStats { files: 1, bytes },
        None => GcStats::default(),
    })
}
