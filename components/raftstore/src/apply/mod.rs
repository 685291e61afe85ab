//! The apply system: one `ApplyFsm` per region applies committed entries to the KV engine.
//!
//! One apply round (see [`poller::ApplyPoller`]):
//! 1. For every region in the batch, its committed entries are executed, in log order, into
//!    ONE shared KV write batch, followed by the region's `RaftApplyState`. Data and the apply
//!    state that covers it are therefore always written together (durability invariant).
//! 2. The batch is written once (`write` without sync: the raft log was synced before the
//!    entries were handed here, so recovery replays anything the KV engine lost).
//! 3. Only then are the proposals' callbacks answered and the `ApplyRes` of each region sent
//!    back to its `PeerFsm`.
//!
//! Invariant: an `ApplyFsm` applies entry `i` only after entry `i - 1`, exactly once; the
//! applied index it persists is the last entry whose effects are in the same batch.

mod compact;
pub mod conf_change;
mod exec;
mod fsm;
pub mod merge;
mod poller;
pub mod split;

use std::time::Instant;

use proto::raft_serverpb::{MergeState, RaftApplyState, RaftTruncatedState};
use raft::eraftpb::Entry;
use util::{LogIndex, RegionId, Term};

use crate::callback::Callback;

pub use exec::data_cf;
pub use fsm::{ApplyControlFsm, ApplyFsm};
pub use poller::{ApplyPollerBuilder, ApplyResSink, ApplyRouter};
pub use split::SplitResult;

/// A proposed command waiting for its entry to apply. Several client commands may share one
/// entry (small writes batched by the peer); each callback knows how many of the entry's
/// requests are its own.
pub struct Proposal<S> {
    pub index: LogIndex,
    pub term: Term,
    /// `(callback, number of requests)` in request order.
    pub callbacks: Vec<(Callback<S>, usize)>,
    /// When the command was proposed; the lease is renewed from it (never from apply time).
    pub proposed_at: Instant,
}

/// Work for an `ApplyFsm`.
pub enum ApplyTask<S> {
    /// Committed entries, in order, and the proposals among them (matched by the peer: each
    /// proposal's `(index, term)` is that of one of the entries).
    Apply { entries: Vec<Entry>, proposals: Vec<Proposal<S>> },
    /// The peer is being destroyed: stop, answering nothing more.
    Destroy,
    /// Raft needs a snapshot: take the KV engine at the applied index (after writing what the
    /// round applied) and have the `snap-generator` build it; the answer goes to `tx`.
    GenerateSnapshot { tx: crossbeam_channel::Sender<Option<raft::eraftpb::Snapshot>> },
    /// A snapshot was persisted (region state `Applying`): apply its received files, then
    /// write the region `Normal` (`peer::snapshot`, step 6).
    ApplySnapshot { region: proto::metapb::Region, key: crate::snap::SnapKey },
    /// The `snap-applier` finished the files of the snapshot being applied: wakes the FSM,
    /// which finds the result where it left room for it (`snap_apply`).
    SnapshotFilesApplied,
    /// To a merge source (`merge`, step 6): once the PrepareMerge at `commit` is applied,
    /// stop applying and tell the target's apply FSM (`SourceReady`) after the round's write.
    CatchUp { commit: u64, target_region_id: RegionId },
    /// To a merge target paused at its CommitMerge (`merge`, step 6): the source applied its
    /// PrepareMerge at `commit` and the engine holds it; resume.
    SourceReady { source_region_id: RegionId, commit: u64 },
}

/// What an `ApplyFsm` reports to its peer after a round.
#[derive(Debug, Clone)]
pub struct ApplyRes {
    pub region_id: RegionId,
    pub apply_state: RaftApplyState,
    pub applied_term: Term,
    /// Keys and bytes written, for size estimates (split check).
    pub written_keys: u64,
    pub written_bytes: u64,
    /// Of the written keys, deletes; and ranges deleted (the size then follows in a check).
    pub deleted_keys: u64,
    pub deleted_ranges: u64,
    /// Side effects of admin commands, in log order; the peer MUST act on each.
    pub exec_results: Vec<ExecResult>,
}

/// An applied membership change.
#[derive(Debug, Clone)]
pub struct ChangePeerResult {
    /// What raft applies (`RawNode::apply_conf_change`).
    pub cc: raft::eraftpb::ConfChangeV2,
    /// The region with its new peer list and `conf_ver` (already written).
    pub region: proto::metapb::Region,
}

/// The side effect of an applied admin command.
#[derive(Debug, Clone)]
pub enum ExecResult {
    Split(SplitResult),
    ChangePeer(ChangePeerResult),
    /// The log was compacted up to this position (the apply state already records it); the
    /// peer has the entries below it deleted (`log_gc`).
    CompactLog(RaftTruncatedState),
    /// This region, a merge source, prepared to merge (`merge`, step 3): `region` has the
    /// bumped epoch, `state` was persisted with `Merging`.
    PrepareMerge {
        region: proto::metapb::Region,
        state: MergeState,
    },
    /// This region, a merge target, absorbed `source` (`merge`, step 6): `region` is the
    /// widened region; the source's tombstone was written in the same batch.
    CommitMerge {
        region: proto::metapb::Region,
        source: proto::metapb::Region,
    },
    /// The merge of this region was rolled back (`merge`, step 8): `region` has the bumped
    /// version and is `Normal` again.
    RollbackMerge {
        region: proto::metapb::Region,
        commit: u64,
    },
}
