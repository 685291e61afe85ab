//! Wire-compatibility tests: our generated types must produce exactly the bytes
//! kvproto's field numbers and enum values prescribe.
//!
//! Expected encodings are built by hand with the tiny encoder below (written
//! from the protobuf encoding spec, independent of prost), then compared with
//! prost's output and decoded back.

use prost::Message;
use proto::{errorpb, keyspacepb, kvrpcpb, metapb, pdpb, raft_cmdpb, raft_serverpb};

// ---------------------------------------------------------------------------
// A hand-written protobuf encoder/decoder, just enough for these tests.

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes a varint field (uint64, uint32, bool, enum).
fn f_varint(field: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(field << 3 | WIRE_VARINT, &mut out);
    varint(v, &mut out);
    out
}

/// Encodes a length-delimited field (bytes, string, sub-message).
fn f_len(field: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(field << 3 | WIRE_LEN, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint longer than 10 bytes at {pos}");
}

/// The top-level field numbers present in an encoded message, sorted.
fn field_numbers(buf: &[u8]) -> Vec<u64> {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos);
        match key & 7 {
            WIRE_VARINT => {
                read_varint(buf, &mut pos);
            }
            WIRE_FIXED64 => pos += 8,
            WIRE_LEN => {
                let len = read_varint(buf, &mut pos) as usize;
                pos += len;
            }
            WIRE_FIXED32 => pos += 4,
            other => panic!("unexpected wire type {other}"),
        }
        fields.push(key >> 3);
    }
    assert_eq!(pos, buf.len(), "truncated message");
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// Asserts that `msg` encodes to `expected` and decodes back to itself.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
    let encoded = msg.encode_to_vec();
    assert_eq!(encoded, expected, "encoding of {msg:?}");
    let decoded = M::decode(expected).expect("hand-encoded bytes must decode");
    assert_eq!(&decoded, msg);
}

// ---------------------------------------------------------------------------
// Shared fixtures.

fn epoch() -> metapb::RegionEpoch {
    metapb::RegionEpoch { conf_ver: 2, version: 3 }
}

fn epoch_bytes() -> Vec<u8> {
    cat(&[f_varint(1, 2), f_varint(2, 3)])
}

fn learner_peer() -> metapb::Peer {
    metapb::Peer { id: 11, store_id: 4, role: metapb::PeerRole::Learner as i32, is_witness: true }
}

fn learner_peer_bytes() -> Vec<u8> {
    cat(&[f_varint(1, 11), f_varint(2, 4), f_varint(3, 1), f_varint(4, 1)])
}

fn region() -> metapb::Region {
    metapb::Region {
        id: 7,
        start_key: b"a".to_vec(),
        end_key: b"m".to_vec(),
        region_epoch: Some(epoch()),
        peers: vec![learner_peer()],
        is_in_flashback: false,
        flashback_start_ts: 0,
    }
}

fn region_bytes() -> Vec<u8> {
    cat(&[
        f_varint(1, 7),
        f_len(2, b"a"),
        f_len(3, b"m"),
        f_len(4, &epoch_bytes()),
        f_len(5, &learner_peer_bytes()),
    ])
}

// ---------------------------------------------------------------------------
// tikvpb.Tikv messages.

#[test]
fn tikv_raw_get_request_matches_hand_encoding() {
    let ctx = kvrpcpb::Context {
        region_id: 7,
        region_epoch: Some(epoch()),
        peer: Some(learner_peer()),
        term: 9,
        priority: kvrpcpb::CommandPri::High as i32,
        api_version: kvrpcpb::ApiVersion::V2 as i32,
        keyspace_id: 5,
        ..Default::default()
    };
    let req =
        kvrpcpb::RawGetRequest { context: Some(ctx), key: b"k".to_vec(), cf: "default".into() };

    let ctx_bytes = cat(&[
        f_varint(1, 7),
        f_len(2, &epoch_bytes()),
        f_len(3, &learner_peer_bytes()),
        f_varint(5, 9),
        f_varint(6, 2),
        // Field 21 needs a two-byte key: (21 << 3) = 168 = 0xa8 0x01.
        f_varint(21, 2),
        f_varint(32, 5),
    ]);
    assert_eq!(&ctx_bytes[ctx_bytes.len() - 6..ctx_bytes.len() - 3], &[0xa8, 0x01, 0x02]);
    let expected = cat(&[f_len(1, &ctx_bytes), f_len(2, b"k"), f_len(3, b"default")]);
    assert_wire(&req, &expected);
}

#[test]
fn tikv_raw_get_response_with_not_leader_matches_hand_encoding() {
    let resp = kvrpcpb::RawGetResponse {
        region_error: Some(errorpb::Error {
            message: "not leader".into(),
            not_leader: Some(errorpb::NotLeader { region_id: 7, leader: Some(learner_peer()) }),
            ..Default::default()
        }),
        error: String::new(),
        value: b"v".to_vec(),
        not_found: true,
    };
    let not_leader = cat(&[f_varint(1, 7), f_len(2, &learner_peer_bytes())]);
    let region_error = cat(&[f_len(1, b"not leader"), f_len(2, &not_leader)]);
    let expected = cat(&[f_len(1, &region_error), f_len(3, b"v"), f_varint(4, 1)]);
    assert_wire(&resp, &expected);
}

#[test]
fn tikv_raw_request_field_numbers_match_the_client_table() {
    let ctx = || Some(kvrpcpb::Context { region_id: 1, ..Default::default() });
    let k = || b"k".to_vec();
    let pair = kvrpcpb::KvPair { error: None, key: k(), value: k(), commit_ts: 0 };

    let put = kvrpcpb::RawPutRequest {
        context: ctx(),
        key: k(),
        value: k(),
        cf: "c".into(),
        ttl: 1,
        for_cas: true,
    };
    assert_eq!(field_numbers(&put.encode_to_vec()), [1, 2, 3, 4, 5, 6]);

    let batch_put = kvrpcpb::RawBatchPutRequest {
        context: ctx(),
        pairs: vec![pair.clone()],
        cf: "c".into(),
        ttl: 1,
        for_cas: true,
        ttls: vec![5],
    };
    assert_eq!(field_numbers(&batch_put.encode_to_vec()), [1, 2, 3, 4, 5, 6]);
    assert_eq!(field_numbers(&pair.encode_to_vec()), [2, 3]);

    let scan = kvrpcpb::RawScanRequest {
        context: ctx(),
        start_key: k(),
        limit: 3,
        key_only: true,
        cf: "c".into(),
        reverse: true,
        end_key: k(),
    };
    assert_eq!(field_numbers(&scan.encode_to_vec()), [1, 2, 3, 4, 5, 6, 7]);

    let cas = kvrpcpb::RawCasRequest {
        context: ctx(),
        key: k(),
        value: k(),
        previous_not_exist: true,
        previous_value: k(),
        cf: "c".into(),
        ttl: 1,
    };
    assert_eq!(field_numbers(&cas.encode_to_vec()), [1, 2, 3, 4, 5, 6, 7]);

    let cas_resp = kvrpcpb::RawCasResponse {
        region_error: Some(Default::default()),
        error: "e".into(),
        succeed: true,
        previous_not_exist: true,
        previous_value: k(),
    };
    assert_eq!(field_numbers(&cas_resp.encode_to_vec()), [1, 2, 3, 4, 5]);
}

#[test]
fn tikv_batch_scan_and_admin_field_numbers_match_the_client_table() {
    let ctx = || Some(kvrpcpb::Context { region_id: 1, ..Default::default() });
    let k = || b"k".to_vec();
    let batch_scan = kvrpcpb::RawBatchScanRequest {
        context: ctx(),
        ranges: vec![kvrpcpb::KeyRange { start_key: k(), end_key: k() }],
        each_limit: 1,
        key_only: true,
        cf: "c".into(),
        reverse: true,
    };
    assert_eq!(field_numbers(&batch_scan.encode_to_vec()), [1, 2, 3, 4, 5, 6]);

    let scan_lock = kvrpcpb::ScanLockRequest {
        context: ctx(),
        max_version: 1,
        start_key: k(),
        limit: 1,
        end_key: k(),
    };
    assert_eq!(field_numbers(&scan_lock.encode_to_vec()), [1, 2, 3, 4, 5]);

    let split = kvrpcpb::SplitRegionRequest {
        context: ctx(),
        split_key: k(),
        split_keys: vec![k()],
        is_raw_kv: true,
    };
    assert_eq!(field_numbers(&split.encode_to_vec()), [1, 2, 3, 4]);
    let split_resp = kvrpcpb::SplitRegionResponse { regions: vec![region()], ..Default::default() };
    assert_eq!(field_numbers(&split_resp.encode_to_vec()), [4]);
}

#[test]
fn errorpb_variants_use_kvproto_field_numbers() {
    macro_rules! only {
        ($field:ident) => {
            errorpb::Error { $field: Some(Default::default()), ..Default::default() }
        };
    }
    let variants: [(u64, errorpb::Error); 21] = [
        (2, only!(not_leader)),
        (3, only!(region_not_found)),
        (4, only!(key_not_in_region)),
        (5, only!(epoch_not_match)),
        (6, only!(server_is_busy)),
        (7, only!(stale_command)),
        (8, only!(store_not_match)),
        (9, only!(raft_entry_too_large)),
        (10, only!(max_timestamp_not_synced)),
        (11, only!(read_index_not_ready)),
        (12, only!(proposal_in_merging_mode)),
        (13, only!(data_is_not_ready)),
        (14, only!(region_not_initialized)),
        (15, only!(disk_full)),
        (16, only!(recovery_in_progress)),
        (17, only!(flashback_in_progress)),
        (18, only!(flashback_not_prepared)),
        (19, only!(is_witness)),
        (20, only!(mismatch_peer_id)),
        (21, only!(bucket_version_not_match)),
        (22, only!(undetermined_result)),
    ];
    for (field, err) in variants {
        // An empty sub-message is its key followed by a zero length.
        assert_wire(&err, &f_len(field, &[]));
    }

    let epoch_not_match = errorpb::Error {
        epoch_not_match: Some(errorpb::EpochNotMatch { current_regions: vec![region()] }),
        ..Default::default()
    };
    assert_wire(&epoch_not_match, &f_len(5, &f_len(1, &region_bytes())));

    let store_not_match = errorpb::StoreNotMatch { request_store_id: 1, actual_store_id: 2 };
    assert_wire(&store_not_match, &cat(&[f_varint(1, 1), f_varint(2, 2)]));
}

// ---------------------------------------------------------------------------
// pdpb.PD messages.

fn pd_header() -> pdpb::RequestHeader {
    pdpb::RequestHeader { cluster_id: 42, sender_id: 1 }
}

fn pd_header_bytes() -> Vec<u8> {
    cat(&[f_varint(1, 42), f_varint(2, 1)])
}

#[test]
fn pd_get_region_round_trips_with_hand_encoding() {
    let req = pdpb::GetRegionRequest {
        header: Some(pd_header()),
        region_key: b"b".to_vec(),
        need_buckets: true,
    };
    let expected = cat(&[f_len(1, &pd_header_bytes()), f_len(2, b"b"), f_varint(3, 1)]);
    assert_wire(&req, &expected);

    let resp = pdpb::GetRegionResponse {
        header: Some(pdpb::ResponseHeader {
            cluster_id: 42,
            error: Some(pdpb::Error {
                r#type: pdpb::ErrorType::RegionNotFound as i32,
                message: "x".into(),
            }),
        }),
        region: Some(region()),
        leader: Some(learner_peer()),
        down_peers: vec![],
        pending_peers: vec![learner_peer()],
    };
    let header = cat(&[f_varint(1, 42), f_len(2, &cat(&[f_varint(1, 6), f_len(2, b"x")]))]);
    let expected = cat(&[
        f_len(1, &header),
        f_len(2, &region_bytes()),
        f_len(3, &learner_peer_bytes()),
        f_len(6, &learner_peer_bytes()),
    ]);
    assert_wire(&resp, &expected);
}

#[test]
fn pd_members_tso_and_store_messages_use_kvproto_numbers() {
    let member = pdpb::Member {
        name: "pd".into(),
        member_id: 3,
        peer_urls: vec!["p".into()],
        client_urls: vec!["c".into()],
        ..Default::default()
    };
    let member_bytes = cat(&[f_len(1, b"pd"), f_varint(2, 3), f_len(3, b"p"), f_len(4, b"c")]);
    let members = pdpb::GetMembersResponse {
        header: Some(pdpb::ResponseHeader { cluster_id: 42, error: None }),
        members: vec![member.clone()],
        leader: Some(member),
        ..Default::default()
    };
    let expected =
        cat(&[f_len(1, &f_varint(1, 42)), f_len(2, &member_bytes), f_len(3, &member_bytes)]);
    assert_wire(&members, &expected);

    let tso = pdpb::TsoResponse {
        header: None,
        count: 4,
        timestamp: Some(pdpb::Timestamp { physical: 100, logical: 7, suffix_bits: 1 }),
    };
    let ts = cat(&[f_varint(1, 100), f_varint(2, 7), f_varint(3, 1)]);
    assert_wire(&tso, &cat(&[f_varint(2, 4), f_len(3, &ts)]));

    let store = metapb::Store {
        id: 4,
        address: "s".into(),
        state: metapb::StoreState::Tombstone as i32,
        labels: vec![metapb::StoreLabel { key: "engine".into(), value: "tiflash".into() }],
        node_state: metapb::NodeState::Removed as i32,
        ..Default::default()
    };
    let label = cat(&[f_len(1, b"engine"), f_len(2, b"tiflash")]);
    let expected =
        cat(&[f_varint(1, 4), f_len(2, b"s"), f_varint(3, 2), f_len(4, &label), f_varint(13, 3)]);
    assert_wire(&store, &expected);
}

#[test]
fn pd_heartbeat_messages_use_kvproto_numbers() {
    let hb = pdpb::RegionHeartbeatRequest {
        header: Some(pd_header()),
        region: Some(region()),
        leader: Some(learner_peer()),
        down_peers: vec![pdpb::PeerStats { peer: Some(learner_peer()), down_seconds: 1 }],
        pending_peers: vec![learner_peer()],
        bytes_written: 1,
        bytes_read: 1,
        keys_written: 1,
        keys_read: 1,
        approximate_size: 1,
        interval: Some(pdpb::TimeInterval { start_timestamp: 1, end_timestamp: 2 }),
        approximate_keys: 1,
        term: 1,
        query_stats: Some(Default::default()),
        cpu_usage: 1,
        approximate_kv_size: 1,
    };
    let expected: Vec<u64> = (1..=18).filter(|f| *f != 11 && *f != 15).collect();
    assert_eq!(field_numbers(&hb.encode_to_vec()), expected);

    let resp = pdpb::RegionHeartbeatResponse {
        header: Some(Default::default()),
        change_peer: Some(pdpb::ChangePeer {
            peer: Some(learner_peer()),
            change_type: metapb::ConfChangeType::AddLearnerNode as i32,
        }),
        transfer_leader: Some(Default::default()),
        region_id: 7,
        region_epoch: Some(epoch()),
        target_peer: Some(learner_peer()),
        merge: Some(Default::default()),
        split_region: Some(Default::default()),
        change_peer_v2: Some(Default::default()),
        switch_witnesses: Some(Default::default()),
    };
    assert_eq!(field_numbers(&resp.encode_to_vec()), (1..=10).collect::<Vec<_>>());
    let change_peer = resp.change_peer.as_ref().map(Message::encode_to_vec);
    assert_eq!(change_peer, Some(cat(&[f_len(1, &learner_peer_bytes()), f_varint(2, 2)])));

    let split_ids = pdpb::AskBatchSplitResponse {
        header: None,
        ids: vec![pdpb::SplitId { new_region_id: 9, new_peer_ids: vec![10, 11] }],
    };
    // proto3 packs repeated scalars: one length-delimited run of varints.
    let split_id = cat(&[f_varint(1, 9), f_len(2, &[10, 11])]);
    assert_wire(&split_ids, &f_len(2, &split_id));
}

// ---------------------------------------------------------------------------
// keyspacepb.Keyspace messages.

#[test]
fn keyspace_load_round_trips_with_hand_encoding() {
    let req = keyspacepb::LoadKeyspaceRequest { header: Some(pd_header()), name: "DEFAULT".into() };
    assert_wire(&req, &cat(&[f_len(1, &pd_header_bytes()), f_len(2, b"DEFAULT")]));

    let resp = keyspacepb::LoadKeyspaceResponse {
        header: Some(pdpb::ResponseHeader { cluster_id: 42, error: None }),
        keyspace: Some(keyspacepb::KeyspaceMeta {
            id: 300,
            name: "ks".into(),
            state: keyspacepb::KeyspaceState::Archived as i32,
            created_at: 1,
            state_changed_at: 2,
            config: Default::default(),
        }),
    };
    // 300 = 0b1_0010_1100 -> varint 0xac 0x02.
    let meta =
        cat(&[f_varint(1, 300), f_len(2, b"ks"), f_varint(3, 2), f_varint(4, 1), f_varint(5, 2)]);
    assert_eq!(&meta[..3], &[0x08, 0xac, 0x02]);
    assert_wire(&resp, &cat(&[f_len(1, &f_varint(1, 42)), f_len(2, &meta)]));
}

// ---------------------------------------------------------------------------
// raft_cmdpb / raft_serverpb.

#[test]
fn raft_cmd_request_header_and_batch_split_match_hand_encoding() {
    let cmd = raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader {
            region_id: 7,
            peer: Some(learner_peer()),
            region_epoch: Some(epoch()),
            term: 6,
            ..Default::default()
        }),
        requests: vec![],
        admin_request: Some(raft_cmdpb::AdminRequest {
            cmd_type: raft_cmdpb::AdminCmdType::BatchSplit as i32,
            splits: Some(raft_cmdpb::BatchSplitRequest {
                requests: vec![raft_cmdpb::SplitRequest {
                    split_key: b"g".to_vec(),
                    new_region_id: 8,
                    new_peer_ids: vec![12],
                    ..Default::default()
                }],
                right_derive: true,
                share_source_region_size: false,
            }),
            ..Default::default()
        }),
        status_request: None,
    };
    let header = cat(&[
        f_varint(1, 7),
        f_len(2, &learner_peer_bytes()),
        f_len(5, &epoch_bytes()),
        f_varint(6, 6),
    ]);
    let split = cat(&[f_len(1, b"g"), f_varint(2, 8), f_len(3, &[12])]);
    let splits = cat(&[f_len(1, &split), f_varint(2, 1)]);
    let admin = cat(&[f_varint(1, 10), f_len(10, &splits)]);
    assert_wire(&cmd, &cat(&[f_len(1, &header), f_len(3, &admin)]));
}

#[test]
fn raft_cmd_put_request_matches_hand_encoding() {
    let req = raft_cmdpb::Request {
        cmd_type: raft_cmdpb::CmdType::Put as i32,
        put: Some(raft_cmdpb::PutRequest {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }),
        ..Default::default()
    };
    let put = cat(&[f_len(1, b"default"), f_len(2, b"k"), f_len(3, b"v")]);
    assert_wire(&req, &cat(&[f_varint(1, 3), f_len(4, &put)]));
}

/// A stand-in for raft's `eraftpb.HardState`, declared from the eraftpb
/// field numbers (term = 1, vote = 2, commit = 3).
#[derive(Clone, PartialEq, prost::Message)]
struct HardStateMirror {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    vote: u64,
    #[prost(uint64, tag = "3")]
    commit: u64,
}

/// kvproto's `RaftLocalState` as kvproto declares it, with a nested message.
#[derive(Clone, PartialEq, prost::Message)]
struct RaftLocalStateNested {
    #[prost(message, optional, tag = "1")]
    hard_state: Option<HardStateMirror>,
    #[prost(uint64, tag = "2")]
    last_index: u64,
}

#[test]
fn bytes_embedded_hard_state_is_wire_identical_to_a_nested_message() {
    let hard_state = cat(&[f_varint(1, 1), f_varint(2, 2), f_varint(3, 3)]);
    assert_eq!(hard_state, [0x08, 0x01, 0x10, 0x02, 0x18, 0x03]);

    let ours = raft_serverpb::RaftLocalState { hard_state: hard_state.clone(), last_index: 5 };
    let expected = [0x0a, 0x06, 0x08, 0x01, 0x10, 0x02, 0x18, 0x03, 0x10, 0x05];
    assert_wire(&ours, &expected);

    let nested = RaftLocalStateNested {
        hard_state: Some(HardStateMirror { term: 1, vote: 2, commit: 3 }),
        last_index: 5,
    };
    assert_eq!(nested.encode_to_vec(), expected);
    let ours_as_nested =
        RaftLocalStateNested::decode(ours.encode_to_vec().as_slice()).expect("decodes as nested");
    assert_eq!(ours_as_nested, nested);
}

#[test]
fn raft_message_and_commit_merge_embed_eraftpb_as_bytes() {
    let msg = raft_serverpb::RaftMessage {
        region_id: 7,
        from_peer: Some(learner_peer()),
        to_peer: Some(learner_peer()),
        message: vec![0x08, 0x03],
        region_epoch: Some(epoch()),
        is_tombstone: true,
        start_key: b"a".to_vec(),
        end_key: b"m".to_vec(),
        merge_target: Some(region()),
        extra_msg: Some(raft_serverpb::ExtraMessage {
            r#type: raft_serverpb::ExtraMessageType::MsgHibernateRequest as i32,
            ..Default::default()
        }),
        extra_ctx: b"x".to_vec(),
        disk_usage: 1,
    };
    assert_eq!(field_numbers(&msg.encode_to_vec()), (1..=12).collect::<Vec<_>>());
    let batch = proto::tikvpb::BatchRaftMessage { msgs: vec![msg.clone()] };
    assert_wire(&batch, &f_len(1, &msg.encode_to_vec()));

    // Repeated eraftpb.Entry and repeated bytes share one encoding.
    let merge = raft_cmdpb::CommitMergeRequest {
        source: None,
        commit: 9,
        entries: vec![vec![0x08, 0x01], vec![]],
        source_state: None,
    };
    assert_wire(&merge, &cat(&[f_varint(2, 9), f_len(3, &[0x08, 0x01]), f_len(3, &[])]));
}

#[test]
fn persisted_states_use_kvproto_numbers() {
    let apply = raft_serverpb::RaftApplyState {
        applied_index: 1,
        last_commit_index: 3,
        commit_index: 4,
        commit_term: 5,
        truncated_state: Some(raft_serverpb::RaftTruncatedState { index: 2, term: 1 }),
    };
    assert_eq!(field_numbers(&apply.encode_to_vec()), [1, 2, 3, 4, 5]);
    let decoded = raft_serverpb::RaftApplyState::decode(
        cat(&[
            f_varint(1, 1),
            f_len(2, &cat(&[f_varint(1, 2), f_varint(2, 1)])),
            f_varint(3, 3),
            f_varint(4, 4),
            f_varint(5, 5),
        ])
        .as_slice(),
    )
    .expect("decodes");
    assert_eq!(decoded, apply);

    let state = raft_serverpb::RegionLocalState {
        state: raft_serverpb::PeerState::Tombstone as i32,
        region: Some(region()),
        merge_state: Some(raft_serverpb::MergeState { min_index: 1, target: None, commit: 2 }),
        ..Default::default()
    };
    let merge_state = cat(&[f_varint(1, 1), f_varint(3, 2)]);
    assert_wire(&state, &cat(&[f_varint(1, 2), f_len(2, &region_bytes()), f_len(3, &merge_state)]));

    let ident = raft_serverpb::StoreIdent {
        cluster_id: 1,
        store_id: 2,
        api_version: kvrpcpb::ApiVersion::V2 as i32,
    };
    assert_wire(&ident, &cat(&[f_varint(1, 1), f_varint(2, 2), f_varint(3, 2)]));
}

#[test]
fn enum_values_match_kvproto() {
    assert_eq!(metapb::StoreState::Up as i32, 0);
    assert_eq!(metapb::StoreState::Offline as i32, 1);
    assert_eq!(metapb::StoreState::Tombstone as i32, 2);
    assert_eq!(metapb::NodeState::Serving as i32, 1);
    assert_eq!(metapb::NodeState::Removed as i32, 3);
    assert_eq!(metapb::PeerRole::Voter as i32, 0);
    assert_eq!(metapb::PeerRole::Learner as i32, 1);
    assert_eq!(metapb::PeerRole::IncomingVoter as i32, 2);
    assert_eq!(metapb::PeerRole::DemotingVoter as i32, 3);
    // Mirrors eraftpb.ConfChangeType.
    assert_eq!(metapb::ConfChangeType::AddNode as i32, 0);
    assert_eq!(metapb::ConfChangeType::RemoveNode as i32, 1);
    assert_eq!(metapb::ConfChangeType::AddLearnerNode as i32, 2);

    assert_eq!(kvrpcpb::ApiVersion::V1 as i32, 0);
    assert_eq!(kvrpcpb::ApiVersion::V1ttl as i32, 1);
    assert_eq!(kvrpcpb::ApiVersion::V2 as i32, 2);
    assert_eq!(kvrpcpb::CommandPri::Low as i32, 1);
    assert_eq!(kvrpcpb::CommandPri::High as i32, 2);
    assert_eq!(kvrpcpb::Op::Rollback as i32, 3);
    assert_eq!(kvrpcpb::Op::PessimisticLock as i32, 5);

    assert_eq!(raft_cmdpb::CmdType::Get as i32, 1);
    assert_eq!(raft_cmdpb::CmdType::Put as i32, 3);
    assert_eq!(raft_cmdpb::CmdType::Delete as i32, 4);
    assert_eq!(raft_cmdpb::CmdType::Snap as i32, 5);
    assert_eq!(raft_cmdpb::CmdType::DeleteRange as i32, 7);
    assert_eq!(raft_cmdpb::CmdType::ReadIndex as i32, 9);
    assert_eq!(raft_cmdpb::AdminCmdType::ChangePeer as i32, 1);
    assert_eq!(raft_cmdpb::AdminCmdType::CompactLog as i32, 3);
    assert_eq!(raft_cmdpb::AdminCmdType::TransferLeader as i32, 4);
    assert_eq!(raft_cmdpb::AdminCmdType::PrepareMerge as i32, 7);
    assert_eq!(raft_cmdpb::AdminCmdType::CommitMerge as i32, 8);
    assert_eq!(raft_cmdpb::AdminCmdType::RollbackMerge as i32, 9);
    assert_eq!(raft_cmdpb::AdminCmdType::BatchSplit as i32, 10);
    assert_eq!(raft_cmdpb::AdminCmdType::ChangePeerV2 as i32, 11);
    assert_eq!(raft_cmdpb::StatusCmdType::RegionLeader as i32, 1);
    assert_eq!(raft_cmdpb::StatusCmdType::RegionDetail as i32, 2);

    assert_eq!(raft_serverpb::PeerState::Applying as i32, 1);
    assert_eq!(raft_serverpb::PeerState::Tombstone as i32, 2);
    assert_eq!(raft_serverpb::PeerState::Merging as i32, 3);
    assert_eq!(raft_serverpb::ExtraMessageType::MsgWantRollbackMerge as i32, 1);
    assert_eq!(raft_serverpb::ExtraMessageType::MsgHibernateRequest as i32, 4);
    assert_eq!(raft_serverpb::ExtraMessageType::MsgGcPeerRequest as i32, 11);

    assert_eq!(pdpb::ErrorType::NotBootstrapped as i32, 2);
    assert_eq!(pdpb::ErrorType::AlreadyBootstrapped as i32, 4);
    assert_eq!(pdpb::ErrorType::RegionNotFound as i32, 6);
    assert_eq!(pdpb::CheckPolicy::Usekey as i32, 2);
    assert_eq!(keyspacepb::KeyspaceState::Enabled as i32, 0);
    assert_eq!(keyspacepb::KeyspaceState::Tombstone as i32, 3);
}
