//! What the raftstore needs from the placement driver, as a trait so the raftstore names no
//! gRPC or async type. The server implements it over `pd_client`; the test cluster with a
//! local id allocator.
//!
//! Every method returns at once: the work happens elsewhere (the server spawns it on its
//! runtime), and answers come back through the callback, which may run on any thread and MUST
//! NOT block.

use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, ChangePeerV2Request, PrepareMergeRequest,
    RaftCmdRequest, RaftRequestHeader, TransferLeaderRequest,
};
use proto::{metapb, pdpb};

/// Why PD could not answer a request of the raftstore. Both are retryable: the caller (a
/// split) answers its client, which retries later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdError {
    /// PD could not be reached, or did not answer in time.
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    /// PD answered with an error of its own (not bootstrapped, id allocation failed, ...).
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// PD answered something that does not fit the question.
    #[error("answered {got} split ids for {asked} split keys")]
    WrongSplitIdCount { asked: usize, got: usize },
}

/// Answers an id request: one [`pdpb::SplitId`] per split key, or why there are none.
pub type SplitIdsCallback = Box<dyn FnOnce(Result<Vec<pdpb::SplitId>, PdError>) + Send>;

/// Answers a region lookup: the region as PD knows it (`None`: PD knows no such region), or
/// why PD could not answer.
pub type RegionCallback = Box<dyn FnOnce(Result<Option<metapb::Region>, PdError>) + Send>;

/// A leader's view of its region, for PD's routing table.
#[derive(Debug, Clone)]
pub struct RegionHeartbeat {
    pub region: metapb::Region,
    pub leader: metapb::Peer,
    /// Approximate bytes and keys, `None` when not measured yet (the receiver may estimate).
    pub approximate_size: Option<u64>,
    pub approximate_keys: Option<u64>,
    /// Peers that have not caught up: they need (or are installing) a snapshot. PD waits for
    /// a new learner to leave this list before promoting it.
    pub pending_peers: Vec<metapb::Peer>,
}

/// Why an operator PD sent cannot become a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("operator for region {region_id} lacks {what}")]
    Missing { region_id: u64, what: &'static str },
    #[error("operator for region {region_id} is {kind}, which this store does not execute")]
    Unsupported { region_id: u64, kind: &'static str },
}

/// The admin command for the operator in a region-heartbeat response, `Ok(None)` when the
/// response carries none. The command is addressed with the response's epoch and target peer,
/// so the leader refuses it if the region changed since PD decided (the raftstore's ordinary
/// epoch and leader checks); PD sends it again on the next heartbeat if it still applies.
pub fn operator_command(
    resp: &pdpb::RegionHeartbeatResponse,
) -> Result<Option<RaftCmdRequest>, OperatorError> {
    let region_id = resp.region_id;
    let missing = |what| OperatorError::Missing { region_id, what };
    let unsupported = |kind| Err(OperatorError::Unsupported { region_id, kind });
    if resp.split_region.is_some() {
        return unsupported("split-region");
    }
    if resp.switch_witnesses.is_some() {
        return unsupported("switch-witness");
    }
    let change = |c: &pdpb::ChangePeer| ChangePeerRequest {
        change_type: c.change_type,
        peer: c.peer.clone(),
    };
    let admin = if let Some(c) = &resp.change_peer {
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(change(c)),
            ..Default::default()
        }
    } else if let Some(v2) = &resp.change_peer_v2 {
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeerV2 as i32,
            change_peer_v2: Some(ChangePeerV2Request {
                changes: v2.changes.iter().map(change).collect(),
            }),
            ..Default::default()
        }
    } else if let Some(m) = &resp.merge {
        // The source leader computes `min_index` itself (`peer::merge`, step 1).
        AdminRequest {
            cmd_type: AdminCmdType::PrepareMerge as i32,
            prepare_merge: Some(PrepareMergeRequest {
                min_index: 0,
                target: Some(m.target.clone().ok_or_else(|| missing("a merge target"))?),
            }),
            ..Default::default()
        }
    } else if let Some(t) = &resp.transfer_leader {
        AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest {
                peer: Some(t.peer.clone().ok_or_else(|| missing("a target peer"))?),
                peers: t.peers.clone(),
            }),
            ..Default::default()
        }
    } else {
        return Ok(None);
    };
    if region_id == 0 {
        return Err(missing("a region id"));
    }
    let header = RaftRequestHeader {
        region_id,
        peer: Some(resp.target_peer.clone().ok_or_else(|| missing("the leader it is for"))?),
        region_epoch: Some(resp.region_epoch.ok_or_else(|| missing("a region epoch"))?),
        ..Default::default()
    };
    Ok(Some(RaftCmdRequest {
        header: Some(header),
        admin_request: Some(admin),
        ..Default::default()
    }))
}

pub trait PdHandle: Send + Sync + 'static {
    /// Allocates a new region id and peer ids (one per peer of `region`) for each of `count`
    /// splits of `region`.
    fn ask_batch_split(&self, region: metapb::Region, count: u32, done: SplitIdsCallback);

    /// Tells PD the regions a split produced (the shrunk original and the new ones).
    fn report_batch_split(&self, regions: Vec<metapb::Region>);

    /// Tells PD about a region this store leads. Best effort: dropped when PD is unreachable
    /// (the next periodic heartbeat carries the same news).
    fn region_heartbeat(&self, heartbeat: RegionHeartbeat);

    /// Looks a region up by id, as PD last heard of it from the region's leaders.
    fn get_region_by_id(&self, region_id: u64, done: RegionCallback);
}

#[cfg(test)]
mod tests {
    use proto::metapb::ConfChangeType;

    use super::*;

    fn resp() -> pdpb::RegionHeartbeatResponse {
        pdpb::RegionHeartbeatResponse {
            region_id: 7,
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 3, version: 2 }),
            target_peer: Some(metapb::Peer { id: 71, store_id: 1, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn operators_become_admin_commands_addressed_to_the_leader() {
        let peer = metapb::Peer { id: 74, store_id: 4, ..Default::default() };
        let change = pdpb::ChangePeer {
            peer: Some(peer.clone()),
            change_type: ConfChangeType::AddLearnerNode as i32,
        };
        let cmd = operator_command(&pdpb::RegionHeartbeatResponse {
            change_peer: Some(change.clone()),
            ..resp()
        })
        .unwrap()
        .unwrap();
        let header = cmd.header.unwrap();
        assert_eq!(header.region_id, 7);
        assert_eq!(header.peer.unwrap().id, 71);
        assert_eq!(header.region_epoch.unwrap().conf_ver, 3);
        let admin = cmd.admin_request.unwrap();
        assert_eq!(admin.cmd_type, AdminCmdType::ChangePeer as i32);
        assert_eq!(admin.change_peer.unwrap().peer, Some(peer.clone()));

        let v2 = pdpb::ChangePeerV2 { changes: vec![change] };
        let cmd =
            operator_command(&pdpb::RegionHeartbeatResponse { change_peer_v2: Some(v2), ..resp() });
        let admin = cmd.unwrap().unwrap().admin_request.unwrap();
        assert_eq!(admin.change_peer_v2.unwrap().changes.len(), 1);

        let transfer = pdpb::TransferLeader { peer: Some(peer), peers: vec![] };
        let cmd = operator_command(&pdpb::RegionHeartbeatResponse {
            transfer_leader: Some(transfer),
            ..resp()
        });
        let admin = cmd.unwrap().unwrap().admin_request.unwrap();
        assert_eq!(admin.cmd_type, AdminCmdType::TransferLeader as i32);

        let target = metapb::Region { id: 8, ..Default::default() };
        let merge = pdpb::Merge { target: Some(target.clone()), ..Default::default() };
        let cmd = operator_command(&pdpb::RegionHeartbeatResponse { merge: Some(merge), ..resp() });
        let admin = cmd.unwrap().unwrap().admin_request.unwrap();
        assert_eq!(admin.cmd_type, AdminCmdType::PrepareMerge as i32);
        assert_eq!(admin.prepare_merge.unwrap().target, Some(target));
    }

    #[test]
    fn incomplete_or_unsupported_operators_are_refused() {
        assert_eq!(operator_command(&resp()), Ok(None));
        let transfer = Some(pdpb::TransferLeader { peer: None, peers: vec![] });
        let no_target = pdpb::RegionHeartbeatResponse { transfer_leader: transfer, ..resp() };
        assert!(matches!(operator_command(&no_target), Err(OperatorError::Missing { .. })));
        let change = Some(pdpb::ChangePeer::default());
        let no_epoch =
            pdpb::RegionHeartbeatResponse { change_peer: change, region_epoch: None, ..resp() };
        assert!(matches!(operator_command(&no_epoch), Err(OperatorError::Missing { .. })));
        let merge = pdpb::RegionHeartbeatResponse { merge: Some(pdpb::Merge::default()), ..resp() };
        assert!(matches!(operator_command(&merge), Err(OperatorError::Missing { .. })));
        let split = pdpb::RegionHeartbeatResponse {
            split_region: Some(pdpb::SplitRegion::default()),
            ..resp()
        };
        assert!(matches!(operator_command(&split), Err(OperatorError::Unsupported { .. })));
    }
}
