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
use raft::{SnapshotStatus, StateRole};
use slog::{debug, info, warn};
use util::{LogIndex, PeerId, StoreId};

use crate::util::{epoch, find_peer_by_id, is_epoch_stale};

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
        assert!(
            ready.snapshot().is_empty(),
            "region {}: received a snapshot, but snapshots are not supported yet",
            self.region_id
        );
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
        let mut light = self.raft_group.advance_append(ready);
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
                // PD routes clients by the leader it knows: tell it now, not at the next
                // periodic heartbeat (a region created by a split has no leader there yet).
                self.heartbeat_pd(ctx);
            }
            StateRole::Follower | StateRole::Candidate | StateRole::PreCandidate => {
                debug!(self.logger, "not leader"; "role" => ?role, "term" => self.term());
                self.leadership.lease.expire();
                self.leadership.since = None;
                self.leadership.guard = None;
                let err = self.not_leader();
                self.fail_reads(&err);
            }
        }
    }

    fn send_to_apply<T>(&mut self, ctx: &mut PollContext<EK, ER, T>, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
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
        self.size.diff_hint = self.size.diff_hint.saturating_add(res.written_bytes);
        for r in res.exec_results {
            match r {
                ExecResult::Split(split) => self.on_ready_split(ctx, split),
                ExecResult::CompactLog(truncated) => self.on_ready_compact_log(ctx, truncated),
            }
        }
        let applied = res.apply_state.applied_index;
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
            if let Err(e) = ctx.transport.send(raft_msg) {
                debug!(self.logger, "raft message not sent"; "to" => to, "err" => %e);
                self.raft_group.report_unreachable(to);
                if is_snapshot {
                    self.raft_group.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
        }
    }

    /// Steps a raft message from another store into the group.
    pub fn on_raft_message(&mut self, store_id: StoreId, msg: RaftMessage) {
        let (Some(from), Some(to)) = (msg.from_peer, msg.to_peer) else {
            warn!(self.logger, "raft message without peers");
            return;
        };
        if to.id != self.meta.id || to.store_id != store_id.get() {
            debug!(self.logger, "raft message for another peer"; "to" => to.id);
            return;
        }
        let mut m = Message::default();
        if let Err(e) = m.merge_from_bytes(&msg.message) {
            warn!(self.logger, "undecodable raft message"; "from" => from.id, "err" => %e);
            return;
        }
        if raft::raw_node::is_local_msg(m.get_msg_type()) {
            warn!(self.logger, "local raft message from the network"; "type" => ?m.get_msg_type());
            return;
        }
        // A sender with an older epoch that is not a member any more (a removed peer) must
        // not disturb the group. A member with an older epoch is legitimate: it has not
        // applied a split yet, and needs this group's log to do so.
        if let Some(e) = msg.region_epoch {
            if is_epoch_stale(&e, &epoch(self.region()))
                && find_peer_by_id(self.region(), PeerId(from.id)).is_none()
            {
                debug!(self.logger, "raft message from a stale non-member dropped"; "from" => from.id);
                return;
            }
        }
        self.peer_cache.insert(from.id, from);
        if let Err(e) = self.raft_group.step(m) {
            debug!(self.logger, "raft step failed"; "err" => %e);
        }
    }

    pub fn tick<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
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
    }

    pub fn last_index(&self) -> LogIndex {
        self.raft_group.store().last_index()
    }
}
