//! `PeerFsm`: a region's peer as a batch-system FSM. A thin dispatcher: each message is one
//! `match` arm that delegates to the peer's per-concern modules.

use batch_system::{Fsm, Inbox};
use engine_traits::{KvEngine, RaftEngine};

use super::{Peer, Snap};
use crate::msg::{PeerMsg, PeerTick};
use crate::store::PollContext;
use crate::transport::Transport;

pub struct PeerFsm<EK: KvEngine, ER: RaftEngine> {
    pub(crate) peer: Peer<EK, ER>,
    inbox: Inbox<PeerMsg<Snap<EK>>>,
    /// A ready was taken this round and waits for the round's raft write.
    pub(crate) has_pending_ready: bool,
}

impl<EK: KvEngine, ER: RaftEngine> PeerFsm<EK, ER> {
    pub fn new(peer: Peer<EK, ER>, inbox: Inbox<PeerMsg<Snap<EK>>>) -> Self {
        PeerFsm { peer, inbox, has_pending_ready: false }
    }

    pub fn peer(&self) -> &Peer<EK, ER> {
        &self.peer
    }

    /// Handles up to `max` messages, proposes the round's batched writes and takes the ready.
    /// Returns how many messages are left in the inbox.
    pub(crate) fn handle<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        max: usize,
    ) -> usize {
        for _ in 0..max {
            if self.peer.is_stopped() {
                break;
            }
            let Some(msg) = self.inbox.try_recv() else { break };
            if self.peer.is_pending_remove() {
                self.handle_while_removing(ctx, msg);
                continue;
            }
            match msg {
                PeerMsg::RaftMessage(m) => self.peer.on_raft_message(ctx, *m),
                PeerMsg::RaftCommand(cmd) => self.peer.on_command(ctx, cmd),
                PeerMsg::Tick(PeerTick::Raft) => self.peer.tick(ctx),
                // The end of the turn checks the deadline (`maybe_release_leader_wait`).
                PeerMsg::Tick(PeerTick::LeaderWaitDeadline) => {}
                // The end of the turn answers what is past its deadline (`release_merge_holds`).
                PeerMsg::Tick(PeerTick::MergeHoldDeadline) => {}
                PeerMsg::ApplyRes(res) => self.peer.on_apply_res(ctx, *res),
                PeerMsg::Wake => {}
                PeerMsg::Destroy => self.peer.destroy(ctx),
                PeerMsg::ApplyDestroyed => self.peer.on_apply_destroyed(ctx),
                PeerMsg::SnapshotReport { to_peer_id, ok } => {
                    self.peer.on_snapshot_report(to_peer_id, ok)
                }
                PeerMsg::SplitRegion { region_epoch, split_keys, callback, source } => {
                    self.peer.on_split_region(ctx, region_epoch, split_keys, callback, source)
                }
                PeerMsg::StaleCheckResult { pd_region } => {
                    self.peer.on_stale_check_result(ctx, pd_region)
                }
                PeerMsg::SplitCheckResult { region_epoch, outcome } => {
                    self.peer.on_split_check_result(ctx, region_epoch, outcome)
                }
                PeerMsg::ProposeCommitMerge { source, commit, entries, target_epoch } => {
                    self.peer.on_propose_commit_merge(ctx, source, commit, entries, target_epoch)
                }
                PeerMsg::CatchUpLogs { target_region_id, commit, entries } => {
                    self.peer.on_catch_up_logs(ctx, target_region_id, commit, entries)
                }
                PeerMsg::MergeResult { target } => self.peer.on_merge_result(ctx, target),
                PeerMsg::StopForSnapshot { target } => self.peer.on_stop_for_snapshot(ctx, target),
                PeerMsg::SnapshotSourceStopped { source } => {
                    self.peer.on_snapshot_source_stopped(source)
                }
            }
        }
        if !self.peer.is_stopped() && !self.peer.is_pending_remove() {
            self.peer.maybe_release_leader_wait(ctx);
            self.peer.maybe_resolve_epoch_change(ctx);
            self.peer.release_merge_holds(ctx);
            self.peer.propose_batch(ctx);
            self.peer.maybe_schedule_snapshot_gen(ctx);
            self.has_pending_ready = self.peer.handle_ready(ctx);
            self.peer.release_unused_reservation(ctx);
        }
        self.inbox.len()
    }
}

impl<EK: KvEngine, ER: RaftEngine> PeerFsm<EK, ER> {
    /// While the peer is being destroyed (`peer::life`) it only waits for its apply FSM;
    /// commands are answered `RegionNotFound` (`EpochNotMatch` with the target if merged),
    /// everything else is dropped.
    fn handle_while_removing<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: PeerMsg<Snap<EK>>,
    ) {
        let gone = || self.peer.removal_error();
        match msg {
            PeerMsg::ApplyDestroyed => self.peer.on_apply_destroyed(ctx),
            PeerMsg::StopForSnapshot { target } => self.peer.on_stop_for_snapshot(ctx, target),
            PeerMsg::RaftCommand(cmd) => cmd.callback.invoke_with_error(gone()),
            PeerMsg::SplitRegion { callback, .. } => callback.invoke_with_error(gone()),
            PeerMsg::RaftMessage(_)
            | PeerMsg::Tick(_)
            | PeerMsg::ApplyRes(_)
            | PeerMsg::Wake
            | PeerMsg::Destroy
            | PeerMsg::SnapshotReport { .. }
            | PeerMsg::StaleCheckResult { .. }
            | PeerMsg::SplitCheckResult { .. }
            | PeerMsg::ProposeCommitMerge { .. }
            | PeerMsg::CatchUpLogs { .. }
            | PeerMsg::MergeResult { .. }
            | PeerMsg::SnapshotSourceStopped { .. } => {}
        }
    }
}

impl<EK: KvEngine, ER: RaftEngine> Fsm for PeerFsm<EK, ER> {
    type Message = PeerMsg<Snap<EK>>;

    fn is_stopped(&self) -> bool {
        self.peer.is_stopped()
    }
}
