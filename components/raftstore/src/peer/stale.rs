//! A peer that hears no leader for long asks PD whether it is still a member.
//!
//! A peer removed while it was cut off learns of it from a member's answer when it campaigns
//! (`message`, `is_tombstone`). Two kinds of peer never campaign, so nobody ever answers them:
//! a learner, and an uninitialized peer (created by a message, waiting for its snapshot; e.g.
//! by the vote of a peer that was itself being removed). They would stay forever, holding a
//! range reservation or a slot of `UNINITIALIZED_PEERS_MAX`. So:
//!
//! 1. The message intake marks the peer as having heard its leader whenever raft accepted an
//!    append, heartbeat or snapshot from the peer it now follows (`heard_leader`).
//! 2. Every `peer-stale-state-check-interval` (on the peer's tick, read from the poll
//!    context's clock), a peer that does not lead and has not heard its leader since the last
//!    check starts (or continues) a leader-missing period. Past
//!    `abnormal-leader-missing-duration` the period is logged and counted once; past
//!    `max-leader-missing-duration` the peer asks PD for its region, at most once per check.
//! 3. PD answers through the router (`PeerMsg::StaleCheckResult`). The peer destroys itself
//!    only if PD's region is newer in `conf_ver` than the peer's own and does not list this
//!    peer's id: a committed membership change removed it (peer ids are never reused, and PD
//!    only holds configurations a leader applied). PD not knowing the region, or knowing an
//!    older or equal configuration, proves nothing (PD lags the leaders): the peer stays.
//!    An uninitialized peer has no configuration (`conf_ver` 0), so any region PD knows that
//!    does not list it removes it; if that is wrong (PD has not heard of a just-added peer
//!    after hours), nothing is lost: the leader creates it again with its next message.
//!
//! Hibernating regions (future work) stop heartbeating: the leader-missing check must then
//! count a hibernating leader as heard, as TiKV does.

use engine_traits::{KvEngine, RaftEngine};
use proto::metapb;
use raft::eraftpb::MessageType;
use slog::{info, warn};

use super::Peer;
use crate::msg::PeerMsg;
use crate::store::PollContext;
use crate::util::{epoch, find_peer_by_id};
use util::PeerId;

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Step 1: called after raft stepped a message of `msg_type` from `from`.
    pub(super) fn note_leader_contact(&mut self, msg_type: MessageType, from: u64) {
        let from_leader = matches!(
            msg_type,
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) && self.raft_group.raft.leader_id == from;
        if from_leader {
            self.life.heard_leader = true;
        }
    }

    /// Step 2.
    pub(super) fn on_stale_state_check_tick<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if self.is_leader() || std::mem::take(&mut self.life.heard_leader) {
            self.life.leader_missing_since = None;
            self.life.leader_missing_reported = false;
            return;
        }
        let now = ctx.clock.now();
        let since = *self.life.leader_missing_since.get_or_insert(now);
        let missing = now.saturating_duration_since(since);
        if missing >= ctx.cfg.abnormal_leader_missing_duration.as_duration()
            && !self.life.leader_missing_reported
        {
            self.life.leader_missing_reported = true;
            ctx.stats.record_leader_missing();
            warn!(self.logger, "no leader heard for long"; "secs" => missing.as_secs(),
                "initialized" => self.raft_group.store().is_initialized());
        }
        if missing < ctx.cfg.max_leader_missing_duration.as_duration() {
            return;
        }
        info!(self.logger, "no leader heard past max-leader-missing-duration: asking PD \
            whether this peer is still a member"; "secs" => missing.as_secs());
        ctx.stats.record_stale_peer_check();
        let router = ctx.router.clone();
        let region_id = self.region_id;
        ctx.pd.get_region_by_id(
            region_id.get(),
            Box::new(move |answer| {
                // Only a region PD knows can prove anything (step 3); an error proves nothing
                // and the next check asks again.
                if let Ok(Some(pd_region)) = answer {
                    let _ = router.send(region_id, PeerMsg::StaleCheckResult { pd_region });
                }
            }),
        );
    }

    /// Step 3.
    pub fn on_stale_check_result<T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        pd_region: metapb::Region,
    ) {
        if is_removed_by(self.region(), self.meta.id, &pd_region) {
            warn!(self.logger, "PD's region no longer lists this peer: destroying it";
                "pd_region" => ?pd_region.region_epoch, "local" => ?self.region().region_epoch);
            ctx.stats.record_stale_peer_destroyed();
            self.destroy(ctx);
        }
    }
}

/// Whether `pd_region` shows that peer `peer_id` of `local` was removed (module doc, step 3).
fn is_removed_by(local: &metapb::Region, peer_id: u64, pd_region: &metapb::Region) -> bool {
    pd_region.id == local.id
        && epoch(pd_region).conf_ver > epoch(local).conf_ver
        && find_peer_by_id(pd_region, PeerId(peer_id)).is_none()
}

#[cfg(test)]
mod tests {
    use proto::metapb::{Peer, Region, RegionEpoch};

    use super::is_removed_by;

    fn region(conf_ver: u64, peers: &[u64]) -> Region {
        Region {
            id: 1,
            region_epoch: Some(RegionEpoch { conf_ver, version: 1 }),
            peers: peers
                .iter()
                .map(|&id| Peer { id, store_id: id, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_newer_configuration_without_the_peer_removes_it() {
        let local = region(3, &[1, 2, 3]);
        assert!(is_removed_by(&local, 3, &region(4, &[1, 2])));
        assert!(!is_removed_by(&local, 3, &region(4, &[1, 2, 3])), "still listed");
        assert!(!is_removed_by(&local, 3, &region(3, &[1, 2])), "not newer: PD may lag");
        assert!(!is_removed_by(&local, 3, &region(2, &[1, 2])), "older");
        let other = Region { id: 9, ..region(9, &[1]) };
        assert!(!is_removed_by(&local, 3, &other), "another region");
        // Uninitialized: no configuration of its own.
        let uninit = Region { id: 1, ..Default::default() };
        assert!(is_removed_by(&uninit, 7, &region(4, &[1, 2, 3])));
        assert!(!is_removed_by(&uninit, 7, &region(4, &[1, 2, 7])), "a pending add");
    }
}
