//! Test support for the raftstore: N stores in one process, each with its own RocksDB
//! directories, connected by an in-memory transport with filters.
//!
//! The stores run the same code as the server (`raftstore::StoreSystem` over real RocksDB
//! engines); only the transport differs. Helpers wait for conditions with deadlines, never
//! with fixed sleeps.

mod cluster;
mod filter;
pub mod load;
mod pd;
mod transport;
pub mod util;

pub use cluster::{to_response, Cluster, Engines, ReadResult, Reply};
pub use filter::{
    msg_type, DelayFilter, DropPacketFilter, Filter, IsolateStore, MessageTypeFilter,
    PartitionFilter, RegionFilter, Verdict,
};
pub use pd::TestPd;
pub use transport::{Hub, SimTransport};
