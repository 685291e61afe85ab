//! `StoreFsm`: the store's control FSM. It receives raft messages for regions the store has no
//! peer of, and the store tick.
//!
//! A message for a region with no peer here is one of:
//! 1. for a region a split created elsewhere while this store has not applied that split yet:
//!    the message's range overlaps a region here (the one about to split). Election messages
//!    are kept for the region (`StoreMeta::keep_pending_msg`) and handed to it when the split
//!    creates it, so its first election does not wait for a timeout; the rest are dropped
//!    (raft resends appends and heartbeats);
//! 2. for a peer a membership change added on this store: a vote, a pre-vote or a leader's
//!    first heartbeat (commit 0) creates it, uninitialized (no range, no data) until its
//!    first snapshot, if nothing here overlaps the message's range, the store holds fewer
//!    than `UNINITIALIZED_PEERS_MAX` such peers, and this store has no tombstone of the
//!    region at least as new as the message;
//! 3. anything else is stale (for a peer destroyed here, or an append to a peer that does
//!    not exist yet): dropped and counted. A sender this store's tombstone of the region
//!    shows was removed before this store's peer (its epoch is older and its peer id is not
//!    in the tombstone's region) is answered `is_tombstone` with the tombstone's epoch, so it
//!    stops campaigning even when every member it knows of has gone too (its own PD check,
//!    `peer::stale`, is the other way out);
//! 4. for a region merged away on this store (a tombstone with a merge state): checked
//!    before case 1, whose range test would take it for a region not split yet (the range is
//!    the target's now). A member is answered `merge_target` (`peer::merge`: it missed the
//!    merge and learns where the region went), anyone else as in case 3.

use batch_system::{Fsm, Inbox};
use engine_traits::{KvEngine, RaftEngine, CF_RAFT};
use proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use slog::{debug, info, warn, Logger};
use util::RegionId;

use crate::msg::{PeerMsg, StoreMsg, StoreTick};
use crate::stats::DroppedMessage;
use crate::store::life;
use crate::store::meta::UNINITIALIZED_PEERS_MAX;
use crate::store::PollContext;
use crate::transport::Transport;
use crate::util::{find_peer_by_id, is_epoch_stale};

pub struct StoreFsm {
    inbox: Inbox<StoreMsg>,
    logger: Logger,
}

impl StoreFsm {
    pub fn new(inbox: Inbox<StoreMsg>, logger: Logger) -> Self {
        StoreFsm { inbox, logger }
    }

    /// Handles everything queued; returns the inbox length left (0).
    pub(crate) fn handle<EK: KvEngine, ER: RaftEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
    ) -> usize {
        while let Some(msg) = self.inbox.try_recv() {
            match msg {
                StoreMsg::RaftMessage(m) => self.on_raft_message(ctx, *m),
                StoreMsg::Tick(StoreTick::Heartbeat) => {}
            }
        }
        self.inbox.len()
    }

    fn on_raft_message<EK: KvEngine, ER: RaftEngine, T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: RaftMessage,
    ) {
        let region_id = RegionId(msg.region_id);
        let Some(to) = msg.to_peer.clone() else {
            return self.drop_message(ctx, &msg, DroppedMessage::Malformed);
        };
        if to.store_id != ctx.store_id.get() {
            return self.drop_message(ctx, &msg, DroppedMessage::WrongPeer);
        }
        if msg.is_tombstone {
            // A member telling a removed peer to go; there is no such peer here.
            return self.drop_message(ctx, &msg, DroppedMessage::UnknownRegion);
        }
        let mut m = Message::default();
        if m.merge_from_bytes(&msg.message).is_err() || msg.region_epoch.is_none() {
            return self.drop_message(ctx, &msg, DroppedMessage::Malformed);
        }
        // Read before taking the meta lock (a RocksDB get); nothing but this thread creates
        // peers from messages, and a region a split creates meanwhile is caught below.
        let local = match local_state(&ctx.engines.kv, region_id) {
            Ok(local) => local,
            Err(e) => {
                warn!(self.logger, "cannot read region state"; "region_id" => region_id.get(), "err" => %e);
                return self.drop_message(ctx, &msg, DroppedMessage::UnknownRegion);
            }
        };
        let mut meta = ctx.store_meta.lock();
        if meta.region(region_id).is_some() || meta.is_uninitialized(region_id) {
            // Created after the router found no mailbox: deliver it now. The mailbox is
            // registered before the region enters the meta (`store::life`).
            drop(meta);
            let _ = ctx.router.send(region_id, PeerMsg::RaftMessage(Box::new(msg)));
            return;
        }
        if local.as_ref().is_some_and(is_merged_tombstone) {
            // A region merged away here (its range is the target's now, so this comes before
            // the "not split yet" rule): a member still alive elsewhere missed the merge and
            // is told where the region went; anyone else is told it is gone.
            drop(meta);
            let l = local.as_ref().expect("checked");
            if let Some(answer) = merged_answer(l, &msg).or_else(|| tombstone_answer(l, &msg)) {
                let _ = ctx.transport.send(answer);
            }
            return self.drop_message(ctx, &msg, DroppedMessage::Tombstone);
        }
        if meta.overlapping(&msg.start_key, &msg.end_key).is_some() {
            if matches!(
                m.get_msg_type(),
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            ) {
                debug!(self.logger, "keeping an election message for a region not split here yet";
                    "region_id" => region_id.get(), "type" => ?m.get_msg_type());
                meta.keep_pending_msg(msg);
                return;
            }
            drop(meta);
            return self.drop_message(ctx, &msg, DroppedMessage::RegionNotSplitYet);
        }
        if !can_create_peer(&m) {
            drop(meta);
            return self.drop_message(ctx, &msg, DroppedMessage::UnknownRegion);
        }
        if let Some(why) = local.as_ref().and_then(|l| stale_for_local_state(l, &msg)) {
            drop(meta);
            if let Some(answer) = local.as_ref().and_then(|l| tombstone_answer(l, &msg)) {
                let _ = ctx.transport.send(answer);
            }
            return self.drop_message(ctx, &msg, why);
        }
        if meta.uninitialized_count() >= UNINITIALIZED_PEERS_MAX {
            drop(meta);
            return self.drop_message(ctx, &msg, DroppedMessage::PeerLimit);
        }
        let fsms = match life::build_uninitialized(&ctx.fsm_handles(), region_id, to) {
            Ok(fsms) => fsms,
            Err(e) => {
                drop(meta);
                warn!(self.logger, "cannot create a peer"; "region_id" => region_id.get(), "err" => %e);
                return self.drop_message(ctx, &msg, DroppedMessage::UnknownRegion);
            }
        };
        info!(self.logger, "creating a peer for a new region"; "region_id" => region_id.get(),
            "peer_id" => msg.to_peer.as_ref().map_or(0, |p| p.id), "type" => ?m.get_msg_type());
        life::register_regions(&ctx.fsm_handles(), &mut meta, vec![fsms]);
        drop(meta);
        let _ = ctx.router.send(region_id, PeerMsg::RaftMessage(Box::new(msg)));
    }

    fn drop_message<EK: KvEngine, ER: RaftEngine, T>(
        &mut self,
        ctx: &PollContext<EK, ER, T>,
        msg: &RaftMessage,
        why: DroppedMessage,
    ) {
        ctx.stats.record_message_dropped(why);
        debug!(self.logger, "raft message for an unknown region dropped";
            "region_id" => msg.region_id, "why" => why.as_str());
    }
}

/// The region state this store keeps of `region_id`, if any (a tombstone, typically).
fn local_state<EK: KvEngine>(
    kv: &EK,
    region_id: RegionId,
) -> engine_traits::Result<Option<RegionLocalState>> {
    kv.get_msg_cf(CF_RAFT, &keys::region_state_key(region_id))
}

/// Only a message a leader or candidate sends to a peer that has nothing yet may create one:
/// a vote or pre-vote, or a heartbeat that commits nothing (a leader's first contact with a
/// peer it just added). Anything else for an unknown region is stale.
fn can_create_peer(m: &Message) -> bool {
    match m.get_msg_type() {
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
        MessageType::MsgHeartbeat => m.commit == 0,
        _ => false,
    }
}

/// Why a message may not create a peer here, given the region's state on this store: a
/// tombstone from an incarnation at least as new as the message (the message was sent before
/// that peer's removal, or to it), or a live region state (loaded at start-up: the peer
/// exists, this is a race with its destruction).
fn stale_for_local_state(local: &RegionLocalState, msg: &RaftMessage) -> Option<DroppedMessage> {
    if local.state != PeerState::Tombstone as i32 {
        return Some(DroppedMessage::UnknownRegion);
    }
    let region = local.region.as_ref()?;
    let ours = region.region_epoch.unwrap_or_default();
    let theirs = msg.region_epoch.unwrap_or_default();
    let to = msg.to_peer.as_ref()?;
    let old_peer = region.peers.iter().find(|p| p.store_id == to.store_id);
    let to_id = to.id;
    if theirs.conf_ver <= ours.conf_ver || old_peer.is_some_and(|p| p.id >= to_id) {
        Some(DroppedMessage::Tombstone)
    } else {
        None
    }
}

/// A tombstone left by a merge: the region's range went to the target its merge state names.
fn is_merged_tombstone(local: &RegionLocalState) -> bool {
    local.state == PeerState::Tombstone as i32
        && local.merge_state.as_ref().is_some_and(|m| m.target.is_some())
}

/// The answer to a member of a merged region (module doc, case 4): `merge_target`, the region
/// it merged into as its merge recorded it, from the peer the message was for.
fn merged_answer(local: &RegionLocalState, msg: &RaftMessage) -> Option<RaftMessage> {
    let region = local.region.as_ref()?;
    let target = local.merge_state.as_ref()?.target.clone()?;
    let from = msg.from_peer.clone()?;
    find_peer_by_id(region, util::PeerId(from.id))?;
    Some(RaftMessage {
        region_id: msg.region_id,
        from_peer: msg.to_peer.clone(),
        to_peer: Some(from),
        region_epoch: region.region_epoch,
        merge_target: Some(target),
        ..Default::default()
    })
}

/// The answer to a message from a sender that this store's tombstone of the region shows was
/// removed before this store's peer (module doc, case 3): `is_tombstone`, from the peer the
/// message was for, with the tombstone's epoch (the sender believes a newer epoch only).
fn tombstone_answer(local: &RegionLocalState, msg: &RaftMessage) -> Option<RaftMessage> {
    if local.state != PeerState::Tombstone as i32 {
        return None;
    }
    let region = local.region.as_ref()?;
    let ours = region.region_epoch?;
    let theirs = msg.region_epoch?;
    let from = msg.from_peer.clone()?;
    if !is_epoch_stale(&theirs, &ours) || find_peer_by_id(region, util::PeerId(from.id)).is_some() {
        return None;
    }
    Some(RaftMessage {
        region_id: msg.region_id,
        from_peer: msg.to_peer.clone(),
        to_peer: Some(from),
        region_epoch: Some(ours),
        is_tombstone: true,
        ..Default::default()
    })
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;

    fn is_stopped(&self) -> bool {
        false
    }
}
