//! Transport filters: decide per raft message whether it is delivered, dropped or delayed.

use std::collections::HashSet;
use std::time::Duration;

use proto::raft_serverpb::RaftMessage;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    Delay(Duration),
}

/// A rule on the in-memory transport. `from_store` is the sending store.
pub trait Filter: Send + Sync {
    fn verdict(&self, from_store: u64, msg: &RaftMessage) -> Verdict;
}

fn to_store(msg: &RaftMessage) -> u64 {
    msg.to_peer.as_ref().map_or(0, |p| p.store_id)
}

/// The raft message type inside a `RaftMessage`.
pub fn msg_type(msg: &RaftMessage) -> Option<MessageType> {
    let mut m = Message::default();
    m.merge_from_bytes(&msg.message).ok()?;
    Some(m.get_msg_type())
}

/// Drops each message with probability `percent / 100`.
pub struct DropPacketFilter {
    pub percent: u32,
}

impl Filter for DropPacketFilter {
    fn verdict(&self, _from: u64, _msg: &RaftMessage) -> Verdict {
        if rand::random::<u32>() % 100 < self.percent {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Cuts the stores into two sides; messages between the sides are dropped.
pub struct PartitionFilter {
    left: HashSet<u64>,
    right: HashSet<u64>,
}

impl PartitionFilter {
    pub fn new(left: &[u64], right: &[u64]) -> Self {
        PartitionFilter {
            left: left.iter().copied().collect(),
            right: right.iter().copied().collect(),
        }
    }
}

impl Filter for PartitionFilter {
    fn verdict(&self, from: u64, msg: &RaftMessage) -> Verdict {
        let to = to_store(msg);
        let crosses = (self.left.contains(&from) && self.right.contains(&to))
            || (self.right.contains(&from) && self.left.contains(&to));
        if crosses {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Drops everything from or to one store.
pub struct IsolateStore(pub u64);

impl Filter for IsolateStore {
    fn verdict(&self, from: u64, msg: &RaftMessage) -> Verdict {
        if from == self.0 || to_store(msg) == self.0 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Drops the messages of one region, optionally only those of one raft type, optionally only
/// those sent to one store.
pub struct RegionFilter {
    pub region_id: u64,
    pub msg_type: Option<MessageType>,
    pub to_store: Option<u64>,
}

impl Filter for RegionFilter {
    fn verdict(&self, _from: u64, msg: &RaftMessage) -> Verdict {
        let hit = msg.region_id == self.region_id
            && self.to_store.is_none_or(|s| s == to_store(msg))
            && self.msg_type.is_none_or(|t| msg_type(msg) == Some(t));
        if hit {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Drops every message of one raft type.
pub struct MessageTypeFilter(pub MessageType);

impl Filter for MessageTypeFilter {
    fn verdict(&self, _from: u64, msg: &RaftMessage) -> Verdict {
        if msg_type(msg) == Some(self.0) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Delays every message sent to `to_store` (all stores if `None`) by `delay`.
pub struct DelayFilter {
    pub delay: Duration,
    pub to_store: Option<u64>,
}

impl Filter for DelayFilter {
    fn verdict(&self, _from: u64, msg: &RaftMessage) -> Verdict {
        if self.to_store.is_none_or(|s| s == to_store(msg)) {
            Verdict::Delay(self.delay)
        } else {
            Verdict::Pass
        }
    }
}
