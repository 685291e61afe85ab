//! Commands: the checks before proposing, batching of small writes, and proposing.
//!
//! Check order (each answers its own region error): store id (`StoreNotMatch`) → leader
//! (`NotLeader` with the known leader) → epoch (`EpochNotMatch`) → keys in range
//! (`KeyNotInRegion`) → entry size (`RaftEntryTooLarge`) → pending bound (`ServerIsBusy`). A
//! command that would get `NotLeader` without a leader at a new peer may wait for the region's
//! first leader instead (`leader_wait`), then goes through the checks again.

use engine_traits::{KvEngine, RaftEngine};
use prost::Message as _;
use proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader,
    RegionDetailResponse, RegionLeaderResponse, StatusCmdType, StatusResponse,
    TransferLeaderResponse,
};
use slog::{debug, info};
use util::{LogIndex, Term};

use super::{Peer, Snap};
use crate::apply::Proposal;
use crate::callback::Callback;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::msg::RaftCommand;
use crate::store::PollContext;
use crate::transport::Transport;
use crate::util::{
    check_key_in_region, check_range_in_region, check_region_epoch, epoch_rule, find_peer_by_id,
    request_kind, RequestKind,
};

/// Small writes collected during one round, proposed as one entry when the round's messages
/// are handled (or earlier, when the next write would not fit).
pub(super) struct WriteBatcher<S> {
    request: Option<RaftCmdRequest>,
    callbacks: Vec<(Callback<S>, usize)>,
    size: usize,
    /// Bytes above which a batch is closed (a fraction of the entry size limit, so merged
    /// entries stay well under it).
    size_max: usize,
    /// Commands above which a batch is closed.
    commands_max: usize,
}

impl<S> WriteBatcher<S> {
    pub(super) fn new(cfg: &Config) -> Self {
        WriteBatcher {
            request: None,
            callbacks: Vec::new(),
            size: 0,
            size_max: (cfg.raft_entry_max_size.0 as usize / 4).max(1),
            commands_max: 256,
        }
    }

    fn fits(&self, size: usize) -> bool {
        self.request.is_none()
            || (self.size + size <= self.size_max && self.callbacks.len() < self.commands_max)
    }

    fn push(&mut self, mut req: RaftCmdRequest, cb: Callback<S>, size: usize) {
        let n = req.requests.len();
        match &mut self.request {
            None => self.request = Some(req),
            Some(batch) => batch.requests.append(&mut req.requests),
        }
        self.callbacks.push((cb, n));
        self.size += size;
    }

    pub(super) fn take(&mut self) -> Option<(RaftCmdRequest, Vec<(Callback<S>, usize)>)> {
        self.size = 0;
        self.request.take().map(|r| (r, std::mem::take(&mut self.callbacks)))
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Checks a command and proposes, serves or rejects it. The callback is always answered
    /// (now, or when the command applies or is refused).
    pub fn on_command<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        cmd: RaftCommand<Snap<EK>>,
    ) {
        if let Err(e) = self.pre_check(ctx, &cmd.request) {
            // Rather than `NotLeader` without a leader, a new region's first leader may be a
            // round trip away: wait for it (`leader_wait`).
            let cmd = if matches!(e, Error::NotLeader { leader: None, .. }) {
                self.hold_until_leader(ctx, cmd)
            } else {
                Some(cmd)
            };
            if let Some(cmd) = cmd {
                cmd.callback.invoke_with_error(e);
            }
            return;
        }
        let kind = match request_kind(&cmd.request) {
            Ok(kind) => kind,
            Err(e) => return cmd.callback.invoke_with_error(e),
        };
        // A region that is merging away serves nothing until the merge ends (`merge`, step
        // 2); a leader transfer needs no entry and a log compaction is a no-op meanwhile.
        if kind != RequestKind::Status
            && self.merge_fence().is_some()
            && !is_admin(&cmd.request, &[AdminCmdType::TransferLeader, AdminCmdType::CompactLog])
        {
            return self.hold_while_merging(ctx, cmd);
        }
        // Commands whose epoch a pending split would invalidate wait for it (see `split`).
        let cmd = if kind == RequestKind::Write
            || (kind == RequestKind::Admin && epoch_rule(&cmd.request).check_ver)
        {
            match self.hold_if_epoch_changing(ctx, cmd) {
                Some(cmd) => cmd,
                None => return,
            }
        } else {
            cmd
        };
        let RaftCommand { request, callback, .. } = cmd;
        match kind {
            RequestKind::Status => match self.status(&request) {
                Ok(resp) => callback.invoke(resp),
                Err(e) => callback.invoke_with_error(e),
            },
            RequestKind::Read => self.on_read(ctx, request, callback),
            RequestKind::Write => {
                if let Err(e) = self.propose_write(ctx, request, callback) {
                    // `propose_write` answers the callback itself when it fails after taking it.
                    debug!(self.logger, "write rejected"; "err" => %e);
                }
            }
            RequestKind::Admin => self.on_admin(ctx, request, callback),
        }
    }

    fn pre_check<T>(&self, ctx: &PollContext<EK, ER, T>, req: &RaftCmdRequest) -> Result<()> {
        let header = req
            .header
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("command without a header".into()))?;
        if let Some(p) = &header.peer {
            if p.store_id != ctx.store_id.get() {
                return Err(Error::StoreNotMatch {
                    request_store_id: p.store_id.into(),
                    actual_store_id: ctx.store_id,
                });
            }
        }
        if req.status_request.is_some() {
            return Ok(()); // status queries need no leader and no epoch
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        check_region_epoch(req, self.region()).map_err(|e| match e {
            Error::EpochNotMatch { message, .. } => self.epoch_not_match(ctx, message),
            e => e,
        })
    }

    fn propose_write<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) -> Result<()> {
        let checked = self.check_write(ctx, &req);
        if let Err(e) = checked {
            cb.invoke_with_error(e.clone());
            return Err(e);
        }
        let size = req.encoded_len();
        if !self.batcher.fits(size) {
            self.propose_batch(ctx);
        }
        self.batcher.push(req, cb, size);
        Ok(())
    }

    fn check_write<T>(&self, ctx: &PollContext<EK, ER, T>, req: &RaftCmdRequest) -> Result<()> {
        let region = self.region();
        for r in &req.requests {
            match CmdType::try_from(r.cmd_type).unwrap_or(CmdType::Invalid) {
                CmdType::Put => {
                    let put = r.put.as_ref().ok_or_else(|| missing("put"))?;
                    check_key_in_region(&put.key, region)?;
                    crate::apply::data_cf(&put.cf)?;
                }
                CmdType::Delete => {
                    let del = r.delete.as_ref().ok_or_else(|| missing("delete"))?;
                    check_key_in_region(&del.key, region)?;
                    crate::apply::data_cf(&del.cf)?;
                }
                CmdType::DeleteRange => {
                    let dr = r.delete_range.as_ref().ok_or_else(|| missing("delete_range"))?;
                    check_range_in_region(&dr.start_key, &dr.end_key, region)?;
                    crate::apply::data_cf(&dr.cf)?;
                }
                other => {
                    return Err(Error::InvalidRequest(format!("{other:?} in a write command")))
                }
            }
        }
        let size = req.encoded_len() as u64;
        if size > ctx.cfg.raft_entry_max_size.0 {
            return Err(Error::RaftEntryTooLarge { region_id: self.region_id, entry_size: size });
        }
        if self.proposals.len() >= ctx.cfg.max_pending_proposals {
            return Err(Error::ServerIsBusy(format!(
                "region {} has {} proposals in flight",
                self.region_id,
                self.proposals.len()
            )));
        }
        Ok(())
    }

    /// Proposes the writes batched this round as one entry. Called at the end of the peer's
    /// turn in the round, before its ready is taken, and before any admin command.
    pub fn propose_batch<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        let Some((mut req, callbacks)) = self.batcher.take() else { return };
        // Every command of the batch was checked against the current epoch; stamp it.
        if let Some(h) = req.header.as_mut() {
            h.region_epoch = self.region().region_epoch;
        }
        self.propose_entry(ctx, &req, callbacks);
    }

    /// Proposes one entry; the callbacks are answered when it applies. Returns its index, or
    /// `None` if raft refused it (the callbacks are then answered `NotLeader`).
    pub(super) fn propose_entry<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: &RaftCmdRequest,
        callbacks: Vec<(Callback<Snap<EK>>, usize)>,
    ) -> Option<LogIndex> {
        let proposed_at = ctx.clock.now();
        let last_index = self.raft_group.raft.raft_log.last_index();
        let data = req.encode_to_vec();
        let res = self.raft_group.propose(vec![], data);
        let index = self.raft_group.raft.raft_log.last_index();
        if res.is_err() || index == last_index {
            // Raft refuses proposals while not leader or while transferring leadership.
            ctx.stats.record_proposal_dropped();
            let err = self.not_leader();
            for (cb, _) in callbacks {
                cb.invoke_with_error(err.clone());
            }
            return None;
        }
        ctx.proposals_in_round += callbacks.len() as u64;
        self.proposals.push_back(Proposal {
            index: LogIndex(index),
            term: self.term(),
            callbacks,
            proposed_at,
        });
        Some(LogIndex(index))
    }

    fn on_admin<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) {
        let admin = req.admin_request.as_ref().expect("classified as admin");
        match AdminCmdType::try_from(admin.cmd_type).unwrap_or(AdminCmdType::InvalidAdmin) {
            AdminCmdType::BatchSplit => self.propose_split(ctx, req, cb),
            AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2 => {
                self.propose_conf_change(ctx, req, cb)
            }
            // Normally proposed by the leader's GC tick (`log_gc`); accepted from outside too,
            // as TiKV does (tests, tools). Apply checks it against each replica's state.
            AdminCmdType::CompactLog => {
                // Only a position of this leader's applied log: a wrong term would corrupt
                // the truncated state every replica records.
                let valid = admin.compact_log.as_ref().is_some_and(|c| {
                    c.compact_index <= self.applied_index().get()
                        && self.raft_group.raft.raft_log.term(c.compact_index).ok()
                            == Some(c.compact_term)
                });
                if !valid {
                    let e = Error::InvalidRequest(
                        "CompactLog must name an applied index and its term".into(),
                    );
                    return cb.invoke_with_error(e);
                }
                self.propose_entry(ctx, &req, vec![(cb, 1)]);
            }
            AdminCmdType::TransferLeader => self.propose_transfer_leader(ctx, &req, cb),
            AdminCmdType::PrepareMerge => self.propose_prepare_merge(ctx, req, cb),
            // Only the store's own FSMs propose these (`merge`, steps 5 and 8), with the
            // merge state they carry; a command from outside cannot know it.
            AdminCmdType::CommitMerge | AdminCmdType::RollbackMerge => {
                let e = Error::InvalidRequest(
                    "CommitMerge and RollbackMerge are proposed by the store itself".into(),
                );
                cb.invoke_with_error(e);
            }
            other => {
                let e = Error::InvalidRequest(format!("admin command {other:?} is not supported"));
                cb.invoke_with_error(e);
            }
        }
    }

    /// Leader transfer: raft's MsgTimeoutNow path, no log entry. Refused for a target that is
    /// not a voter or that lags by more than `leader-transfer-max-log-lag` entries (the
    /// caller retries once it caught up). The lease is suspected first: the target may lead
    /// and serve writes before this peer's lease would have ended.
    fn propose_transfer_leader<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: &RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) {
        let admin = req.admin_request.as_ref().expect("classified as admin");
        let target = admin.transfer_leader.as_ref().and_then(|t| t.peer.as_ref());
        let Some(target) = target.and_then(|t| find_peer_by_id(self.region(), t.id.into())) else {
            let e = Error::InvalidRequest("transfer target is not a peer of the region".into());
            return cb.invoke_with_error(e);
        };
        let target_id = target.id;
        if !crate::util::is_voter(target) {
            let e = Error::InvalidRequest(format!("transfer target {target_id} is not a voter"));
            return cb.invoke_with_error(e);
        }
        if target_id != self.meta.id {
            let last = self.raft_group.raft.raft_log.last_index();
            let matched = self.raft_group.raft.prs().get(target_id).map_or(0, |p| p.matched);
            let lag = last.saturating_sub(matched);
            if lag > ctx.cfg.leader_transfer_max_log_lag {
                return cb.invoke_with_error(Error::ServerIsBusy(format!(
                    "transfer target {target_id} lags {lag} entries behind the leader"
                )));
            }
            info!(self.logger, "transferring leadership"; "to" => target_id, "lag" => lag);
            // Another peer may become leader before our lease would end.
            self.leadership.lease.suspect(ctx.clock.now());
            self.raft_group.transfer_leader(target_id);
        }
        cb.invoke(RaftCmdResponse {
            header: Some(RaftResponseHeader {
                current_term: self.term().get(),
                ..Default::default()
            }),
            admin_response: Some(AdminResponse {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderResponse {}),
                ..Default::default()
            }),
            ..Default::default()
        });
    }

    fn status(&self, req: &RaftCmdRequest) -> Result<RaftCmdResponse> {
        let status = req.status_request.as_ref().expect("classified as status");
        let mut resp = StatusResponse { cmd_type: status.cmd_type, ..Default::default() };
        match StatusCmdType::try_from(status.cmd_type).unwrap_or(StatusCmdType::InvalidStatus) {
            StatusCmdType::RegionLeader => {
                resp.region_leader = Some(RegionLeaderResponse { leader: self.leader() });
            }
            StatusCmdType::RegionDetail => {
                resp.region_detail = Some(RegionDetailResponse {
                    region: Some(self.region().clone()),
                    leader: self.leader(),
                });
            }
            StatusCmdType::InvalidStatus => {
                return Err(Error::InvalidRequest("invalid status command".into()));
            }
        }
        Ok(RaftCmdResponse {
            header: Some(RaftResponseHeader {
                current_term: self.term().get(),
                ..Default::default()
            }),
            status_response: Some(resp),
            ..Default::default()
        })
    }

    /// Answers proposals that can no longer apply: every proposal queued before a committed
    /// entry at a later index or with another term at its index. Returns the proposals that
    /// match `entries` exactly, for the apply FSM.
    pub(super) fn take_proposals_for(
        &mut self,
        entries: &[raft::eraftpb::Entry],
    ) -> Vec<Proposal<Snap<EK>>> {
        let mut matched = Vec::new();
        for e in entries {
            while let Some(p) = self.proposals.front() {
                if p.index.get() > e.index {
                    break;
                }
                let p = self.proposals.pop_front().expect("front exists");
                if p.index.get() == e.index && p.term == Term(e.term) {
                    if self.is_leader() && p.term == self.term() {
                        // A quorum accepted it after `proposed_at`.
                        self.leadership.lease.renew(p.proposed_at);
                    }
                    matched.push(p);
                } else {
                    debug!(self.logger, "stale proposal"; "index" => p.index, "term" => p.term);
                    self.note_dropped_epoch_change(&p);
                    let err = Error::StaleCommand;
                    for (cb, _) in p.callbacks {
                        cb.invoke_with_error(err.clone());
                    }
                }
            }
        }
        matched
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Answers `Undetermined` to every proposal at or below `index`: a snapshot up to `index`
    /// replaced the log, and whether each one's entry is inside it cannot be known (a snapshot
    /// carries no entry terms). Proposals above `index` stay: an entry that arrives at their
    /// index with their term is theirs (raft's log matching) and answers them with its result.
    /// If `p` is the pending epoch change (a split), records that it will not apply here.
    fn note_dropped_epoch_change(&mut self, p: &Proposal<Snap<EK>>) {
        let pending = self.leadership.epoch_change.as_ref();
        if pending.is_some_and(|c| c.index == p.index && c.term == p.term) {
            self.leadership.epoch_change_dropped = true;
        }
        self.on_prepare_merge_dropped(p.index);
    }

    pub(super) fn answer_proposals_covered_by_snapshot(&mut self, index: u64) {
        while let Some(p) = self.proposals.pop_front() {
            if p.index.get() > index {
                self.proposals.push_front(p);
                break;
            }
            debug!(self.logger, "proposal covered by a snapshot"; "index" => p.index, "term" => p.term);
            self.note_dropped_epoch_change(&p);
            for (cb, _) in p.callbacks {
                cb.invoke_with_error(Error::Undetermined(self.region_id));
            }
        }
    }
}

/// Whether `req` is an admin command of one of `types`.
fn is_admin(req: &RaftCmdRequest, types: &[AdminCmdType]) -> bool {
    req.admin_request.as_ref().is_some_and(|a| types.iter().any(|t| *t as i32 == a.cmd_type))
}

fn missing(what: &str) -> Error {
    Error::InvalidRequest(format!("request without its {what} body"))
}
