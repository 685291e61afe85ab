//! How raft messages leave the store. The raftstore defines the trait; the server implements it
//! with batched gRPC streams, the test cluster with in-memory channels and filters.
//!
//! Contract:
//! - `send` MAY buffer; `flush` MUST hand everything buffered so far to the network. The store
//!   calls `flush` at the end of every poll round, after all peers of the round have queued
//!   their messages: once before the round's fsync (leaders' messages) and once after it
//!   (messages that must wait for persistence), so a round's messages to a store travel in at
//!   most two batches.
//! - Snapshots travel apart from the batches, with their files (`send_snapshot`).
//! - `send` MUST NOT block on the network. When the destination's buffer is full or the store
//!   is known unreachable, it returns an error and the message is dropped: raft retransmits,
//!   and the peer reports the target unreachable so raft slows down probing it.

use proto::raft_serverpb::RaftMessage;
use util::StoreId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("store {0} is unreachable")]
    Unreachable(StoreId),
    #[error("send buffer to store {0} is full")]
    Full(StoreId),
    #[error("transport is closed")]
    Closed,
}

/// Called exactly once when a snapshot's sending ends: `true` if the receiver got the
/// message and every file. MUST NOT block (it sends to the peer's mailbox).
pub type SnapshotDone = Box<dyn FnOnce(bool) + Send>;

pub trait Transport: Send + Clone + 'static {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError>;

    /// Sends a `MsgSnapshot` with the snapshot's `gen_` files (named by the raft snapshot's
    /// region, term and index: `snap::SnapKey`), so the receiving store has them as `rev_`
    /// files, checked, before the message reaches its peer. MUST NOT block the caller (the
    /// files may be large): the work happens elsewhere, bounded by
    /// `concurrent-send-snap-limit`, and `done` reports the end.
    fn send_snapshot(&mut self, msg: RaftMessage, done: SnapshotDone);

    fn flush(&mut self);
}

/// The snapshot files a `MsgSnapshot` message names: its key, the files' meta and the region
/// they hold, for a transport to send or receive with it. `None` if the message is not a well-formed region snapshot.
pub fn snapshot_files(
    msg: &RaftMessage,
) -> Option<(crate::snap::SnapKey, proto::raft_serverpb::SnapshotMeta, proto::metapb::Region)> {
    use prost::Message as _;
    use protobuf::Message as _;
    let mut m = raft::eraftpb::Message::default();
    m.merge_from_bytes(&msg.message).ok()?;
    if m.get_msg_type() != raft::eraftpb::MessageType::MsgSnapshot {
        return None;
    }
    let snap = m.get_snapshot();
    let data = proto::raft_serverpb::RaftSnapshotData::decode(snap.get_data()).ok()?;
    let key = crate::peer::snapshot_key(util::RegionId(msg.region_id), snap);
    Some((key, data.meta?, data.region?))
}
