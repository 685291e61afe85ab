//! Column family names. The KV engine has all of [`ALL_CFS`]; the raft engine keeps everything
//! in [`CF_DEFAULT`]. Names are the on-disk identity of a CF: renaming one loses its data.

/// A column family name; always one of the constants below.
pub type CfName = &'static str;

/// User values (and, in the raft engine, everything).
pub const CF_DEFAULT: CfName = "default";
/// Transaction locks (reserved for the transactional API; raw KV does not use it).
pub const CF_LOCK: CfName = "lock";
/// Transaction commit records (reserved, as [`CF_LOCK`]).
pub const CF_WRITE: CfName = "write";
/// Per-region apply state and region state, written atomically with applied data.
pub const CF_RAFT: CfName = "raft";

/// Every CF of the KV engine, in creation order.
pub const ALL_CFS: &[CfName] = &[CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];
/// The CFs that hold region data: what a region snapshot carries and a region destroy deletes.
pub const DATA_CFS: &[CfName] = &[CF_DEFAULT, CF_LOCK, CF_WRITE];
