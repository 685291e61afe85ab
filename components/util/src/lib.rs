//! The small vocabulary every other crate shares: typed ids ([`ids`]), human-readable config
//! values ([`config`]) and logger construction ([`logger`]). It depends on nothing of ours and on
//! no storage or network crate, so anything may depend on it.

pub mod config;
pub mod ids;
pub mod logger;

pub use ids::{ClusterId, LogIndex, PeerId, RegionId, StoreId, Term};
