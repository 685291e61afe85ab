//! Region splitting support outside the peer: the `[coprocessor]` thresholds and the split
//! checker worker. The peer's side of a split is `peer::split`; applying it is `apply::split`.

pub mod check;
mod config;

pub use check::{SplitCheckTask, SplitChecker};
pub use config::SplitConfig;
