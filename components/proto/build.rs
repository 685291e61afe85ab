//! Compiles the repo-level `proto/` folder into Rust (messages, gRPC clients
//! and servers) at build time.
//!
//! Invariant: no `protoc` is needed. `protox` parses the `.proto` files into a
//! `FileDescriptorSet` in pure Rust and `tonic-prost-build` generates code
//! from that set, so a plain `cargo build` works on a machine with no
//! protobuf toolchain.

use std::path::PathBuf;

/// Every `.proto` file of the protocol, compiled together so cross-package
/// references (`metapb.Region`, ...) resolve to one Rust type each.
const PROTO_FILES: &[&str] = &[
    "metapb.proto",
    "errorpb.proto",
    "kvrpcpb.proto",
    "raft_serverpb.proto",
    "raft_cmdpb.proto",
    "pdpb.proto",
    "keyspacepb.proto",
    "tikvpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../../proto");
    // Cargo scans a directory given here recursively, so any edit, added or
    // removed file under proto/ triggers regeneration.
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files: Vec<PathBuf> = PROTO_FILES.iter().map(|f| proto_dir.join(f)).collect();
    let descriptors = protox::compile(&files, [&proto_dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
