//! Small pure helpers about regions, epochs and keys. No IO, no state.

use proto::metapb;
use proto::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest};
use raft::eraftpb::ConfState;
use util::{PeerId, StoreId};

use crate::error::{Error, Result};

/// `KeyNotInRegion` unless `start_key <= key < end_key` (an empty end key is +inf).
pub fn check_key_in_region(key: &[u8], region: &metapb::Region) -> Result<()> {
    if key_in_region(key, region) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion { key: key.to_vec(), region: Box::new(region.clone()) })
    }
}

pub fn key_in_region(key: &[u8], region: &metapb::Region) -> bool {
    key >= region.start_key.as_slice()
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

/// `KeyNotInRegion` unless `[start, end)` lies inside the region (an empty `end` is +inf and
/// only fits a region that also ends at +inf).
pub fn check_range_in_region(start: &[u8], end: &[u8], region: &metapb::Region) -> Result<()> {
    check_key_in_region(start, region)?;
    let end_ok = if region.end_key.is_empty() {
        true
    } else {
        !end.is_empty() && end <= region.end_key.as_slice()
    };
    if end_ok && (end.is_empty() || start <= end) {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion { key: end.to_vec(), region: Box::new(region.clone()) })
    }
}

pub fn epoch(region: &metapb::Region) -> metapb::RegionEpoch {
    region.region_epoch.unwrap_or_default()
}

/// How an admin command relates to the region epoch: which parts a proposal must match, and
/// which parts its application changes. TiKV's table (`admin_cmd_epoch_lookup`); it is part of
/// the protocol between replicas and MUST NOT change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochRule {
    pub check_ver: bool,
    pub check_conf_ver: bool,
    pub change_ver: bool,
    pub change_conf_ver: bool,
}

const fn rule(
    check_ver: bool,
    check_conf_ver: bool,
    change_ver: bool,
    change_conf_ver: bool,
) -> EpochRule {
    EpochRule { check_ver, check_conf_ver, change_ver, change_conf_ver }
}

/// The epoch rule of an admin command type.
pub fn admin_epoch_rule(t: AdminCmdType) -> EpochRule {
    match t {
        AdminCmdType::InvalidAdmin => rule(false, false, false, false),
        AdminCmdType::CompactLog
        | AdminCmdType::TransferLeader
        | AdminCmdType::ComputeHash
        | AdminCmdType::VerifyHash => rule(false, false, false, false),
        // Membership changes touch peers, not the key range.
        AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2 => rule(false, true, false, true),
        // A split depends on both the range and the peers (new peer ids are one per peer).
        AdminCmdType::Split | AdminCmdType::BatchSplit => rule(true, true, true, false),
        AdminCmdType::PrepareMerge => rule(true, true, true, true),
        AdminCmdType::CommitMerge | AdminCmdType::RollbackMerge => rule(true, true, true, false),
        AdminCmdType::PrepareFlashback
        | AdminCmdType::FinishFlashback
        | AdminCmdType::BatchSwitchWitness
        | AdminCmdType::UpdateGcPeer => rule(true, true, false, false),
    }
}

/// The epoch rule of a command: data commands (reads and writes) depend on the key range
/// only, so they check `version`; admin commands follow [`admin_epoch_rule`]; status queries
/// check nothing.
pub fn epoch_rule(req: &RaftCmdRequest) -> EpochRule {
    if let Some(admin) = &req.admin_request {
        return admin_epoch_rule(
            AdminCmdType::try_from(admin.cmd_type).unwrap_or(AdminCmdType::InvalidAdmin),
        );
    }
    if req.status_request.is_some() {
        return rule(false, false, false, false);
    }
    rule(true, false, false, false)
}

/// Checks the epoch a command carries against the region's, per [`epoch_rule`].
///
/// A command without an epoch is rejected (unless it checks nothing): a client that does not
/// say which region layout it routed by cannot be protected from a split.
pub fn check_region_epoch(req: &RaftCmdRequest, region: &metapb::Region) -> Result<()> {
    let r = epoch_rule(req);
    if !r.check_ver && !r.check_conf_ver {
        return Ok(());
    }
    let Some(from) = req.header.as_ref().and_then(|h| h.region_epoch) else {
        return Err(Error::EpochNotMatch {
            message: format!("missing epoch for region {}", region.id),
            current_regions: vec![region.clone()],
        });
    };
    let current = epoch(region);
    if (r.check_ver && from.version != current.version)
        || (r.check_conf_ver && from.conf_ver != current.conf_ver)
    {
        return Err(Error::EpochNotMatch {
            message: format!("region {} epoch is {:?}, request has {:?}", region.id, current, from),
            current_regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Whether `epoch` is older than `current` in either part (a message or command from before a
/// split or membership change this peer has seen).
pub fn is_epoch_stale(epoch: &metapb::RegionEpoch, current: &metapb::RegionEpoch) -> bool {
    epoch.version < current.version || epoch.conf_ver < current.conf_ver
}

/// Checks split keys against the region they would split: at least one, none empty, strictly
/// increasing, each inside the region and not its start key. A key outside the region is a
/// routing problem (`KeyNotInRegion`); anything else is an invalid request.
pub fn validate_split_keys(keys: &[Vec<u8>], region: &metapb::Region) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::InvalidRequest("no split key".into()));
    }
    for (i, k) in keys.iter().enumerate() {
        if k.is_empty() {
            return Err(Error::InvalidRequest("empty split key".into()));
        }
        if i > 0 && keys[i - 1] >= *k {
            return Err(Error::InvalidRequest(format!(
                "split keys must be sorted and distinct: \"{}\" is not below \"{}\"",
                keys[i - 1].escape_ascii(),
                k.escape_ascii()
            )));
        }
        check_key_in_region(k, region)?;
        if *k == region.start_key {
            return Err(Error::InvalidRequest(format!(
                "split key \"{}\" is the start of region {}; it would leave an empty region",
                k.escape_ascii(),
                region.id
            )));
        }
    }
    Ok(())
}

/// The peer of `region` that lives on `store_id`.
pub fn find_peer(region: &metapb::Region, store_id: StoreId) -> Option<&metapb::Peer> {
    region.peers.iter().find(|p| p.store_id == store_id.get())
}

pub fn find_peer_by_id(region: &metapb::Region, peer_id: PeerId) -> Option<&metapb::Peer> {
    region.peers.iter().find(|p| p.id == peer_id.get())
}

/// The raft configuration described by a region's peers (all voters until learners arrive
/// with the membership issue).
pub fn conf_state_from_region(region: &metapb::Region) -> ConfState {
    use metapb::PeerRole;
    let mut cs = ConfState::default();
    let joint = is_joint(region);
    for p in &region.peers {
        match PeerRole::try_from(p.role).unwrap_or(PeerRole::Voter) {
            PeerRole::Voter => {
                cs.mut_voters().push(p.id);
                if joint {
                    cs.mut_voters_outgoing().push(p.id);
                }
            }
            PeerRole::Learner => cs.mut_learners().push(p.id),
            // Joint: a voter in the incoming config only.
            PeerRole::IncomingVoter => cs.mut_voters().push(p.id),
            // Joint: a voter in the outgoing config, a learner once the joint state is left.
            PeerRole::DemotingVoter => {
                cs.mut_voters_outgoing().push(p.id);
                cs.mut_learners_next().push(p.id);
            }
        }
    }
    // We leave joint states explicitly (`peer::conf_change`), never automatically.
    cs.auto_leave = false;
    cs
}

/// Whether the region is in a joint configuration (some peer is incoming or demoting).
pub fn is_joint(region: &metapb::Region) -> bool {
    region.peers.iter().any(|p| {
        p.role == metapb::PeerRole::IncomingVoter as i32
            || p.role == metapb::PeerRole::DemotingVoter as i32
    })
}

/// Whether the peer votes in the region's (incoming) configuration.
pub fn is_voter(peer: &metapb::Peer) -> bool {
    peer.role != metapb::PeerRole::Learner as i32
        && peer.role != metapb::PeerRole::DemotingVoter as i32
}

/// How a command is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Get/Snap: served from a snapshot after a lease or ReadIndex check.
    Read,
    /// Put/Delete/DeleteRange: goes through the log.
    Write,
    /// An admin command.
    Admin,
    /// A status query, answered by the peer without raft.
    Status,
}

/// Classifies a command; mixed reads and writes, or an empty command, are invalid.
pub fn request_kind(req: &RaftCmdRequest) -> Result<RequestKind> {
    if req.admin_request.is_some() {
        if !req.requests.is_empty() {
            return Err(Error::InvalidRequest("admin command mixed with data requests".into()));
        }
        return Ok(RequestKind::Admin);
    }
    if req.status_request.is_some() {
        return Ok(RequestKind::Status);
    }
    let (mut reads, mut writes) = (0, 0);
    for r in &req.requests {
        match CmdType::try_from(r.cmd_type) {
            Ok(CmdType::Get | CmdType::Snap | CmdType::ReadIndex) => reads += 1,
            Ok(CmdType::Put | CmdType::Delete | CmdType::DeleteRange) => writes += 1,
            Ok(t @ (CmdType::Invalid | CmdType::Prewrite | CmdType::IngestSst)) => {
                return Err(Error::InvalidRequest(format!("unsupported command {t:?}")))
            }
            Err(_) => return Err(Error::InvalidRequest(format!("unknown command {}", r.cmd_type))),
        }
    }
    match (reads, writes) {
        (0, 0) => Err(Error::InvalidRequest("empty command".into())),
        (_, 0) => Ok(RequestKind::Read),
        (0, _) => Ok(RequestKind::Write),
        _ => Err(Error::InvalidRequest("reads and writes mixed in one command".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
            ..Default::default()
        }
    }

    #[test]
    fn key_ranges() {
        let r = region(b"b", b"d");
        assert!(check_key_in_region(b"b", &r).is_ok());
        assert!(check_key_in_region(b"c", &r).is_ok());
        assert!(check_key_in_region(b"d", &r).is_err());
        assert!(check_key_in_region(b"a", &r).is_err());
        let inf = region(b"", b"");
        assert!(check_key_in_region(b"", &inf).is_ok());
        assert!(check_key_in_region(b"\xff\xff", &inf).is_ok());
        assert!(check_range_in_region(b"b", b"d", &r).is_ok());
        assert!(check_range_in_region(b"b", b"", &r).is_err(), "+inf end leaves the region");
        assert!(check_range_in_region(b"c", b"e", &r).is_err());
        assert!(check_range_in_region(b"c", b"b", &r).is_err(), "reversed range");
        assert!(check_range_in_region(b"x", b"", &inf).is_ok());
    }
}
