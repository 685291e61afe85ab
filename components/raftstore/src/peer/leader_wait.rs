//! Commands that reach a peer before its region has had any leader.
//!
//! A region a split just created has no leader for a few round trips (the leader's store
//! campaigns at once; the others vote once they applied the split), while PD already routes
//! clients to it. Answering `NotLeader` without a leader there sends the official client into
//! its region backoff (about 1.5 s for all its attempts), and under load some of its requests
//! ran out of attempts (#11). So a new peer waits briefly instead:
//!
//! 1. **Open.** A peer created by a split starts with a [`LeaderWait`]: it was created at the
//!    instant the split applied on this store, and commands may wait until
//!    `leader-wait-timeout` after that. A one-shot tick is scheduled for the deadline.
//! 2. **Hold.** While no leader is known and the deadline has not passed, every command but a
//!    status query is held (at most `max-pending-proposals`; beyond that it is answered
//!    `NotLeader` at once). Held commands were never proposed, so any answer given to them
//!    later is definite.
//! 3. **Release.** At the end of each of the peer's turns: once a leader is known (raft learns
//!    one from a vote won or from the leader's first message), or the deadline has passed
//!    (the scheduled tick wakes the peer; if the ticker was full, the next base tick does),
//!    the held commands are handled again from the start: served if this peer leads, or
//!    answered `NotLeader` with the leader, or without one if none came in time.
//! 4. **Closed for good.** The wait ends with the region's first leader and never reopens: a
//!    region that loses its leader later (a real leaderless region) answers `NotLeader`
//!    promptly, as before.
//!
//! On the store that led the parent, step 3 also records the time from the split's apply to
//! the first leader (`StoreStats::record_split_to_leader`).

use std::time::{Duration, Instant};

use engine_traits::{KvEngine, RaftEngine};
use slog::debug;

use super::{Peer, Snap};
use crate::error::Error;
use crate::msg::{PeerTick, RaftCommand};
use crate::store::PollContext;
use crate::transport::Transport;

/// A new peer's wait for its region's first leader (module doc).
pub(super) struct LeaderWait<S> {
    /// When the split that created the peer applied on this store.
    created_at: Instant,
    /// Commands may be held until then.
    deadline: Instant,
    /// The split applied while this store led the parent: the time to the first leader is
    /// the split-to-leader time of the region.
    measured: bool,
    held: Vec<RaftCommand<S>>,
}

impl<S> LeaderWait<S> {
    pub(super) fn new(created_at: Instant, timeout: Duration, measured: bool) -> Self {
        LeaderWait { created_at, deadline: created_at + timeout, measured, held: Vec::new() }
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes the held commands out (the deadline passed, or the peer is being destroyed).
    pub(super) fn take_held(&mut self) -> Vec<RaftCommand<S>> {
        std::mem::take(&mut self.held)
    }
}

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Step 1: opens the wait of a peer a split just created, and schedules its deadline.
    pub(super) fn open_leader_wait<T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        created_at: Instant,
        measured: bool,
    ) {
        let timeout = ctx.cfg.leader_wait_timeout.as_duration();
        let wait = LeaderWait::new(created_at, timeout, measured);
        if !timeout.is_zero() {
            // Refused when the ticker is full: the next base tick checks the deadline instead.
            ctx.ticker.schedule(self.region_id, wait.deadline(), PeerTick::LeaderWaitDeadline);
        }
        self.life.leader_wait = Some(wait);
    }

    /// Step 2: holds `cmd`, which the checks would answer `NotLeader` without a leader (status
    /// queries never are), if the wait is open; gives it back otherwise.
    pub(super) fn hold_until_leader<T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        cmd: RaftCommand<Snap<EK>>,
    ) -> Option<RaftCommand<Snap<EK>>> {
        let Some(wait) = self.life.leader_wait.as_mut() else { return Some(cmd) };
        if ctx.clock.now() >= wait.deadline || wait.held.len() >= ctx.cfg.max_pending_proposals {
            return Some(cmd); // answered NotLeader by the usual checks
        }
        wait.held.push(cmd);
        ctx.stats.record_command_held_for_leader();
        None
    }

    /// Step 3: once a leader is known or the deadline passed, the held commands are handled
    /// again; with a leader known the wait ends for good (step 4).
    pub(super) fn maybe_release_leader_wait<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
    ) {
        let leader_known = self.leader_id_known();
        let now = ctx.clock.now();
        let Some(wait) = self.life.leader_wait.as_mut() else { return };
        let held = if leader_known {
            let held = wait.take_held();
            if wait.measured {
                let ms = now.saturating_duration_since(wait.created_at).as_millis() as u64;
                ctx.stats.record_split_to_leader(ms);
                debug!(self.logger, "first leader known"; "after_ms" => ms,
                    "leader" => self.raft_group.raft.leader_id);
            }
            self.life.leader_wait = None;
            held
        } else if now >= wait.deadline && !wait.held.is_empty() {
            // Still no leader: the commands get `NotLeader` without one. The wait stays, to
            // measure the first leader, but holds nothing any more (step 2 checks the time).
            wait.take_held()
        } else {
            return;
        };
        for cmd in held {
            self.on_command(ctx, cmd);
        }
    }

    fn leader_id_known(&self) -> bool {
        // A leader id without an address (not in the peer cache yet) still ends the wait: the
        // command then answers `NotLeader` without a leader, as before the wait existed.
        self.raft_group.raft.leader_id != raft::INVALID_ID
    }

    /// Answers the held commands of a peer that goes away.
    pub(super) fn fail_leader_wait(&mut self, err: &Error) {
        if let Some(mut wait) = self.life.leader_wait.take() {
            let e = err.clone();
            for cmd in wait.take_held() {
                cmd.callback.invoke_with_error(e.clone());
            }
        }
    }
}
