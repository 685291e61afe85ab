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
    AdminCmdType, AdminResponse, ChangePeerResponse, ChangePeerV2Response, RaftCmdRequest,
    RaftCmdResponse, RaftResponseHeader,
};
use proto::raft_serverpb::{RaftApplyState, RaftTruncatedState, RegionLocalState};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Snapshot};
use slog::{debug, error, info, Logger};
use util::{LogIndex, PeerId, RegionId, Term};

use super::compact::exec_compact_log;
use super::conf_change::{apply_changes, requested_changes, to_raft_conf_change, v1_to_v2};
use super::exec::{exec_write, WriteStats};
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
    logger: Logger,
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
            let Some(task) = self.inbox.try_recv() else { break };
            match task {
                ApplyTask::Apply { entries, proposals } => {
                    self.apply_entries(ctx, entries, proposals)
                }
                ApplyTask::Destroy => {
                    debug!(self.logger, "apply fsm destroyed");
                    self.stopped = true;
                    ctx.push_destroyed(self.region_id);
                }
                ApplyTask::GenerateSnapshot { tx } => self.gen_requests.push(tx),
                ApplyTask::ApplySnapshot { region, key } => {
                    self.snapshot = SnapshotApply::Queued(region, key);
                }
                // Only wakes the FSM (`maybe_finish_snapshot` ran above).
                ApplyTask::SnapshotFilesApplied => {}
            }
        }
        self.inbox.len()
    }

    fn apply_entries(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        entries: Vec<Entry>,
        proposals: Vec<Proposal<EK::Snapshot>>,
    ) {
        let mut proposals: VecDeque<_> = proposals.into();
        for entry in entries {
            if self.removed {
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
                self.apply_entry(ctx, &entry)
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
        }
        assert!(
            self.removed || proposals.is_empty(),
            "region {}: proposals without entries",
            self.region_id
        );
    }

    fn apply_entry(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        entry: &Entry,
    ) -> Result<RaftCmdResponse, Error> {
        match entry.get_entry_type() {
            EntryType::EntryNormal => {}
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                return self.apply_conf_change(ctx, entry);
            }
        }
        if entry.data.is_empty() {
            // The empty entry a new leader appends to commit its term (see `apply_entries`
            // for one that carries a proposal).
            return Ok(RaftCmdResponse::default());
        }
        let req = self.decode_committed(entry, &entry.data)?;
        if req.admin_request.is_some() {
            return self.apply_admin(ctx, &req);
        }
        exec_write(ctx.wb(), &self.region, &req, &mut self.written)
    }

    /// Applies an admin command. Its epoch is checked again: an admin proposed under an epoch
    /// that an earlier entry changed MUST NOT apply (the proposal checker makes this rare).
    fn apply_admin(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        req: &RaftCmdRequest,
    ) -> Result<RaftCmdResponse, Error> {
        check_region_epoch(req, &self.region)?;
        let admin = req.admin_request.as_ref().expect("checked by the caller");
        let cmd_type = AdminCmdType::try_from(admin.cmd_type).unwrap_or(AdminCmdType::InvalidAdmin);
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
            AdminCmdType::CompactLog => {
                let (resp, truncated) =
                    exec_compact_log(&mut self.apply_state, admin.compact_log.as_ref())?;
                if let Some(t) = truncated {
                    debug!(self.logger, "log compacted"; "index" => t.index, "term" => t.term);
                    self.exec_results.push(ExecResult::CompactLog(t));
                }
                resp
            }
            other => {
                return Err(Error::InvalidRequest(format!(
                    "admin command {other:?} is not supported"
                )))
            }
        };
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader::default()),
            admin_response: Some(admin_response),
            ..Default::default()
        })
    }

    /// The command a committed entry carries. One that does not decode (only a leader that is
    /// not ours, or corruption, can commit one) applies as an error with no effect: every
    /// replica decodes the same bytes, so they all skip it alike, and the store stays up.
    fn decode_committed(&self, entry: &Entry, bytes: &[u8]) -> Result<RaftCmdRequest, Error> {
        RaftCmdRequest::decode(bytes).map_err(|e| self.undecodable(entry, &e.to_string()))
    }

    fn undecodable(&self, entry: &Entry, why: &str) -> Error {
        error!(self.logger, "committed entry does not decode; applied as a no-op";
            "index" => entry.index, "err" => why);
        Error::InvalidRequest(format!("entry {} does not decode: {why}", entry.index))
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
