//! `ApplyFsm`: the apply state machine of one region.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use batch_system::{Fsm, Inbox};
use engine_traits::{KvEngine, Mutable, WriteOptions, CF_RAFT};
use prost::Message as _;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, ChangePeerResponse, ChangePeerV2Response,
    CommitMergeRequest, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader,
};
use proto::raft_serverpb::{MergeState, RaftApplyState, RaftTruncatedState, RegionLocalState};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Snapshot};
use slog::{debug, error, info, Logger};
use util::{LogIndex, PeerId, RegionId, Term};

use super::compact::exec_compact_log;
use super::conf_change::{apply_changes, requested_changes, to_raft_conf_change, v1_to_v2};
use super::exec::{exec_write, WriteStats};
use super::merge::{
    check_merge_entries, check_source_state, exec_prepare_merge, exec_rollback_merge,
    merged_region, write_commit_merge,
};
use super::poller::ApplyContext;
use super::split::exec_batch_split;
use super::{ApplyRes, ApplyTask, ChangePeerResult, ExecResult, Proposal};
use crate::error::Error;
use crate::snap::{Side, SnapKey};
use crate::snap_apply::{apply_files, ApplyJob};
use crate::snap_gen::GenTask;
use crate::util::{check_region_epoch, find_peer_by_id};

pub struct ApplyFsm<EK: KvEngine> {
    region_id: RegionId,
    /// This store's peer of the region: when a conf change removes it, nothing after that
    /// entry is applied here.
    peer_id: PeerId,
    region: metapb::Region,
    apply_state: RaftApplyState,
    applied_term: Term,
    inbox: Inbox<ApplyTask<EK::Snapshot>>,
    /// Set by `Destroy` or a simulated crash; the poller drops the FSM after the round.
    stopped: bool,
    /// A conf change removed this peer: later entries are not applied (their proposals are
    /// answered `RegionNotFound` as they drop); the peer destroys itself.
    removed: bool,
    /// Something was applied this round: the apply state goes into the batch and an
    /// `ApplyRes` to the peer.
    dirty: bool,
    written: WriteStats,
    exec_results: Vec<ExecResult>,
    /// Snapshot generations asked for, waiting for the round's write (`GenerateSnapshot`).
    gen_requests: Vec<crossbeam_channel::Sender<Option<Snapshot>>>,
    /// A received snapshot being applied (`ApplySnapshot`, `snap_apply`); no later task is
    /// handled before it is done.
    snapshot: SnapshotApply,
    /// The merge state of this region while it is a merge source (`Merging`): from its
    /// PrepareMerge until rolled back, merged, or replaced by a snapshot. CompactLog is a
    /// no-op meanwhile (the target may need the entries, `peer::merge`).
    merging: Option<MergeState>,
    /// A merge source told to catch up (`ApplyTask::CatchUp`): the PrepareMerge index the
    /// target waits for, and the target.
    catch_up: Option<(u64, RegionId)>,
    /// A merge source that reached its target's CommitMerge: it applies nothing more (its
    /// data is the target's now); its peer destroys it.
    merged: bool,
    /// A merge target paused at its CommitMerge until the local source caught up.
    wait_source: Option<WaitSource<EK::Snapshot>>,
    /// `SourceReady` arrived for this (source, commit): the paused CommitMerge may apply.
    source_ready: Option<(RegionId, u64)>,
    /// Tasks kept aside while paused, handled before the inbox once resumed.
    resumed: VecDeque<ApplyTask<EK::Snapshot>>,
    logger: Logger,
}

/// A merge target's apply FSM paused at its CommitMerge (`peer::merge`, step 6). Bounded by
/// what its peer sends meanwhile: the target leader holds its writes behind the CommitMerge
/// (`split::PendingEpochChange`), so mostly a follower's few entries wait here.
struct WaitSource<S> {
    source_id: RegionId,
    commit: u64,
    /// The CommitMerge entry and the rest of its task, with their proposals.
    entries: VecDeque<Entry>,
    proposals: VecDeque<Proposal<S>>,
    /// Tasks that arrived while paused, in order.
    kept: VecDeque<ApplyTask<S>>,
    since: Instant,
}

/// What applying one entry came to.
enum Applied {
    Done(Result<RaftCmdResponse, Error>),
    /// A CommitMerge waits for its source (`WaitSource`); the entry is not applied yet.
    WaitSource {
        source_id: RegionId,
        commit: u64,
    },
}

/// Where the `snap-applier` leaves a job's result for the FSM.
type ResultSlot = Arc<Mutex<Option<crate::snap::Result<()>>>>;

/// A received snapshot's way through the apply FSM (`snap_apply`).
enum SnapshotApply {
    Idle,
    /// `ApplySnapshot` arrived; applied once the round's write is done.
    Queued(metapb::Region, SnapKey),
    /// The worker applies its files; `result` is filled when it is done.
    Running {
        region: metapb::Region,
        key: SnapKey,
        result: ResultSlot,
        started: Instant,
    },
}

impl<EK: KvEngine> ApplyFsm<EK> {
    pub fn new(
        peer_id: PeerId,
        region: metapb::Region,
        apply_state: RaftApplyState,
        applied_term: Term,
        merging: Option<MergeState>,
        inbox: Inbox<ApplyTask<EK::Snapshot>>,
        logger: Logger,
    ) -> Self {
        ApplyFsm {
            region_id: RegionId(region.id),
            peer_id,
            region,
            apply_state,
            applied_term,
            inbox,
            stopped: false,
            removed: false,
            dirty: false,
            written: WriteStats::default(),
            exec_results: Vec::new(),
            gen_requests: Vec::new(),
            snapshot: SnapshotApply::Idle,
            merging,
            catch_up: None,
            merged: false,
            wait_source: None,
            source_ready: None,
            resumed: VecDeque::new(),
            logger,
        }
    }

    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Handles up to `max` tasks; returns the inbox length left.
    pub(super) fn handle_tasks(&mut self, ctx: &mut ApplyContext<EK>, max: usize) -> usize {
        self.maybe_finish_snapshot(ctx);
        for _ in 0..max {
            if self.stopped || !matches!(self.snapshot, SnapshotApply::Idle) {
                break;
            }
            let task = match self.resumed.pop_front() {
                Some(task) if self.wait_source.is_none() => task,
                kept => {
                    if let Some(task) = kept {
                        self.resumed.push_front(task);
                    }
                    let Some(task) = self.inbox.try_recv() else { break };
                    task
                }
            };
            if let Some(wait) = &mut self.wait_source {
                // Paused at a CommitMerge: only its source's answer and a destroy matter now.
                match task {
                    ApplyTask::SourceReady { source_region_id, commit } => {
                        self.on_source_ready(ctx, source_region_id, commit)
                    }
                    ApplyTask::Destroy => self.destroy(ctx),
                    other => wait.kept.push_back(other),
                }
                continue;
            }
            match task {
                ApplyTask::Apply { entries, proposals } if !self.merged => {
                    self.apply_entries(ctx, entries.into(), proposals.into())
                }
                // A merged source applies nothing more: the entries after its PrepareMerge
                // are no-ops (their epochs are older), and its range is the target's now.
                // Dropped callbacks answer `RegionNotFound`.
                ApplyTask::Apply { .. } => {}
                ApplyTask::Destroy => self.destroy(ctx),
                ApplyTask::GenerateSnapshot { tx } => self.gen_requests.push(tx),
                ApplyTask::ApplySnapshot { region, key } => {
                    self.snapshot = SnapshotApply::Queued(region, key);
                }
                // Only wakes the FSM (`maybe_finish_snapshot` ran above).
                ApplyTask::SnapshotFilesApplied => {}
                ApplyTask::CatchUp { commit, target_region_id } => {
                    self.catch_up = Some((commit, target_region_id));
                    self.check_caught_up(ctx);
                }
                // For a pause that ended (a restart replays the CommitMerge and asks again).
                ApplyTask::SourceReady { source_region_id, .. } => {
                    debug!(self.logger, "stale source-ready ignored"; "source" => source_region_id);
                }
            }
        }
        if self.wait_source.is_some() {
            self.inbox.len()
        } else {
            self.inbox.len() + self.resumed.len()
        }
    }

    fn destroy(&mut self, ctx: &mut ApplyContext<EK>) {
        debug!(self.logger, "apply fsm destroyed");
        self.stopped = true;
        ctx.push_destroyed(self.region_id);
    }

    fn apply_entries(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        mut entries: VecDeque<Entry>,
        mut proposals: VecDeque<Proposal<EK::Snapshot>>,
    ) {
        while let Some(entry) = entries.pop_front() {
            if self.removed || self.merged {
                break;
            }
            let index = entry.index;
            if index <= self.apply_state.applied_index {
                // Raft hands out committed entries from the applied index it was started
                // with; anything older is a duplicate and MUST NOT apply twice.
                debug!(self.logger, "skip applied entry"; "index" => index);
                continue;
            }
            assert_eq!(
                index,
                self.apply_state.applied_index + 1,
                "region {}: entry {} applied out of order (applied {})",
                self.region_id,
                index,
                self.apply_state.applied_index
            );
            let proposal = match proposals.front() {
                Some(p) if p.index.get() == index => proposals.pop_front(),
                Some(p) => {
                    assert!(
                        p.index.get() > index,
                        "region {}: proposal {} skipped",
                        self.region_id,
                        p.index
                    );
                    None
                }
                None => None,
            };
            // (A conf change leaving a joint state is empty too: its type tells them apart.)
            let refused = entry.get_entry_type() == EntryType::EntryNormal
                && entry.data.is_empty()
                && proposal.is_some();
            let result = if refused {
                // Raft put an empty entry in place of a conf change it refused (one was
                // pending, or it did not fit the joint state): it must not read as applied.
                Err(Error::InvalidRequest(
                    "raft refused the membership change (another one is in progress)".into(),
                ))
            } else {
                match self.apply_entry(ctx, &entry) {
                    Applied::Done(result) => result,
                    Applied::WaitSource { source_id, commit } => {
                        // Not applied: the entry, its proposal and the rest wait for the
                        // source; tasks not handled yet go before anything that arrives.
                        entries.push_front(entry);
                        if let Some(p) = proposal {
                            proposals.push_front(p);
                        }
                        self.wait_source = Some(WaitSource {
                            source_id,
                            commit,
                            entries,
                            proposals,
                            kept: std::mem::take(&mut self.resumed),
                            since: Instant::now(),
                        });
                        return;
                    }
                }
            };
            self.apply_state.applied_index = index;
            self.applied_term = Term(entry.term);
            self.dirty = true;
            if let Some(p) = proposal {
                assert_eq!(
                    p.term.get(),
                    entry.term,
                    "region {}: proposal term mismatch at {}",
                    self.region_id,
                    index
                );
                ctx.answer(p, result, entry.term);
            }
            self.check_caught_up(ctx);
        }
        assert!(
            self.removed || self.merged || proposals.is_empty(),
            "region {}: proposals without entries",
            self.region_id
        );
    }

    fn apply_entry(&mut self, ctx: &mut ApplyContext<EK>, entry: &Entry) -> Applied {
        match entry.get_entry_type() {
            EntryType::EntryNormal => {}
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                return Applied::Done(self.apply_conf_change(ctx, entry));
            }
        }
        if entry.data.is_empty() {
            // The empty entry a new leader appends to commit its term (see `apply_entries`
            // for one that carries a proposal).
            return Applied::Done(Ok(RaftCmdResponse::default()));
        }
        let req = match self.decode_committed(entry, &entry.data) {
            Ok(req) => req,
            Err(e) => return Applied::Done(Err(e)),
        };
        if req.admin_request.is_some() {
            return self.apply_admin(ctx, &req, entry.index);
        }
        Applied::Done(exec_write(ctx.wb(), &self.region, &req, &mut self.written))
    }

    /// Applies an admin command. Its epoch is checked again: an admin proposed under an epoch
    /// that an earlier entry changed MUST NOT apply (the proposal checker makes this rare).
    fn apply_admin(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        req: &RaftCmdRequest,
        index: u64,
    ) -> Applied {
        if let Err(e) = check_region_epoch(req, &self.region) {
            return Applied::Done(Err(e));
        }
        let admin = req.admin_request.as_ref().expect("checked by the caller");
        let cmd_type = AdminCmdType::try_from(admin.cmd_type).unwrap_or(AdminCmdType::InvalidAdmin);
        if cmd_type == AdminCmdType::CommitMerge {
            return self.apply_commit_merge(ctx, admin.commit_merge.as_ref(), index);
        }
        Applied::Done(self.apply_other_admin(ctx, admin, cmd_type, index).map(|admin_response| {
            RaftCmdResponse {
                header: Some(RaftResponseHeader::default()),
                admin_response: Some(admin_response),
                ..Default::default()
            }
        }))
    }

    fn apply_other_admin(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        admin: &AdminRequest,
        cmd_type: AdminCmdType,
        index: u64,
    ) -> Result<AdminResponse, Error> {
        let admin_response = match cmd_type {
            AdminCmdType::BatchSplit => {
                let split = admin
                    .splits
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("BatchSplit without requests".into()))?;
                let (kv, wb) = ctx.kv_and_wb();
                let (resp, result) = exec_batch_split(kv, wb, &self.region, split)?;
                info!(self.logger, "split applied";
                    "regions" => ?result.regions.iter().map(|r| r.id).collect::<Vec<_>>(),
                    "version" => result.derived.region_epoch.unwrap_or_default().version);
                self.region = result.derived.clone();
                self.exec_results.push(ExecResult::Split(result));
                resp
            }
            AdminCmdType::CompactLog if self.merging.is_some() => {
                // The merge target may need these entries (`peer::merge`, #12663): the same
                // on every replica, as every replica is merging at this index.
                debug!(self.logger, "log compaction skipped while merging");
                AdminResponse {
                    cmd_type: AdminCmdType::CompactLog as i32,
                    compact_log: Some(Default::default()),
                    ..Default::default()
                }
            }
            AdminCmdType::CompactLog => {
                let (resp, truncated) =
                    exec_compact_log(&mut self.apply_state, admin.compact_log.as_ref())?;
                if let Some(t) = truncated {
                    debug!(self.logger, "log compacted"; "index" => t.index, "term" => t.term);
                    self.exec_results.push(ExecResult::CompactLog(t));
                }
                resp
            }
            AdminCmdType::PrepareMerge => {
                let (resp, region, state) = exec_prepare_merge(
                    ctx.wb(),
                    &self.region,
                    &self.apply_state,
                    admin.prepare_merge.as_ref(),
                    index,
                )?;
                info!(self.logger, "prepare merge applied"; "index" => index,
                    "target" => state.target.as_ref().map_or(0, |t| t.id),
                    "min_index" => state.min_index);
                fail::fail_point!("raftstore::merge::after_prepare_apply");
                self.region = region.clone();
                self.merging = Some(state.clone());
                self.exec_results.push(ExecResult::PrepareMerge { region, state });
                resp
            }
            AdminCmdType::RollbackMerge => {
                let req = admin.rollback_merge.as_ref();
                let (resp, region) =
                    exec_rollback_merge(ctx.wb(), &self.region, self.merging.as_ref(), req)?;
                let commit = self.merging.take().map_or(0, |m| m.commit);
                info!(self.logger, "merge rolled back"; "prepared_at" => commit,
                    "version" => region.region_epoch.unwrap_or_default().version);
                self.region = region.clone();
                self.catch_up = None;
                self.exec_results.push(ExecResult::RollbackMerge { region, commit });
                resp
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "admin command {other:?} is not supported"
                )))
            }
        };
        Ok(admin_response)
    }

    /// `peer::merge` step 6, on the target. The first time the entry comes, the FSM pauses
    /// and asks the local source to catch up; once the source's apply FSM reports that the
    /// engine holds its PrepareMerge at `commit` (`on_source_ready`), the entry applies: the
    /// widened target and the source's tombstone in this round's batch.
    fn apply_commit_merge(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        req: Option<&CommitMergeRequest>,
        index: u64,
    ) -> Applied {
        let invalid = |m: &str| Applied::Done(Err(Error::InvalidRequest(m.to_owned())));
        let Some(req) = req else { return invalid("CommitMerge without its request") };
        let Some(source) = req.source.as_ref() else {
            return invalid("CommitMerge without source");
        };
        let source_id = RegionId(source.id);
        // Checked alike on every replica before pausing: a CommitMerge that cannot apply
        // never waits.
        let merged = match merged_region(&self.region, source) {
            Ok(m) => m,
            Err(e) => return Applied::Done(Err(e)),
        };
        if self.source_ready != Some((source_id, req.commit)) {
            let mut entries = Vec::with_capacity(req.entries.len());
            for bytes in &req.entries {
                match Entry::parse_from_bytes(bytes) {
                    Ok(e) => entries.push(e),
                    Err(e) => {
                        let why = format!("CommitMerge entries: {e}");
                        return Applied::Done(Err(self.undecodable_at(index, &why)));
                    }
                }
            }
            // The source appends them to its log (`peer::merge`, step 6), where raft-rs
            // assumes a run of entries ending at the PrepareMerge: anything else (only a
            // leader that is not ours could commit it) applies as an error, alike everywhere.
            if let Err(why) = check_merge_entries(&entries, req.commit) {
                return Applied::Done(Err(self.undecodable_at(index, &why)));
            }
            info!(self.logger, "commit merge waits for the source"; "index" => index,
                "source" => source_id, "source_commit" => req.commit, "entries" => entries.len());
            fail::fail_point!("raftstore::merge::target_paused");
            ctx.stats.record_merge_target_wait();
            ctx.push_catch_up(source_id, self.region_id, req.commit, entries);
            return Applied::WaitSource { source_id, commit: req.commit };
        }
        self.source_ready = None;
        let key = keys::region_state_key(source_id);
        let state: Option<RegionLocalState> = match ctx.kv.get_msg_cf(CF_RAFT, &key) {
            Ok(state) => state,
            // The engine failing a read is a storage failure, fatal as a failing write.
            Err(e) => panic!("region {}: cannot read merge source state: {e}", self.region_id),
        };
        if let Err(why) = check_source_state(state.as_ref(), source, req.commit) {
            // An invariant is broken (the source applied another PrepareMerge, or is gone).
            // Applying would lose data and skipping would diverge from the replicas that
            // applied it: stay paused, loudly.
            error!(self.logger, "merge source is not where the CommitMerge says";
                "source" => source_id, "why" => %why);
            ctx.stats.record_merge_source_mismatch();
            return Applied::WaitSource { source_id, commit: req.commit };
        }
        let state = state.expect("checked");
        let source_region = state.region.clone().expect("checked");
        let source_merge = MergeState {
            target: Some(self.region.clone()),
            ..state.merge_state.unwrap_or_default()
        };
        let resp = write_commit_merge(ctx.wb(), &merged, &source_region, source_merge);
        info!(self.logger, "commit merge applied"; "index" => index, "source" => source_id,
            "start" => %merged.start_key.escape_ascii(), "end" => %merged.end_key.escape_ascii(),
            "version" => merged.region_epoch.unwrap_or_default().version);
        self.region = merged.clone();
        self.exec_results.push(ExecResult::CommitMerge { region: merged, source: source_region });
        Applied::Done(Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            admin_response: Some(resp),
            ..Default::default()
        }))
    }

    /// The source's apply FSM reported (`ApplyTask::SourceReady`): resume at the CommitMerge.
    fn on_source_ready(&mut self, ctx: &mut ApplyContext<EK>, source_id: RegionId, commit: u64) {
        let Some(wait) =
            self.wait_source.take_if(|w| w.source_id == source_id && w.commit == commit)
        else {
            debug!(self.logger, "source-ready for another merge ignored"; "source" => source_id);
            return;
        };
        ctx.stats.record_merge_wait(wait.since.elapsed());
        self.source_ready = Some((source_id, commit));
        self.resumed = wait.kept;
        self.apply_entries(ctx, wait.entries, wait.proposals);
    }

    /// `peer::merge` step 6, on the source: once the PrepareMerge the target waits for is
    /// applied, apply nothing more, and have the target told after this round's write.
    fn check_caught_up(&mut self, ctx: &mut ApplyContext<EK>) {
        let Some((commit, target)) = self.catch_up else { return };
        if self.merging.as_ref().is_none_or(|m| m.commit != commit) {
            return;
        }
        info!(self.logger, "merge source caught up"; "commit" => commit, "target" => target);
        self.catch_up = None;
        self.merged = true;
        ctx.push_source_ready(target, self.region_id, commit);
    }

    /// The command a committed entry carries. One that does not decode (only a leader that is
    /// not ours, or corruption, can commit one) applies as an error with no effect: every
    /// replica decodes the same bytes, so they all skip it alike, and the store stays up.
    fn decode_committed(&self, entry: &Entry, bytes: &[u8]) -> Result<RaftCmdRequest, Error> {
        RaftCmdRequest::decode(bytes).map_err(|e| self.undecodable(entry, &e.to_string()))
    }

    fn undecodable(&self, entry: &Entry, why: &str) -> Error {
        self.undecodable_at(entry.index, why)
    }

    fn undecodable_at(&self, index: u64, why: &str) -> Error {
        error!(self.logger, "committed entry does not decode; applied as a no-op";
            "index" => index, "err" => why);
        Error::InvalidRequest(format!("entry {index} does not decode: {why}"))
    }

    /// A `ChangePeer`/`ChangePeerV2` entry (`apply::conf_change`): the new peer list is
    /// written with the entry's apply state; the peer applies the change to raft when it gets
    /// the result. A change that does not fit the region (an epoch that moved, an invalid
    /// change) is answered with an error and changes nothing, in raft either.
    fn apply_conf_change(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        entry: &Entry,
    ) -> Result<RaftCmdResponse, Error> {
        let cc = if entry.get_entry_type() == EntryType::EntryConfChange {
            let mut v1 = ConfChange::default();
            v1.merge_from_bytes(&entry.data).map(|_| v1_to_v2(&v1))
        } else {
            let mut v2 = ConfChangeV2::default();
            v2.merge_from_bytes(&entry.data).map(|_| v2)
        };
        // Every replica holds the same bytes, so every replica refuses them alike: the
        // membership stays as it was everywhere (raft's pending-change index still clears,
        // as the entry is applied).
        let cc = cc.map_err(|e| self.undecodable(entry, &format!("conf change: {e}")))?;
        let req = self.decode_committed(entry, &entry.context)?;
        check_region_epoch(&req, &self.region)?;
        let admin = req.admin_request.as_ref().ok_or_else(|| {
            Error::InvalidRequest("conf change entry without an admin command".into())
        })?;
        let changes = requested_changes(admin).ok_or_else(|| {
            Error::InvalidRequest("conf change entry with another admin command".into())
        })??;
        // The change raft applies (the entry's data) and the one the region records (its
        // context) must be the same one.
        if to_raft_conf_change(&changes)? != cc {
            return Err(Error::InvalidRequest(
                "conf change entry disagrees with its command".into(),
            ));
        }
        let region = apply_changes(&self.region, &changes)?;
        let state = RegionLocalState { region: Some(region.clone()), ..Default::default() };
        ctx.wb().put_msg_cf(CF_RAFT, &keys::region_state_key(self.region_id), &state);
        info!(self.logger, "membership changed"; "index" => entry.index,
            "peers" => ?region.peers.iter().map(|p| (p.id, p.store_id, p.role)).collect::<Vec<_>>(),
            "conf_ver" => region.region_epoch.unwrap_or_default().conf_ver);
        self.region = region.clone();
        if find_peer_by_id(&region, self.peer_id).is_none() {
            self.removed = true;
        }
        self.exec_results
            .push(ExecResult::ChangePeer(ChangePeerResult { cc, region: region.clone() }));
        let resp_region = Some(region);
        let mut admin_response = AdminResponse { cmd_type: admin.cmd_type, ..Default::default() };
        if admin.cmd_type == AdminCmdType::ChangePeer as i32 {
            admin_response.change_peer = Some(ChangePeerResponse { region: resp_region });
        } else {
            admin_response.change_peer_v2 = Some(ChangePeerV2Response { region: resp_region });
        }
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            admin_response: Some(admin_response),
            ..Default::default()
        })
    }

    /// Whether snapshot work waits for the engine to hold everything applied so far.
    pub(super) fn needs_engine_at_applied(&self) -> bool {
        !self.gen_requests.is_empty() || matches!(self.snapshot, SnapshotApply::Queued(..))
    }

    /// A snapshot's files are being applied by the worker: the FSM waits (the poller must
    /// not keep it in the batch; the worker's wake-up brings it back).
    pub(super) fn is_waiting_for_snapshot(&self) -> bool {
        matches!(self.snapshot, SnapshotApply::Running { .. })
    }

    /// Snapshot work, once the poller wrote the round so far: the engine holds exactly what
    /// this FSM applied.
    pub(super) fn on_engine_at_applied(&mut self, ctx: &mut ApplyContext<EK>) {
        if let SnapshotApply::Queued(region, key) =
            std::mem::replace(&mut self.snapshot, SnapshotApply::Idle)
        {
            self.start_snapshot(ctx, region, key);
        }
        if self.gen_requests.is_empty() {
            return;
        }
        let snapshot = ctx.kv.snapshot();
        for done in self.gen_requests.drain(..) {
            ctx.snap_gen.schedule(GenTask {
                region: self.region.clone(),
                index: LogIndex(self.apply_state.applied_index),
                term: self.applied_term,
                snapshot: snapshot.clone(),
                done,
            });
        }
    }

    /// `snap_apply` step 1: the worker applies the files; the result comes back through a
    /// slot this FSM checks, and a wake-up task. A full queue: the files are applied here.
    fn start_snapshot(&mut self, ctx: &mut ApplyContext<EK>, region: metapb::Region, key: SnapKey) {
        let slot: ResultSlot = Arc::new(Mutex::new(None));
        let (filled, router, region_id) = (slot.clone(), ctx.router.clone(), self.region_id);
        let job = ApplyJob {
            region: region.clone(),
            key,
            done: Box::new(move |result| {
                *filled.lock() = Some(result);
                // Gone: the FSM was shut down; the restart applies again.
                let _ = router.force_send(region_id.get(), ApplyTask::SnapshotFilesApplied);
            }),
        };
        self.snapshot =
            SnapshotApply::Running { region, key, result: slot, started: Instant::now() };
        if let Err(job) = ctx.snap_apply.schedule(job) {
            apply_files(&ctx.kv, &ctx.snap_mgr, job);
            self.maybe_finish_snapshot(ctx);
        }
    }

    /// `snap_apply` step 3, once the worker answered.
    fn maybe_finish_snapshot(&mut self, ctx: &mut ApplyContext<EK>) {
        let done = match &self.snapshot {
            SnapshotApply::Running { result, .. } => result.lock().take(),
            SnapshotApply::Idle | SnapshotApply::Queued(..) => None,
        };
        let Some(result) = done else { return };
        if let SnapshotApply::Running { region, key, started, .. } =
            std::mem::replace(&mut self.snapshot, SnapshotApply::Idle)
        {
            self.finish_snapshot(ctx, region, key, result, started);
        }
    }

    /// Makes the region `Normal` (synced) once its snapshot's files are applied. The files
    /// were checked when received and again before anything was deleted; a failure to apply
    /// them is a storage failure (local files rotted, the engine refuses), which is fatal:
    /// the region is half replaced.
    fn finish_snapshot(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        region: metapb::Region,
        key: SnapKey,
        applied: crate::snap::Result<()>,
        started: Instant,
    ) {
        if let Err(e) = applied {
            panic!("region {}: cannot apply snapshot {key}: {e}", self.region_id);
        }
        // A crash here leaves the data applied and the region `Applying`: the restart
        // applies the same files again (idempotent) and then writes `Normal`.
        fail::fail_point!("raftstore::apply::snapshot_before_normal", |_| {
            self.crash();
        });
        self.apply_state = RaftApplyState {
            applied_index: key.index.get(),
            commit_index: key.index.get(),
            commit_term: key.term.get(),
            truncated_state: Some(RaftTruncatedState {
                index: key.index.get(),
                term: key.term.get(),
            }),
            ..Default::default()
        };
        self.applied_term = key.term;
        self.region = region.clone();
        self.removed = false;
        // A snapshot taken after a rollback elsewhere replaces a merge this replica was in
        // (TiKV #12232): the region is `Normal` at the snapshot's epoch.
        self.merging = None;
        self.catch_up = None;
        let mut wb = ctx.kv.write_batch();
        let state = RegionLocalState { region: Some(region), ..Default::default() };
        wb.put_msg_cf(CF_RAFT, &keys::region_state_key(self.region_id), &state);
        wb.put_msg_cf(CF_RAFT, &keys::apply_state_key(self.region_id), &self.apply_state);
        wb.delete_cf(CF_RAFT, &keys::snapshot_raft_state_key(self.region_id));
        if let Err(e) = ctx.kv.write(&mut wb, &WriteOptions::synced()) {
            panic!("region {}: cannot write the applied snapshot's state: {e}", self.region_id);
        }
        if let Err(e) = ctx.snap_mgr.delete(key, Side::Rev) {
            // Garbage: the next start (or GC) deletes it.
            debug!(self.logger, "cannot delete an applied snapshot"; "err" => %e);
        }
        info!(self.logger, "snapshot applied"; "key" => %key,
            "ms" => started.elapsed().as_millis() as u64);
        ctx.stats.record_snapshot_applied();
        self.dirty = true;
    }

    /// Called by the poller after the FSM's tasks of the round: puts the apply state into the
    /// batch and queues the result for the peer.
    pub(super) fn finish_round(&mut self, ctx: &mut ApplyContext<EK>) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.apply_state.commit_index = self.apply_state.applied_index;
        self.apply_state.commit_term = self.applied_term.get();
        ctx.wb().put_msg_cf(CF_RAFT, &keys::apply_state_key(self.region_id), &self.apply_state);
        let written = std::mem::take(&mut self.written);
        ctx.push_result(ApplyRes {
            region_id: self.region_id,
            apply_state: self.apply_state.clone(),
            applied_term: self.applied_term,
            written_keys: written.keys,
            written_bytes: written.bytes,
            deleted_keys: written.deleted_keys,
            deleted_ranges: written.deleted_ranges,
            exec_results: std::mem::take(&mut self.exec_results),
        });
    }

    pub(super) fn is_stopped_now(&self) -> bool {
        self.stopped
    }

    /// Simulated crash (failpoints): stop applying; what is not written is lost.
    pub(super) fn crash(&mut self) {
        self.stopped = true;
    }

    pub fn applied_index(&self) -> LogIndex {
        LogIndex(self.apply_state.applied_index)
    }
}

impl<EK: KvEngine> Fsm for ApplyFsm<EK> {
    type Message = ApplyTask<EK::Snapshot>;

    fn is_stopped(&self) -> bool {
        self.stopped
    }
}

/// The apply system's control FSM. It has nothing to do yet; it exists because the batch
/// system has one per system.
pub struct ApplyControlFsm {
    pub(super) inbox: Inbox<()>,
}

impl ApplyControlFsm {
    pub fn new(inbox: Inbox<()>) -> Self {
        ApplyControlFsm { inbox }
    }
}

impl Fsm for ApplyControlFsm {
    type Message = ();

    fn is_stopped(&self) -> bool {
        false
    }
}

/// Splits one entry's response among the callbacks that shared it.
pub(super) fn split_response(
    resp: &Result<RaftCmdResponse, Error>,
    offset: usize,
    n: usize,
    term: u64,
) -> Result<RaftCmdResponse, Error> {
    match resp {
        Ok(r) => Ok({
            let mut header = r.header.clone().unwrap_or_default();
            header.current_term = term;
            let responses =
                r.responses.get(offset..offset + n).map(<[_]>::to_vec).unwrap_or_default();
            // An admin entry has one command, which gets the admin response.
            let admin_response = r.admin_response.clone();
            RaftCmdResponse {
                header: Some(header),
                responses,
                admin_response,
                ..Default::default()
            }
        }),
        Err(e) => Err(e.clone()),
    }
}
