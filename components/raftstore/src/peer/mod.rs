//! One region's raft peer, split by concern.

pub mod lease;
