//! Counters of one store, cheap to update from any poller (relaxed atomics). The server
//! exports them as Prometheus metrics when scraped; tests and benchmarks read them directly.
//!
//! One gauge sits beside the counters: the number of leaders, counted by [`LeaderGuard`]s that
//! peers hold while they lead. It is not in [`StoreStatsSnapshot`] (a snapshot is for diffing
//! counters); read it with [`StoreStats::leaders`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Upper bounds of the proposals-per-fsync histogram buckets (the last bucket is open).
pub const PROPOSALS_PER_FSYNC_BUCKETS: [u64; 10] = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Upper bounds, in milliseconds, of the split-to-leader histogram buckets (the last bucket
/// is open).
pub const SPLIT_TO_LEADER_MS_BUCKETS: [u64; 14] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000];

/// Why a raft message from the network was dropped without being stepped into raft.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DroppedMessage {
    /// Undecodable, without sender or receiver, or a raft-local message type.
    Malformed,
    /// Addressed to another peer or store than the one it reached.
    WrongPeer,
    /// From a peer that is no longer a member (older epoch).
    StaleSender,
    /// For a region this store has no peer of, and that the message cannot create here.
    UnknownRegion,
    /// For a region a split on this store will create; kept only if it is a vote.
    RegionNotSplitYet,
    /// Contradicts this peer's log in a way no correct leader can (a commit index past the
    /// last entry, entries that rewrite committed ones, a gap): forged or corrupt.
    InvalidLog,
    /// A snapshot older than the region here, overlapping another region on this store, or
    /// whose files were not received.
    SnapshotRejected,
    /// For a region whose peer on this store was removed (a tombstone at least as new).
    Tombstone,
    /// Would create a peer, but the store holds `UNINITIALIZED_PEERS_MAX` already.
    PeerLimit,
    /// Of an older term than the peer's, of a type raft ignores at an older term (every type
    /// but heartbeats and appends, which it answers so a deposed leader learns the term, and
    /// pre-votes, which it rejects).
    StaleTerm,
}

impl DroppedMessage {
    pub const ALL: [DroppedMessage; 10] = [
        DroppedMessage::Malformed,
        DroppedMessage::WrongPeer,
        DroppedMessage::StaleSender,
        DroppedMessage::UnknownRegion,
        DroppedMessage::RegionNotSplitYet,
        DroppedMessage::InvalidLog,
        DroppedMessage::SnapshotRejected,
        DroppedMessage::Tombstone,
        DroppedMessage::PeerLimit,
        DroppedMessage::StaleTerm,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DroppedMessage::Malformed => "malformed",
            DroppedMessage::WrongPeer => "wrong_peer",
            DroppedMessage::StaleSender => "stale_sender",
            DroppedMessage::UnknownRegion => "unknown_region",
            DroppedMessage::RegionNotSplitYet => "region_not_split_yet",
            DroppedMessage::InvalidLog => "invalid_log",
            DroppedMessage::SnapshotRejected => "snapshot_rejected",
            DroppedMessage::Tombstone => "tombstone",
            DroppedMessage::PeerLimit => "peer_limit",
            DroppedMessage::StaleTerm => "stale_term",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default, Debug)]
struct Inner {
    raft_fsyncs: AtomicU64,
    proposals_synced: AtomicU64,
    proposals_per_fsync: [AtomicU64; PROPOSALS_PER_FSYNC_BUCKETS.len() + 1],
    apply_rounds: AtomicU64,
    commands_answered: AtomicU64,
    lease_reads: AtomicU64,
    read_index_reads: AtomicU64,
    proposals_dropped: AtomicU64,
    splits_applied: AtomicU64,
    split_checks: AtomicU64,
    commands_held: AtomicU64,
    commands_held_for_leader: AtomicU64,
    split_to_leader_ms: [AtomicU64; SPLIT_TO_LEADER_MS_BUCKETS.len() + 1],
    split_to_leader_ms_sum: AtomicU64,
    log_compactions: AtomicU64,
    log_entries_deleted: AtomicU64,
    log_gc_tasks_dropped: AtomicU64,
    raft_messages_dropped: [AtomicU64; DroppedMessage::ALL.len()],
    snapshots_generated: AtomicU64,
    snapshots_applied: AtomicU64,
    leader_missing: AtomicU64,
    stale_peer_checks: AtomicU64,
    stale_peers_destroyed: AtomicU64,
    merges_prepared: AtomicU64,
    merge_target_waits: AtomicU64,
    merges_committed: AtomicU64,
    merges_rolled_back: AtomicU64,
    merge_source_mismatches: AtomicU64,
    merge_wait_ms_sum: AtomicU64,
    /// Live [`LeaderGuard`]s.
    leaders: AtomicU64,
}

/// A snapshot of [`StoreStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStatsSnapshot {
    /// Raft engine writes with sync, one per poll round that had something to persist.
    pub raft_fsyncs: u64,
    /// Client commands proposed in those rounds (their sum).
    pub proposals_synced: u64,
    /// Histogram: `proposals_per_fsync[i]` counts fsyncs that carried at most
    /// `PROPOSALS_PER_FSYNC_BUCKETS[i]` proposals (last: more than 256).
    pub proposals_per_fsync: Vec<u64>,
    pub apply_rounds: u64,
    pub commands_answered: u64,
    pub lease_reads: u64,
    pub read_index_reads: u64,
    /// Proposals raft refused (not leader any more, a leader transfer in progress).
    pub proposals_dropped: u64,
    /// Splits applied by the peers of this store (every replica counts its own).
    pub splits_applied: u64,
    /// Split checks the leaders of this store sent to the split checker.
    pub split_checks: u64,
    /// Commands held behind a proposed, not yet applied split (then checked again).
    pub commands_held: u64,
    /// Commands held at a new peer until its region's first leader was known (or the wait
    /// ended), then checked again.
    pub commands_held_for_leader: u64,
    /// Histogram: `split_to_leader_ms[i]` counts regions created by a split on this store,
    /// while it led the parent, that learned their first leader at most
    /// `SPLIT_TO_LEADER_MS_BUCKETS[i]` ms after the split applied here (last: longer).
    pub split_to_leader_ms: Vec<u64>,
    /// The sum of the times in `split_to_leader_ms`, in milliseconds.
    pub split_to_leader_ms_sum: u64,
    /// CompactLog commands applied by the peers of this store (every replica counts its own).
    pub log_compactions: u64,
    /// Raft log entries the log GC worker deleted.
    pub log_entries_deleted: u64,
    /// Log GC tasks dropped because the worker's queue was full (the next compaction of the
    /// region deletes what they would have).
    pub log_gc_tasks_dropped: u64,
    /// Raft messages from the network dropped before raft saw them, indexed by
    /// [`DroppedMessage`] (in `DroppedMessage::ALL` order).
    pub raft_messages_dropped: Vec<u64>,
    /// Snapshots the `snap-generator` built for this store's leaders.
    pub snapshots_generated: u64,
    /// Snapshots this store's peers applied.
    pub snapshots_applied: u64,
    /// Times a peer found it had heard no leader for `abnormal-leader-missing-duration`.
    pub leader_missing: u64,
    /// Times a peer silent past `max-leader-missing-duration` asked PD whether it is stale.
    pub stale_peer_checks: u64,
    /// Peers destroyed because PD's region no longer listed them.
    pub stale_peers_destroyed: u64,
    /// PrepareMerge, CommitMerge and RollbackMerge entries applied by the peers of this store
    /// (every replica counts its own).
    pub merges_prepared: u64,
    /// CommitMerge entries whose target paused to wait for its source (step 6).
    pub merge_target_waits: u64,
    pub merges_committed: u64,
    pub merges_rolled_back: u64,
    /// Merge targets that found their source elsewhere than the CommitMerge says (a broken
    /// invariant: they stay paused).
    pub merge_source_mismatches: u64,
    /// Milliseconds merge targets' apply FSMs spent paused for their sources, summed.
    pub merge_wait_ms_sum: u64,
}

impl StoreStatsSnapshot {
    /// What happened between `before` and `self` (counters and histogram buckets subtracted).
    /// Destructures every field, so a new counter cannot be forgotten here.
    pub fn since(&self, before: &StoreStatsSnapshot) -> StoreStatsSnapshot {
        let StoreStatsSnapshot {
            raft_fsyncs,
            proposals_synced,
            proposals_per_fsync,
            apply_rounds,
            commands_answered,
            lease_reads,
            read_index_reads,
            proposals_dropped,
            splits_applied,
            split_checks,
            commands_held,
            commands_held_for_leader,
            split_to_leader_ms,
            split_to_leader_ms_sum,
            log_compactions,
            log_entries_deleted,
            log_gc_tasks_dropped,
            raft_messages_dropped,
            snapshots_generated,
            snapshots_applied,
            leader_missing,
            stale_peer_checks,
            stale_peers_destroyed,
            merges_prepared,
            merge_target_waits,
            merges_committed,
            merges_rolled_back,
            merge_source_mismatches,
            merge_wait_ms_sum,
        } = self;
        let buckets = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(a, b)| a - b).collect();
        StoreStatsSnapshot {
            raft_fsyncs: raft_fsyncs - before.raft_fsyncs,
            proposals_synced: proposals_synced - before.proposals_synced,
            proposals_per_fsync: buckets(proposals_per_fsync, &before.proposals_per_fsync),
            apply_rounds: apply_rounds - before.apply_rounds,
            commands_answered: commands_answered - before.commands_answered,
            lease_reads: lease_reads - before.lease_reads,
            read_index_reads: read_index_reads - before.read_index_reads,
            proposals_dropped: proposals_dropped - before.proposals_dropped,
            splits_applied: splits_applied - before.splits_applied,
            split_checks: split_checks - before.split_checks,
            commands_held: commands_held - before.commands_held,
            commands_held_for_leader: commands_held_for_leader - before.commands_held_for_leader,
            split_to_leader_ms: buckets(split_to_leader_ms, &before.split_to_leader_ms),
            split_to_leader_ms_sum: split_to_leader_ms_sum - before.split_to_leader_ms_sum,
            log_compactions: log_compactions - before.log_compactions,
            log_entries_deleted: log_entries_deleted - before.log_entries_deleted,
            log_gc_tasks_dropped: log_gc_tasks_dropped - before.log_gc_tasks_dropped,
            raft_messages_dropped: buckets(raft_messages_dropped, &before.raft_messages_dropped),
            snapshots_generated: snapshots_generated - before.snapshots_generated,
            snapshots_applied: snapshots_applied - before.snapshots_applied,
            leader_missing: leader_missing - before.leader_missing,
            stale_peer_checks: stale_peer_checks - before.stale_peer_checks,
            stale_peers_destroyed: stale_peers_destroyed - before.stale_peers_destroyed,
            merges_prepared: merges_prepared - before.merges_prepared,
            merge_target_waits: merge_target_waits - before.merge_target_waits,
            merges_committed: merges_committed - before.merges_committed,
            merges_rolled_back: merges_rolled_back - before.merges_rolled_back,
            merge_source_mismatches: merge_source_mismatches - before.merge_source_mismatches,
            merge_wait_ms_sum: merge_wait_ms_sum - before.merge_wait_ms_sum,
        }
    }
}

#[derive(Clone, Default, Debug)]
pub struct StoreStats {
    inner: Arc<Inner>,
}

impl StoreStats {
    pub fn record_fsync(&self, proposals: u64) {
        let i = &self.inner;
        i.raft_fsyncs.fetch_add(1, Ordering::Relaxed);
        i.proposals_synced.fetch_add(proposals, Ordering::Relaxed);
        i.proposals_per_fsync[bucket(&PROPOSALS_PER_FSYNC_BUCKETS, proposals)]
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_apply_round(&self, answered: usize) {
        self.inner.apply_rounds.fetch_add(1, Ordering::Relaxed);
        self.inner.commands_answered.fetch_add(answered as u64, Ordering::Relaxed);
    }

    pub fn record_lease_read(&self) {
        self.inner.lease_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_read_index_read(&self) {
        self.inner.read_index_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_proposal_dropped(&self) {
        self.inner.proposals_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_split_applied(&self) {
        self.inner.splits_applied.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_merge_prepared(&self) {
        self.inner.merges_prepared.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_merge_target_wait(&self) {
        self.inner.merge_target_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_merge_committed(&self) {
        self.inner.merges_committed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_merge_rolled_back(&self) {
        self.inner.merges_rolled_back.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_merge_source_mismatch(&self) {
        self.inner.merge_source_mismatches.fetch_add(1, Ordering::Relaxed);
    }

    /// A merge target's apply FSM resumed after waiting `waited` for its source.
    pub fn record_merge_wait(&self, waited: std::time::Duration) {
        let ms = waited.as_millis().min(u64::MAX as u128) as u64;
        self.inner.merge_wait_ms_sum.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn record_split_check(&self) {
        self.inner.split_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_command_held(&self) {
        self.inner.commands_held.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_command_held_for_leader(&self) {
        self.inner.commands_held_for_leader.fetch_add(1, Ordering::Relaxed);
    }

    /// A region created by a split on this store (which led the parent) learned its first
    /// leader `ms` milliseconds after the split applied here.
    pub fn record_split_to_leader(&self, ms: u64) {
        let i = &self.inner;
        i.split_to_leader_ms[bucket(&SPLIT_TO_LEADER_MS_BUCKETS, ms)]
            .fetch_add(1, Ordering::Relaxed);
        i.split_to_leader_ms_sum.fetch_add(ms, Ordering::Relaxed);
    }

    pub fn record_log_compaction(&self) {
        self.inner.log_compactions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_log_entries_deleted(&self, n: u64) {
        self.inner.log_entries_deleted.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_log_gc_task_dropped(&self) {
        self.inner.log_gc_tasks_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one more leader until the guard drops. A peer takes one when raft makes it leader
    /// and drops it when it steps down or is destroyed (or dropped at shutdown), so the count
    /// cannot leak. Called on role changes only, never per request.
    pub fn leader_guard(&self) -> LeaderGuard {
        self.inner.leaders.fetch_add(1, Ordering::Relaxed);
        LeaderGuard { inner: self.inner.clone() }
    }

    /// Peers on this store that are raft leaders now.
    pub fn record_snapshot_generated(&self) {
        self.inner.snapshots_generated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_snapshot_applied(&self) {
        self.inner.snapshots_applied.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_leader_missing(&self) {
        self.inner.leader_missing.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_stale_peer_check(&self) {
        self.inner.stale_peer_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_stale_peer_destroyed(&self) {
        self.inner.stale_peers_destroyed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_message_dropped(&self, why: DroppedMessage) {
        self.inner.raft_messages_dropped[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Raft messages dropped for `why` so far.
    pub fn messages_dropped(&self, why: DroppedMessage) -> u64 {
        self.inner.raft_messages_dropped[why.index()].load(Ordering::Relaxed)
    }

    pub fn leaders(&self) -> u64 {
        self.inner.leaders.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> StoreStatsSnapshot {
        let i = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStatsSnapshot {
            raft_fsyncs: load(&i.raft_fsyncs),
            proposals_synced: load(&i.proposals_synced),
            proposals_per_fsync: i.proposals_per_fsync.iter().map(load).collect(),
            apply_rounds: load(&i.apply_rounds),
            commands_answered: load(&i.commands_answered),
            lease_reads: load(&i.lease_reads),
            read_index_reads: load(&i.read_index_reads),
            proposals_dropped: load(&i.proposals_dropped),
            splits_applied: load(&i.splits_applied),
            split_checks: load(&i.split_checks),
            commands_held: load(&i.commands_held),
            commands_held_for_leader: load(&i.commands_held_for_leader),
            split_to_leader_ms: i.split_to_leader_ms.iter().map(load).collect(),
            split_to_leader_ms_sum: load(&i.split_to_leader_ms_sum),
            log_compactions: load(&i.log_compactions),
            log_entries_deleted: load(&i.log_entries_deleted),
            log_gc_tasks_dropped: load(&i.log_gc_tasks_dropped),
            raft_messages_dropped: i.raft_messages_dropped.iter().map(load).collect(),
            snapshots_generated: load(&i.snapshots_generated),
            snapshots_applied: load(&i.snapshots_applied),
            leader_missing: load(&i.leader_missing),
            stale_peer_checks: load(&i.stale_peer_checks),
            stale_peers_destroyed: load(&i.stale_peers_destroyed),
            merges_prepared: load(&i.merges_prepared),
            merge_target_waits: load(&i.merge_target_waits),
            merges_committed: load(&i.merges_committed),
            merges_rolled_back: load(&i.merges_rolled_back),
            merge_source_mismatches: load(&i.merge_source_mismatches),
            merge_wait_ms_sum: load(&i.merge_wait_ms_sum),
        }
    }
}

/// The bucket of `value` in a histogram with upper `bounds` and one open bucket after them.
fn bucket(bounds: &[u64], value: u64) -> usize {
    bounds.iter().position(|&b| value <= b).unwrap_or(bounds.len())
}

/// One leader counted in [`StoreStats::leaders`] while this lives.
#[derive(Debug)]
#[must_use = "the leader is uncounted when the guard drops"]
pub struct LeaderGuard {
    inner: Arc<Inner>,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        let before = self.inner.leaders.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "leader count underflow: a guard was counted once and drops once");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_histogram_buckets() {
        let s = StoreStats::default();
        s.record_fsync(0);
        s.record_fsync(3);
        s.record_fsync(1000);
        let snap = s.snapshot();
        assert_eq!(snap.raft_fsyncs, 3);
        assert_eq!(snap.proposals_synced, 1003);
        assert_eq!(snap.proposals_per_fsync[0], 1);
        assert_eq!(snap.proposals_per_fsync[3], 1, "3 falls in the <=4 bucket");
        assert_eq!(snap.proposals_per_fsync[10], 1, "over 256 is the open bucket");
    }

    #[test]
    fn snapshots_subtract() {
        let s = StoreStats::default();
        s.record_fsync(1);
        s.record_split_to_leader(3);
        let before = s.snapshot();
        s.record_fsync(2);
        s.record_split_to_leader(40);
        let d = s.snapshot().since(&before);
        assert_eq!(d.raft_fsyncs, 1);
        assert_eq!(d.proposals_synced, 2);
        assert_eq!(d.proposals_per_fsync.iter().sum::<u64>(), 1);
        assert_eq!(d.proposals_per_fsync[2], 1, "2 proposals: the <=2 bucket");
        assert_eq!(d.split_to_leader_ms[5], 1);
        assert_eq!(d.split_to_leader_ms_sum, 40);
    }

    #[test]
    fn split_to_leader_histogram_buckets() {
        let s = StoreStats::default();
        s.record_split_to_leader(0);
        s.record_split_to_leader(37);
        s.record_split_to_leader(60_000);
        let snap = s.snapshot();
        assert_eq!(snap.split_to_leader_ms[0], 1, "0 ms falls in the <=1 bucket");
        assert_eq!(snap.split_to_leader_ms[5], 1, "37 ms falls in the <=50 bucket");
        assert_eq!(snap.split_to_leader_ms[14], 1, "over 30 s is the open bucket");
        assert_eq!(snap.split_to_leader_ms_sum, 60_037);
    }

    #[test]
    fn leader_guards_count_leaders() {
        let s = StoreStats::default();
        let a = s.leader_guard();
        let b = s.leader_guard();
        assert_eq!(s.leaders(), 2);
        drop(a);
        assert_eq!(s.leaders(), 1);
        drop(b);
        assert_eq!(s.leaders(), 0);
    }
}
