//! The raft engine: every region's raft log and `RaftLocalState`, in one store-wide instance.
//!
//! Write path (what the raftstore does each poll round, for however many regions it handled):
//! 1. Create or reuse one [`RaftLogBatch`].
//! 2. For each region with a ready: [`RaftLogBatch::append`] its new entries and
//!    [`RaftLogBatch::put_raft_state`] its new hard state / last index.
//! 3. [`RaftEngine::consume`] the batch once with `sync = true`: one engine write, one fsync,
//!    for all regions of the round.
//! 4. Only then send the messages that promise persistence (votes, append responses).
//!
//! Invariants:
//! 1. A consumed batch is atomic: after a crash either all of its regions' entries and states
//!    are stored or none are. A region's `RaftLocalState.last_index` therefore never points past
//!    its stored log when both were put in the same batch.
//! 2. A region's stored log is contiguous: `[first_index, last_index]` with no holes. `append`
//!    with a correct `overwrite_to` and `gc` from the front keep it so.
//! 3. Reads see every consumed batch; they never see a batch that is still being built.

use std::fmt::Debug;

use proto::raft_serverpb::RaftLocalState;
use raft::eraftpb::Entry;
use util::{LogIndex, RegionId, Term};

use crate::error::Result;

/// Many regions' log appends and raft states, committed together by [`RaftEngine::consume`].
pub trait RaftLogBatch: Send {
    /// Stores `entries` of `region_id`, replacing any stored entry at the same indexes, and
    /// deletes the stale tail beyond the new last entry.
    ///
    /// Raft may rewrite a suffix of the log with entries from a newer leader. When the new
    /// entries end at index `j` and the log previously ended at `overwrite_to > j`, entries
    /// `(j, overwrite_to]` are no longer part of the log and MUST be deleted, or a later
    /// `last_index` would return them. Pass the last index stored before this append as
    /// `overwrite_to` (or `None` when the caller knows nothing was stored beyond `j`).
    ///
    /// Returns [`crate::Error::Codec`] if an entry cannot be encoded. An empty `entries` is a
    /// no-op.
    ///
    /// # Panics
    /// If the entries' indexes are not consecutive.
    fn append(
        &mut self,
        region_id: RegionId,
        entries: &[Entry],
        overwrite_to: Option<LogIndex>,
    ) -> Result<()>;

    /// Stores the region's hard state and last index.
    fn put_raft_state(&mut self, region_id: RegionId, state: &RaftLocalState);

    /// Deletes everything the raft engine stores for the region (log and raft state), for a
    /// destroyed peer. One range tombstone, whatever the log length.
    fn clean(&mut self, region_id: RegionId);

    /// Number of mutations buffered.
    fn count(&self) -> usize;
    /// Encoded size of the buffered mutations in bytes.
    fn data_size(&self) -> usize;
    /// True if nothing is buffered.
    fn is_empty(&self) -> bool {
        self.count() == 0
    }
    /// Drops every buffered mutation, keeping the allocation for reuse.
    fn clear(&mut self);
}

/// The raft log store. Cheap to clone (clones share one database).
pub trait RaftEngine: Clone + Send + Sync + Debug + 'static {
    type LogBatch: RaftLogBatch;

    /// An empty log batch with `capacity_bytes` preallocated.
    fn log_batch(&self, capacity_bytes: usize) -> Self::LogBatch;

    /// Commits `batch` with one engine write (and one fsync when `sync`), then empties it for
    /// reuse. Returns the number of bytes written.
    ///
    /// The batch is emptied whether or not the write succeeds; an `Err` is a storage error,
    /// fatal to the store. An empty batch is a no-op returning 0 (no fsync either).
    fn consume(&self, batch: &mut Self::LogBatch, sync: bool) -> Result<usize>;

    /// The region's stored `RaftLocalState`, `None` if it never stored one.
    fn get_raft_state(&self, region_id: RegionId) -> Result<Option<RaftLocalState>>;

    /// The stored entry at `index`, `None` if there is none.
    fn get_entry(&self, region_id: RegionId, index: LogIndex) -> Result<Option<Entry>>;

    /// The term of the stored entry at `index`, `None` if there is none.
    fn term(&self, region_id: RegionId, index: LogIndex) -> Result<Option<Term>>;

    /// Appends the entries `[low, high)` to `buf`, with raft-rs' size semantics: stop before the
    /// entry that would take the total encoded size past `max_size_bytes`, but always return at
    /// least one entry. Returns how many entries were appended.
    ///
    /// Errors: [`crate::Error::EntriesCompacted`] if `low` is below the first stored entry,
    /// [`crate::Error::EntriesUnavailable`] if the log ends before `high - 1`,
    /// [`crate::Error::Corrupted`] on a hole in the log (invariant 2). On error `buf` may hold
    /// some of the entries.
    ///
    /// # Panics
    /// If `low >= high`.
    fn fetch_entries_to(
        &self,
        region_id: RegionId,
        low: LogIndex,
        high: LogIndex,
        max_size_bytes: Option<u64>,
        buf: &mut Vec<Entry>,
    ) -> Result<usize>;

    /// Index of the first stored entry, `None` if the region stores no entry.
    fn first_index(&self, region_id: RegionId) -> Result<Option<LogIndex>>;

    /// Index of the last stored entry, `None` if the region stores no entry.
    fn last_index(&self, region_id: RegionId) -> Result<Option<LogIndex>>;

    /// Deletes the region's entries in `[from, to)` (log GC after compaction), without fsync:
    /// losing a GC to a crash only leaves garbage to delete again. Entries below the first
    /// stored one are skipped, so `from = 0` is fine. Returns how many entries were deleted.
    fn gc(&self, region_id: RegionId, from: LogIndex, to: LogIndex) -> Result<u64>;

    /// Deletes all of the region's raft data with one synced write. See [`RaftLogBatch::clean`]
    /// to make it atomic with other writes.
    fn clean(&self, region_id: RegionId) -> Result<()>;

    /// Every region that has a stored `RaftLocalState`, in id order. For start-up: one seek per
    /// region, not a scan of the logs.
    fn raft_groups(&self) -> Result<Vec<RegionId>>;

    /// Fsyncs the write-ahead log, making every earlier unsynced write durable.
    fn sync(&self) -> Result<()>;
}
