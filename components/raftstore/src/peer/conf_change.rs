//! Membership changes, on the peer's side.
//!
//! 1. **Propose** (leader): `ChangePeer` / `ChangePeerV2` are checked before they enter the
//!    log — one change in flight (raft's pending conf index), no change inside a joint state
//!    but leaving it, the change fits the region (`apply::conf_change` rules), the leader is
//!    neither removed nor demoted (it transfers leadership first), and the new configuration
//!    (both halves of a joint one) keeps a quorum of healthy voters (this leader, and peers
//!    it heard from within an election timeout that hold some of the log). The command is proposed as a raft
//!    conf change whose context is the command itself.
//! 2. **Apply** (`apply::conf_change`, every replica): the new peer list and `conf_ver` are
//!    written with the entry's apply state.
//! 3. **Result** (`on_ready_change_peer`): raft applies the same change; the region, the peer
//!    cache and the store's meta take the new peer list. A peer the change removed destroys
//!    itself (`life`). A leader reports the region to PD.
//! 4. **Leaving joint states**: a leader whose region is in a joint state proposes leaving it
//!    on its next tick (an empty `ChangePeerV2`), so no joint state outlives the change that
//!    entered it by more than a tick and a commit.
//! 5. **Removed peers that missed their removal** (partitioned, or the leader stopped sending
//!    to them once it applied the change): they campaign after an election timeout; a member
//!    that gets a message from a non-member with an older epoch answers `is_tombstone`
//!    (`message`), and the removed peer destroys itself on that answer (`on_tombstone_msg`).

use engine_traits::{KvEngine, RaftEngine};
use prost::Message as _;
use proto::metapb::{self, ConfChangeType};
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerV2Request, RaftCmdRequest, RaftRequestHeader,
};
use proto::raft_serverpb::RaftMessage;
use raft::eraftpb::ConfChangeV2;
use slog::{debug, info};
use util::PeerId;

use super::{Peer, Snap};
use crate::apply::conf_change::{apply_changes, requested_changes, to_raft_conf_change};
use crate::apply::{ChangePeerResult, Proposal};
use crate::callback::Callback;
use crate::error::{Error, Result};
use crate::store::PollContext;
use crate::util::{conf_state_from_region, epoch, find_peer_by_id, is_epoch_stale, is_joint};

/// What "healthy" means when a change is checked: heard from within `window` of `now`.
#[derive(Clone, Copy)]
struct Health {
    now: std::time::Instant,
    window: std::time::Duration,
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Step 1: checks and proposes a membership change.
    pub(super) fn propose_conf_change<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        req: RaftCmdRequest,
        cb: Callback<Snap<EK>>,
    ) {
        let health = Health { now: ctx.clock.now(), window: ctx.cfg.election_timeout() };
        let cc = match self.check_conf_change(&req, health) {
            Ok(cc) => cc,
            Err(e) => return cb.invoke_with_error(e),
        };
        // Writes batched this round were checked under the current membership: they go first.
        self.propose_batch(ctx);
        let proposed_at = ctx.clock.now();
        let last_index = self.raft_group.raft.raft_log.last_index();
        let res = self.raft_group.propose_conf_change(req.encode_to_vec(), cc);
        let index = self.raft_group.raft.raft_log.last_index();
        if res.is_err() || index == last_index {
            // Raft drops proposals while a leader transfer is in progress or once this peer
            // no longer leads.
            ctx.stats.record_proposal_dropped();
            return cb.invoke_with_error(self.not_leader());
        }
        info!(self.logger, "membership change proposed"; "index" => index);
        self.proposals.push_back(Proposal {
            index: index.into(),
            term: self.term(),
            callbacks: vec![(cb, 1)],
            proposed_at,
        });
    }

    /// The checks of step 1. Returns the raft conf change to propose.
    fn check_conf_change(&self, req: &RaftCmdRequest, health: Health) -> Result<ConfChangeV2> {
        let admin = req.admin_request.as_ref().expect("classified as admin");
        let changes = requested_changes(admin).expect("routed as a conf change")?;
        if admin.cmd_type == AdminCmdType::ChangePeer as i32 && changes.len() != 1 {
            return Err(Error::InvalidRequest("ChangePeer carries exactly one change".into()));
        }
        if self.raft_group.raft.has_pending_conf() {
            return Err(Error::ServerIsBusy(format!(
                "region {}: a membership change is in progress",
                self.region_id
            )));
        }
        for c in &changes {
            let Some(p) = &c.peer else { continue };
            let demotes_or_removes = c.change_type == ConfChangeType::RemoveNode as i32
                || c.change_type == ConfChangeType::AddLearnerNode as i32;
            if p.id == self.meta.id && demotes_or_removes {
                return Err(Error::InvalidRequest(format!(
                    "peer {} leads region {}: transfer leadership before removing or demoting it",
                    p.id, self.region_id
                )));
            }
        }
        let region = apply_changes(self.region(), &changes)?;
        self.check_quorum_after(&region, health)?;
        to_raft_conf_change(&changes)
    }

    /// Refuses a configuration in which the healthy voters are no quorum (of either half of a
    /// joint configuration): the region would stop making progress until the dead return.
    fn check_quorum_after(&self, region: &metapb::Region, health: Health) -> Result<()> {
        let cs = conf_state_from_region(region);
        let prs = self.raft_group.raft.prs();
        // Heard from within the window (not raft's `recent_active`: check-quorum resets it
        // every election timeout, so right after a reset every follower looks dead), and
        // holding some of the log.
        let heard = |id: &u64| {
            self.leadership
                .heard_from
                .get(id)
                .is_some_and(|t| health.now.saturating_duration_since(*t) <= health.window)
        };
        let healthy = |id: &u64| {
            *id == self.meta.id || (heard(id) && prs.get(*id).is_some_and(|p| p.matched > 0))
        };
        for (half, voters) in [("incoming", &cs.voters), ("outgoing", &cs.voters_outgoing)] {
            if voters.is_empty() {
                continue;
            }
            let alive = voters.iter().filter(|id| healthy(id)).count();
            if alive <= voters.len() / 2 {
                return Err(Error::InvalidRequest(format!(
                    "region {}: the {half} configuration would have {alive} healthy voters of {}",
                    self.region_id,
                    voters.len()
                )));
            }
        }
        Ok(())
    }

    /// Step 3: a membership change applied.
    pub(super) fn on_ready_change_peer<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        res: ChangePeerResult,
    ) {
        let ChangePeerResult { cc, region } = res;
        // The region's peer list (durable) is what raft restarts from; a refusal here would
        // mean raft's view and the region's differ, which the apply checks rule out.
        if let Err(e) = self.raft_group.apply_conf_change(&cc) {
            panic!("region {}: raft refused an applied membership change: {e}", self.region_id);
        }
        for p in &region.peers {
            self.peer_cache.insert(p.id, p.clone());
        }
        self.raft_group.mut_store().set_region(region.clone());
        ctx.store_meta.lock().set_region(region.clone());
        if find_peer_by_id(&region, self.peer_id()).is_none() {
            info!(self.logger, "this peer was removed from its region");
            return self.destroy(ctx);
        }
        self.heartbeat_pd(ctx);
    }

    /// Step 4, on the leader's tick.
    pub(super) fn maybe_leave_joint<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if !self.is_leader() || !is_joint(self.region()) || self.raft_group.raft.has_pending_conf()
        {
            return;
        }
        debug!(self.logger, "leaving the joint configuration");
        let req = self.admin_request(AdminRequest {
            cmd_type: AdminCmdType::ChangePeerV2 as i32,
            change_peer_v2: Some(ChangePeerV2Request { changes: Vec::new() }),
            ..Default::default()
        });
        self.propose_conf_change(ctx, req, Callback::none(self.region_id));
    }

    /// An admin command of this leader for its region, under the current epoch.
    pub(super) fn admin_request(&self, admin: AdminRequest) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id.get(),
                peer: Some(self.meta.clone()),
                region_epoch: self.region().region_epoch,
                ..Default::default()
            }),
            admin_request: Some(admin),
            ..Default::default()
        }
    }

    /// Step 5: a member told this peer it is not in the region any more. Believed only if
    /// the sender's epoch is newer than this peer's (the member's region left it out).
    pub(super) fn on_tombstone_msg<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: &RaftMessage,
    ) {
        let Some(their) = msg.region_epoch else { return };
        if !is_epoch_stale(&epoch(self.region()), &their) {
            return;
        }
        info!(self.logger, "told by a member that this peer was removed";
            "from" => msg.from_peer.as_ref().map_or(0, |p| p.id), "their_conf_ver" => their.conf_ver);
        self.destroy(ctx);
    }

    /// Step 5: answers a message from a peer that is not a member any more, so it stops.
    pub(super) fn tell_removed_peer<T: crate::transport::Transport>(
        &self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: &RaftMessage,
    ) {
        let Some(from) = msg.from_peer.clone() else { return };
        if find_peer_by_id(self.region(), PeerId(from.id)).is_some() {
            return;
        }
        let answer = RaftMessage {
            region_id: self.region_id.get(),
            from_peer: Some(self.meta.clone()),
            to_peer: Some(from),
            region_epoch: self.region().region_epoch,
            is_tombstone: true,
            ..Default::default()
        };
        let _ = ctx.transport.send(answer);
    }
}
