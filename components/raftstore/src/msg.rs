//! The closed set of messages the raftstore's FSMs exchange. No boxed closures travel here
//! except inside a [`Callback`], the answer channel of a client command.

use std::fmt;
use std::time::Instant;

use proto::metapb;
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::RaftMessage;
use raft::eraftpb::Entry;
use util::RegionId;

use crate::apply::ApplyRes;
use crate::callback::Callback;

/// A client (or internal) command for one region, with its answer channel.
pub struct RaftCommand<S> {
    pub request: RaftCmdRequest,
    pub callback: Callback<S>,
    /// When the command entered the store; for latency metrics.
    pub received_at: Instant,
}

impl<S> RaftCommand<S> {
    pub fn new(request: RaftCmdRequest, callback: Callback<S>) -> Self {
        RaftCommand { request, callback, received_at: Instant::now() }
    }
}

/// Periodic and timed work of a peer. One timer drives all peers of a store (see
/// `store::ticker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerTick {
    /// One raft logical clock tick (`raft-base-tick-interval`).
    Raft,
    /// The deadline of the commands a new peer holds for its region's first leader (see
    /// `peer::leader_wait`); scheduled by the peer, sent once.
    LeaderWaitDeadline,
    /// The deadline of the oldest command a merging region holds (see `peer::merge`, step
    /// 2); scheduled by the peer, sent once.
    MergeHoldDeadline,
}

/// Messages to a region's `PeerFsm`.
pub enum PeerMsg<S> {
    /// A raft message from another store's peer of this region.
    RaftMessage(Box<RaftMessage>),
    /// A command to check and propose (write), or to serve (read).
    RaftCommand(RaftCommand<S>),
    Tick(PeerTick),
    /// What the apply FSM applied.
    ApplyRes(Box<ApplyRes>),
    /// Sent by the peer to itself when it has more raft work than one round handles.
    Wake,
    /// Removes this peer from the store: stops it, answers its pending commands and deletes its
    /// state and data (`peer::life`). Sent when the peer learns it was removed; tests send it
    /// directly.
    Destroy,
    /// The transport finished sending a snapshot to peer `to_peer_id` (`ok`: all of it
    /// arrived); raft resumes replicating to it.
    SnapshotReport {
        to_peer_id: u64,
        ok: bool,
    },
    /// The apply FSM has stopped for good, after the last round that wrote this region's data
    /// (phase 2 of `peer::life`).
    ApplyDestroyed,
    /// Split the region at `split_keys` (sorted, inside the region). The leader asks PD for
    /// ids, then proposes a BatchSplit; `callback` gets the admin response.
    SplitRegion {
        region_epoch: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
        callback: Callback<S>,
        source: SplitSource,
    },
    /// PD's answer to a peer that heard no leader for long: the region as PD knows it
    /// (`peer::stale`).
    StaleCheckResult {
        pd_region: metapb::Region,
    },
    /// What the split checker measured, and where it would split (empty: nowhere).
    SplitCheckResult {
        region_epoch: metapb::RegionEpoch,
        outcome: crate::split::check::CheckOutcome,
    },
    /// From the local peer of a merging source (`peer::merge`, step 4) to this region, its
    /// merge target: propose CommitMerge if leading and still at `target_epoch`. Only this
    /// store's FSMs send it; no client can.
    ProposeCommitMerge {
        source: metapb::Region,
        commit: u64,
        entries: Vec<Entry>,
        target_epoch: metapb::RegionEpoch,
    },
    /// From the target's apply FSM to this region, a merge source (step 6): the merge
    /// committed at index `commit` of this region's log; catch up to it with `entries` if
    /// needed, apply it, and let the target go on.
    CatchUpLogs {
        target_region_id: RegionId,
        commit: u64,
        entries: Vec<Entry>,
    },
    /// From the target's peer to this region, a merge source (step 7): the merge is applied,
    /// the range is `target`'s; destroy this peer, keeping the data.
    MergeResult {
        target: metapb::Region,
    },
    /// From the local peer of merge target `target` to this region, one of its merge
    /// sources: a snapshot of the target covers this region's range (the merge committed
    /// elsewhere, this store missed it). Stop applying and report (`peer::snapshot`, step 4);
    /// the target's snapshot replaces this region in one write.
    StopForSnapshot {
        target: RegionId,
    },
    /// From a merge source to the target that asked it to stop: its apply FSM has stopped.
    SnapshotSourceStopped {
        source: RegionId,
    },
}

/// Who asked for a split (logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitSource {
    /// The `SplitRegion` RPC (ctl, clients).
    Manual,
    /// The split checker found the region too big.
    SizeCheck,
}

impl<S> fmt::Debug for PeerMsg<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMsg::RaftMessage(m) => write!(f, "RaftMessage(region {})", m.region_id),
            PeerMsg::RaftCommand(c) => write!(f, "RaftCommand({:?})", c.request.header),
            PeerMsg::Tick(t) => write!(f, "Tick({t:?})"),
            PeerMsg::ApplyRes(r) => write!(f, "ApplyRes(region {})", r.region_id),
            PeerMsg::Wake => write!(f, "Wake"),
            PeerMsg::Destroy => write!(f, "Destroy"),
            PeerMsg::ApplyDestroyed => write!(f, "ApplyDestroyed"),
            PeerMsg::SnapshotReport { to_peer_id, ok } => {
                write!(f, "SnapshotReport(to {to_peer_id}, ok {ok})")
            }
            PeerMsg::SplitRegion { split_keys, source, .. } => {
                write!(f, "SplitRegion({} keys, {source:?})", split_keys.len())
            }
            PeerMsg::StaleCheckResult { pd_region } => {
                write!(f, "StaleCheckResult({:?})", pd_region.region_epoch)
            }
            PeerMsg::SplitCheckResult { outcome, .. } => {
                write!(
                    f,
                    "SplitCheckResult({} keys, {} bytes)",
                    outcome.split_keys.len(),
                    outcome.size
                )
            }
            PeerMsg::ProposeCommitMerge { source, commit, .. } => {
                write!(f, "ProposeCommitMerge(source {}, commit {commit})", source.id)
            }
            PeerMsg::CatchUpLogs { target_region_id, commit, entries } => write!(
                f,
                "CatchUpLogs(target {target_region_id}, commit {commit}, {} entries)",
                entries.len()
            ),
            PeerMsg::MergeResult { target } => write!(f, "MergeResult(target {})", target.id),
            PeerMsg::StopForSnapshot { target } => write!(f, "StopForSnapshot(target {target})"),
            PeerMsg::SnapshotSourceStopped { source } => {
                write!(f, "SnapshotSourceStopped(source {source})")
            }
        }
    }
}

/// Store-wide periodic work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreTick {
    /// Store heartbeat and housekeeping (PD arrives with the server issue).
    Heartbeat,
}

/// Messages to the store's control FSM.
pub enum StoreMsg {
    /// A raft message for a region this store has no peer of (yet).
    RaftMessage(Box<RaftMessage>),
    Tick(StoreTick),
}

impl fmt::Debug for StoreMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreMsg::RaftMessage(m) => write!(f, "RaftMessage(region {})", m.region_id),
            StoreMsg::Tick(t) => write!(f, "Tick({t:?})"),
        }
    }
}
