//! Every request a store or PD decodes from a client, and the states a store decodes from its
//! engines: protobuf decoding of hostile bytes must fail cleanly, never panic or allocate
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fn decode<M: Message + Default>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        // What decodes, encodes (and decodes again to the same message).
        let again = M::decode(m.encode_to_vec().as_slice()).expect("re-decode");
        assert_eq!(again.encode_to_vec(), m.encode_to_vec());
    }
}

fuzz_target!(|data: &[u8]| {
    use proto::{kvrpcpb as kv, pdpb as pd, raft_serverpb as rs};
    decode::<kv::RawGetRequest>(data);
    decode::<kv::RawBatchGetRequest>(data);
    decode::<kv::RawPutRequest>(data);
    decode::<kv::RawBatchPutRequest>(data);
    decode::<kv::RawDeleteRequest>(data);
    decode::<kv::RawScanRequest>(data);
    decode::<kv::RawBatchScanRequest>(data);
    decode::<kv::RawDeleteRangeRequest>(data);
    decode::<kv::RawCasRequest>(data);
    decode::<kv::SplitRegionRequest>(data);
    decode::<pd::RegionHeartbeatRequest>(data);
    decode::<pd::StoreHeartbeatRequest>(data);
    decode::<pd::PutStoreRequest>(data);
    decode::<pd::BootstrapRequest>(data);
    decode::<rs::RegionLocalState>(data);
    decode::<rs::RaftApplyState>(data);
    decode::<rs::SnapshotMeta>(data);
    decode::<rs::RaftSnapshotData>(data);
});
