//! Bootstrapping: a store's identity and the initial state of the regions a new cluster starts
//! with. Both are written synced; a store refuses to be bootstrapped twice.

use engine_traits::{KvEngine, Mutable, RaftEngine, RaftLogBatch, WriteOptions, CF_RAFT};
use proto::metapb;
use proto::raft_serverpb::StoreIdent;
use util::{ClusterId, RegionId, StoreId};

use crate::peer::storage::{write_initial_region_state, Engines};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("store is already bootstrapped as store {store_id} of cluster {cluster_id}")]
    AlreadyBootstrapped { cluster_id: u64, store_id: u64 },
    #[error("region {0} already exists on this store")]
    RegionExists(RegionId),
    #[error("region {region_id} has no peer on store {store_id}")]
    NoPeerHere { region_id: RegionId, store_id: StoreId },
    #[error(transparent)]
    Engine(#[from] engine_traits::Error),
}

/// The identity this store was bootstrapped with, if any.
pub fn load_store_ident<EK: KvEngine>(kv: &EK) -> Result<Option<StoreIdent>, engine_traits::Error> {
    kv.get_msg_cf(CF_RAFT, keys::STORE_IDENT_KEY)
}

/// Writes the store's identity. Errors if the engines already belong to a store.
pub fn bootstrap_store<EK: KvEngine, ER: RaftEngine>(
    engines: &Engines<EK, ER>,
    cluster_id: ClusterId,
    store_id: StoreId,
) -> Result<(), BootstrapError> {
    if let Some(ident) = load_store_ident(&engines.kv)? {
        return Err(BootstrapError::AlreadyBootstrapped {
            cluster_id: ident.cluster_id,
            store_id: ident.store_id,
        });
    }
    let ident =
        StoreIdent { cluster_id: cluster_id.get(), store_id: store_id.get(), ..Default::default() };
    let mut wb = engines.kv.write_batch();
    wb.put_msg_cf(CF_RAFT, keys::STORE_IDENT_KEY, &ident);
    engines.kv.write(&mut wb, &WriteOptions::synced())?;
    Ok(())
}

/// Writes the initial state of `region` (which MUST have a peer on `store_id`) on this store:
/// raft state first, then region and apply state, both synced. Every store named in the
/// region's peers must do the same before the region can elect a leader.
pub fn bootstrap_region<EK: KvEngine, ER: RaftEngine>(
    engines: &Engines<EK, ER>,
    store_id: StoreId,
    region: &metapb::Region,
) -> Result<(), BootstrapError> {
    let region_id = RegionId(region.id);
    if !region.peers.iter().any(|p| p.store_id == store_id.get()) {
        return Err(BootstrapError::NoPeerHere { region_id, store_id });
    }
    if engines.kv.get_value_cf(CF_RAFT, &keys::region_state_key(region_id))?.is_some() {
        return Err(BootstrapError::RegionExists(region_id));
    }
    let mut kv_wb = engines.kv.write_batch();
    let mut raft_wb = engines.raft.log_batch(1024);
    write_initial_region_state::<EK, ER>(&mut kv_wb, &mut raft_wb, region);
    debug_assert!(!raft_wb.is_empty());
    engines.raft.consume(&mut raft_wb, true)?;
    engines.kv.write(&mut kv_wb, &WriteOptions::synced())?;
    Ok(())
}
