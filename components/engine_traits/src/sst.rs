//! SST files built outside the KV engine and ingested into it: how a region snapshot moves a
//! whole key range between stores without replaying it key by key through write batches.
//! The life of a file is on [`SstWriter`].
//!
//! Invariants:
//! 1. A finished file holds at least one key: finishing an empty writer is an error, so a
//!    caller that may have nothing to write opens its writer lazily, at the first key.
//! 2. Keys of one file are strictly increasing (byte order); a key out of order is an error
//!    from `put` and leaves the file unusable.

use crate::error::Result;

/// What a finished SST file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SstFileInfo {
    /// Size of the file on disk, in bytes.
    pub size_bytes: u64,
    /// Number of keys put into it.
    pub keys: u64,
}

/// Writes one SST file of one CF.
///
/// Life of a file:
/// 1. [`crate::KvEngine::sst_writer`] creates a writer for one CF at a path; its table options
///    (block size, filters, compression) are those of that CF in the engine that made it, so
///    the file needs no rewrite to be ingested, into this engine or another one opened with
///    the same config.
/// 2. [`SstWriter::put`] appends keys in strictly increasing order; the writer holds about one
///    block in memory, never the whole file.
/// 3. [`SstWriter::finish`] writes the index and footer, fsyncs and closes the file.
/// 4. [`crate::KvEngine::ingest_external_files_cf`] moves the file into the engine as one
///    atomic step; every key in it then shadows older versions of the same key.
///
/// Dropping a writer without [`SstWriter::finish`] abandons the file: whatever was written
/// stays on disk, incomplete, for the caller to delete.
pub trait SstWriter: Send {
    /// Appends `key` => `value`.
    ///
    /// Errors: [`crate::Error::Engine`] if `key` is not greater than the previous key
    /// (invariant 2), or if writing the file fails. The file is unusable after an error.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Finishes the file (index, footer, fsync, close) and reports its size and key count.
    ///
    /// Errors: [`crate::Error::Engine`] if no key was put (invariant 1) or the file cannot be
    /// written or synced.
    fn finish(self) -> Result<SstFileInfo>;
}
