//! How raft messages leave the store. The raftstore defines the trait; the server implements it
//! with batched gRPC streams, the test cluster with in-memory channels and filters.
//!
//! Contract:
//! - `send` MAY buffer; `flush` MUST hand everything buffered so far to the network. The store
//!   calls `flush` at the end of every poll round, after all peers of the round have queued
//!   their messages: once before the round's fsync (leaders' messages) and once after it
//!   (messages that must wait for persistence), so a round's messages to a store travel in at
//!   most two batches.
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

pub trait Transport: Send + Clone + 'static {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError>;

    fn flush(&mut self);
}
