//! Raftstore errors, in the house's three kinds:
//!
//! - [`Error`] variants up to `ServerIsBusy` are **region errors**: answers to a client's
//!   command that tell it where to retry. They become `errorpb::Error` in exactly one place,
//!   [`Error::into_region_error`].
//!   Errors travel typed (`Result<_, Error>` in every callback) up to the gRPC edge, which
//!   calls `into_region_error` for the client; nothing below the edge builds an `errorpb`.
//! - `Engine` wraps a **storage error**, fatal to the store: the caller logs it with context
//!   and the store stops rather than diverge from its replicas.
//! - Programmer errors are `assert!`s, never values here.

use proto::{errorpb, metapb};
use util::{RegionId, StoreId};

use crate::pd::PdError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// This peer is not the leader; `leader` is the leader it knows of, if any.
    #[error("region {region_id}: not leader (leader hint {leader:?})")]
    NotLeader { region_id: RegionId, leader: Option<metapb::Peer> },
    /// The store hosts no (initialized) peer of this region.
    #[error("region {0} not found on this store")]
    RegionNotFound(RegionId),
    /// The key is outside the region's range.
    #[error("key {key:?} is not in region {}", region.id)]
    KeyNotInRegion { key: Vec<u8>, region: Box<metapb::Region> },
    /// The request's epoch does not match; `current_regions` are what this store knows.
    #[error("epoch not match: {message}")]
    EpochNotMatch { message: String, current_regions: Vec<metapb::Region> },
    /// The request was addressed to another store.
    #[error("request for store {request_store_id} reached store {actual_store_id}")]
    StoreNotMatch { request_store_id: StoreId, actual_store_id: StoreId },
    /// The encoded command exceeds `raft-entry-max-size`.
    #[error("region {region_id}: entry of {entry_size} bytes exceeds the limit")]
    RaftEntryTooLarge { region_id: RegionId, entry_size: u64 },
    /// The proposal's log position was taken by another leader's entry; it was not applied.
    #[error("stale command: its entry was overwritten by a newer leader")]
    StaleCommand,
    /// The command was proposed, but this peer can no longer tell whether it applied: its log
    /// was replaced by a snapshot that may include the entry, or the peer was destroyed while
    /// the entry may still commit on the others. Never answered for a command known not to
    /// have applied (that is `StaleCommand`, `NotLeader`, ...).
    #[error("region {0}: the command's outcome is unknown: it may or may not have applied")]
    Undetermined(RegionId),
    /// A bounded queue is full; retry after a backoff.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// The region is being merged into a neighbour (`peer::merge`): it takes no write until
    /// the merge ends. Retryable: the client refreshes its routing and retries, at the merged
    /// region once the merge committed.
    #[error("region {0} is merging: it takes no proposal until the merge ends")]
    ProposalInMergingMode(RegionId),
    /// The read cannot be served here now: the region is merging, and its range may already
    /// be served by the merge target. Retryable, as `ProposalInMergingMode`.
    #[error("region {region_id}: read not ready: {reason}")]
    ReadIndexNotReady { region_id: RegionId, reason: String },
    /// PD could not answer (split ids); retry later.
    #[error("placement driver: {0}")]
    Pd(#[from] PdError),
    /// The request itself is malformed (no header, mixed read and write, unknown cf...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The storage engine failed; see the module doc.
    #[error("storage: {0}")]
    Engine(#[from] engine_traits::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why a store could not start. Not a region error: the server reports it and exits.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A batch system (raft or apply) refused its config or could not spawn its pollers.
    #[error("batch system: {0}")]
    BatchSystem(#[from] batch_system::Error),
    /// A worker thread could not be spawned.
    #[error("cannot spawn thread {thread}")]
    Spawn {
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The snapshot directory could not be cleaned at start.
    #[error("snapshot files: {0}")]
    Snapshots(#[source] crate::snap::Error),
    /// The regions on disk could not be loaded (corrupt or unreadable state).
    #[error("cannot load regions: {0}")]
    Load(#[from] Error),
}

impl Error {
    /// The region error a client sees. The only place raftstore errors become `errorpb`.
    pub fn into_region_error(self) -> errorpb::Error {
        let message = self.to_string();
        let mut e = errorpb::Error { message, ..Default::default() };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader { region_id: region_id.get(), leader })
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound { region_id: region_id.get() })
            }
            Error::KeyNotInRegion { key, region } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key,
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                })
            }
            Error::EpochNotMatch { current_regions, .. } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch { current_regions })
            }
            Error::StoreNotMatch { request_store_id, actual_store_id } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: request_store_id.get(),
                    actual_store_id: actual_store_id.get(),
                })
            }
            Error::RaftEntryTooLarge { region_id, entry_size } => {
                e.raft_entry_too_large =
                    Some(errorpb::RaftEntryTooLarge { region_id: region_id.get(), entry_size })
            }
            Error::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            Error::Undetermined(_) => {
                e.undetermined_result =
                    Some(errorpb::UndeterminedResult { message: e.message.clone() })
            }
            Error::ServerIsBusy(reason) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy { reason, ..Default::default() })
            }
            Error::ProposalInMergingMode(region_id) => {
                e.proposal_in_merging_mode =
                    Some(errorpb::ProposalInMergingMode { region_id: region_id.get() })
            }
            Error::ReadIndexNotReady { region_id, reason } => {
                e.read_index_not_ready =
                    Some(errorpb::ReadIndexNotReady { reason, region_id: region_id.get() })
            }
            // No dedicated errorpb field: the message carries it, as TiKV does for `Other`.
            Error::Pd(_) | Error::InvalidRequest(_) | Error::Engine(_) => {}
        }
        e
    }
}
