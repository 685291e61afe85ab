//! The one path that creates a region's FSMs on this store, and the one that removes them.
//!
//! A region lives on a store as a pair: its `PeerFsm` (raft) and its `ApplyFsm` (applying
//! committed entries), plus its range in `StoreMeta`. Every way a region appears (start-up,
//! split, a raft message for a new peer; a snapshot initialises that peer in place) goes
//! through [`build_region`] then [`register_regions`]; every way it goes (destroy after a
//! removal, merge) goes through [`unregister_region`].
//!
//! Create:
//! 1. `build_region` loads the region's storage and builds both FSMs (no side effect: a
//!    failure leaves nothing behind). The caller may adjust the new peer (campaign, wait for
//!    a leader) through [`RegionFsms::peer_mut`].
//! 2. `register_regions`, under the `StoreMeta` lock: the apply FSM is registered first (the
//!    peer hands it entries as soon as it runs), then the peer, then the region's range enters
//!    the meta. Invariant: whoever finds a region in the meta finds its mailboxes (the store
//!    FSM redelivers messages on that basis).
//!
//! Remove (`unregister_region`, called by the peer once its apply FSM has stopped and its
//! tombstone is durable, see `peer::life`): the range leaves the meta first (no new message
//! is routed to the region by range), then both mailboxes close; queued messages are dropped
//! with their FSMs, and commands among them are answered `RegionNotFound` as they drop.

use std::sync::Arc;

use batch_system::InboxSender;
use engine_traits::{KvEngine, RaftEngine};
use proto::metapb;
use proto::raft_serverpb::MergeState;
use slog::{o, Logger};
use util::{PeerId, RegionId, StoreId, Term};

use super::meta::StoreMeta;
use super::router::RaftRouter;
use crate::apply::{ApplyFsm, ApplyRouter, ApplyTask};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::msg::PeerMsg;
use crate::peer::fsm::PeerFsm;
use crate::peer::storage::{Engines, PeerStorage};
use crate::peer::Peer;
use crate::util::find_peer;

type Snap<EK> = <EK as KvEngine>::Snapshot;

/// What building and registering a region's FSMs needs; borrowed from the poll context, or
/// from the store system at start-up.
pub(crate) struct FsmHandles<'a, EK: KvEngine, ER: RaftEngine> {
    pub cfg: &'a Arc<Config>,
    pub store_id: StoreId,
    pub engines: &'a Engines<EK, ER>,
    pub router: &'a RaftRouter<EK, ER>,
    pub apply_router: &'a ApplyRouter<EK>,
    pub logger: &'a Logger,
}

/// A region's two FSMs, built and not registered yet.
pub(crate) struct RegionFsms<EK: KvEngine, ER: RaftEngine> {
    region: metapb::Region,
    peer: (InboxSender<PeerMsg<Snap<EK>>>, Box<PeerFsm<EK, ER>>),
    apply: (InboxSender<ApplyTask<Snap<EK>>>, Box<ApplyFsm<EK>>),
}

impl<EK: KvEngine, ER: RaftEngine> RegionFsms<EK, ER> {
    pub fn region_id(&self) -> RegionId {
        RegionId(self.region.id)
    }

    pub fn peer_mut(&mut self) -> &mut Peer<EK, ER> {
        &mut self.peer.1.peer
    }
}

/// Step 1: builds the FSMs of an initialized region from its state on disk (start-up, split).
/// `merging`: the region's merge state if it is `Merging` (start-up; `peer::merge`).
pub(crate) fn build_region<EK: KvEngine, ER: RaftEngine>(
    h: &FsmHandles<'_, EK, ER>,
    region: &metapb::Region,
    merging: Option<MergeState>,
) -> Result<RegionFsms<EK, ER>> {
    let region_id = RegionId(region.id);
    let meta = find_peer(region, h.store_id).cloned().ok_or_else(|| {
        Error::Engine(engine_traits::Error::Corrupted {
            what: format!("region {region_id} has no peer on store {}", h.store_id),
        })
    })?;
    let logger = h.logger.new(o!("region_id" => region.id, "peer_id" => meta.id));
    let peer_id = PeerId(meta.id);
    let storage = PeerStorage::load(h.engines.clone(), region.clone(), logger.clone())?;
    let apply_state = storage.apply_state().clone();
    let applied_term = Term(apply_state.commit_term);
    let mut peer = Peer::new(h.cfg, meta, storage, logger.clone())?;
    peer.restore_merge_state(merging.clone());
    let (peer_tx, peer_rx) = h.router.inner().create_inbox();
    let (apply_tx, apply_rx) = h.apply_router.create_inbox();
    let apply = ApplyFsm::new(
        peer_id,
        region.clone(),
        apply_state,
        applied_term,
        merging,
        apply_rx,
        logger,
    );
    Ok(RegionFsms {
        region: region.clone(),
        peer: (peer_tx, Box::new(PeerFsm::new(peer, peer_rx))),
        apply: (apply_tx, Box::new(apply)),
    })
}

/// Step 1, for a peer a raft message creates (`store::fsm`): no range, no data, no log until
/// its first snapshot; its term and vote are reloaded if it existed before a restart.
pub(crate) fn build_uninitialized<EK: KvEngine, ER: RaftEngine>(
    h: &FsmHandles<'_, EK, ER>,
    region_id: RegionId,
    meta: metapb::Peer,
) -> Result<RegionFsms<EK, ER>> {
    let region = metapb::Region { id: region_id.get(), ..Default::default() };
    let logger = h.logger.new(o!("region_id" => region.id, "peer_id" => meta.id));
    let peer_id = PeerId(meta.id);
    let storage =
        PeerStorage::new_uninitialized(h.engines.clone(), region.clone(), logger.clone())?;
    let peer = Peer::new(h.cfg, meta, storage, logger.clone())?;
    let (peer_tx, peer_rx) = h.router.inner().create_inbox();
    let (apply_tx, apply_rx) = h.apply_router.create_inbox();
    let apply =
        ApplyFsm::new(peer_id, region.clone(), Default::default(), Term(0), None, apply_rx, logger);
    Ok(RegionFsms {
        region,
        peer: (peer_tx, Box::new(PeerFsm::new(peer, peer_rx))),
        apply: (apply_tx, Box::new(apply)),
    })
}

/// Step 2: registers built regions (see the module doc for the order). The caller holds the
/// `StoreMeta` lock and passes it in, so the registration and any bookkeeping of its own
/// (pending messages, the split's shrunk parent) are one atomic change of the meta.
///
/// # Panics
/// If a region overlaps another one in the meta (two regions owning a key is a bug).
pub(crate) fn register_regions<EK: KvEngine, ER: RaftEngine>(
    h: &FsmHandles<'_, EK, ER>,
    meta: &mut StoreMeta,
    regions: Vec<RegionFsms<EK, ER>>,
) {
    let mut applies = Vec::with_capacity(regions.len());
    let mut peers = Vec::with_capacity(regions.len());
    let mut ranges = Vec::with_capacity(regions.len());
    for RegionFsms { region, peer, apply } in regions {
        applies.push((region.id, apply.0, apply.1));
        peers.push((region.id, peer.0, peer.1));
        ranges.push(region);
    }
    h.apply_router.register_all(applies);
    h.router.inner().register_all(peers);
    for region in ranges {
        if region.peers.is_empty() {
            meta.add_uninitialized(RegionId(region.id)); // no range to own yet
        } else {
            meta.set_region(region);
        }
    }
}

/// Removes a region's FSMs from the store (see the module doc). Idempotent.
pub(crate) fn unregister_region<EK: KvEngine, ER: RaftEngine>(
    h: &FsmHandles<'_, EK, ER>,
    meta: &mut StoreMeta,
    region_id: RegionId,
) {
    meta.remove_region(region_id);
    meta.release_snapshot(region_id);
    h.apply_router.close(region_id.get());
    h.router.inner().close(region_id.get());
}
