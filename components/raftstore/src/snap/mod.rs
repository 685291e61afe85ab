//! Region snapshots as files: building them from a KV engine snapshot, reading them out in
//! chunks to send, receiving chunks into files, applying them to a KV engine, and deleting
//! them. This is the file layer only; when to snapshot, the gRPC stream and the peer states
//! around an apply belong to the raft integration, which calls [`SnapManager`].
//!
//! A snapshot is named by its [`SnapKey`] (region, term and index of the raft snapshot) and a
//! [`Side`]: `gen_` files were generated on this store to be sent, `rev_` files were received
//! to be applied. It holds one SST file per non-empty data CF (`engine_traits::DATA_CFS`)
//! covering the region's data keys, and a meta file (`raft_serverpb.SnapshotMeta`: each CF's
//! file size and crc32). File names and formats are in `file.rs`.
//!
//! # Invariants
//! 1. A file under its final name is complete: files are written as `.tmp`, fsynced, then
//!    renamed (`file.rs`). A crash never leaves a half file that looks complete.
//! 2. A snapshot whose meta file exists is complete: the meta is published last, after every
//!    CF file, and deleted first.
//! 3. Every CF file's size and crc32 are in the meta. A receiver checks both before the
//!    snapshot becomes complete; apply checks them again before ingesting (files rot); a
//!    sender checks them as it reads.
//! 4. A receiver never writes more than its meta declares ([`Error::TooLarge`]).
//! 5. At most `concurrent-send-snap-limit` readers and `concurrent-recv-snap-limit` receivers
//!    exist at once; more are refused with [`Error::Busy`], never queued.
//! 6. The files of one snapshot side have one user at a time (a build, a receive, an apply, a
//!    deletion) or any number of readers; others get [`Error::InUse`]. Periodic GC skips
//!    what is in use, so it never deletes a file under a reader or writer.
//! 7. All bytes generated, sent and received go through one [`IoLimiter`] per store
//!    (`snap-io-max-bytes-per-sec`); waiting on it blocks the calling worker thread.
//! 8. Nothing holds a region's data in memory: builds stream keys into SST writers, transfers
//!    move one chunk at a time, checksums read in 64 KiB pieces.
//! 9. A received file's keys lie inside the region the snapshot carries: the receiver reads
//!    each file's bounds ([`SstKeyRangeFn`]) before the snapshot becomes complete, so a forged
//!    or buggy snapshot cannot overwrite another region's data when it is ingested.
//!
//! # What the raft integration does with it
//! Sender (leader's store):
//! 1. On a worker thread, with the KV snapshot the apply FSM took at the applied index,
//!    [`SnapManager::build`] for the region and `SnapKey(region, applied term, applied
//!    index)`; put the returned meta in `RaftSnapshotData`.
//! 2. Send the raft message as the `Snapshot` stream's first chunk, then every chunk of
//!    [`SnapManager::reader`] ([`SNAP_CHUNK_BYTES`] each). On [`Error::Busy`], retry later.
//! 3. When the follower reports the snapshot applied or failed, [`SnapManager::delete`] the
//!    `gen_` side (or let [`SnapManager::gc`] find it unneeded).
//!
//! Receiver (follower's store):
//! 1. On the first chunk, [`SnapManager::receiver`] with the message's key and meta. `Busy`:
//!    answer the stream RESOURCE_EXHAUSTED. `Exists`: skip the data, deliver the message.
//! 2. [`SnapReceiver::write`] every data chunk in order; at the stream's end
//!    [`SnapReceiver::finish`]. Only then hand the raft message to the peer.
//! 3. The peer persists `PeerState::Applying` (with the snapshot's apply state), then the
//!    `snap-applier` worker calls [`SnapManager::apply`], then the apply FSM persists
//!    `PeerState::Normal`, then
//!    [`SnapManager::delete`]s the `rev_` side.
//!
//! Restart: before any peer starts, [`SnapManager::gc_at_start`] with the keys of regions
//! still in `Applying`; those regions [`SnapManager::load_meta`] and [`SnapManager::apply`]
//! again, which is idempotent. Periodically, [`SnapManager::gc`].

mod apply;
mod build;
mod error;
mod file;
mod limiter;
mod manager;
mod transfer;

#[cfg(test)]
mod tests;

use std::fmt;

use util::{LogIndex, RegionId, Term};

pub use error::{Error, Result};
pub use limiter::IoLimiter;
pub use manager::{GcStats, GeneratedSnap, SnapManager, SstKeyRangeFn};
pub use transfer::{SnapReader, SnapReceiver, SNAP_CHUNK_BYTES, SNAP_CHUNK_BYTES_MAX};

/// Names one raft snapshot of a region: the term and index of the last log entry it covers.
/// The same key names the sender's (`gen_`) and the receiver's (`rev_`) files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapKey {
    pub region_id: RegionId,
    pub term: Term,
    pub index: LogIndex,
}

impl fmt::Display for SnapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_{}", self.region_id, self.term, self.index)
    }
}

/// Which store's copy of a snapshot: the one generated here to send, or the one received here
/// to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Generated on this store (file prefix `gen_`); read by senders.
    Gen,
    /// Received by this store (file prefix `rev_`); applied here.
    Rev,
}

impl Side {
    fn prefix(self) -> &'static str {
        match self {
            Side::Gen => "gen",
            Side::Rev => "rev",
        }
    }
}
