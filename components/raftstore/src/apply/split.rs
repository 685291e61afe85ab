//! Applying a BatchSplit: the region is cut at the split keys; every replica computes the same
//! new regions from the entry alone, and writes their metadata together with the shrunk
//! original into the round's KV batch (with the apply state of the original, so a crash either
//! keeps the whole split or none of it).
//!
//! With `right_derive` (the default) the original region id keeps the rightmost part and the
//! new ids take the parts to its left, in key order; otherwise the original keeps the leftmost.
//! Every resulting region gets the original's `conf_ver` and `version + number of new regions`.
//! New regions start with the initial raft position (index and term 5, as bootstrapped ones),
//! their raft state is created when the peer is first loaded.

use engine_traits::{KvEngine, Mutable, CF_RAFT};
use proto::metapb;
use proto::raft_cmdpb::{AdminCmdType, AdminResponse, BatchSplitRequest, BatchSplitResponse};
use proto::raft_serverpb::{PeerState, RegionLocalState};
use util::RegionId;

use crate::error::{Error, Result};
use crate::peer::storage::initial_apply_state;
use crate::util::validate_split_keys;

/// Most new regions one BatchSplit entry may create.
pub const SPLIT_KEYS_MAX: usize = 1_000;

/// What a split changed, for the peer.
#[derive(Debug, Clone)]
pub struct SplitResult {
    /// The original region, shrunk (same id, new epoch).
    pub derived: metapb::Region,
    /// Every resulting region in key order, the derived one included.
    pub regions: Vec<metapb::Region>,
    /// New regions whose state already existed on this store and were not written (a peer of
    /// them was created here otherwise); the peer must not create them again.
    pub skipped: Vec<RegionId>,
}

/// Computes the regions `req` cuts `region` into. Pure: the same on every replica.
pub fn split_regions(
    region: &metapb::Region,
    req: &BatchSplitRequest,
) -> Result<(metapb::Region, Vec<metapb::Region>)> {
    let n = req.requests.len();
    if n == 0 || n > SPLIT_KEYS_MAX {
        return Err(Error::InvalidRequest(format!("{n} splits in one BatchSplit")));
    }
    let keys: Vec<Vec<u8>> = req.requests.iter().map(|r| r.split_key.clone()).collect();
    validate_split_keys(&keys, region)?;
    for r in &req.requests {
        if r.new_peer_ids.len() != region.peers.len() {
            return Err(Error::InvalidRequest(format!(
                "{} new peer ids for a region of {} peers",
                r.new_peer_ids.len(),
                region.peers.len()
            )));
        }
        if r.new_region_id == 0 || r.new_region_id == region.id {
            return Err(Error::InvalidRequest(format!("bad new region id {}", r.new_region_id)));
        }
    }
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.version += n as u64;
    // Boundaries of the n + 1 parts.
    let mut bounds = Vec::with_capacity(n + 2);
    bounds.push(region.start_key.clone());
    bounds.extend(keys);
    bounds.push(region.end_key.clone());
    let part = |i: usize, id: u64, peers: Vec<metapb::Peer>| metapb::Region {
        id,
        start_key: bounds[i].clone(),
        end_key: bounds[i + 1].clone(),
        region_epoch: Some(epoch),
        peers,
        ..region.clone()
    };
    let new_peers = |ids: &[u64]| -> Vec<metapb::Peer> {
        region.peers.iter().zip(ids).map(|(p, &id)| metapb::Peer { id, ..p.clone() }).collect()
    };
    let mut regions = Vec::with_capacity(n + 1);
    let derived_at = if req.right_derive { n } else { 0 };
    let mut new_ids = req.requests.iter();
    for i in 0..=n {
        if i == derived_at {
            regions.push(part(i, region.id, region.peers.clone()));
        } else {
            let r = new_ids.next().expect("n requests for n new parts");
            regions.push(part(i, r.new_region_id, new_peers(&r.new_peer_ids)));
        }
    }
    let mut ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != regions.len() {
        return Err(Error::InvalidRequest("duplicate new region ids".into()));
    }
    Ok((regions[derived_at].clone(), regions))
}

/// Executes a BatchSplit into `wb`: see the module doc.
pub fn exec_batch_split<EK: KvEngine>(
    kv: &EK,
    wb: &mut EK::WriteBatch,
    region: &metapb::Region,
    req: &BatchSplitRequest,
) -> Result<(AdminResponse, SplitResult)> {
    let (derived, regions) = split_regions(region, req)?;
    let mut skipped = Vec::new();
    for r in regions.iter().filter(|r| r.id != region.id) {
        let id = RegionId(r.id);
        let key = keys::region_state_key(id);
        if kv.get_value_cf(CF_RAFT, &key)?.is_some() {
            // Only a peer created otherwise (a snapshot, or one destroyed here) has state
            // already; its data and raft state are its own, so the split leaves them.
            skipped.push(id);
            continue;
        }
        let state = RegionLocalState { region: Some(r.clone()), ..Default::default() };
        wb.put_msg_cf(CF_RAFT, &key, &state);
        wb.put_msg_cf(CF_RAFT, &keys::apply_state_key(id), &initial_apply_state());
    }
    let state = RegionLocalState {
        state: PeerState::Normal as i32,
        region: Some(derived.clone()),
        ..Default::default()
    };
    wb.put_msg_cf(CF_RAFT, &keys::region_state_key(RegionId(region.id)), &state);
    let resp = AdminResponse {
        cmd_type: AdminCmdType::BatchSplit as i32,
        splits: Some(BatchSplitResponse { regions: regions.clone() }),
        ..Default::default()
    };
    Ok((resp, SplitResult { derived, regions, skipped }))
}

#[cfg(test)]
mod tests {
    use proto::raft_cmdpb::SplitRequest;

    use super::*;

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            region_epoch: Some(metapb::RegionEpoch { conf_ver: 3, version: 7 }),
            peers: (1..=3)
                .map(|s| metapb::Peer { id: 10 + s, store_id: s, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    fn req(keys: &[&[u8]], right_derive: bool) -> BatchSplitRequest {
        BatchSplitRequest {
            requests: keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let id = 100 * (i as u64 + 1);
                    SplitRequest {
                        split_key: k.to_vec(),
                        new_region_id: id,
                        new_peer_ids: vec![id + 1, id + 2, id + 3],
                        ..Default::default()
                    }
                })
                .collect(),
            right_derive,
            ..Default::default()
        }
    }

    fn ranges(regions: &[metapb::Region]) -> Vec<(u64, &[u8], &[u8])> {
        regions.iter().map(|r| (r.id, &r.start_key[..], &r.end_key[..])).collect()
    }

    #[test]
    fn right_derive_keeps_the_id_on_the_right() {
        let (derived, regions) = split_regions(&region(), &req(&[b"g", b"p"], true)).unwrap();
        assert_eq!(
            ranges(&regions),
            vec![(100, &b"a"[..], &b"g"[..]), (200, b"g", b"p"), (1, b"p", b"z")]
        );
        assert_eq!(derived.id, 1);
        for r in &regions {
            assert_eq!(r.region_epoch.unwrap(), metapb::RegionEpoch { conf_ver: 3, version: 9 });
            assert_eq!(r.peers.len(), 3);
        }
        assert_eq!(
            regions[1].peers[2],
            metapb::Peer { id: 203, store_id: 3, ..Default::default() }
        );
    }

    #[test]
    fn left_derive_keeps_the_id_on_the_left() {
        let (derived, regions) = split_regions(&region(), &req(&[b"m"], false)).unwrap();
        assert_eq!(ranges(&regions), vec![(1, &b"a"[..], &b"m"[..]), (100, b"m", b"z")]);
        assert_eq!(derived.end_key, b"m");
    }

    #[test]
    fn bad_splits_are_refused() {
        let bad: &[&[&[u8]]] = &[&[], &[b"a"], &[b"z"], &[b"0"], &[b"m", b"m"], &[b"p", b"g"]];
        for keys in bad {
            assert!(split_regions(&region(), &req(keys, true)).is_err(), "{keys:?}");
        }
        let mut r = req(&[b"m"], true);
        r.requests[0].new_peer_ids.pop();
        assert!(split_regions(&region(), &r).is_err(), "peer ids must match peers");
        let mut r = req(&[b"m"], true);
        r.requests[0].new_region_id = 1;
        assert!(split_regions(&region(), &r).is_err(), "the new id must be new");
    }
}
