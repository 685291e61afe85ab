//! The wire protocol of regionstore: this crate owns every message and gRPC
//! service that crosses a process boundary (client <-> store, store <-> PD,
//! store <-> store).
//!
//! The types are generated at build time from the repo-level `proto/` folder,
//! whose `.proto` files are wire-compatible with TiKV's kvproto: same package
//! names, service names, method names, field numbers and enum values, so
//! TiKV's own clients (e.g. `tikv-client`) talk to regionstore unchanged.
//!
//! Invariants:
//! - A field number or enum value, once published, never changes and is never
//!   reused. Renaming a field is fine (names do not travel on the wire).
//! - raft's own `eraftpb` messages are not redeclared. Where kvproto embeds
//!   one (`RaftMessage.message`, `RaftLocalState.hard_state`,
//!   `CommitMergeRequest.entries`), the field is `bytes` holding the encoded
//!   eraftpb message; callers encode/decode it with the `raft` crate's types.
//!   eraftpb's `ConfChangeType` is mirrored as [`metapb::ConfChangeType`].
//! - Each service declares only the methods regionstore serves, because a
//!   tonic server must implement every declared method.
//!
//! Each module holds one protobuf package. Services come with a
//! `<service>_client` and a `<service>_server` submodule (e.g.
//! [`tikvpb::tikv_server::TikvServer`], [`pdpb::pd_client::PdClient`]).

macro_rules! generated_package {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            rustdoc::bare_urls,
            rustdoc::invalid_html_tags,
            rustdoc::broken_intra_doc_links
        )]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        }
    };
}

generated_package!(
    /// Cluster metadata: stores, regions, peers, epochs.
    metapb
);
generated_package!(
    /// Region errors returned to clients (`errorpb.Error`).
    errorpb
);
generated_package!(
    /// Key-value request/response messages and the `Context` they carry.
    kvrpcpb
);
generated_package!(
    /// The store's gRPC service `tikvpb.Tikv`.
    tikvpb
);
generated_package!(
    /// The placement driver's gRPC service `pdpb.PD` and its messages.
    pdpb
);
generated_package!(
    /// The keyspace service `keyspacepb.Keyspace` (served by PD).
    keyspacepb
);
generated_package!(
    /// Store-to-store raft messages and persisted raft/region state.
    raft_serverpb
);
generated_package!(
    /// Commands proposed through raft and their responses.
    raft_cmdpb
);
