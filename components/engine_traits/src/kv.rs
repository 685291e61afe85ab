//! The KV engine: region data plus per-region apply and region state (in [`crate::CF_RAFT`]).
//!
//! Invariants callers rely on:
//! 1. A [`WriteBatch`] commits atomically across all CFs: after a crash either every mutation
//!    in it is visible or none is. This is what keeps applied data and `RaftApplyState`
//!    consistent.
//! 2. A [`Snapshot`] sees exactly the writes committed before it was taken, for as long as it
//!    lives, whatever is written, deleted or compacted afterwards.
//! 3. Column family names are programmer-chosen constants; naming a CF the engine does not have
//!    panics.

use std::fmt::Debug;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::options::{IterOptions, WriteOptions};
use crate::sst::SstWriter;

/// Point reads from an engine or a snapshot.
pub trait Peekable {
    /// The value of `key` in `cf`, or `None` if absent.
    ///
    /// # Panics
    /// If the engine has no CF named `cf`.
    fn get_value_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Reads and decodes a protobuf message stored with [`Mutable::put_msg_cf`].
    ///
    /// Returns [`Error::Codec`] if the stored bytes are not a valid `M`.
    fn get_msg_cf<M: Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        let Some(bytes) = self.get_value_cf(cf, key)? else {
            return Ok(None);
        };
        let msg = M::decode(bytes.as_slice()).map_err(|e| Error::Codec {
            what: std::any::type_name::<M>(),
            key: key.to_vec(),
            message: e.to_string(),
        })?;
        Ok(Some(msg))
    }
}

/// A positioned cursor over one CF, bounded by its [`IterOptions`].
///
/// Positioning methods return `Ok(true)` when the iterator lands on a key (same as a following
/// [`EngineIterator::valid`]). An `Err` means the engine failed to read (I/O error,
/// corruption); the iterator is then invalid.
pub trait EngineIterator: Send {
    /// Positions at the first key `>= key` (clamped to the lower bound).
    fn seek(&mut self, key: &[u8]) -> Result<bool>;
    /// Positions at the last key `<= key` (clamped to the upper bound).
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<bool>;
    /// Positions at the first key within bounds.
    fn seek_to_first(&mut self) -> Result<bool>;
    /// Positions at the last key within bounds.
    fn seek_to_last(&mut self) -> Result<bool>;
    /// Moves to the next key.
    ///
    /// # Panics
    /// If the iterator is not valid.
    fn next(&mut self) -> Result<bool>;
    /// Moves to the previous key.
    ///
    /// # Panics
    /// If the iterator is not valid.
    fn prev(&mut self) -> Result<bool>;
    /// Whether the iterator is on a key; `Err` if it stopped because of a read failure.
    fn valid(&self) -> Result<bool>;
    /// The current key.
    ///
    /// # Panics
    /// If the iterator is not valid.
    fn key(&self) -> &[u8];
    /// The current value.
    ///
    /// # Panics
    /// If the iterator is not valid.
    fn value(&self) -> &[u8];
}

/// Creating iterators over an engine or a snapshot.
pub trait Iterable {
    /// An owned iterator: it keeps what it reads (the engine, or the snapshot) alive itself, so
    /// it can outlive the borrow it was created from and move between threads.
    type Iterator: EngineIterator;

    /// An iterator over `cf` with the given bounds. It starts unpositioned: call a seek first.
    ///
    /// # Panics
    /// If the engine has no CF named `cf`.
    fn iterator_opt(&self, cf: &str, opts: IterOptions) -> Self::Iterator;

    /// Calls `f` for each key-value pair in `[start, end)` of `cf` in key order, until `f`
    /// returns `Ok(false)` or an error (which is returned).
    fn scan<F>(&self, cf: &str, start: &[u8], end: &[u8], fill_cache: bool, mut f: F) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> Result<bool>,
    {
        let opts =
            IterOptions::new(Some(start.to_vec()), Some(end.to_vec())).fill_cache(fill_cache);
        let mut it = self.iterator_opt(cf, opts);
        let mut valid = it.seek_to_first()?;
        while valid {
            if !f(it.key(), it.value())? {
                return Ok(());
            }
            valid = it.next()?;
        }
        Ok(())
    }
}

/// Mutations, buffered in a batch.
pub trait Mutable {
    /// Sets `key` to `value` in `cf`.
    ///
    /// # Panics
    /// If the engine has no CF named `cf` (true of every method here).
    fn put_cf(&mut self, cf: &str, key: &[u8], value: &[u8]);
    /// Deletes `key` from `cf`.
    fn delete_cf(&mut self, cf: &str, key: &[u8]);
    /// Deletes every key in `[start, end)` of `cf` with one range tombstone. Cheap to write
    /// whatever the range holds; reads over the range pay a little until compaction drops it,
    /// so prefer it for bulk deletes (a destroyed region) over per-key deletes.
    fn delete_range_cf(&mut self, cf: &str, start: &[u8], end: &[u8]);
    /// Encodes `msg` with prost and puts it; read it back with [`Peekable::get_msg_cf`].
    fn put_msg_cf<M: Message>(&mut self, cf: &str, key: &[u8], msg: &M) {
        self.put_cf(cf, key, &msg.encode_to_vec());
    }
}

/// An atomic group of mutations (invariant 1), committed by [`KvEngine::write`].
///
/// Save points let a caller undo the mutations of one failed command without discarding the
/// rest of the batch; they nest.
pub trait WriteBatch: Mutable + Send {
    /// Number of mutations buffered (a range delete counts as one).
    fn count(&self) -> usize;
    /// Encoded size of the buffered mutations in bytes; what the write will cost in WAL bytes.
    fn data_size(&self) -> usize;
    /// True if nothing is buffered.
    fn is_empty(&self) -> bool {
        self.count() == 0
    }
    /// Drops every buffered mutation and every save point, keeping the allocation for reuse.
    fn clear(&mut self);
    /// Marks the current state so a later [`WriteBatch::rollback_to_save_point`] can return to it.
    fn set_save_point(&mut self);
    /// Forgets the most recent save point, keeping the mutations made since.
    ///
    /// # Panics
    /// If there is no save point.
    fn pop_save_point(&mut self);
    /// Drops every mutation made since the most recent save point, and that save point.
    ///
    /// # Panics
    /// If there is no save point.
    fn rollback_to_save_point(&mut self);
}

/// RocksDB's estimate of what a key range holds; see [`KvEngine::approximate_size_and_keys`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeStats {
    /// Approximate bytes on disk (compressed SST bytes) plus memtable bytes.
    pub size_bytes: u64,
    /// Approximate number of live keys.
    pub keys: u64,
}

/// A consistent, read-only view of the KV engine (invariant 2). Cheap to clone: clones share
/// one engine snapshot, released when the last clone drops.
pub trait Snapshot: Peekable + Iterable + Clone + Send + Sync + Debug + 'static {}

/// The KV engine. Cheap to clone (clones share one database).
pub trait KvEngine: Peekable + Iterable + Clone + Send + Sync + Debug + 'static {
    type Snapshot: Snapshot;
    type WriteBatch: WriteBatch;
    type SstWriter: SstWriter;

    /// Takes a snapshot of everything committed so far.
    fn snapshot(&self) -> Self::Snapshot;

    /// An empty write batch.
    fn write_batch(&self) -> Self::WriteBatch {
        self.write_batch_with_cap(0)
    }

    /// An empty write batch with `cap_bytes` preallocated; size it to the expected round.
    fn write_batch_with_cap(&self, cap_bytes: usize) -> Self::WriteBatch;

    /// Commits `batch` atomically (invariant 1) and empties it for reuse.
    ///
    /// The batch is emptied whether or not the write succeeds: an `Err` is a storage error,
    /// fatal to the store, and retrying the same batch is not a recovery strategy. An empty
    /// batch is a no-op (not even a WAL sync).
    fn write(&self, batch: &mut Self::WriteBatch, opts: &WriteOptions) -> Result<()>;

    /// Writes one range tombstone over `[start, end)` of `cf` directly (WAL, no fsync). For
    /// bulk deletion; it is atomic on its own but not with anything else.
    fn delete_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()>;

    /// Writes one range tombstone over `[start, end)` in each CF of `cfs`, all in one write
    /// batch (WAL, no fsync): after a crash either every CF lost the range or none did. What a
    /// snapshot apply uses to clear a region in every data CF before ingesting its files.
    ///
    /// # Panics
    /// If the engine has no CF named like one of `cfs`.
    fn delete_range_cfs(&self, cfs: &[&str], start: &[u8], end: &[u8]) -> Result<()> {
        let mut wb = self.write_batch();
        for cf in cfs {
            wb.delete_range_cf(cf, start, end);
        }
        self.write(&mut wb, &WriteOptions::default())
    }

    /// A writer of one SST file for `cf` at `path` (created, or truncated if it exists), with
    /// the table options of this engine's `cf`; see [`SstWriter`] for the file's life.
    ///
    /// Errors: [`Error::Engine`] if the file cannot be created.
    ///
    /// # Panics
    /// If the engine has no CF named `cf`.
    fn sst_writer(&self, cf: &str, path: &Path) -> Result<Self::SstWriter>;

    /// Ingests finished SST files (from [`KvEngine::sst_writer`]) into `cf`, atomically: after
    /// it returns every key of every file is visible, shadowing older versions, and durable
    /// (ingestion is recorded in the engine's manifest, and a memtable overlapping the files
    /// is flushed first). Files are moved, not copied, when they are on the engine's
    /// filesystem: on success the paths no longer exist; on error they are left in place.
    /// The files of one call must not overlap each other. An empty `paths` is a no-op.
    ///
    /// Errors: [`Error::Engine`] if a file is missing, malformed or overlaps another, or the
    /// engine cannot record it.
    ///
    /// # Panics
    /// If the engine has no CF named `cf`.
    fn ingest_external_files_cf(&self, cf: &str, paths: &[&Path]) -> Result<()>;

    /// The smallest and largest key of the SST file at `path` (`None`: it holds no key),
    /// without this engine's involvement (no instance: the file is foreign until checked). May
    /// create `scratch_dir` (which must not exist, on the filesystem of `path`) and removes it.
    ///
    /// Errors: [`Error::Engine`] if the file is not a valid SST.
    fn sst_key_range(path: &Path, scratch_dir: &Path) -> Result<Option<(Vec<u8>, Vec<u8>)>>
    where
        Self: Sized;

    /// RocksDB's own estimate of the bytes and keys in `[start, end)` of `cf`, without reading
    /// the data. See the implementation for its accuracy; treat it as good to tens of percent,
    /// fit for split and scheduling decisions, not for accounting.
    fn approximate_size_and_keys(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<RangeStats>;

    /// Flushes the memtable of `cf` to an SST file and waits for it.
    fn flush_cf(&self, cf: &str) -> Result<()>;

    /// Compacts `[start, end)` of `cf` through every level and waits for it: deleted and
    /// overwritten data in the range is dropped from disk, so the estimates of
    /// [`KvEngine::approximate_size_and_keys`] follow the deletes. Flushes the memtable first
    /// if it overlaps the range. Costs a rewrite of every SST file overlapping the range.
    fn compact_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()>;

    /// Fsyncs the write-ahead log, making every earlier unsynced write durable.
    fn sync_wal(&self) -> Result<()>;
}
