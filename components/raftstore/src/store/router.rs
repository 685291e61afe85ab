//! `RaftRouter`: how everything outside the raftstore reaches a region's peer.
//!
//! Full mailboxes: a raft message is dropped (raft retransmits); a command is answered
//! `ServerIsBusy` (`send_command`) or given back for the caller to retry (`try_send_command`);
//! an apply result is force-sent (it MUST NOT be lost, and its number is bounded by the apply
//! FSM's own bounded input).

use batch_system::{Router, TrySendError};
use engine_traits::{KvEngine, RaftEngine};
use proto::metapb;
use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::RaftMessage;
use util::RegionId;

use crate::apply::{ApplyRes, ApplyResSink};
use crate::callback::Callback;
use crate::error::Error;
use crate::msg::{PeerMsg, PeerTick, RaftCommand, SplitSource, StoreMsg, StoreTick};
use crate::peer::fsm::PeerFsm;

use super::fsm::StoreFsm;

type Snap<EK> = <EK as KvEngine>::Snapshot;

/// Why a raft message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("mailbox of region {0} is full")]
    Full(RegionId),
    #[error("the store is shutting down")]
    Closed,
}

pub struct RaftRouter<EK: KvEngine, ER: RaftEngine> {
    router: Router<PeerFsm<EK, ER>, StoreFsm>,
}

impl<EK: KvEngine, ER: RaftEngine> Clone for RaftRouter<EK, ER> {
    fn clone(&self) -> Self {
        RaftRouter { router: self.router.clone() }
    }
}

impl<EK: KvEngine, ER: RaftEngine> RaftRouter<EK, ER> {
    pub(crate) fn new(router: Router<PeerFsm<EK, ER>, StoreFsm>) -> Self {
        RaftRouter { router }
    }

    pub(crate) fn inner(&self) -> &Router<PeerFsm<EK, ER>, StoreFsm> {
        &self.router
    }

    /// Delivers a raft message from another store: to the region's peer, or to the store FSM
    /// if this store has no peer of the region.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<(), SendError> {
        let region_id = msg.region_id;
        match self.router.send(region_id, PeerMsg::RaftMessage(Box::new(msg))) {
            Ok(()) => Ok(()),
            Err(batch_system::SendError::NotFound { msg: PeerMsg::RaftMessage(m), .. }) => {
                match self.router.send_control(StoreMsg::RaftMessage(m)) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => Err(SendError::Full(RegionId(region_id))),
                    Err(TrySendError::Disconnected(_)) => Err(SendError::Closed),
                }
            }
            Err(batch_system::SendError::NotFound { .. }) => unreachable!("the message comes back"),
            Err(batch_system::SendError::Full { .. }) => Err(SendError::Full(RegionId(region_id))),
            Err(batch_system::SendError::Disconnected { .. }) => Err(SendError::Closed),
        }
    }

    /// Sends a command to its region (from the request header). The callback is always
    /// answered: by the peer, or here with `ServerIsBusy` / `RegionNotFound`.
    pub fn send_command(&self, request: RaftCmdRequest, callback: Callback<Snap<EK>>) {
        if let Err(cmd) = self.try_send_command(RaftCommand::new(request, callback)) {
            let region_id = cmd.request.header.as_ref().map_or(0, |h| h.region_id);
            let e = Error::ServerIsBusy(format!("mailbox of region {region_id} is full"));
            cmd.callback.invoke_with_error(e);
        }
    }

    /// As [`RaftRouter::send_command`], but a full mailbox gives the command back (unanswered)
    /// so the caller can wait and retry: the official client gives up on `ServerIsBusy`.
    /// `Ok` means the command was delivered or answered (`RegionNotFound`).
    pub fn try_send_command(
        &self,
        cmd: RaftCommand<Snap<EK>>,
    ) -> Result<(), RaftCommand<Snap<EK>>> {
        let region_id = cmd.request.header.as_ref().map_or(0, |h| h.region_id);
        match self.router.send(region_id, PeerMsg::RaftCommand(cmd)) {
            Ok(()) => Ok(()),
            Err(batch_system::SendError::Full { msg: PeerMsg::RaftCommand(cmd), .. }) => Err(cmd),
            Err(
                batch_system::SendError::NotFound { msg, .. }
                | batch_system::SendError::Disconnected { msg, .. }
                | batch_system::SendError::Full { msg, .. },
            ) => {
                if let PeerMsg::RaftCommand(cmd) = msg {
                    let e = Error::RegionNotFound(RegionId(region_id));
                    cmd.callback.invoke_with_error(e);
                }
                Ok(())
            }
        }
    }

    /// Asks a region's leader to split at `split_keys`. The callback is always answered: with
    /// the BatchSplit admin response (every resulting region), or a region error.
    pub fn split_region(
        &self,
        region_id: RegionId,
        region_epoch: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
        callback: Callback<Snap<EK>>,
    ) {
        let msg = PeerMsg::SplitRegion {
            region_epoch,
            split_keys,
            callback,
            source: SplitSource::Manual,
        };
        let err = match self.router.send(region_id.get(), msg) {
            Ok(()) => return,
            Err(batch_system::SendError::Full { msg: m, .. }) => {
                (m, Error::ServerIsBusy(format!("mailbox of region {region_id} is full")))
            }
            Err(
                batch_system::SendError::NotFound { msg: m, .. }
                | batch_system::SendError::Disconnected { msg: m, .. },
            ) => (m, Error::RegionNotFound(region_id)),
        };
        if let (PeerMsg::SplitRegion { callback, .. }, e) = err {
            callback.invoke_with_error(e);
        }
    }

    /// Sends any message to a region's peer; gives it back if the peer is not reachable.
    pub fn send(
        &self,
        region_id: RegionId,
        msg: PeerMsg<Snap<EK>>,
    ) -> Result<(), PeerMsg<Snap<EK>>> {
        self.router.send(region_id.get(), msg).map_err(|e| e.into_inner())
    }

    /// Sends a message that MUST NOT be lost (answers to the peer's own requests, bounded by
    /// them); only a missing peer drops it.
    pub fn force_send(&self, region_id: RegionId, msg: PeerMsg<Snap<EK>>) {
        let _ = self.router.force_send(region_id.get(), msg);
    }

    /// One raft tick to every peer (peers with a full mailbox skip this tick).
    pub fn broadcast_tick(&self) {
        self.router.broadcast_normal(|| PeerMsg::Tick(PeerTick::Raft));
    }

    pub fn store_tick(&self, tick: StoreTick) {
        let _ = self.router.send_control(StoreMsg::Tick(tick));
    }

    pub fn region_count(&self) -> usize {
        self.router.alive_count()
    }
}

impl<EK: KvEngine, ER: RaftEngine> ApplyResSink for RaftRouter<EK, ER> {
    fn send_apply_res(&self, res: ApplyRes) {
        let region_id = res.region_id.get();
        // The peer may be gone (destroyed, shutting down): then nobody needs the result.
        let _ = self.router.force_send(region_id, PeerMsg::ApplyRes(Box::new(res)));
    }

    fn send_apply_destroyed(&self, region_id: RegionId) {
        let _ = self.router.force_send(region_id.get(), PeerMsg::ApplyDestroyed);
    }

    fn send_catch_up_logs(
        &self,
        source: RegionId,
        target: RegionId,
        commit: u64,
        entries: Vec<raft::eraftpb::Entry>,
    ) {
        let msg = PeerMsg::CatchUpLogs { target_region_id: target, commit, entries };
        // No such peer: the target stays paused (it logged the wait). A correct store always
        // has the source's peer while its target merges it (same stores, `peer::merge`).
        let _ = self.router.force_send(source.get(), msg);
    }
}
