//! The small vocabulary every other crate shares: typed ids ([`ids`]), human-readable config
//! values ([`config`]), logger construction ([`logger`]) and waiting for a condition
//! ([`wait`]). It depends on nothing of ours and on
//! no storage or network crate, so anything may depend on it.

pub mod config;
pub mod ids;
pub mod logger;
pub mod wait;

pub use ids::{ClusterId, LogIndex, PeerId, RegionId, StoreId, Term};
