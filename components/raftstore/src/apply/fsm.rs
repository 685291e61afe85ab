//! `ApplyFsm`: the apply state machine of one region.

use std::collections::VecDeque;

use batch_system::{Fsm, Inbox};
use engine_traits::{KvEngine, Mutable, CF_RAFT};
use prost::Message as _;
use proto::metapb;
use proto::raft_cmdpb::{AdminCmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader};
use proto::raft_serverpb::RaftApplyState;
use raft::eraftpb::{Entry, EntryType};
use slog::{debug, info, warn, Logger};
use util::{LogIndex, RegionId, Term};

use super::compact::exec_compact_log;
use super::exec::{exec_write, WriteStats};
use super::poller::ApplyContext;
use super::split::exec_batch_split;
use super::{ApplyRes, ApplyTask, ExecResult, Proposal};
use crate::callback::error_response;
use crate::error::Error;
use crate::util::check_region_epoch;

pub struct ApplyFsm<EK: KvEngine> {
    region_id: RegionId,
    region: metapb::Region,
    apply_state: RaftApplyState,
    applied_term: Term,
    inbox: Inbox<ApplyTask<EK::Snapshot>>,
    /// Set by `Destroy` or a simulated crash; the poller drops the FSM after the round.
    stopped: bool,
    /// Something was applied this round: the apply state goes into the batch and an
    /// `ApplyRes` to the peer.
    dirty: bool,
    written: WriteStats,
    exec_results: Vec<ExecResult>,
    logger: Logger,
}

impl<EK: KvEngine> ApplyFsm<EK> {
    pub fn new(
        region: metapb::Region,
        apply_state: RaftApplyState,
        applied_term: Term,
        inbox: Inbox<ApplyTask<EK::Snapshot>>,
        logger: Logger,
    ) -> Self {
        ApplyFsm {
            region_id: RegionId(region.id),
            region,
            apply_state,
            applied_term,
            inbox,
            stopped: false,
            dirty: false,
            written: WriteStats::default(),
            exec_results: Vec::new(),
            logger,
        }
    }

    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// Handles up to `max` tasks; returns the inbox length left.
    pub(super) fn handle_tasks(&mut self, ctx: &mut ApplyContext<EK>, max: usize) -> usize {
        for _ in 0..max {
            if self.stopped {
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
                }
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
            let result = self.apply_entry(ctx, &entry);
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
        assert!(proposals.is_empty(), "region {}: proposals without entries", self.region_id);
    }

    fn apply_entry(
        &mut self,
        ctx: &mut ApplyContext<EK>,
        entry: &Entry,
    ) -> Result<RaftCmdResponse, Error> {
        match entry.get_entry_type() {
            EntryType::EntryNormal => {}
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                // TODO(#membership): conf changes are never proposed before that issue.
                warn!(self.logger, "ignoring conf change entry"; "index" => entry.index);
                return Ok(RaftCmdResponse::default());
            }
        }
        if entry.data.is_empty() {
            // The empty entry a new leader appends to commit its term.
            return Ok(RaftCmdResponse::default());
        }
        let req = RaftCmdRequest::decode(&entry.data[..]).unwrap_or_else(|e| {
            panic!(
                "region {}: committed entry {} does not decode: {e}",
                self.region_id, entry.index
            )
        });
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
) -> RaftCmdResponse {
    match resp {
        Ok(r) => {
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
        }
        Err(e) => error_response(e.clone().into_region_error()),
    }
}
