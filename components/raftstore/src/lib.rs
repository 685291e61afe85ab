//! The multi-raft core: one raft peer per region, driven by the batch system, persisted in the
//! shared engines. (Being built for issue #3; today: config, callbacks, leader lease.)

pub mod callback;
pub mod config;
pub mod peer;

pub use callback::Callback;
pub use config::Config;
