//! The store's network edge: TiKV's `tikvpb.Tikv` raw KV service over the raftstore, the
//! batched gRPC raft transport, the node lifecycle (identity, PD registration, bootstrap of
//! the first region, heartbeats) and the status port (`/metrics`, `/status`). Async (tokio)
//! lives here and above, never below.

pub mod fault;
pub mod latch;
pub mod metrics;
pub mod node;
pub mod pd_worker;
pub mod raft_client;
mod raw;
pub mod service;
pub mod status;
pub mod storage;

pub use node::{Node, NodeConfig};
pub use raft_client::RaftClient;
pub use service::Service;
pub use storage::{Limits, Storage};
