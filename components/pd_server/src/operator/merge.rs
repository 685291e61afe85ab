//! The `merge-region` operator: PD's side of region merge (#14; the store's side is
//! PrepareMerge / CommitMerge / RollbackMerge in the raftstore).
//!
//! **Plan** ([`plan_merge`]). Refused unless the two regions are different, adjacent, neither
//! in a joint configuration, and both have a known leader (the registry and the cluster add:
//! no operator on either, neither in a split). Steps: if the source's peers are not on the
//! target's stores with the target's roles, align them first — add a learner on each missing
//! store (promoted if the target has a voter there), promote source learners where the target
//! has voters, then remove the source peers on stores the target lacks (leadership moves
//! first, as for any removal). Then the `Merge` step.
//!
//! **The contract with the store.** The `Merge` step answers the SOURCE leader's heartbeat with
//! `Merge{target}` (the target as PD knows it), `region_epoch` from that heartbeat and
//! `target_peer` its leader. The store refuses it (regions changed, not adjacent, logs
//! behind, ...) or proposes PrepareMerge; PD repeats it on every heartbeat that shows the
//! merge not started. Let `(v, c)` be the source's version when the operator was made and its
//! conf_ver when `Merge` was last sent:
//!
//! | source heartbeat | meaning | operator |
//! |---|---|---|
//! | same range, version `v` | not started (or refused) | send `Merge` again |
//! | same range, `(v+1, c+1)` | PrepareMerge applied: merging | wait, send nothing |
//! | same range, version `≥ v+2` | RollbackMerge applied | `canceled` ("merge rolled back") |
//! | anything else | split, or another change | `canceled` |
//!
//! | target heartbeat | operator |
//! |---|---|
//! | range covers the source's (CommitMerge applied; its version is max(src, tgt) + 1) | `success` |
//! | epoch or range differs from the target's when the operator was made | `canceled` |
//! | unchanged | wait |
//!
//! The `Merge` step times out after [`MERGE_STEP_TIMEOUT_MS`]. PD then forgets the merge, but
//! the source may stay `Merging` until the store commits or rolls back: that is the store's
//! business, and a later success is still visible in the routing table.
//!
//! Why the target is judged by coverage, not by version: only a CommitMerge of this source can
//! make this target id cover the source's range while the operator locks both regions.

use proto::metapb::{self, PeerRole};

use super::{check_store_up, is_voter, voter, Kind, Operator, PlanError, Step, StoreView};
use crate::region_tree::{epoch_key, RegionInfo};

/// How long the `Merge` step may take (PrepareMerge, catch-up and CommitMerge).
pub const MERGE_STEP_TIMEOUT_MS: u64 = 60 * 1000;

/// Whether `a` and `b` are neighbours (in either order). Empty keys are the ends of the key
/// space, never a shared boundary.
pub fn adjacent(a: &metapb::Region, b: &metapb::Region) -> bool {
    (!a.end_key.is_empty() && a.end_key == b.start_key)
        || (!b.end_key.is_empty() && b.end_key == a.start_key)
}

/// Whether `outer`'s range includes all of `inner`'s.
pub fn covers(outer: &metapb::Region, inner: &metapb::Region) -> bool {
    let end_ok =
        outer.end_key.is_empty() || (!inner.end_key.is_empty() && inner.end_key <= outer.end_key);
    outer.start_key <= inner.start_key && end_ok
}

fn is_joint(r: &metapb::Region) -> bool {
    r.peers.iter().any(|p| {
        matches!(PeerRole::try_from(p.role), Ok(PeerRole::IncomingVoter | PeerRole::DemotingVoter))
    })
}

/// How many peers the alignment adds: one per target store the source has no peer on.
pub fn new_peers_needed(source: &metapb::Region, target: &metapb::Region) -> usize {
    target.peers.iter().filter(|t| !source.peers.iter().any(|p| p.store_id == t.store_id)).count()
}

/// Plans merging `source` into `target`. `new_peer_ids` holds at least
/// [`new_peers_needed`] fresh ids.
///
/// # Panics
/// If `new_peer_ids` is shorter than [`new_peers_needed`] (a caller bug).
pub fn plan_merge(
    source: &RegionInfo,
    target: &RegionInfo,
    store: impl Fn(u64) -> Option<StoreView>,
    now_ms: u64,
    new_peer_ids: &[u64],
) -> Result<Operator, PlanError> {
    let (s, t) = (&source.region, &target.region);
    if s.id == t.id {
        return Err(PlanError::SameRegion(s.id));
    }
    if !adjacent(s, t) {
        return Err(PlanError::NotAdjacent { source_id: s.id, target_id: t.id });
    }
    for r in [s, t] {
        if is_joint(r) {
            return Err(PlanError::Joint(r.id));
        }
    }
    for info in [source, target] {
        if info.leader.is_none() {
            return Err(PlanError::NoLeader(info.region.id));
        }
    }
    let needed = new_peers_needed(s, t);
    assert!(
        new_peer_ids.len() >= needed,
        "merge of region {} into {} needs {needed} peer ids, got {}",
        s.id,
        t.id,
        new_peer_ids.len()
    );
    let mut steps = align_steps(s, t, new_peer_ids, |id| check_store_up(&store, id, now_ms))?;
    steps.push(Step::Merge { source: s.clone(), target: t.clone() });
    Ok(Operator::start(Kind::MergeRegion, s, steps, now_ms))
}

/// The steps that put the source's peers on the target's stores with the target's roles:
/// additions first, removals last, so the source never has fewer peers than it started with.
fn align_steps(
    s: &metapb::Region,
    t: &metapb::Region,
    new_peer_ids: &[u64],
    store_up: impl Fn(u64) -> Result<(), PlanError>,
) -> Result<Vec<Step>, PlanError> {
    let mut ids = new_peer_ids.iter();
    let (mut adds, mut promotions, mut removals) = (Vec::new(), Vec::new(), Vec::new());
    for tp in &t.peers {
        match s.peers.iter().find(|p| p.store_id == tp.store_id) {
            None => {
                store_up(tp.store_id)?;
                let id = *ids.next().expect("counted by new_peers_needed");
                let peer = metapb::Peer {
                    id,
                    store_id: tp.store_id,
                    role: PeerRole::Learner as i32,
                    ..Default::default()
                };
                adds.push(Step::AddLearner { peer: peer.clone() });
                if is_voter(tp) {
                    adds.push(Step::PromoteLearner { peer: voter(peer) });
                }
            }
            Some(sp) => match (is_voter(sp), is_voter(tp)) {
                (false, true) => promotions.push(Step::PromoteLearner { peer: voter(sp.clone()) }),
                (true, false) => {
                    return Err(PlanError::LearnerOnTarget {
                        source_id: s.id,
                        target_id: t.id,
                        store: tp.store_id,
                    })
                }
                (true, true) | (false, false) => {}
            },
        }
    }
    for sp in &s.peers {
        if !t.peers.iter().any(|tp| tp.store_id == sp.store_id) {
            removals.push(Step::RemovePeer { peer: sp.clone() });
        }
    }
    adds.extend(promotions);
    adds.extend(removals);
    Ok(adds)
}

/// What a source heartbeat says about the merge (the first table of the module docs).
#[derive(Debug, PartialEq, Eq)]
pub enum SourceEpoch {
    NotStarted,
    InProgress,
    Ended(String),
}

/// Classifies a source heartbeat during the `Merge` step. `source` is the source when the
/// operator was made, `version` its version then, `merge_conf_ver` the conf_ver the last
/// `Merge` command carried.
pub fn source_epoch(
    source: &metapb::Region,
    version: u64,
    merge_conf_ver: Option<u64>,
    now: &metapb::Region,
) -> SourceEpoch {
    let (v, c) = epoch_key(now);
    let id = source.id;
    if now.start_key != source.start_key || now.end_key != source.end_key {
        return SourceEpoch::Ended(format!(
            "region {id} split or merged elsewhere (version {version} → {v}, range changed)"
        ));
    }
    if v == version {
        return SourceEpoch::NotStarted;
    }
    match merge_conf_ver {
        Some(c0) if v == version + 1 && c == c0 + 1 => SourceEpoch::InProgress,
        Some(_) if v >= version + 2 => SourceEpoch::Ended(format!(
            "merge rolled back by the store (region {id} version {version} → {v}, range unchanged)"
        )),
        Some(_) | None => SourceEpoch::Ended(format!(
            "region {id} changed (version {version} → {v}, conf_ver {c}) outside the merge"
        )),
    }
}

/// What a target heartbeat says about the merge (the second table of the module docs).
#[derive(Debug, PartialEq, Eq)]
pub enum TargetState {
    Unchanged,
    Merged,
    Changed(String),
}

/// Classifies a heartbeat `now` of the target; `source` and `target` as the operator recorded
/// them.
pub fn target_state(
    source: &metapb::Region,
    target: &metapb::Region,
    now: &metapb::Region,
) -> TargetState {
    if covers(now, source) {
        return TargetState::Merged;
    }
    let (was, is) = (epoch_key(target), epoch_key(now));
    if was != is || now.start_key != target.start_key || now.end_key != target.end_key {
        return TargetState::Changed(format!(
            "target region {} changed before the merge (version/conf_ver {}/{} → {}/{})",
            target.id, was.0, was.1, is.0, is.1
        ));
    }
    TargetState::Unchanged
}

#[cfg(test)]
mod tests {
    use proto::pdpb;

    use super::*;
    use crate::operator::Status;
    use crate::operator::STORE_HEARTBEAT_STALE_MS;

    const NOW: u64 = 1_000_000;

    fn peer(id: u64, store: u64, role: PeerRole) -> metapb::Peer {
        metapb::Peer { id, store_id: store, role: role as i32, ..Default::default() }
    }

    /// Region `id` over [start, end) at epoch (version, conf_ver) with voters on `stores`
    /// (peer ids id*10 + store), led by the first.
    fn region(id: u64, start: &[u8], end: &[u8], epoch: (u64, u64), stores: &[u64]) -> RegionInfo {
        let peers: Vec<_> = stores.iter().map(|&s| peer(id * 10 + s, s, PeerRole::Voter)).collect();
        RegionInfo {
            leader: peers.first().cloned(),
            region: metapb::Region {
                id,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                region_epoch: Some(metapb::RegionEpoch { version: epoch.0, conf_ver: epoch.1 }),
                peers,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn up(id: u64) -> Option<StoreView> {
        (id <= 5).then_some(StoreView {
            state: metapb::StoreState::Up,
            last_heartbeat_unix_ms: NOW - 1000,
        })
    }

    fn source() -> RegionInfo {
        region(5, b"a", b"m", (4, 2), &[1, 2, 3])
    }

    fn target() -> RegionInfo {
        region(6, b"m", b"x", (3, 7), &[1, 2, 3])
    }

    fn with_epoch(mut info: RegionInfo, version: u64, conf_ver: u64) -> RegionInfo {
        info.region.region_epoch = Some(metapb::RegionEpoch { version, conf_ver });
        info
    }

    fn steps(op: &Operator) -> Vec<String> {
        op.steps.iter().map(ToString::to_string).collect()
    }

    fn merge_cmd(resp: Option<pdpb::RegionHeartbeatResponse>) -> metapb::Region {
        resp.expect("a command").merge.expect("a merge command").target.expect("a target")
    }

    #[test]
    fn aligned_regions_merge_in_one_step_sent_to_the_source_leader() {
        let mut op = plan_merge(&source(), &target(), up, NOW, &[]).unwrap();
        assert_eq!(steps(&op), ["merge region 5 into region 6"]);
        assert_eq!((op.kind, op.region_id, op.target_region_id()), (Kind::MergeRegion, 5, Some(6)));
        let resp = op.on_heartbeat(&source(), NOW).unwrap();
        assert_eq!(resp.region_id, 5);
        assert_eq!(resp.region_epoch, source().region.region_epoch);
        assert_eq!(resp.target_peer, source().leader);
        assert!(resp.change_peer.is_none() && resp.transfer_leader.is_none());
        assert_eq!(resp.merge.unwrap().target.unwrap(), target().region);
        assert_eq!(op.merge_conf_ver, Some(2));
        // Refused by the store: the next heartbeat (same epoch) gets the same command.
        assert_eq!(merge_cmd(op.on_heartbeat(&source(), NOW + 10)), target().region);
        assert!(op.is_running());
    }

    #[test]
    fn prepare_merge_epoch_does_not_cancel_and_the_target_shows_success() {
        let mut op = plan_merge(&source(), &target(), up, NOW, &[]).unwrap();
        merge_cmd(op.on_heartbeat(&source(), NOW));
        // PrepareMerge applied: version and conf_ver +1. Nothing more to send.
        let merging = with_epoch(source(), 5, 3);
        assert!(op.on_heartbeat(&merging, NOW + 1).is_none());
        assert!(op.is_running(), "{:?}", op.status);
        // A target heartbeat from before the commit changes nothing.
        op.on_target_heartbeat(&target(), NOW + 2);
        assert!(op.is_running());
        // CommitMerge: the target covers the source at version max(5, 3) + 1.
        let mut merged = with_epoch(target(), 6, 7);
        merged.region.start_key = b"a".to_vec();
        op.on_target_heartbeat(&merged, NOW + 3);
        assert_eq!(op.status, Status::Success);
        assert_eq!(op.current, op.steps.len());
        assert_eq!(op.finished_unix_ms, Some(NOW + 3));
        // Merging to the left works the same.
        let (left, right) = (region(1, b"", b"a", (9, 1), &[1, 2, 3]), source());
        let mut op = plan_merge(&right, &left, up, NOW, &[]).unwrap();
        merge_cmd(op.on_heartbeat(&right, NOW));
        let mut merged = with_epoch(left, 10, 1);
        merged.region.end_key = b"m".to_vec();
        op.on_target_heartbeat(&merged, NOW + 1);
        assert_eq!(op.status, Status::Success);
    }

    #[test]
    fn rollback_split_and_target_changes_cancel() {
        let started = |hb: &RegionInfo| {
            let mut op = plan_merge(&source(), &target(), up, NOW, &[]).unwrap();
            merge_cmd(op.on_heartbeat(hb, NOW));
            op
        };
        let reason = |op: &Operator| match &op.status {
            Status::Canceled(why) => why.clone(),
            other => panic!("not canceled: {other:?}"),
        };
        // Rolled back: Prepare (+1/+1) then Rollback (+1 version).
        let mut op = started(&source());
        assert!(op.on_heartbeat(&with_epoch(source(), 5, 3), NOW).is_none());
        assert!(op.on_heartbeat(&with_epoch(source(), 6, 3), NOW).is_none());
        assert!(reason(&op).contains("merge rolled back"), "{}", reason(&op));
        // The rollback seen without the Prepare heartbeat in between.
        let mut op = started(&source());
        assert!(op.on_heartbeat(&with_epoch(source(), 6, 3), NOW).is_none());
        assert!(reason(&op).contains("merge rolled back"));
        // A split before the merge started: range and version changed.
        let mut op = started(&source());
        let mut split = with_epoch(source(), 5, 2);
        split.region.end_key = b"g".to_vec();
        assert!(op.on_heartbeat(&split, NOW).is_none());
        assert!(reason(&op).contains("split"), "{}", reason(&op));
        // Version +1 without the conf_ver +1 is no PrepareMerge.
        let mut op = started(&source());
        assert!(op.on_heartbeat(&with_epoch(source(), 5, 2), NOW).is_none());
        assert!(reason(&op).contains("outside the merge"), "{}", reason(&op));
        // A conf change at the same version is no progress: the command follows the epoch.
        let mut op = started(&source());
        assert!(op.on_heartbeat(&with_epoch(source(), 4, 3), NOW).is_some());
        assert_eq!(op.merge_conf_ver, Some(3));
        assert!(op.on_heartbeat(&with_epoch(source(), 5, 4), NOW).is_none());
        assert!(op.is_running(), "(v+1, c+1) of the last command's epoch is the merge");
        // The target split before the merge.
        let mut op = started(&source());
        let mut t = with_epoch(target(), 4, 7);
        t.region.end_key = b"p".to_vec();
        op.on_target_heartbeat(&t, NOW);
        assert!(reason(&op).contains("target region 6 changed"), "{}", reason(&op));
    }

    #[test]
    fn the_merge_step_times_out_after_60s_even_while_merging() {
        let mut op = plan_merge(&source(), &target(), up, NOW, &[]).unwrap();
        merge_cmd(op.on_heartbeat(&source(), NOW));
        let merging = with_epoch(source(), 5, 3);
        assert!(op.on_heartbeat(&merging, NOW + MERGE_STEP_TIMEOUT_MS).is_none());
        assert!(op.is_running());
        assert!(op.on_heartbeat(&merging, NOW + MERGE_STEP_TIMEOUT_MS + 1).is_none());
        assert!(matches!(op.status, Status::Timeout(ref why) if why.contains("merge region 5")));
        // A target heartbeat also notices the timeout, as does a listing (check_timeout).
        let mut op = plan_merge(&source(), &target(), up, NOW, &[]).unwrap();
        op.on_target_heartbeat(&target(), NOW + MERGE_STEP_TIMEOUT_MS + 1);
        assert_eq!(op.status.name(), "timeout");
        // A finished operator ignores later heartbeats.
        let mut merged = target();
        merged.region.start_key = b"a".to_vec();
        op.on_target_heartbeat(&merged, NOW + MERGE_STEP_TIMEOUT_MS + 2);
        assert_eq!(op.status.name(), "timeout");
    }

    #[test]
    fn unaligned_peers_are_moved_to_the_target_stores_first() {
        // Source on stores 1, 2, 4 (leader on 4, a learner on 2); target on 1, 2, 3.
        let mut src = region(5, b"a", b"m", (4, 2), &[4, 1, 2]);
        src.region.peers[2].role = PeerRole::Learner as i32;
        let mut op = plan_merge(&src, &target(), up, NOW, &[99]).unwrap();
        assert_eq!(
            steps(&op),
            [
                "add learner peer 99 on store 3",
                "promote learner peer 99 on store 3 to voter",
                "promote learner peer 52 on store 2 to voter",
                "remove peer 54 on store 4",
                "merge region 5 into region 6",
            ]
        );
        // Walk it: the steps are the usual ones, the leader moves before its removal, and the
        // merge goes out once the peers match.
        let add = op.on_heartbeat(&src, NOW).unwrap().change_peer.unwrap();
        assert_eq!(add.peer.unwrap(), peer(99, 3, PeerRole::Learner));
        let mut now = src.clone();
        now.region.peers.push(peer(99, 3, PeerRole::Voter));
        now.region.peers[2].role = PeerRole::Voter as i32;
        now = with_epoch(now, 4, 5);
        let resp = op.on_heartbeat(&now, NOW).unwrap();
        let to = resp.transfer_leader.expect("leader 54 moves first").peer.unwrap();
        assert_ne!(to.store_id, 4);
        now.leader = Some(to);
        let remove = op.on_heartbeat(&now, NOW).unwrap().change_peer.unwrap();
        assert_eq!(remove.peer.unwrap().id, 54);
        now.region.peers.retain(|p| p.store_id != 4);
        now = with_epoch(now, 4, 6);
        let resp = op.on_heartbeat(&now, NOW + 5).unwrap();
        assert_eq!(resp.merge.unwrap().target.unwrap(), target().region);
        assert_eq!(resp.region_epoch.unwrap().conf_ver, 6);
        assert_eq!(op.step_started_unix_ms, NOW + 5);
        // A split during the alignment cancels, as for any operator.
        let mut op = plan_merge(&src, &target(), up, NOW, &[99]).unwrap();
        assert!(op.on_heartbeat(&with_epoch(src.clone(), 5, 2), NOW).is_none());
        assert_eq!(op.status.name(), "canceled");
    }

    #[test]
    fn bad_merges_are_refused_with_the_reason() {
        let (s, t) = (source(), target());
        let refuse = |s: &RegionInfo, t: &RegionInfo| plan_merge(s, t, up, NOW, &[99]).unwrap_err();
        assert_eq!(refuse(&s, &s), PlanError::SameRegion(5));
        let far = region(7, b"x", b"", (1, 1), &[1, 2, 3]);
        assert_eq!(refuse(&s, &far), PlanError::NotAdjacent { source_id: 5, target_id: 7 });
        // The ends of the key space are no shared boundary.
        let (first, last) =
            (region(8, b"", b"b", (1, 1), &[1, 2, 3]), region(9, b"y", b"", (1, 1), &[1, 2, 3]));
        assert_eq!(refuse(&last, &first), PlanError::NotAdjacent { source_id: 9, target_id: 8 });
        let mut joint = t.clone();
        joint.region.peers[1].role = PeerRole::IncomingVoter as i32;
        assert_eq!(refuse(&s, &joint), PlanError::Joint(6));
        let mut joint = s.clone();
        joint.region.peers[2].role = PeerRole::DemotingVoter as i32;
        assert_eq!(refuse(&joint, &t), PlanError::Joint(5));
        let mut leaderless = t.clone();
        leaderless.leader = None;
        assert_eq!(refuse(&s, &leaderless), PlanError::NoLeader(6));
        let mut learner = t.clone();
        learner.region.peers[1].role = PeerRole::Learner as i32;
        assert_eq!(
            refuse(&s, &learner),
            PlanError::LearnerOnTarget { source_id: 5, target_id: 6, store: 2 }
        );
        // A store the alignment would add a peer on must be up.
        let on_9 = region(6, b"m", b"x", (3, 7), &[1, 2, 9]);
        assert_eq!(refuse(&s, &on_9), PlanError::StoreNotFound(9));
        let silent = |id| {
            Some(StoreView {
                state: metapb::StoreState::Up,
                last_heartbeat_unix_ms: if id == 4 {
                    NOW - STORE_HEARTBEAT_STALE_MS - 1
                } else {
                    NOW
                },
            })
        };
        let on_4 = region(6, b"m", b"x", (3, 7), &[1, 2, 4]);
        let e = plan_merge(&s, &on_4, silent, NOW, &[99]).unwrap_err();
        assert!(matches!(e, PlanError::StoreDown { store: 4, .. }), "{e:?}");
    }

    #[test]
    fn ranges_helpers() {
        let r = |s: &[u8], e: &[u8]| metapb::Region {
            start_key: s.to_vec(),
            end_key: e.to_vec(),
            ..Default::default()
        };
        assert!(adjacent(&r(b"a", b"m"), &r(b"m", b"")));
        assert!(adjacent(&r(b"m", b""), &r(b"a", b"m")));
        assert!(!adjacent(&r(b"a", b"m"), &r(b"n", b"")));
        assert!(!adjacent(&r(b"", b""), &r(b"", b"")));
        assert!(covers(&r(b"", b""), &r(b"a", b"m")));
        assert!(covers(&r(b"a", b"x"), &r(b"a", b"m")));
        assert!(!covers(&r(b"a", b"x"), &r(b"m", b"")));
        assert!(!covers(&r(b"b", b"x"), &r(b"a", b"m")));
        assert_eq!(
            new_peers_needed(&source().region, &region(6, b"", b"", (1, 1), &[3, 4]).region),
            1
        );
    }
}
