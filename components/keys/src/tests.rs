//! Ordering and round-trip properties of the key layout (see the invariants in `lib.rs`).

use super::*;

fn r(id: u64) -> RegionId {
    RegionId(id)
}

fn i(idx: u64) -> LogIndex {
    LogIndex(idx)
}

#[test]
fn log_keys_of_one_region_are_ordered_by_index_and_contiguous() {
    let indexes = [0, 1, 2, 255, 256, 65_535, 1 << 40, u64::MAX - 1, u64::MAX];
    let keys: Vec<_> = indexes.iter().map(|&x| raft_log_key(r(7), i(x))).collect();
    for w in keys.windows(2) {
        assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
    }
    let prefix = raft_log_prefix(r(7));
    for k in &keys {
        assert!(k.starts_with(&prefix));
        assert!(k.as_slice() >= region_raft_prefix(r(7)).as_slice());
        // Invariant 3: the raft state key bounds the log from above.
        assert!(k.as_slice() < raft_state_key(r(7)).as_slice());
    }
    assert!(raft_state_key(r(7)) < apply_state_key(r(7)));
    assert!(apply_state_key(r(7)).as_slice() < region_raft_prefix_end(r(7)).as_slice());
}

#[test]
fn regions_do_not_interleave() {
    let ids = [0, 1, 2, 255, 256, 1 << 32, u64::MAX - 1, u64::MAX];
    for w in ids.windows(2) {
        let (a, b) = (r(w[0]), r(w[1]));
        let last_of_a = region_raft_prefix_end(a);
        assert!(apply_state_key(a).as_slice() < last_of_a.as_slice());
        assert!(raft_log_key(a, i(u64::MAX)).as_slice() < raft_log_key(b, i(0)).as_slice());
        assert!(apply_state_key(a).as_slice() < raft_log_key(b, i(0)).as_slice());
        assert!(last_of_a.as_slice() <= region_raft_prefix(b).as_slice());
        assert!(region_state_key(a) < region_state_key(b));
        assert!(region_meta_prefix_end(a) <= region_meta_prefix(b));
    }
    // The largest id's range still covers its keys and stays below the next key space.
    let max = r(u64::MAX);
    assert!(apply_state_key(max).as_slice() < region_raft_prefix_end(max).as_slice());
    assert!(region_raft_prefix_end(max) <= region_meta_prefix(r(0)));
    assert!(region_state_key(max).as_slice() < region_meta_prefix_end(max).as_slice());
}

#[test]
fn local_keys_sort_before_data_keys() {
    let locals: Vec<Vec<u8>> = vec![
        STORE_IDENT_KEY.to_vec(),
        raft_log_key(r(u64::MAX), i(u64::MAX)).to_vec(),
        apply_state_key(r(u64::MAX)).to_vec(),
        region_state_key(r(u64::MAX)).to_vec(),
        region_meta_prefix_end(r(u64::MAX)).to_vec(),
    ];
    for local in &locals {
        assert!(local.as_slice() >= LOCAL_MIN_KEY);
        assert!(local.as_slice() < LOCAL_MAX_KEY, "{local:?}");
        assert!(local.as_slice() < DATA_MIN_KEY);
        assert!(local.as_slice() < data_key(b"").as_slice());
    }
    assert!(STORE_IDENT_KEY < region_raft_prefix(r(0)).as_slice());
    assert!(LOCAL_MAX_KEY <= DATA_MIN_KEY);
    for user in [&b""[..], b"a", b"\xff\xff\xff"] {
        let k = data_key(user);
        assert!(k.as_slice() >= DATA_MIN_KEY && k.as_slice() < DATA_MAX_KEY);
    }
}

#[test]
fn data_keys_round_trip_and_keep_user_order() {
    for user in [&b""[..], b"a", b"abc", b"\x00", b"\xff"] {
        assert_eq!(origin_key(&data_key(user)).unwrap(), user);
    }
    assert!(data_key(b"a") < data_key(b"ab"));
    assert!(data_key(b"ab") < data_key(b"b"));
    assert!(matches!(origin_key(b"abc"), Err(Error::BadPrefix { kind: "data", .. })));
    assert!(origin_key(b"").is_err());
}

#[test]
fn region_bounds_encode_and_decode() {
    assert_eq!(enc_start_key(b""), DATA_MIN_KEY);
    assert_eq!(enc_end_key(b""), DATA_MAX_KEY);
    assert_eq!(enc_end_key(b"k"), b"zk");
    assert_eq!(origin_end_key(DATA_MAX_KEY).unwrap(), b"");
    assert_eq!(origin_end_key(b"zk").unwrap(), b"k");
    // Every data key of an unbounded region lies inside its encoded range.
    assert!(data_key(b"\xff\xff").as_slice() < enc_end_key(b"").as_slice());
}

#[test]
fn raft_keys_round_trip() {
    for (id, idx) in [(0, 0), (1, 5), (u64::MAX, u64::MAX), (42, 1 << 33)] {
        let key = raft_log_key(r(id), i(idx));
        assert_eq!(decode_raft_log_key(&key).unwrap(), (r(id), i(idx)));
        assert_eq!(decode_region_raft_key(&key).unwrap(), (r(id), RaftKey::Log(i(idx))));
        assert_eq!(
            decode_region_raft_key(&raft_state_key(r(id))).unwrap(),
            (r(id), RaftKey::RaftState)
        );
        assert_eq!(
            decode_region_raft_key(&apply_state_key(r(id))).unwrap(),
            (r(id), RaftKey::ApplyState)
        );
        assert_eq!(decode_region_state_key(&region_state_key(r(id))).unwrap(), r(id));
    }
}

#[test]
fn malformed_keys_are_rejected_with_what_was_wrong() {
    let log = raft_log_key(r(3), i(9));
    assert!(matches!(
        decode_raft_log_key(&log[..log.len() - 1]),
        Err(Error::BadLength { expected: RAFT_LOG_KEY_LEN, .. })
    ));
    assert!(matches!(decode_raft_log_key(&raft_state_key(r(3))), Err(Error::BadSuffix { .. })));
    assert!(matches!(decode_raft_log_key(b"zabc"), Err(Error::BadPrefix { .. })));
    assert!(matches!(decode_region_raft_key(&[0x01, 0x02, 0]), Err(Error::BadLength { .. })));
    let mut bad_suffix = raft_state_key(r(3));
    bad_suffix[REGION_PREFIX_LEN] = 0x09;
    assert!(matches!(
        decode_region_raft_key(&bad_suffix),
        Err(Error::BadSuffix { suffix: 0x09, .. })
    ));
    assert!(matches!(decode_region_state_key(&raft_state_key(r(3))), Err(Error::BadPrefix { .. })));
    let mut long = region_state_key(r(3)).to_vec();
    long.push(0);
    assert!(matches!(decode_region_state_key(&long), Err(Error::BadLength { .. })));
    assert!(matches!(decode_region_state_key(STORE_IDENT_KEY), Err(Error::BadPrefix { .. })));
}
