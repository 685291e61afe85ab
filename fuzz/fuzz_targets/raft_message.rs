//! A raft message from another store, as the transport and the peer decode it: the
//! `RaftMessage` envelope, the embedded eraftpb message, and for a snapshot the files it names
//! (`raftstore::transport::snapshot_files`). Nothing may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use protobuf::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = proto::tikvpb::BatchRaftMessage::decode(data) {
        for m in &batch.msgs {
            let _ = raftstore::transport::snapshot_files(m);
        }
    }
    if let Ok(msg) = proto::raft_serverpb::RaftMessage::decode(data) {
        let _ = raftstore::transport::snapshot_files(&msg);
        let mut m = raft::eraftpb::Message::default();
        let _ = m.merge_from_bytes(&msg.message);
    }
    if let Ok(chunk) = proto::raft_serverpb::SnapshotChunk::decode(data) {
        if let Some(m) = &chunk.message {
            let _ = raftstore::transport::snapshot_files(m);
        }
    }
});
