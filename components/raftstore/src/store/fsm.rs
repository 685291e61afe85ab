//! `StoreFsm`: the store's control FSM. It receives raft messages for regions the store has no
//! peer of, and the store tick.
//!
//! A message for an unknown region is, today, always one of:
//! - for a region a split created elsewhere while this store has not applied that split yet:
//!   the message's range overlaps a region here (the one about to split). Election messages
//!   are kept for the region (`StoreMeta::keep_pending_msg`) and handed to it when the split
//!   creates it, so its first election does not wait for a timeout; the rest are dropped
//!   (raft resends appends and heartbeats);
//! - for a region whose range nothing here covers: a peer that membership changes will create
//!   (with a snapshot), or a stale message for a peer destroyed here. Dropped and counted;
//!   creating uninitialized peers arrives with the membership issue.

use batch_system::{Fsm, Inbox};
use engine_traits::{KvEngine, RaftEngine};
use proto::raft_serverpb::RaftMessage;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use slog::{debug, Logger};
use util::RegionId;

use crate::msg::{PeerMsg, StoreMsg, StoreTick};
use crate::store::PollContext;

pub struct StoreFsm {
    inbox: Inbox<StoreMsg>,
    /// Raft messages dropped because no peer of their region exists here.
    dropped_messages: u64,
    logger: Logger,
}

impl StoreFsm {
    pub fn new(inbox: Inbox<StoreMsg>, logger: Logger) -> Self {
        StoreFsm { inbox, dropped_messages: 0, logger }
    }

    /// Handles everything queued; returns the inbox length left (0).
    pub(crate) fn handle<EK: KvEngine, ER: RaftEngine, T>(
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

    fn on_raft_message<EK: KvEngine, ER: RaftEngine, T>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: RaftMessage,
    ) {
        let region_id = RegionId(msg.region_id);
        if msg.to_peer.as_ref().is_none_or(|p| p.store_id != ctx.store_id.get()) {
            return self.drop_message(&msg, "addressed to another store");
        }
        let mut meta = ctx.store_meta.lock();
        if meta.region(region_id).is_some() {
            // Created (by a split) after the router found no mailbox: deliver it now. The
            // mailbox is registered before the region enters the meta.
            drop(meta);
            let _ = ctx.router.send(region_id, PeerMsg::RaftMessage(Box::new(msg)));
            return;
        }
        if meta.overlapping(&msg.start_key, &msg.end_key).is_none() {
            drop(meta);
            return self.drop_message(&msg, "no local region covers its range");
        }
        let mut m = Message::default();
        if m.merge_from_bytes(&msg.message).is_err() {
            drop(meta);
            return self.drop_message(&msg, "undecodable");
        }
        if matches!(m.get_msg_type(), MessageType::MsgRequestVote | MessageType::MsgRequestPreVote)
        {
            debug!(self.logger, "keeping an election message for a region not split here yet";
                "region_id" => region_id.get(), "type" => ?m.get_msg_type());
            meta.keep_pending_msg(msg);
        } else {
            drop(meta);
            self.drop_message(&msg, "its region is not split here yet");
        }
    }

    fn drop_message(&mut self, msg: &RaftMessage, why: &str) {
        self.dropped_messages += 1;
        debug!(self.logger, "raft message for an unknown region dropped";
            "region_id" => msg.region_id, "why" => why, "dropped" => self.dropped_messages);
    }
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;

    fn is_stopped(&self) -> bool {
        false
    }
}
