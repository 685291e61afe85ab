//! `StoreFsm`: the store's control FSM. Today it receives raft messages for regions the store
//! has no peer of, and the store tick; peer creation from such messages arrives with the
//! membership and split issues.

use batch_system::{Fsm, Inbox};
use slog::{debug, Logger};

use crate::msg::{StoreMsg, StoreTick};

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
    pub(crate) fn handle(&mut self) -> usize {
        while let Some(msg) = self.inbox.try_recv() {
            match msg {
                StoreMsg::RaftMessage(m) => {
                    // TODO(#5, membership): create the peer (split or conf change target).
                    self.dropped_messages += 1;
                    debug!(self.logger, "raft message for unknown region"; "region_id" => m.region_id, "dropped" => self.dropped_messages);
                }
                StoreMsg::Tick(StoreTick::Heartbeat) => {}
            }
        }
        self.inbox.len()
    }
}

impl Fsm for StoreFsm {
    type Message = StoreMsg;

    fn is_stopped(&self) -> bool {
        false
    }
}
