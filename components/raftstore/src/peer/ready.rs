//! The ready loop, split in two halves around the round's single raft-engine write:
//!
//! `handle_ready` (during the round, per peer):
//! 1. role changes (lease, queued reads);
//! 2. a leader's messages are sent now (raft thesis 10.2.1: the leader may replicate before
//!    its own append is durable);
//! 3. read states are recorded;
//! 4. committed entries go to the apply FSM (raft-rs 0.7 only returns committed entries that
//!    are persisted locally);
//! 5. entries and hard state go into the round's shared raft batch; the ready is kept.
//!
//! `post_persist` (at the round's end, after the batch is synced):
//! 6. the messages that MUST wait for persistence (a follower's acks and votes) are sent;
//! 7. `advance_append`, and the light ready's messages and committed entries are handled.

use engine_traits::{KvEngine, RaftEngine};
use proto::raft_serverpb::RaftMessage;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message, MessageType};
use raft::StateRole;
use slog::{debug, info, warn};
use util::LogIndex;

use super::Peer;
use crate::apply::{ApplyRes, ApplyTask, ExecResult};
use crate::store::PollContext;
use crate::transport::Transport;

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Takes the group's ready, if any, and does steps 1–5. Returns whether a ready is now
    /// pending persistence.
    pub fn handle_ready<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>) -> bool {
        if self.ready.pending.is_some() {
            return true; // one ready per round: the next waits for this one's persistence
        }
        if self.ready.commit_dirty {
            // A commit index learned from a light ready: persist it with this round.
            self.ready.commit_dirty = false;
            let hs = self.raft_group.raft.hard_state();
            let store = self.raft_group.mut_store();
            store
                .append_ready(&[], Some(&hs), &mut ctx.raft_wb)
                .expect("encoding a raft state cannot fail");
        }
        if !self.raft_group.has_ready() {
            return false;
        }
        if self.raft_group.raft.raft_log.unstable.snapshot.is_some()
            && (self.applied_index().get() < self.ready.sent_to_apply
                || !self.snapshot_sources_stopped(ctx))
        {
            // The apply FSM is still applying entries before the snapshot; persisting it now
            // would let those rounds write their older apply state after the snapshot's. Its
            // next apply result brings the peer back here. Or merge sources the snapshot
            // replaces are still applying (`snapshot`, step 4a): their reports bring it back.
            return false;
        }
        let mut ready = self.raft_group.ready();
        if let Some(ss) = ready.ss() {
            let role = ss.raft_state;
            self.on_role_changed(ctx, role);
        }
        if !ready.messages().is_empty() {
            let msgs = ready.take_messages();
            self.send_messages(ctx, msgs);
        }
        if !ready.read_states().is_empty() {
            let states = ready.take_read_states();
            self.on_read_states(states);
            self.serve_ready_reads(ctx);
        }
        if !ready.snapshot().is_empty() {
            // Only a `MsgSnapshot` that passed `check_snapshot` gives raft one.
            let snap = ready.snapshot().clone();
            self.persist_snapshot(ctx, &snap);
        }
        let committed = ready.take_committed_entries();
        self.send_to_apply(ctx, committed);
        let hs = ready.hs().cloned();
        ctx.sync_needed |= ready.must_sync();
        let store = self.raft_group.mut_store();
        if let Err(e) = store.append_ready(ready.entries(), hs.as_ref(), &mut ctx.raft_wb) {
            panic!("region {}: cannot encode raft log entries: {e}", self.region_id);
        }
        self.ready.pending = Some(ready);
        true
    }

    /// Steps 6–7, after the round's raft batch is durable. Returns whether raft has more work
    /// (the caller wakes the peer for another round).
    pub fn post_persist<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>) -> bool {
        let Some(mut ready) = self.ready.pending.take() else {
            return self.raft_group.has_ready();
        };
        let msgs = ready.take_persisted_messages();
        self.send_messages(ctx, msgs);
        // Before any entry committed after the snapshot (`snapshot`, step 6).
        let snapshot_index = self.send_snapshot_to_apply(ctx);
        let mut light = self.raft_group.advance_append(ready);
        if let Some(index) = snapshot_index {
            // Raft's applied index moves to the snapshot now, not when the apply FSM reports
            // it: raft slices its log from the applied index (an election would read below
            // the first index). The data follows in the apply FSM's order: reads and leases
            // wait for an applied entry of the leader's own term, which comes after it.
            self.raft_group.advance_apply_to(index);
        }
        if light.commit_index().is_some() {
            // Persisted lazily with the next ready: a lower commit index on disk only means
            // raft re-learns it after a restart (`PeerStorage::load` never goes below applied).
            self.ready.commit_dirty = true;
        }
        let msgs = light.take_messages();
        self.send_messages(ctx, msgs);
        let committed = light.take_committed_entries();
        self.send_to_apply(ctx, committed);
        self.raft_group.has_ready()
    }

    fn on_role_changed<T>(&mut self, ctx: &PollContext<EK, ER, T>, role: StateRole) {
        match role {
            StateRole::Leader => {
                info!(self.logger, "became leader"; "term" => self.term());
                self.leadership.guard = Some(ctx.stats.leader_guard());
                // The lease starts when the term's first entry commits; the instant is
                // taken before that entry is sent (it is sent later in this ready).
                self.leadership.since = Some(ctx.clock.now());
                self.on_merge_leadership();
                // PD routes clients by the leader it knows: tell it now, not at the next
                // periodic heartbeat (a region created by a split has no leader there yet).
                self.heartbeat_pd(ctx);
            }
            StateRole::Follower | StateRole::Candidate | StateRole::PreCandidate => {
                debug!(self.logger, "not leader"; "role" => ?role, "term" => self.term());
                self.leadership.lease.expire();
                self.leadership.since = None;
                self.leadership.guard = None;
                self.leadership.heard_from.clear();
                let err = self.not_leader();
                self.fail_reads(&err);
                self.fail_merge_holds(&err);
            }
        }
    }

    fn send_to_apply<T>(&mut self, ctx: &mut PollContext<EK, ER, T>, entries: Vec<Entry>) {
        let Some(last) = entries.last() else { return };
        self.ready.sent_to_apply = last.index;
        if let (Some(since), true) = (self.leadership.since, self.is_leader()) {
            if entries.iter().any(|e| e.term == self.term().get()) {
                self.leadership.lease.renew(since);
                self.leadership.since = None;
            }
        }
        let proposals = self.take_proposals_for(&entries);
        fail::fail_point!("raftstore::peer::before_send_to_apply", |_| {});
        let task = ApplyTask::Apply { entries, proposals };
        if let Err(e) = ctx.apply_router.force_send(self.region_id.get(), task) {
            // The apply FSM is gone (the peer is being destroyed, or a simulated crash): the
            // proposals' callbacks are answered as they drop.
            warn!(self.logger, "apply fsm unreachable, committed entries not applied");
            drop(e);
        }
    }

    /// Records an apply result: advances the storage and raft's applied index, and serves the
    /// reads that waited for it.
    pub fn on_apply_res<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>, res: ApplyRes) {
        if res.apply_state.applied_index < self.applied_index().get() {
            // Applied before a snapshot this peer persisted since: the snapshot supersedes it.
            debug!(self.logger, "apply result older than the snapshot ignored";
                "applied" => res.apply_state.applied_index);
            return;
        }
        self.size.on_applied(&res, ctx.cfg.split_check_diff());
        for r in res.exec_results {
            match r {
                ExecResult::Split(split) => self.on_ready_split(ctx, split),
                ExecResult::CompactLog(truncated) => self.on_ready_compact_log(ctx, truncated),
                ExecResult::ChangePeer(change) => self.on_ready_change_peer(ctx, change),
                ExecResult::PrepareMerge { region, state } => {
                    self.on_ready_prepare_merge(ctx, region, state)
                }
                ExecResult::CommitMerge { region, source } => {
                    self.on_ready_commit_merge(ctx, region, source)
                }
                ExecResult::RollbackMerge { region, commit } => {
                    self.on_ready_rollback_merge(ctx, region, commit)
                }
            }
            if self.life.pending_remove {
                return; // removed by the change: nothing more to apply or serve
            }
        }
        let applied = res.apply_state.applied_index;
        self.on_merge_proposal_applied(applied);
        self.applied_term = res.applied_term;
        self.raft_group.mut_store().on_applied(res.apply_state);
        self.raft_group.advance_apply_to(applied);
        if self.is_leader() && self.applied_term == self.term() {
            self.send_read_indexes(ctx.clock.now());
        }
        self.serve_ready_reads(ctx);
    }

    pub(super) fn send_messages<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msgs: Vec<Message>,
    ) {
        for msg in msgs {
            let to = msg.to;
            let Some(to_peer) = self.peer_cache.get(&to).cloned() else {
                warn!(self.logger, "no address for raft message"; "to" => to);
                if msg.get_msg_type() == MessageType::MsgSnapshot {
                    // Raft pauses the follower until it hears how the snapshot went.
                    self.raft_group.report_snapshot(to, raft::SnapshotStatus::Failure);
                }
                continue;
            };
            let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            let raft_msg = RaftMessage {
                region_id: self.region_id.get(),
                from_peer: Some(self.meta.clone()),
                to_peer: Some(to_peer.clone()),
                message: msg.write_to_bytes().expect("encoding a raft message cannot fail"),
                region_epoch: self.region().region_epoch,
                start_key: self.region().start_key.clone(),
                end_key: self.region().end_key.clone(),
                ..Default::default()
            };
            if is_snapshot {
                self.send_snapshot(ctx, raft_msg, to);
                continue;
            }
            if let Err(e) = ctx.transport.send(raft_msg) {
                debug!(self.logger, "raft message not sent"; "to" => to, "err" => %e);
                self.raft_group.report_unreachable(to);
            }
        }
    }

    pub fn tick<T: Transport>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        self.raft_group.tick();
        self.size.ticks += 1;
        // Offset by region id, so a store's regions do not all report in the same tick.
        let phase = self.size.ticks + self.region_id.get();
        if phase % ctx.cfg.split_check_ticks() == 0 {
            self.on_split_check_tick(ctx);
        }
        if phase % ctx.cfg.region_heartbeat_ticks() == 0 {
            self.heartbeat_pd(ctx);
        }
        if phase % ctx.cfg.raft_log_gc_ticks() == 0 {
            self.on_raft_log_gc_tick(ctx);
        }
        if phase % ctx.cfg.peer_stale_state_check_ticks() == 0 {
            self.on_stale_state_check_tick(ctx);
        }
        if phase % ctx.cfg.merge_check_ticks() == 0 {
            self.schedule_merge(ctx);
        }
        self.maybe_leave_joint(ctx);
    }

    pub fn last_index(&self) -> LogIndex {
        self.raft_group.store().last_index()
    }
}
