//! Applying the merge commands (the protocol is `peer::merge`'s module doc; these are its
//! steps 3, 6 and 8 as every replica executes them). Pure with respect to the engine: each
//! function reads the region and the apply FSM's merge state and writes the round's batch.
//!
//! Epochs (`util::admin_epoch_rule`, checked before these run):
//! - PrepareMerge (source): version + 1 and conf_ver + 1, so that no write, split or
//!   membership change proposed before it applies after it;
//! - CommitMerge (target): version = max(source, target) + 1, the range widened to both;
//! - RollbackMerge (source): version + 1, `Normal` again.

use engine_traits::{WriteBatch, CF_RAFT};
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, CommitMergeResponse, PrepareMergeRequest, PrepareMergeResponse,
    RollbackMergeRequest, RollbackMergeResponse,
};
use proto::raft_serverpb::{MergeState, PeerState, RaftApplyState, RegionLocalState};
use util::RegionId;

use crate::error::{Error, Result};
use crate::util::epoch;

/// Step 3 (every replica of the source): the region enters `Merging` at this entry's index.
///
/// Refused, with no effect, if the entries the target may have to carry (from `min_index`)
/// are compacted here: the truncated state is the same on every replica at this index (it
/// only moves by applied CompactLog entries), so every replica refuses alike.
pub fn exec_prepare_merge<W: WriteBatch>(
    wb: &mut W,
    region: &metapb::Region,
    apply_state: &RaftApplyState,
    req: Option<&PrepareMergeRequest>,
    index: u64,
) -> Result<(AdminResponse, metapb::Region, MergeState)> {
    let req =
        req.ok_or_else(|| Error::InvalidRequest("PrepareMerge without its request".into()))?;
    let target = req
        .target
        .clone()
        .ok_or_else(|| Error::InvalidRequest("PrepareMerge without a target".into()))?;
    if target.id == region.id || target.id == 0 {
        return Err(Error::InvalidRequest(format!(
            "region {} cannot merge into itself",
            region.id
        )));
    }
    let truncated = apply_state.truncated_state.unwrap_or_default().index;
    if req.min_index <= truncated || req.min_index > index {
        return Err(Error::InvalidRequest(format!(
            "PrepareMerge needs the log from {}, which holds ({truncated}, {index}]",
            req.min_index
        )));
    }
    let mut merging = region.clone();
    let mut e = epoch(region);
    e.version += 1;
    e.conf_ver += 1;
    merging.region_epoch = Some(e);
    let state = MergeState { min_index: req.min_index, target: Some(target), commit: index };
    let local = RegionLocalState {
        state: PeerState::Merging as i32,
        region: Some(merging.clone()),
        merge_state: Some(state.clone()),
        ..Default::default()
    };
    wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(region.id)), &local);
    let resp = AdminResponse {
        cmd_type: AdminCmdType::PrepareMerge as i32,
        prepare_merge: Some(PrepareMergeResponse {}),
        ..Default::default()
    };
    Ok((resp, merging, state))
}

/// Step 8 (every replica of the source): back to `Normal`, if this replica is merging at the
/// same PrepareMerge the rollback names.
pub fn exec_rollback_merge<W: WriteBatch>(
    wb: &mut W,
    region: &metapb::Region,
    merging: Option<&MergeState>,
    req: Option<&RollbackMergeRequest>,
) -> Result<(AdminResponse, metapb::Region)> {
    let req =
        req.ok_or_else(|| Error::InvalidRequest("RollbackMerge without its request".into()))?;
    match merging {
        Some(m) if m.commit == req.commit => {}
        other => {
            return Err(Error::InvalidRequest(format!(
                "RollbackMerge of the merge prepared at {}, region is {}",
                req.commit,
                other.map_or("not merging".to_owned(), |m| format!("merging at {}", m.commit))
            )))
        }
    }
    let mut normal = region.clone();
    let mut e = epoch(region);
    e.version += 1;
    normal.region_epoch = Some(e);
    let local = RegionLocalState { region: Some(normal.clone()), ..Default::default() };
    wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(region.id)), &local);
    let resp = AdminResponse {
        cmd_type: AdminCmdType::RollbackMerge as i32,
        rollback_merge: Some(RollbackMergeResponse {}),
        ..Default::default()
    };
    Ok((resp, normal))
}

/// The target after absorbing `source` (step 6): the union of the two ranges, which MUST be
/// adjacent, and version max(source, target) + 1. The peers are the target's.
pub fn merged_region(target: &metapb::Region, source: &metapb::Region) -> Result<metapb::Region> {
    let mut merged = target.clone();
    if !source.end_key.is_empty() && source.end_key == target.start_key {
        merged.start_key = source.start_key.clone();
    } else if !target.end_key.is_empty() && target.end_key == source.start_key {
        merged.end_key = source.end_key.clone();
    } else {
        return Err(Error::InvalidRequest(format!(
            "regions {} and {} are not adjacent",
            source.id, target.id
        )));
    }
    let mut e = epoch(target);
    e.version = e.version.max(epoch(source).version) + 1;
    merged.region_epoch = Some(e);
    Ok(merged)
}

/// Step 6: the source's entries a CommitMerge carries form one run `first..=commit` with
/// `first > 0` and terms that never decrease (as any log's).
pub fn check_merge_entries(
    entries: &[raft::eraftpb::Entry],
    commit: u64,
) -> std::result::Result<(), String> {
    let Some(first) = entries.first() else { return Err("no entries".into()) };
    let contiguous = entries.iter().enumerate().all(|(i, e)| e.index == first.index + i as u64);
    let ordered = entries.windows(2).all(|w| w[0].term <= w[1].term);
    let ends = entries.last().is_some_and(|e| e.index == commit);
    if first.index == 0 || !contiguous || !ordered || !ends {
        return Err(format!(
            "CommitMerge entries are not one run ending at {commit} (first {}, {} entries)",
            first.index,
            entries.len()
        ));
    }
    Ok(())
}

/// Step 6, resuming: the source's state as its apply FSM left it in the engine MUST be the
/// `Merging` of exactly this CommitMerge (the region it carries, prepared at `commit`).
/// Anything else means the source applied another PrepareMerge (TiKV #6460: merging with
/// it would lose the writes between the two) or something is broken.
pub fn check_source_state(
    state: Option<&RegionLocalState>,
    source: &metapb::Region,
    commit: u64,
) -> std::result::Result<(), String> {
    let Some(state) = state else { return Err("no region state".into()) };
    if state.state != PeerState::Merging as i32 {
        return Err(format!("state {:?}", PeerState::try_from(state.state)));
    }
    let prepared_at = state.merge_state.as_ref().map_or(0, |m| m.commit);
    if prepared_at != commit {
        return Err(format!("merging at {prepared_at}, the target merges it at {commit}"));
    }
    let local = state.region.as_ref().map(epoch);
    if local != Some(epoch(source)) {
        return Err(format!("epoch {local:?}, the target merges {:?}", epoch(source)));
    }
    Ok(())
}

/// Step 6, resuming: the writes of the merge, in the target's round batch (so with its apply
/// state): the widened target, and the source's tombstone, which keeps its merge state (the
/// target before the merge) to answer the source's stale peers.
pub fn write_commit_merge<W: WriteBatch>(
    wb: &mut W,
    merged: &metapb::Region,
    source: &metapb::Region,
    source_merge: MergeState,
) -> AdminResponse {
    let target = RegionLocalState { region: Some(merged.clone()), ..Default::default() };
    wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(merged.id)), &target);
    let tombstone = RegionLocalState {
        state: PeerState::Tombstone as i32,
        region: Some(source.clone()),
        merge_state: Some(source_merge),
        ..Default::default()
    };
    wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(source.id)), &tombstone);
    AdminResponse {
        cmd_type: AdminCmdType::CommitMerge as i32,
        commit_merge: Some(CommitMergeResponse {}),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 3, version }),
            ..Default::default()
        }
    }

    #[test]
    fn merged_region_takes_the_union_and_a_newer_version() {
        let t = region(1, b"m", b"", 4);
        let s = region(2, b"c", b"m", 9);
        let m = merged_region(&t, &s).unwrap();
        assert_eq!((m.id, &m.start_key[..], &m.end_key[..]), (1, &b"c"[..], &b""[..]));
        assert_eq!(m.region_epoch.unwrap(), metapb::RegionEpoch { conf_ver: 3, version: 10 });
        let t = region(1, b"", b"c", 12);
        let m = merged_region(&t, &s).unwrap();
        assert_eq!((&m.start_key[..], &m.end_key[..]), (&b""[..], &b"m"[..]));
        assert_eq!(m.region_epoch.unwrap().version, 13);
    }

    #[test]
    fn merged_region_refuses_regions_that_do_not_touch() {
        let s = region(2, b"c", b"m", 1);
        for t in [region(1, b"n", b"z", 1), region(1, b"", b"b", 1), region(1, b"a", b"d", 1)] {
            assert!(merged_region(&t, &s).is_err(), "{t:?}");
        }
        // Two regions ending at +inf are not adjacent through their empty end keys.
        assert!(merged_region(&region(1, b"x", b"", 1), &region(2, b"y", b"", 1)).is_err());
    }

    #[test]
    fn carried_entries_must_be_one_run_ending_at_the_commit() {
        let e = |index, term| raft::eraftpb::Entry { index, term, ..Default::default() };
        assert!(check_merge_entries(&[e(5, 2), e(6, 2), e(7, 3)], 7).is_ok());
        assert!(check_merge_entries(&[], 7).is_err());
        assert!(check_merge_entries(&[e(5, 2), e(7, 2)], 7).is_err(), "a gap");
        assert!(check_merge_entries(&[e(5, 3), e(6, 2)], 6).is_err(), "term goes down");
        assert!(check_merge_entries(&[e(5, 2), e(6, 2)], 7).is_err(), "ends short");
        assert!(check_merge_entries(&[e(0, 2), e(1, 2)], 1).is_err(), "index 0");
    }

    #[test]
    fn source_state_must_be_merging_at_exactly_the_commit() {
        let source = region(2, b"c", b"m", 9);
        let merging = |commit| RegionLocalState {
            state: PeerState::Merging as i32,
            region: Some(source.clone()),
            merge_state: Some(MergeState { commit, ..Default::default() }),
            ..Default::default()
        };
        assert!(check_source_state(Some(&merging(40)), &source, 40).is_ok());
        assert!(check_source_state(Some(&merging(35)), &source, 40).is_err(), "#6460");
        assert!(check_source_state(None, &source, 40).is_err());
        let normal = RegionLocalState { region: Some(source.clone()), ..Default::default() };
        assert!(check_source_state(Some(&normal), &source, 40).is_err());
        let newer = region(2, b"c", b"m", 10);
        assert!(check_source_state(Some(&merging(40)), &newer, 40).is_err());
    }
}
