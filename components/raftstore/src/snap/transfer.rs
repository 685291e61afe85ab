//! Moving a snapshot's files between stores as a stream of byte chunks: [`SnapReader`] on the
//! sender, [`SnapReceiver`] on the receiver. The stream carries the CF files' bytes back to
//! back, in the meta's CF order, skipping CFs of size 0; the meta (sent ahead, in the raft
//! message) says where one file ends and the next begins. Chunk boundaries carry no meaning:
//! the receiver accepts any split of the same bytes.
//!
//! Receiver steps:
//! 1. Created with the sender's meta (checked by the manager: data CFs only, each once), it
//!    deletes leftovers of the key's `rev_` side.
//! 2. [`SnapReceiver::write`] appends each chunk to the current file's `.tmp`, never past the
//!    size the meta declares for it (invariant 4 of `snap/mod.rs`), hashing as it writes; a
//!    file that reaches its size is fsynced and closed, and the next one begins.
//! 3. [`SnapReceiver::finish`] checks every file's size and crc32 against the meta and its
//!    keys against the region's range (invariant 9 of `snap/mod.rs`), publishes the files,
//!    then the meta: the snapshot is complete.
//!
//! Failure: a mismatch or excess is an error that deletes every file of the key's `rev_` side;
//! a receiver dropped before `finish` succeeded does the same, so an aborted stream leaves
//! nothing behind (TiKV #10930: aborted transfers left thousands of files).

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use proto::raft_serverpb::SnapshotMeta;
use slog::info;

use crate::snap::error::{io_error, Error, Result};
use crate::snap::file;
use crate::snap::manager::{UseGuard, SCRATCH_PREFIX};
use crate::snap::{Side, SnapKey};

/// The chunk size senders use: TiKV's, and what one gRPC message comfortably carries.
pub const SNAP_CHUNK_BYTES: usize = 1024 * 1024;
/// The largest chunk a [`SnapReader`] yields, whatever it is asked for: a chunk is one buffer
/// in memory.
pub const SNAP_CHUNK_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One CF file of a transfer: where it goes and what the meta declares.
#[derive(Debug)]
struct Planned {
    path: PathBuf,
    size: u64,
    checksum: u32,
}

/// The files a meta declares, in its order, without the empty ones.
fn plan(dir: &std::path::Path, key: SnapKey, side: Side, meta: &SnapshotMeta) -> Vec<Planned> {
    meta.cf_files
        .iter()
        .filter(|f| f.size > 0)
        .map(|f| Planned {
            path: file::cf_file_path(dir, side, key, &f.cf),
            size: f.size,
            checksum: f.checksum,
        })
        .collect()
}

/// The file being read or written, with its progress.
struct Open {
    file: File,
    done_bytes: u64,
    hasher: crc32fast::Hasher,
}

/// Reads a complete `gen_` snapshot out as chunks (see the module doc), from
/// [`crate::snap::SnapManager::reader`]. An iterator of `Result<Vec<u8>>` chunks of at most
/// `chunk_bytes` (clamped to `1..=SNAP_CHUNK_BYTES_MAX`); after an error it ends. Each file
/// is checked against the meta as it is read: a rotten file ends the stream with `Corrupted`
/// in place of its last chunk, so no receiver completes it. Holds a send slot until dropped.
pub struct SnapReader {
    guard: UseGuard,
    meta: SnapshotMeta,
    files: Vec<Planned>,
    /// Index in `files` of the file being read.
    next: usize,
    open: Option<Open>,
    chunk_bytes: usize,
    failed: bool,
}

impl SnapReader {
    pub(crate) fn new(guard: UseGuard, meta: SnapshotMeta, chunk_bytes: usize) -> SnapReader {
        let files = plan(&guard.shared.dir, guard.key(), Side::Gen, &meta);
        let chunk_bytes = chunk_bytes.clamp(1, SNAP_CHUNK_BYTES_MAX);
        SnapReader { guard, meta, files, next: 0, open: None, chunk_bytes, failed: false }
    }

    /// The snapshot's meta, as read from its meta file.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Bytes the whole stream carries (the sum of the CF file sizes); for the sender's
    /// deadline.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(planned) = self.files.get(self.next) else {
            return Ok(None);
        };
        let path = &planned.path;
        let mut open = match self.open.take() {
            Some(open) => open,
            None => {
                let file = File::open(path).map_err(io_error("open", path))?;
                let len = file.metadata().map_err(io_error("stat", path))?.len();
                file::check_size(path, planned.size, len)?;
                Open { file, done_bytes: 0, hasher: crc32fast::Hasher::new() }
            }
        };
        let left = planned.size - open.done_bytes;
        let n = left.min(self.chunk_bytes as u64) as usize;
        let mut chunk = vec![0; n];
        open.file.read_exact(&mut chunk).map_err(io_error("read", path))?;
        self.guard.shared.limiter.request(n as u64);
        open.hasher.update(&chunk);
        open.done_bytes += n as u64;
        if open.done_bytes == planned.size {
            file::check_crc32(path, planned.checksum, open.hasher.finalize())?;
            self.next += 1;
        } else {
            self.open = Some(open);
        }
        Ok(Some(chunk))
    }
}

impl fmt::Debug for SnapReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapReader")
            .field("key", &self.guard.key())
            .field("file", &self.next)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl Iterator for SnapReader {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.failed {
            return None;
        }
        let chunk = self.next_chunk();
        self.failed = chunk.is_err();
        chunk.transpose()
    }
}

/// Receives the chunks of one snapshot into `rev_` files (see the module doc), from
/// [`crate::snap::SnapManager::receiver`]. Holds a receive slot until dropped; dropped before
/// [`SnapReceiver::finish`] succeeded, it deletes every file it may have written.
pub struct SnapReceiver {
    guard: UseGuard,
    meta: SnapshotMeta,
    files: Vec<Planned>,
    /// Index in `files` of the file being written.
    next: usize,
    open: Option<Open>,
    /// Checksums of the files written completely, in order.
    written_crcs: Vec<u32>,
    received_bytes: u64,
    finished: bool,
    /// The region's data keys: every file's keys must lie in `[start, end)`.
    bounds: (Vec<u8>, Vec<u8>),
    /// For the log: how long the receive took.
    started: std::time::Instant,
}

impl SnapReceiver {
    /// Step 1 of the module doc.
    pub(crate) fn new(
        guard: UseGuard,
        meta: SnapshotMeta,
        bounds: (Vec<u8>, Vec<u8>),
    ) -> Result<SnapReceiver> {
        let key = guard.key();
        let files = plan(&guard.shared.dir, key, Side::Rev, &meta);
        let receiver = SnapReceiver {
            guard,
            meta,
            files,
            next: 0,
            open: None,
            written_crcs: Vec::new(),
            received_bytes: 0,
            finished: false,
            bounds,
            started: std::time::Instant::now(),
        };
        receiver.delete_files()?;
        Ok(receiver)
    }

    /// Bytes the meta declares, over all files.
    pub fn declared_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Appends the next chunk of the stream (step 2 of the module doc), blocking on the I/O
    /// limiter.
    ///
    /// Errors: `TooLarge` if the stream goes past the declared sizes (the bytes that fit were
    /// written; nothing beyond); `Io`. After an error, drop the receiver: it deletes its files.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.guard.shared.limiter.request(data.len() as u64);
        while !data.is_empty() {
            let Some(planned) = self.files.get(self.next) else {
                return Err(Error::TooLarge {
                    key: self.guard.key(),
                    declared_bytes: self.declared_bytes(),
                    received_bytes: self.received_bytes + data.len() as u64,
                });
            };
            let tmp = file::with_suffix(&planned.path, file::TMP_SUFFIX);
            let mut open = match self.open.take() {
                Some(open) => open,
                None => {
                    let file = File::create(&tmp).map_err(io_error("create", &tmp))?;
                    Open { file, done_bytes: 0, hasher: crc32fast::Hasher::new() }
                }
            };
            let room = planned.size - open.done_bytes;
            let (now, rest) = data.split_at(data.len().min(room as usize));
            open.file.write_all(now).map_err(io_error("write", &tmp))?;
            open.hasher.update(now);
            open.done_bytes += now.len() as u64;
            self.received_bytes += now.len() as u64;
            data = rest;
            if open.done_bytes == planned.size {
                open.file.sync_all().map_err(io_error("sync", &tmp))?;
                self.written_crcs.push(open.hasher.finalize());
                self.next += 1;
            } else {
                self.open = Some(open);
            }
        }
        Ok(())
    }

    /// Checks and publishes the snapshot (step 3 of the module doc). On `Ok` it is complete
    /// on the `rev_` side, ready for [`crate::snap::SnapManager::apply`].
    ///
    /// Errors: `Corrupted` if a file is short or its crc32 differs from the meta's; `Io`. On
    /// error every file of the key's `rev_` side is deleted.
    pub fn finish(mut self) -> Result<()> {
        self.check_and_publish()?;
        self.finished = true;
        let key = self.guard.key();
        info!(self.guard.shared.logger, "snapshot received";
            "region_id" => key.region_id, "term" => key.term, "index" => key.index,
            "bytes" => self.received_bytes,
            "duration_ms" => self.started.elapsed().as_millis() as u64);
        Ok(())
    }

    fn check_and_publish(&mut self) -> Result<()> {
        for (i, planned) in self.files.iter().enumerate() {
            let tmp = file::with_suffix(&planned.path, file::TMP_SUFFIX);
            let Some(&crc) = self.written_crcs.get(i) else {
                let written = self.open.as_ref().map_or(0, |o| o.done_bytes);
                let reason = format!("stream ended after {written} of {} bytes", planned.size);
                return Err(Error::Corrupted { path: tmp, reason });
            };
            file::check_crc32(&tmp, planned.checksum, crc)?;
            // The bytes hashed are the bytes written; the length on disk must agree too.
            let len = std::fs::metadata(&tmp).map_err(io_error("stat", &tmp))?.len();
            file::check_size(&tmp, planned.size, len)?;
            self.check_key_range(&tmp, i)?;
        }
        for planned in &self.files {
            file::publish(&file::with_suffix(&planned.path, file::TMP_SUFFIX), &planned.path)?;
        }
        let key = self.guard.key();
        file::write_meta(&file::meta_file_path(&self.guard.shared.dir, Side::Rev, key), &self.meta)
    }

    /// Invariant 9 of `snap/mod.rs` for the received file `tmp` (the `i`th).
    fn check_key_range(&self, tmp: &std::path::Path, i: usize) -> Result<()> {
        let shared = &self.guard.shared;
        let scratch = shared.dir.join(format!("{SCRATCH_PREFIX}{}_{i}", self.guard.key()));
        let range = (shared.sst_key_range)(tmp, &scratch)
            .map_err(|e| Error::Corrupted { path: tmp.into(), reason: e.to_string() })?;
        let (start, end) = &self.bounds;
        match range {
            Some((first, last)) if first < *start || last >= *end => Err(Error::Corrupted {
                path: tmp.into(),
                reason: format!(
                    "keys {}..={} reach outside the region's {}..{} (hex)",
                    hex(&first),
                    hex(&last),
                    hex(start),
                    hex(end)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Deletes every file of the key's `rev_` side.
    fn delete_files(&self) -> Result<()> {
        for path in file::all_paths(&self.guard.shared.dir, Side::Rev, self.guard.key()) {
            file::remove_file(&path)?;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for SnapReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapReceiver")
            .field("key", &self.guard.key())
            .field("received_bytes", &self.received_bytes)
            .field("declared_bytes", &self.declared_bytes())
            .finish_non_exhaustive()
    }
}

impl Drop for SnapReceiver {
    fn drop(&mut self) {
        if !self.finished {
            self.open = None;
            // Best effort: what cannot be deleted now is deleted by the GC (no meta, not in
            // use) or at the next start.
            let _ = self.delete_files();
        }
    }
}
