//! Request builders and a wait-for-condition helper.

use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CmdType, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest,
    RaftCmdRequest, RaftRequestHeader, Request, SnapRequest, StatusCmdType, StatusRequest,
    TransferLeaderRequest,
};

/// Polls `cond` until it returns `Some`, or panics after `timeout` with `what`.
pub use ::util::wait::wait_for;

pub fn header(region: &metapb::Region, peer: &metapb::Peer) -> RaftRequestHeader {
    RaftRequestHeader {
        region_id: region.id,
        peer: Some(peer.clone()),
        region_epoch: region.region_epoch,
        ..Default::default()
    }
}

pub fn put_req(key: &[u8], value: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest { cf: String::new(), key: key.to_vec(), value: value.to_vec() }),
        ..Default::default()
    }
}

pub fn delete_req(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Delete as i32,
        delete: Some(DeleteRequest { cf: String::new(), key: key.to_vec() }),
        ..Default::default()
    }
}

pub fn delete_range_req(start: &[u8], end: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::DeleteRange as i32,
        delete_range: Some(DeleteRangeRequest {
            cf: String::new(),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            notify_only: false,
        }),
        ..Default::default()
    }
}

pub fn get_req(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest { cf: String::new(), key: key.to_vec() }),
        ..Default::default()
    }
}

pub fn snap_req() -> Request {
    Request { cmd_type: CmdType::Snap as i32, snap: Some(SnapRequest {}), ..Default::default() }
}

pub fn cmd(header: RaftRequestHeader, requests: Vec<Request>) -> RaftCmdRequest {
    RaftCmdRequest { header: Some(header), requests, ..Default::default() }
}

pub fn transfer_leader_cmd(header: RaftRequestHeader, to: &metapb::Peer) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(header),
        admin_request: Some(AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest { peer: Some(to.clone()), peers: vec![] }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn region_leader_cmd(region_id: u64) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader { region_id, ..Default::default() }),
        status_request: Some(StatusRequest {
            cmd_type: StatusCmdType::RegionLeader as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The key of numbered test write `i` (`k0000`, ...); its value is `i` big-endian
/// ([`numbered_value`]). Shared by the scenario tests that write ranges.
pub fn numbered_key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

pub fn numbered_value(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Writes numbered keys `range` (each acknowledged).
pub fn put_range(cluster: &crate::Cluster, range: std::ops::Range<u32>) {
    for i in range {
        cluster.must_put(&numbered_key(i), &numbered_value(i));
    }
}

/// Reads numbered keys `range` back through the leader.
pub fn check_range(cluster: &crate::Cluster, range: std::ops::Range<u32>) {
    for i in range {
        cluster.must_get_equal(&numbered_key(i), &numbered_value(i));
    }
}
