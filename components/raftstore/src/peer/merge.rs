//! Region merge, on the peer's side: a **source** region hands its range to an adjacent
//! **target** region whose peers live on the same stores. The steps (TiKV's protocol; the
//! apply side is `apply::merge` and `apply::fsm`):
//!
//! 1. **Propose** (source leader, `propose_prepare_merge`): PrepareMerge is refused unless the
//!    target on this store is the one asked for (same epoch), the two are adjacent, on the
//!    same stores with the same roles, nothing else is in flight (split, conf change, joint
//!    state, a merge), no peer needs a snapshot, every peer's log is within
//!    `merge-max-log-gap` of the leader's, and the entries the laggards still need hold no
//!    admin command (they are carried to the target, step 4, and replayed there, step 6).
//!    `min_index` is the laggards' next entry. The proposal is the pending epoch change:
//!    writes wait behind it.
//! 2. **Fence.** From the moment raft commits the PrepareMerge (index `p`) the source serves
//!    nothing: the target may serve the range before this peer applies `p`. Commands are held
//!    (`merge-hold-timeout`, at most `max-pending-proposals`) and then answered a retryable
//!    `ProposalInMergingMode` / `ReadIndexNotReady`; reads whose read index is `p` or later are
//!    refused (`read`). A later leader needs no such rule: it is `Merging` before it serves.
//! 3. **Apply PrepareMerge** (every replica): the region is `Merging` (persisted with the
//!    merge state: `min_index`, the target, `commit = p`), its version and conf_ver bumped;
//!    log compaction stops. `on_ready_prepare_merge` tells PD and checks the target at once.
//! 4. **Check the target** (every replica, at once and every `merge-check-tick-interval`,
//!    `schedule_merge`): the local target at the recorded epoch → ask it to propose
//!    CommitMerge with our entries `min_index..=p` (`PeerMsg::ProposeCommitMerge`); an older
//!    one → wait; a newer one, a tombstone or a replaced peer → vote for rollback.
//! 5. **CommitMerge** (target leader, `on_propose_commit_merge`): proposed if still at that
//!    epoch, adjacent, same stores, nothing pending; it is the target's pending epoch change.
//! 6. **Target apply** (`apply::fsm`): pauses at the CommitMerge and sends this peer
//!    `CatchUpLogs`; this peer appends the entries it lacks (`on_catch_up_logs`) and asks its
//!    apply FSM to stop once `p` is applied, which then wakes the target. The target writes the
//!    widened region and the source's tombstone in one batch.
//! 7. **Result**: the target's peer updates the store's ranges and sends `MergeResult`; this
//!    peer destroys itself keeping the data (`life`), answering what it holds with
//!    `EpochNotMatch` naming the target.
//! 8. **Rollback** (`maybe_propose_rollback`): with votes from a quorum of voters, the leader
//!    proposes RollbackMerge; applied, the region is `Normal` again (version bumped) and the
//!    held commands are checked again. Commit and rollback exclude each other: before the
//!    CommitMerge, a target replica's epoch moves only through entries that make the
//!    CommitMerge fail everywhere; from the CommitMerge on, the local source is `catching_up`
//!    and votes no more. A timeout alone never rolls back.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use engine_traits::{KvEngine, RaftEngine, CF_RAFT};
use prost::Message as _;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CommitMergeRequest, PrepareMergeRequest, RaftCmdRequest,
    RollbackMergeRequest,
};
use proto::raft_serverpb::{
    ExtraMessage, ExtraMessageType, MergeState, PeerState, RaftMessage, RegionLocalState,
};
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType};
use raft::{GetEntriesContext, ProgressState};
use slog::{debug, info, warn};
use util::{LogIndex, RegionId, Term};

use super::{Peer, Snap};
use crate::apply::merge::merged_region;
use crate::apply::ApplyTask;
use crate::callback::Callback;
use crate::error::{Error, Result};
use crate::msg::{PeerMsg, PeerTick, RaftCommand};
use crate::stats::DroppedMessage;
use crate::store::PollContext;
use crate::transport::Transport;
use crate::util::{conf_state_from_region, epoch, is_joint, request_kind, RequestKind};

/// A peer's part in a merge, as source (and, for `proposed`, its leader).
pub(super) struct MergeStatus<S> {
    /// The PrepareMerge this leader proposed, until it applies or is dropped (step 2).
    proposed: Option<(LogIndex, Term)>,
    /// The applied PrepareMerge (persisted `Merging`), until rolled back or merged.
    state: Option<MergeState>,
    /// Leader: voters that want the merge rolled back, this one included (step 8).
    rollback_votes: HashSet<u64>,
    /// Leader: the RollbackMerge it proposed, so it is proposed once per term.
    rollback_proposed: Option<Term>,
    /// The target committed the merge of the PrepareMerge at this index (step 6): this peer
    /// votes no more and waits for the result.
    catching_up: Option<u64>,
    /// Commands held while merging, with their deadlines (step 2).
    held: VecDeque<(RaftCommand<S>, Instant)>,
    /// The target a merged peer told this (stale) one it merged into (`on_merge_target_msg`).
    learned_target: Option<metapb::Region>,
}

impl<S> Default for MergeStatus<S> {
    fn default() -> Self {
        MergeStatus {
            proposed: None,
            state: None,
            rollback_votes: HashSet::new(),
            rollback_proposed: None,
            catching_up: None,
            held: VecDeque::new(),
            learned_target: None,
        }
    }
}

/// What the local target says about a merge (step 4).
#[derive(Debug, PartialEq, Eq)]
enum TargetVerdict {
    Commit,
    Wait,
    Rollback(&'static str),
}

/// Step 4's comparison of the local target with the one the merge recorded.
fn judge_target(local: &metapb::Region, recorded: &metapb::Region, store_id: u64) -> TargetVerdict {
    let (l, r) = (epoch(local), epoch(recorded));
    let local_peer = local.peers.iter().find(|p| p.store_id == store_id).map(|p| p.id);
    let recorded_peer = recorded.peers.iter().find(|p| p.store_id == store_id).map(|p| p.id);
    if local_peer > recorded_peer {
        return TargetVerdict::Rollback("the target's peer here was replaced");
    }
    if l.version > r.version || l.conf_ver > r.conf_ver {
        return TargetVerdict::Rollback("the target changed since the merge was prepared");
    }
    if l == r && local_peer == recorded_peer {
        TargetVerdict::Commit
    } else {
        TargetVerdict::Wait
    }
}

/// Whether two regions have peers on the same stores with the same roles.
fn same_stores(a: &metapb::Region, b: &metapb::Region) -> bool {
    let key = |r: &metapb::Region| {
        let mut v: Vec<(u64, i32)> = r.peers.iter().map(|p| (p.store_id, p.role)).collect();
        v.sort_unstable();
        v
    };
    key(a) == key(b)
}

/// Whether `votes` hold a majority of the region's voters (both halves if joint).
fn is_quorum(region: &metapb::Region, votes: &HashSet<u64>) -> bool {
    let cs = conf_state_from_region(region);
    [cs.get_voters(), cs.get_voters_outgoing()].iter().all(|voters| {
        voters.is_empty()
            || voters.iter().filter(|id| votes.contains(id)).count() * 2 > voters.len()
    })
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// A `Merging` region loaded at start-up resumes its merge (its first check tick
    /// schedules it).
    pub(crate) fn restore_merge_state(&mut self, state: Option<MergeState>) {
        self.merge.state = state;
    }

    pub fn is_merging(&self) -> bool {
        self.merge.state.is_some()
    }

    /// This leader proposed a PrepareMerge that has not applied yet.
    pub(super) fn is_merge_proposed(&self) -> bool {
        self.merge.proposed.is_some()
    }

    /// The index from which this region serves nothing (step 2): its PrepareMerge, once
    /// committed.
    pub(super) fn merge_fence(&self) -> Option<u64> {
        if let Some(s) = &self.merge.state {
            return Some(s.commit);
        }
        let (index, _) = self.merge.proposed?;
        (self.raft_group.raft.raft_log.committed >= index.get()).then_some(index.get())
    }

    /// Step 1.
    pub(super) fn propose_prepare_merge<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        mut req: RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) {
        let min_index = match self.check_prepare_merge(ctx, &req) {
            Ok(i) => i,
            Err(e) => {
                debug!(self.logger, "merge refused"; "err" => %e);
                return cb.invoke_with_error(e);
            }
        };
        let admin = req.admin_request.as_mut().expect("classified as admin");
        let target = admin.prepare_merge.as_ref().and_then(|p| p.target.clone());
        admin.prepare_merge = Some(PrepareMergeRequest { min_index, target });
        // Writes batched this round were checked against the current range: they go first.
        self.propose_batch(ctx);
        let Some(index) = self.propose_entry(ctx, &req, vec![(cb, 0)]) else { return };
        info!(self.logger, "prepare merge proposed"; "index" => index, "min_index" => min_index);
        self.merge.proposed = Some((index, self.term()));
        self.begin_epoch_change(index);
    }

    /// Step 1's checks; returns `min_index`.
    fn check_prepare_merge<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        req: &RaftCmdRequest,
    ) -> Result<u64> {
        let busy = |why: String| Err(Error::ServerIsBusy(format!("merge: {why}")));
        let invalid = |why: String| Err(Error::InvalidRequest(format!("merge: {why}")));
        let admin = req.admin_request.as_ref().expect("classified as admin");
        let Some(target) = admin.prepare_merge.as_ref().and_then(|p| p.target.as_ref()) else {
            return invalid("PrepareMerge without a target".into());
        };
        let region = self.region();
        if self.merge.state.is_some() || self.merge.proposed.is_some() {
            return invalid(format!("region {} is already merging", self.region_id));
        }
        if self.leadership.epoch_change.is_some() || self.raft_group.raft.has_pending_conf() {
            return busy(format!(
                "region {} has a split or membership change in flight",
                region.id
            ));
        }
        if is_joint(region) {
            return invalid(format!("region {} is in a joint configuration", region.id));
        }
        let local = ctx.store_meta.lock().region(RegionId(target.id)).cloned();
        let Some(local) = local else {
            return invalid(format!("target region {} has no peer on this store", target.id));
        };
        if epoch(&local) != epoch(target) {
            return invalid(format!(
                "target region {} is at {:?} here, the request names {:?}",
                target.id,
                epoch(&local),
                epoch(target)
            ));
        }
        merged_region(&local, region)?;
        if !same_stores(&local, region) {
            return invalid(format!(
                "regions {} and {} are not on the same stores with the same roles",
                region.id, target.id
            ));
        }
        let raft = &self.raft_group.raft;
        let last = raft.raft_log.last_index();
        let (mut min_matched, mut min_committed) = (u64::MAX, u64::MAX);
        for p in &region.peers {
            let Some(pr) = raft.prs().get(p.id) else {
                return busy(format!("no progress known for peer {}", p.id));
            };
            if pr.state == ProgressState::Snapshot {
                return busy(format!("peer {} is being sent a snapshot", p.id));
            }
            let committed =
                if p.id == self.meta.id { raft.raft_log.committed } else { pr.committed_index };
            min_matched = min_matched.min(pr.matched);
            min_committed = min_committed.min(committed);
        }
        let gap = ctx.cfg.merge_max_log_gap;
        if min_matched == 0
            || min_committed == 0
            || last - min_matched > gap
            || last - min_committed > 2 * gap
        {
            return busy(format!(
                "logs too far apart (last {last}, lowest matched {min_matched}, lowest \
                 committed {min_committed}, merge-max-log-gap {gap})"
            ));
        }
        let first = self.raft_group.store().first_log_index().get();
        if min_matched + 1 < first {
            return busy(format!("the log from {} is compacted", min_matched + 1));
        }
        // The entries a laggard still needs are replayed at the target: no admin command
        // among them (an epoch change there would diverge), and they must fit one entry.
        // From this leader's applied index too: an epoch change committed but not applied
        // here would make the PrepareMerge fail at apply.
        let low = min_matched.min(min_committed).min(self.applied_index().get()) + 1;
        let entries = raft
            .raft_log
            .slice(low, last + 1, None, GetEntriesContext::empty(false))
            .map_err(|e| Error::ServerIsBusy(format!("merge: cannot read the log: {e}")))?;
        let mut bytes = 0;
        for e in &entries {
            bytes += e.data.len();
            if e.get_entry_type() != EntryType::EntryNormal {
                return busy(format!(
                    "a membership change at {} is not applied everywhere",
                    e.index
                ));
            }
            if e.data.is_empty() {
                continue;
            }
            let Ok(cmd) = RaftCmdRequest::decode(&e.data[..]) else { continue };
            let Some(admin) = cmd.admin_request else { continue };
            match AdminCmdType::try_from(admin.cmd_type).unwrap_or(AdminCmdType::InvalidAdmin) {
                AdminCmdType::TransferLeader
                | AdminCmdType::ComputeHash
                | AdminCmdType::VerifyHash
                | AdminCmdType::InvalidAdmin => {}
                other => {
                    return busy(format!("{other:?} at {} is not applied everywhere", e.index))
                }
            }
        }
        if bytes as u64 > ctx.cfg.raft_entry_max_size.0 / 10 * 9 {
            return busy(format!("{bytes} bytes of log not applied everywhere"));
        }
        Ok(min_matched + 1)
    }

    /// Step 2: holds a command that arrived while the region is fenced, until the merge ends
    /// or `merge-hold-timeout` passes.
    pub(super) fn hold_while_merging<T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        cmd: RaftCommand<Snap<EK>>,
    ) {
        if self.merge.held.len() >= ctx.cfg.max_pending_proposals {
            let e = self.merging_error(&cmd);
            return cmd.callback.invoke_with_error(e);
        }
        let deadline = ctx.clock.now() + ctx.cfg.merge_hold_timeout.as_duration();
        if self.merge.held.is_empty() {
            // Refused when the ticker is full: the next base tick checks instead.
            ctx.ticker.schedule(self.region_id, deadline, PeerTick::MergeHoldDeadline);
        }
        self.merge.held.push_back((cmd, deadline));
        ctx.stats.record_command_held();
    }

    /// The retryable answer to a command the merge kept from being served.
    fn merging_error(&self, cmd: &RaftCommand<Snap<EK>>) -> Error {
        match request_kind(&cmd.request) {
            Ok(RequestKind::Read) => Error::ReadIndexNotReady {
                region_id: self.region_id,
                reason: "the region is merging".into(),
            },
            _ => Error::ProposalInMergingMode(self.region_id),
        }
    }

    /// Step 2, at the end of each turn: held commands past their deadline are answered;
    /// once the fence is gone (rolled back, the proposal dropped), the rest are checked again.
    pub(super) fn release_merge_holds<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if self.merge.held.is_empty() {
            return;
        }
        if self.merge_fence().is_none() {
            for (cmd, _) in std::mem::take(&mut self.merge.held) {
                self.on_command(ctx, cmd);
            }
            return;
        }
        let now = ctx.clock.now();
        let mut expired = false;
        while self.merge.held.front().is_some_and(|(_, deadline)| *deadline <= now) {
            let (cmd, _) = self.merge.held.pop_front().expect("front exists");
            let e = self.merging_error(&cmd);
            cmd.callback.invoke_with_error(e);
            expired = true;
        }
        if let (true, Some((_, next))) = (expired, self.merge.held.front()) {
            ctx.ticker.schedule(self.region_id, *next, PeerTick::MergeHoldDeadline);
        }
    }

    /// Answers every held command with `err` (leadership lost, peer destroyed).
    pub(super) fn fail_merge_holds(&mut self, err: &Error) {
        for (cmd, _) in self.merge.held.drain(..) {
            cmd.callback.invoke_with_error(err.clone());
        }
    }

    /// An apply result reached `applied`: a PrepareMerge this leader proposed at or below it
    /// applied, successfully (`on_ready_prepare_merge` took it) or not (its epoch check
    /// failed): either way it fences nothing any more.
    pub(super) fn on_merge_proposal_applied(&mut self, applied: u64) {
        if self.merge.proposed.is_some_and(|(i, _)| i.get() <= applied) {
            self.merge.proposed = None;
        }
    }

    /// The pending PrepareMerge will not apply (overwritten, leadership lost).
    pub(super) fn on_prepare_merge_dropped(&mut self, index: LogIndex) {
        if self.merge.proposed.is_some_and(|(i, _)| i == index) {
            self.merge.proposed = None;
        }
    }

    /// Step 3.
    pub(super) fn on_ready_prepare_merge<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        region: metapb::Region,
        state: MergeState,
    ) {
        info!(self.logger, "merging"; "target" => state.target.as_ref().map_or(0, |t| t.id),
            "commit" => state.commit, "version" => epoch(&region).version);
        ctx.stats.record_merge_prepared();
        self.raft_group.mut_store().set_region(region.clone());
        {
            let mut meta = ctx.store_meta.lock();
            // Same range, new epoch; unless the target already took the range (this peer's
            // apply caught up, step 6, and another poller applied the target's merge first).
            if meta.region(self.region_id).is_some() {
                meta.set_region(region);
            }
            if let Some(target) = &state.target {
                meta.set_merge_source(self.region_id, target.clone());
            }
        }
        self.merge.proposed = None;
        self.merge.state = Some(state);
        self.merge.rollback_votes.clear();
        self.heartbeat_pd(ctx);
        self.schedule_merge(ctx);
    }

    /// Step 4.
    pub(super) fn schedule_merge<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        let Some(state) = self.merge.state.clone() else { return };
        if self.merge.catching_up.is_some() || self.life.pending_remove {
            return;
        }
        fail::fail_point!("raftstore::merge::before_schedule", |_| {});
        let Some(recorded) = state.target.as_ref() else { return };
        let target_id = RegionId(recorded.id);
        let local = ctx.store_meta.lock().region(target_id).cloned();
        let verdict = match &local {
            Some(local) => judge_target(local, recorded, ctx.store_id.get()),
            None => match ctx
                .engines
                .kv
                .get_msg_cf::<RegionLocalState>(CF_RAFT, &keys::region_state_key(target_id))
            {
                Ok(Some(s)) if s.state == PeerState::Tombstone as i32 => {
                    TargetVerdict::Rollback("the target's peer here is gone")
                }
                // Not created here yet (or not initialized): wait for it.
                _ => TargetVerdict::Wait,
            },
        };
        match verdict {
            TargetVerdict::Commit => {
                let entries = self.raft_group.raft.raft_log.slice(
                    state.min_index,
                    state.commit + 1,
                    None,
                    GetEntriesContext::empty(false),
                );
                let entries = match entries {
                    Ok(e) => e,
                    Err(e) => {
                        // Compaction stops at PrepareMerge's apply, and it was refused below
                        // `min_index`: the entries are here unless the store is broken.
                        warn!(self.logger, "merge entries unreadable"; "err" => %e);
                        return;
                    }
                };
                let msg = PeerMsg::ProposeCommitMerge {
                    source: self.region().clone(),
                    commit: state.commit,
                    entries,
                    target_epoch: epoch(recorded),
                };
                // Gone: the target is being destroyed here; the next check sees why.
                let _ = ctx.router.send(target_id, msg);
            }
            TargetVerdict::Wait => {
                debug!(self.logger, "merge waits for the target"; "target" => target_id);
            }
            TargetVerdict::Rollback(why) => {
                info!(self.logger, "merge cannot finish; voting for rollback"; "why" => why);
                self.want_rollback(ctx, state.commit);
            }
        }
    }

    fn want_rollback<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>, commit: u64) {
        if self.is_leader() {
            self.merge.rollback_votes.insert(self.meta.id);
            return self.maybe_propose_rollback(ctx);
        }
        let Some(leader) = self.leader() else { return };
        let msg = RaftMessage {
            region_id: self.region_id.get(),
            from_peer: Some(self.meta.clone()),
            to_peer: Some(leader),
            region_epoch: self.region().region_epoch,
            extra_msg: Some(ExtraMessage {
                r#type: ExtraMessageType::MsgWantRollbackMerge as i32,
                index: commit,
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = ctx.transport.send(msg);
    }

    /// Step 8: a member's vote (`ExtraMessage`), checked by the caller to come from a member.
    pub(super) fn on_want_rollback_merge<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        from: u64,
        commit: u64,
    ) {
        let same_merge = self.merge.state.as_ref().is_some_and(|s| s.commit == commit);
        if !self.is_leader() || !same_merge || self.merge.catching_up.is_some() {
            return;
        }
        self.merge.rollback_votes.insert(from);
        self.maybe_propose_rollback(ctx);
    }

    fn maybe_propose_rollback<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        let Some(state) = &self.merge.state else { return };
        if self.merge.rollback_proposed == Some(self.term())
            || !is_quorum(self.region(), &self.merge.rollback_votes)
        {
            return;
        }
        let commit = state.commit;
        let req = self.admin_request(AdminRequest {
            cmd_type: AdminCmdType::RollbackMerge as i32,
            rollback_merge: Some(RollbackMergeRequest { commit }),
            ..Default::default()
        });
        info!(self.logger, "proposing merge rollback"; "commit" => commit,
            "votes" => ?self.merge.rollback_votes);
        if self.propose_entry(ctx, &req, Vec::new()).is_some() {
            self.merge.rollback_proposed = Some(self.term());
        }
    }

    /// Step 8, applied.
    pub(super) fn on_ready_rollback_merge<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        region: metapb::Region,
        commit: u64,
    ) {
        info!(self.logger, "merge rolled back"; "commit" => commit, "version" => epoch(&region).version);
        ctx.stats.record_merge_rolled_back();
        self.raft_group.mut_store().set_region(region.clone());
        {
            let mut meta = ctx.store_meta.lock();
            meta.set_region(region);
            meta.clear_merge_source(self.region_id);
        }
        self.merge =
            MergeStatus { held: std::mem::take(&mut self.merge.held), ..Default::default() };
        self.heartbeat_pd(ctx);
        // The held commands are checked again at the end of this turn (`release_merge_holds`).
    }

    /// Step 5 (target leader).
    pub(super) fn on_propose_commit_merge<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        source: metapb::Region,
        commit: u64,
        entries: Vec<Entry>,
        target_epoch: metapb::RegionEpoch,
    ) {
        let refuse = |why: &str| why.to_owned();
        let checked = if !self.is_leader() {
            Err(refuse("not leader"))
        } else if epoch(self.region()) != target_epoch {
            Err(refuse("the target's epoch moved"))
        } else if self.merge.state.is_some() || self.merge.proposed.is_some() {
            Err(refuse("the target is merging itself"))
        } else if self.leadership.epoch_change.is_some() {
            Err(refuse("an epoch change is in flight"))
        } else if !same_stores(self.region(), &source) {
            Err(refuse("not on the same stores"))
        } else {
            merged_region(self.region(), &source).map(|_| ()).map_err(|e| e.to_string())
        };
        if let Err(why) = checked {
            debug!(self.logger, "commit merge not proposed"; "source" => source.id, "why" => why);
            return;
        }
        let source_id = source.id;
        let req = self.admin_request(AdminRequest {
            cmd_type: AdminCmdType::CommitMerge as i32,
            commit_merge: Some(CommitMergeRequest {
                source: Some(source),
                commit,
                entries: entries.iter().map(|e| e.write_to_bytes().expect("encodes")).collect(),
                ..Default::default()
            }),
            ..Default::default()
        });
        // Writes batched this round were checked against the current range: they go first.
        self.propose_batch(ctx);
        let Some(index) = self.propose_entry(ctx, &req, Vec::new()) else { return };
        info!(self.logger, "commit merge proposed"; "index" => index, "source" => source_id,
            "source_commit" => commit);
        self.begin_epoch_change(index);
    }

    /// Step 6 (source): the target committed the merge of the PrepareMerge at `commit`.
    pub(super) fn on_catch_up_logs<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        target: RegionId,
        commit: u64,
        entries: Vec<Entry>,
    ) {
        if self.merge.catching_up.is_some_and(|c| c != commit) {
            warn!(self.logger, "catch-up for another merge ignored"; "commit" => commit,
                "catching_up" => self.merge.catching_up);
            return;
        }
        fail::fail_point!("raftstore::merge::before_catch_up", |_| {});
        self.merge.catching_up = Some(commit);
        let applied_prepare = self.merge.state.as_ref().is_some_and(|s| s.commit == commit);
        if !applied_prepare {
            self.append_merge_entries(commit, &entries);
        }
        info!(self.logger, "catching up for the merge"; "target" => target, "commit" => commit,
            "applied_prepare" => applied_prepare);
        let task = ApplyTask::CatchUp { commit, target_region_id: target };
        // Gone: this peer is being destroyed; the target stays paused (it logged why).
        let _ = ctx.apply_router.force_send(self.region_id.get(), task);
    }

    /// Appends the committed entries of this region's log that the target carried and this
    /// peer lacks, and commits up to `commit` (TiKV's `maybe_append_merge_entries`). The ready
    /// loop persists them before handing them to apply, as any entry.
    fn append_merge_entries(&mut self, commit: u64, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let raft = &mut self.raft_group.raft;
        let committed = raft.raft_log.committed;
        let mut log_idx = first.index - 1;
        let mut ents = entries;
        if log_idx < committed {
            // What this peer committed is the same in every log: append after it.
            let skip = committed - log_idx;
            if skip >= ents.len() as u64 {
                return;
            }
            ents = &ents[skip as usize..];
            log_idx = committed;
        }
        let log_term = match raft.raft_log.term(log_idx) {
            Ok(t) => t,
            Err(e) => {
                warn!(self.logger, "cannot place the merge entries"; "index" => log_idx, "err" => %e);
                return;
            }
        };
        let last = ents.last().expect("not empty");
        if last.term > raft.term {
            // Appended outside raft's messages: take the term they carry, as a follower
            // that hears a newer leader would.
            raft.become_follower(last.term, raft::INVALID_ID);
        }
        if raft.raft_log.maybe_append(log_idx, log_term, commit, ents).is_none() {
            warn!(self.logger, "merge entries do not match the log"; "index" => log_idx,
                "term" => log_term);
        }
    }

    /// Step 7 (target): the merge applied here.
    pub(super) fn on_ready_commit_merge<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        region: metapb::Region,
        source: metapb::Region,
    ) {
        info!(self.logger, "merged"; "source" => source.id,
            "start" => %region.start_key.escape_ascii(), "end" => %region.end_key.escape_ascii(),
            "version" => epoch(&region).version);
        ctx.stats.record_merge_committed();
        self.raft_group.mut_store().set_region(region.clone());
        {
            // One change of the meta: nobody sees the source's keys owned twice or by nobody.
            let mut meta = ctx.store_meta.lock();
            meta.remove_region(RegionId(source.id));
            meta.set_region(region.clone());
        }
        // The source's estimate may count data deleted there (small regions merge because
        // their data was deleted): count exactly.
        self.size.reset(ctx.cfg.split_check_diff(), true);
        self.heartbeat_pd(ctx);
        fail::fail_point!("raftstore::merge::before_source_destroy", |_| {});
        // Gone: the source was destroyed already (a restart replayed the merge).
        let _ = ctx.router.send(RegionId(source.id), PeerMsg::MergeResult { target: region });
    }

    /// Step 7 (source).
    pub(super) fn on_merge_result<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        target: metapb::Region,
    ) {
        if self.merge.state.is_none() {
            warn!(self.logger, "merge result for a region not merging"; "target" => target.id);
            return;
        }
        info!(self.logger, "merged into the target; destroying"; "target" => target.id);
        self.life.merged_into = Some(target);
        self.destroy(ctx);
    }

    /// The tombstone's merge state of a merged source: the target as the merge recorded it
    /// (or as a merged peer told it, `on_merge_target_msg`).
    pub(super) fn merged_tombstone_state(&self) -> Option<MergeState> {
        self.life.merged_into.as_ref()?;
        // What a merged peer told this one is newer than this peer's own merge state.
        match &self.merge.learned_target {
            Some(t) => Some(MergeState { target: Some(t.clone()), ..Default::default() }),
            None => self.merge.state.clone(),
        }
    }

    /// A store where this region's peer is a merged tombstone says the region merged into
    /// `target` (as the merge recorded it): this peer missed the merge (cut off while it
    /// ran). It is never served again. Its local target either replays the CommitMerge from
    /// its log (and this peer catches up, step 6) or gets a snapshot that replaces this peer
    /// (`snapshot`, step 4a), for which it is recorded as a source now. If the local target
    /// is already past the merge, or gone, nothing needs this peer: it destroys itself.
    pub(super) fn on_merge_target_msg<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        target: metapb::Region,
    ) {
        // Only a region this one could have merged into: another one, adjacent to it.
        if target.id == self.region_id.get() || merged_region(&target, self.region()).is_err() {
            ctx.stats.record_message_dropped(DroppedMessage::Malformed);
            return;
        }
        let local = {
            let mut meta = ctx.store_meta.lock();
            meta.set_merge_source(self.region_id, target.clone());
            meta.region(RegionId(target.id)).cloned()
        };
        if self.merge.learned_target.is_none() {
            info!(self.logger, "told that this region merged into another"; "target" => target.id,
                "target_version" => epoch(&target).version);
        }
        self.merge.learned_target = Some(target.clone());
        let past = match &local {
            Some(l) => epoch(l).version > epoch(&target).version,
            None => matches!(
                ctx.engines
                    .kv
                    .get_msg_cf::<RegionLocalState>(CF_RAFT, &keys::region_state_key(RegionId(target.id))),
                Ok(Some(s)) if s.state == PeerState::Tombstone as i32
            ),
        };
        if past && !self.life.pending_remove {
            info!(self.logger, "the merge target here is past the merge: destroying this peer");
            if let Some(l) = local {
                self.life.merged_into = Some(l);
            }
            self.destroy(ctx);
        }
    }

    /// `snapshot` step 4a, on the source: a snapshot of `target` replaces this region.
    pub(super) fn on_stop_for_snapshot<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        target: RegionId,
    ) {
        // The target checked, when it reserved the snapshot, that this region was recorded
        // as its merge source at an older version and lies inside the snapshot's range:
        // whatever this peer applied since (a rollback, even), the snapshot is newer and
        // covers it. Once stopped, it stays stopped until the snapshot's write removes it.
        if self.merge.catching_up.is_some() {
            // A CommitMerge needs this peer; a target asks only once its own apply caught up,
            // so no paused CommitMerge of that target waits for this one.
            warn!(self.logger, "asked to stop for a snapshot while catching up; ignored";
                "target" => target);
            return;
        }
        if self.life.stopped_for_snapshot {
            let _ =
                ctx.router.send(target, PeerMsg::SnapshotSourceStopped { source: self.region_id });
            return;
        }
        if self.life.pending_remove {
            return; // being destroyed for another reason; the snapshot waits for that
        }
        info!(self.logger, "stopping: a snapshot of the merge target replaces this region";
            "target" => target);
        self.life.replaced_by = Some(target);
        self.destroy(ctx);
    }

    /// Step 8's votes travel as `ExtraMessage`s; the caller checked the sender is a member.
    pub(super) fn on_extra_message<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        from: &metapb::Peer,
        extra: &ExtraMessage,
    ) {
        if extra.r#type == ExtraMessageType::MsgWantRollbackMerge as i32 {
            self.on_want_rollback_merge(ctx, from.id, extra.index);
        }
    }

    /// Called when this peer becomes leader: votes are per leadership.
    pub(super) fn on_merge_leadership(&mut self) {
        self.merge.rollback_votes.clear();
        self.merge.rollback_proposed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(version: u64, conf_ver: u64, peer_ids: &[u64]) -> metapb::Region {
        metapb::Region {
            id: 7,
            region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
            peers: peer_ids
                .iter()
                .enumerate()
                .map(|(i, &id)| metapb::Peer { id, store_id: i as u64 + 1, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_target_verdict_follows_its_epoch_and_peer() {
        let recorded = region(5, 3, &[71, 72, 73]);
        assert_eq!(judge_target(&recorded, &recorded, 1), TargetVerdict::Commit);
        assert_eq!(judge_target(&region(4, 3, &[71, 72, 73]), &recorded, 1), TargetVerdict::Wait);
        assert_eq!(judge_target(&region(5, 2, &[71, 72, 73]), &recorded, 1), TargetVerdict::Wait);
        assert!(matches!(
            judge_target(&region(6, 3, &[71, 72, 73]), &recorded, 1),
            TargetVerdict::Rollback(_)
        ));
        assert!(matches!(
            judge_target(&region(5, 4, &[71, 72, 73]), &recorded, 1),
            TargetVerdict::Rollback(_)
        ));
        // The peer on store 2 was replaced by a newer one (#12048).
        assert!(matches!(
            judge_target(&region(5, 3, &[71, 90, 73]), &recorded, 2),
            TargetVerdict::Rollback(_)
        ));
    }

    #[test]
    fn rollback_needs_a_majority_of_voters() {
        let r = region(1, 1, &[1, 2, 3]);
        let votes = |ids: &[u64]| ids.iter().copied().collect::<HashSet<u64>>();
        assert!(!is_quorum(&r, &votes(&[1])));
        assert!(!is_quorum(&r, &votes(&[1, 9])), "non-members do not count");
        assert!(is_quorum(&r, &votes(&[1, 3])));
        let mut with_learner = r.clone();
        with_learner.peers[2].role = metapb::PeerRole::Learner as i32;
        assert!(!is_quorum(&with_learner, &votes(&[1, 3])), "a learner does not vote");
        assert!(is_quorum(&with_learner, &votes(&[1, 2])));
    }

    #[test]
    fn same_stores_compares_stores_and_roles() {
        let a = region(1, 1, &[1, 2, 3]);
        let b = region(9, 9, &[11, 12, 13]);
        assert!(same_stores(&a, &b));
        let mut c = b.clone();
        c.peers[1].store_id = 9;
        assert!(!same_stores(&a, &c));
        let mut d = b.clone();
        d.peers[1].role = metapb::PeerRole::Learner as i32;
        assert!(!same_stores(&a, &d));
    }
}
