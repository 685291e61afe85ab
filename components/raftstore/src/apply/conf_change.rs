//! Applying a membership change (`ChangePeer`, `ChangePeerV2`) to a region.
//!
//! The region's peer list is the durable membership: it is written (with `conf_ver` bumped)
//! in the same KV batch as the apply state of the entry, and a peer restarts raft from it
//! (`util::conf_state_from_region`). Raft's own configuration follows when the peer hands the
//! entry's `ConfChangeV2` to `RawNode::apply_conf_change` (`peer::conf_change`), so the two
//! always describe the same change. Rules, checked again here because an entry may apply
//! under another configuration than it was proposed under:
//!
//! 1. simple change (ChangePeer, or ChangePeerV2 with one change, outside a joint state):
//!    add a voter (new, or a learner promoted), add a learner (new, or a voter demoted), or
//!    remove a peer;
//! 2. entering a joint state (ChangePeerV2 with several changes): added voters become
//!    `IncomingVoter`, demoted voters `DemotingVoter`, new learners `Learner`; only learners
//!    can be removed (a voter is demoted first, then removed once the joint state is left);
//! 3. leaving the joint state (ChangePeerV2 without changes): `IncomingVoter` → `Voter`,
//!    `DemotingVoter` → `Learner`;
//! 4. one peer per store; `conf_ver` grows by the number of peers whose membership changed.

use proto::metapb::{self, ConfChangeType, PeerRole};
use proto::raft_cmdpb::{AdminRequest, ChangePeerRequest};
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType as RaftChangeType,
    ConfChangeV2,
};

use crate::error::{Error, Result};
use crate::util::is_joint;

/// The membership changes an admin request asks for; `None` if it is not a conf change.
pub fn requested_changes(admin: &AdminRequest) -> Option<Result<Vec<ChangePeerRequest>>> {
    use proto::raft_cmdpb::AdminCmdType;
    match AdminCmdType::try_from(admin.cmd_type) {
        Ok(AdminCmdType::ChangePeer) => Some(
            admin
                .change_peer
                .clone()
                .map(|c| vec![c])
                .ok_or_else(|| Error::InvalidRequest("ChangePeer without its change".into())),
        ),
        Ok(AdminCmdType::ChangePeerV2) => {
            Some(Ok(admin.change_peer_v2.as_ref().map(|c| c.changes.clone()).unwrap_or_default()))
        }
        _ => None,
    }
}

/// The raft configuration change for `changes` (module doc, rules 1–3): a simple change for
/// one change, an explicit joint change for several, leaving the joint state for none.
pub fn to_raft_conf_change(changes: &[ChangePeerRequest]) -> Result<ConfChangeV2> {
    let mut cc = ConfChangeV2::default();
    for c in changes {
        let peer =
            c.peer.as_ref().ok_or_else(|| Error::InvalidRequest("change without a peer".into()))?;
        let mut single = ConfChangeSingle::default();
        single.node_id = peer.id;
        single.set_change_type(raft_change_type(c.change_type)?);
        cc.mut_changes().push(single);
    }
    if changes.len() > 1 {
        // We leave joint states with an explicit (empty) ChangePeerV2, never automatically:
        // the region's peer list must say when it happens.
        cc.set_transition(ConfChangeTransition::Explicit);
    }
    Ok(cc)
}

/// A V1 `ConfChange` as the V2 form raft applies.
pub fn v1_to_v2(cc: &ConfChange) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.node_id = cc.node_id;
    single.set_change_type(cc.get_change_type());
    let mut v2 = ConfChangeV2::default();
    v2.mut_changes().push(single);
    v2
}

fn raft_change_type(t: i32) -> Result<RaftChangeType> {
    match ConfChangeType::try_from(t) {
        Ok(ConfChangeType::AddNode) => Ok(RaftChangeType::AddNode),
        Ok(ConfChangeType::RemoveNode) => Ok(RaftChangeType::RemoveNode),
        Ok(ConfChangeType::AddLearnerNode) => Ok(RaftChangeType::AddLearnerNode),
        Err(_) => Err(Error::InvalidRequest(format!("unknown conf change type {t}"))),
    }
}

/// The region after `changes` (module doc). Pure: the caller persists the result.
pub fn apply_changes(
    region: &metapb::Region,
    changes: &[ChangePeerRequest],
) -> Result<metapb::Region> {
    let mut region = region.clone();
    let joint = is_joint(&region);
    let invalid = |m: String| Err(Error::InvalidRequest(m));
    let changed = if changes.is_empty() {
        if !joint {
            return invalid("leave joint: the region is not in a joint state".into());
        }
        let mut n = 0;
        for p in &mut region.peers {
            if p.role == PeerRole::IncomingVoter as i32 {
                p.role = PeerRole::Voter as i32;
                n += 1;
            } else if p.role == PeerRole::DemotingVoter as i32 {
                p.role = PeerRole::Learner as i32;
                n += 1;
            }
        }
        n
    } else {
        if joint {
            return invalid("the region is in a joint state: leave it first".into());
        }
        let entering = changes.len() > 1;
        let mut ids: Vec<u64> =
            changes.iter().filter_map(|c| c.peer.as_ref().map(|p| p.id)).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != changes.len() {
            return invalid("one change per peer".into());
        }
        for c in changes {
            apply_one(&mut region, c, entering)?;
        }
        // Raft enters a joint configuration for several changes; the region must say so, or
        // nothing would ever leave it (only learners changed: do them one at a time).
        if entering && !is_joint(&region) {
            return invalid("several changes that move no voter: make them one at a time".into());
        }
        changes.len()
    };
    // Raft refuses a configuration without voters (in either half of a joint one); the
    // region must refuse it first, so the two never disagree.
    let cs = crate::util::conf_state_from_region(&region);
    if cs.voters.is_empty() || (is_joint(&region) && cs.voters_outgoing.is_empty()) {
        return invalid("the change would leave the region without a voter".into());
    }
    let epoch = region.region_epoch.get_or_insert_with(Default::default);
    epoch.conf_ver += changed.max(1) as u64;
    Ok(region)
}

fn apply_one(region: &mut metapb::Region, c: &ChangePeerRequest, entering: bool) -> Result<()> {
    let invalid = |m: String| Err(Error::InvalidRequest(m));
    let Some(peer) = c.peer.as_ref().filter(|p| p.id != 0 && p.store_id != 0) else {
        return invalid("change without a peer id and store id".into());
    };
    let at = region.peers.iter().position(|p| p.id == peer.id);
    if at.is_none() && region.peers.iter().any(|p| p.store_id == peer.store_id) {
        return invalid(format!(
            "store {} already has a peer of region {}",
            peer.store_id, region.id
        ));
    }
    if let Some(i) = at {
        if region.peers[i].store_id != peer.store_id {
            return invalid(format!(
                "peer {} is on store {}, not {}",
                peer.id, region.peers[i].store_id, peer.store_id
            ));
        }
    }
    let role = at.map(|i| PeerRole::try_from(region.peers[i].role).unwrap_or(PeerRole::Voter));
    let new_role = |r: PeerRole| r as i32;
    match ConfChangeType::try_from(c.change_type) {
        Ok(ConfChangeType::AddNode) => match (at, role) {
            (None, _) => {
                let mut p = peer.clone();
                p.role = new_role(if entering { PeerRole::IncomingVoter } else { PeerRole::Voter });
                region.peers.push(p);
            }
            (Some(i), Some(PeerRole::Learner)) => {
                region.peers[i].role =
                    new_role(if entering { PeerRole::IncomingVoter } else { PeerRole::Voter });
            }
            (Some(_), _) => return invalid(format!("peer {} is already a voter", peer.id)),
        },
        Ok(ConfChangeType::AddLearnerNode) => match (at, role) {
            (None, _) => {
                let mut p = peer.clone();
                p.role = new_role(PeerRole::Learner);
                region.peers.push(p);
            }
            (Some(i), Some(PeerRole::Voter)) => {
                region.peers[i].role =
                    new_role(if entering { PeerRole::DemotingVoter } else { PeerRole::Learner });
            }
            (Some(_), _) => return invalid(format!("peer {} is already a learner", peer.id)),
        },
        Ok(ConfChangeType::RemoveNode) => match (at, role) {
            (None, _) => {
                return invalid(format!("peer {} is not in region {}", peer.id, region.id))
            }
            (Some(_), Some(PeerRole::Voter)) if entering => {
                return invalid(format!(
                    "peer {} is a voter: demote it in the joint change, remove it after",
                    peer.id
                ))
            }
            (Some(i), _) => {
                region.peers.remove(i);
            }
        },
        Err(_) => return invalid(format!("unknown conf change type {}", c.change_type)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store: u64, role: PeerRole) -> metapb::Peer {
        metapb::Peer { id, store_id: store, role: role as i32, ..Default::default() }
    }

    fn region(peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id: 1,
            peers,
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 1, version: 1 }),
            ..Default::default()
        }
    }

    fn change(t: ConfChangeType, p: metapb::Peer) -> ChangePeerRequest {
        ChangePeerRequest { change_type: t as i32, peer: Some(p) }
    }

    fn roles(r: &metapb::Region) -> Vec<(u64, i32)> {
        r.peers.iter().map(|p| (p.id, p.role)).collect()
    }

    #[test]
    fn simple_changes_add_promote_demote_remove() {
        let r = region(vec![peer(1, 1, PeerRole::Voter), peer(2, 2, PeerRole::Voter)]);
        let r = apply_changes(
            &r,
            &[change(ConfChangeType::AddLearnerNode, peer(3, 3, PeerRole::Voter))],
        )
        .unwrap();
        assert_eq!(roles(&r)[2], (3, PeerRole::Learner as i32));
        assert_eq!(r.region_epoch.unwrap().conf_ver, 2);
        let r = apply_changes(&r, &[change(ConfChangeType::AddNode, peer(3, 3, PeerRole::Voter))])
            .unwrap();
        assert_eq!(roles(&r)[2], (3, PeerRole::Voter as i32), "promoted");
        let r = apply_changes(
            &r,
            &[change(ConfChangeType::AddLearnerNode, peer(2, 2, PeerRole::Voter))],
        )
        .unwrap();
        assert_eq!(roles(&r)[1], (2, PeerRole::Learner as i32), "demoted");
        let r =
            apply_changes(&r, &[change(ConfChangeType::RemoveNode, peer(2, 2, PeerRole::Voter))])
                .unwrap();
        assert_eq!(r.peers.len(), 2);
        assert_eq!(r.region_epoch.unwrap().conf_ver, 5);
    }

    #[test]
    fn joint_change_enters_and_leaves() {
        let r = region(vec![
            peer(1, 1, PeerRole::Voter),
            peer(2, 2, PeerRole::Voter),
            peer(3, 3, PeerRole::Voter),
        ]);
        // Replace peer 3 (store 3) by peer 4 (store 4): add 4 as a voter, demote 3.
        let changes = [
            change(ConfChangeType::AddNode, peer(4, 4, PeerRole::Voter)),
            change(ConfChangeType::AddLearnerNode, peer(3, 3, PeerRole::Voter)),
        ];
        let joint = apply_changes(&r, &changes).unwrap();
        assert!(is_joint(&joint));
        assert_eq!(joint.region_epoch.unwrap().conf_ver, 3);
        let cs = crate::util::conf_state_from_region(&joint);
        assert_eq!(cs.voters, vec![1, 2, 4]);
        assert_eq!(cs.voters_outgoing, vec![1, 2, 3]);
        assert_eq!(cs.learners_next, vec![3]);
        assert!(apply_changes(&joint, &changes[..1]).is_err(), "no change inside a joint state");
        let left = apply_changes(&joint, &[]).unwrap();
        assert!(!is_joint(&left));
        assert_eq!(roles(&left)[2], (3, PeerRole::Learner as i32));
        assert_eq!(roles(&left)[3], (4, PeerRole::Voter as i32));
        assert_eq!(left.region_epoch.unwrap().conf_ver, 5);
        assert!(apply_changes(&left, &[]).is_err(), "not joint any more");
    }

    #[test]
    fn invalid_changes_are_refused() {
        let r = region(vec![peer(1, 1, PeerRole::Voter), peer(2, 2, PeerRole::Voter)]);
        let bad = [
            vec![change(ConfChangeType::AddNode, peer(3, 2, PeerRole::Voter))], // store taken
            vec![change(ConfChangeType::AddNode, peer(2, 2, PeerRole::Voter))], // already voter
            vec![change(ConfChangeType::RemoveNode, peer(9, 9, PeerRole::Voter))], // unknown
            vec![change(ConfChangeType::RemoveNode, peer(2, 3, PeerRole::Voter))], // wrong store
            vec![
                change(ConfChangeType::RemoveNode, peer(2, 2, PeerRole::Voter)),
                change(ConfChangeType::AddNode, peer(3, 3, PeerRole::Voter)),
            ], // a voter removed while entering a joint state
            vec![ChangePeerRequest { change_type: 7, peer: Some(peer(3, 3, PeerRole::Voter)) }],
            vec![ChangePeerRequest { change_type: 0, peer: None }],
            vec![
                change(ConfChangeType::AddNode, peer(3, 3, PeerRole::Voter)),
                change(ConfChangeType::RemoveNode, peer(3, 3, PeerRole::Voter)),
            ], // the same peer twice
            vec![
                change(ConfChangeType::AddLearnerNode, peer(3, 3, PeerRole::Voter)),
                change(ConfChangeType::AddLearnerNode, peer(4, 4, PeerRole::Voter)),
            ], // several changes, no voter moved: raft would enter a joint state for nothing
        ];
        for changes in bad {
            assert!(apply_changes(&r, &changes).is_err(), "{changes:?}");
        }
        let lone = region(vec![peer(1, 1, PeerRole::Voter), peer(2, 2, PeerRole::Learner)]);
        let bad = [
            vec![change(ConfChangeType::RemoveNode, peer(1, 1, PeerRole::Voter))],
            vec![change(ConfChangeType::AddLearnerNode, peer(1, 1, PeerRole::Voter))],
            // Joint: demote the only voter while promoting nobody.
            vec![
                change(ConfChangeType::AddLearnerNode, peer(1, 1, PeerRole::Voter)),
                change(ConfChangeType::RemoveNode, peer(2, 2, PeerRole::Learner)),
            ],
        ];
        for changes in bad {
            let e = apply_changes(&lone, &changes).unwrap_err();
            assert!(e.to_string().contains("without a voter"), "{changes:?}: {e}");
        }
    }
}
