//! What the raftstore needs from the placement driver, as a trait so the raftstore names no
//! gRPC or async type. The server implements it over `pd_client`; the test cluster with a
//! local id allocator.
//!
//! Every method returns at once: the work happens elsewhere (the server spawns it on its
//! runtime), and answers come back through the callback, which may run on any thread and MUST
//! NOT block.

use proto::{metapb, pdpb};

/// Why PD could not answer a request of the raftstore. Both are retryable: the caller (a
/// split) answers its client, which retries later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdError {
    /// PD could not be reached, or did not answer in time.
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    /// PD answered with an error of its own (not bootstrapped, id allocation failed, ...).
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// PD answered something that does not fit the question.
    #[error("answered {got} split ids for {asked} split keys")]
    WrongSplitIdCount { asked: usize, got: usize },
}

/// Answers an id request: one [`pdpb::SplitId`] per split key, or why there are none.
pub type SplitIdsCallback = Box<dyn FnOnce(Result<Vec<pdpb::SplitId>, PdError>) + Send>;

/// A leader's view of its region, for PD's routing table.
#[derive(Debug, Clone)]
pub struct RegionHeartbeat {
    pub region: metapb::Region,
    pub leader: metapb::Peer,
    /// Approximate bytes and keys, `None` when not measured yet (the receiver may estimate).
    pub approximate_size: Option<u64>,
    pub approximate_keys: Option<u64>,
}

pub trait PdHandle: Send + Sync + 'static {
    /// Allocates a new region id and peer ids (one per peer of `region`) for each of `count`
    /// splits of `region`.
    fn ask_batch_split(&self, region: metapb::Region, count: u32, done: SplitIdsCallback);

    /// Tells PD the regions a split produced (the shrunk original and the new ones).
    fn report_batch_split(&self, regions: Vec<metapb::Region>);

    /// Tells PD about a region this store leads. Best effort: dropped when PD is unreachable
    /// (the next periodic heartbeat carries the same news).
    fn region_heartbeat(&self, heartbeat: RegionHeartbeat);
}
