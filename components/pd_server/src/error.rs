//! PD's errors, in two kinds that never mix:
//!
//! * [`Error`]: the server cannot start, or its metadata store failed. Reported with what was
//!   being done to what.
//! * [`RpcError`]: a request cannot be served as asked. Mapped to a `pdpb::Error` in the
//!   response header in exactly one place, [`RpcError::to_pb`]; the gRPC status stays OK so
//!   that clients read the header, as they do with TiKV's PD.

use std::net::SocketAddr;

use proto::pdpb;
use util::config::ConfigError;

/// Why the placement driver could not start or keep its metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid PD config: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot open the metadata store: {0}")]
    Open(#[from] engine_rocks::OpenError),
    #[error("metadata store: {0}")]
    Storage(#[from] engine_traits::Error),
    #[error("stored metadata is inconsistent: {what}")]
    Corrupted { what: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot read the bound address: {0}")]
    LocalAddr(std::io::Error),
    #[error("advertise address {addr} is not usable: {reason}")]
    Advertise { addr: SocketAddr, reason: &'static str },
}

/// Why one request was refused. Never fatal to PD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    #[error("request is for cluster {got}, this is cluster {expected}")]
    ClusterIdMismatch { expected: u64, got: u64 },
    #[error("store {0} not found")]
    StoreNotFound(u64),
    #[error("store {0} is a tombstone")]
    StoreTombstone(u64),
    #[error("region {0} not found")]
    RegionNotFound(u64),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An operator request that cannot be carried out as asked.
    #[error(transparent)]
    Operator(#[from] crate::operator::PlanError),
    #[error("region {0} has no running operator")]
    NoOperator(u64),
    #[error("{0} is not supported by this PD")]
    Unsupported(&'static str),
    /// The metadata store failed while serving the request; logged at error level where it
    /// happened.
    #[error("metadata store: {0}")]
    Storage(#[from] engine_traits::Error),
}

impl RpcError {
    pub fn invalid(reason: impl Into<String>) -> RpcError {
        RpcError::Invalid(reason.into())
    }

    /// The wire form, for a response header.
    pub fn to_pb(&self) -> pdpb::Error {
        let kind = match self {
            RpcError::NotBootstrapped => pdpb::ErrorType::NotBootstrapped,
            RpcError::AlreadyBootstrapped => pdpb::ErrorType::AlreadyBootstrapped,
            RpcError::StoreTombstone(_) => pdpb::ErrorType::StoreTombstone,
            RpcError::RegionNotFound(_) => pdpb::ErrorType::RegionNotFound,
            RpcError::Invalid(_) => pdpb::ErrorType::InvalidValue,
            RpcError::ClusterIdMismatch { .. }
            | RpcError::StoreNotFound(_)
            | RpcError::Unsupported(_)
            | RpcError::Operator(_)
            | RpcError::NoOperator(_)
            | RpcError::Storage(_) => pdpb::ErrorType::Unknown,
        };
        pdpb::Error { r#type: kind as i32, message: self.to_string() }
    }
}
