//! The key layout's decoders on arbitrary bytes (keys read back from the engines): no panic,
//! and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((region, index)) = keys::decode_raft_log_key(data) {
        assert_eq!(&keys::raft_log_key(region, index)[..], data);
    }
    let _ = keys::decode_region_raft_key(data);
    if let Ok(region) = keys::decode_region_state_key(data) {
        assert_eq!(&keys::region_state_key(region)[..], data);
    }
    if let Ok(origin) = keys::origin_key(data) {
        assert_eq!(keys::data_key(origin), data);
    }
    let _ = keys::origin_end_key(data);
    assert_eq!(keys::origin_key(&keys::data_key(data)).ok(), Some(data));
});
