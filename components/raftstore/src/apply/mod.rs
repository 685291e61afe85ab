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
mod poller;
pub mod split;

use std::time::Instant;

use proto::raft_serverpb::{RaftApplyState, RaftTruncatedState};
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
}
