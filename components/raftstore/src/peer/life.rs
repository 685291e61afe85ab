//! Destroying a peer: its apply FSM stops, its region state becomes `Tombstone` (keeping the
//! region and its epoch, so late messages can be told apart), its raft log and data are
//! deleted, its FSMs leave the store (`store::life`), and every command it still holds is
//! answered `RegionNotFound` (a merged source: `EpochNotMatch` naming its target).
//!
//! Two phases, because the apply FSM runs on another thread and may be in the middle of a
//! round that writes this region's data:
//! 1. `destroy` (on `PeerMsg::Destroy`, a removal, or a merge's result): the peer stops (no
//!    raft step, no tick, commands answered as above), answers everything it holds, and asks
//!    its apply FSM to stop.
//! 2. `on_apply_destroyed` (the apply FSM confirms, after the last round it wrote): from here
//!    nothing writes the region's data any more, so it is safe to:
//!    a. write the tombstone, synced (a merged source's keeps its merge state); a crash at any
//!       later point restarts without this peer;
//!    b. delete the raft log (garbage once the tombstone is durable);
//!    c. delete the data range, unless the peer was merged (the data is the target's now),
//!       another live region on this store covers the range, or the peer never had one
//!       (uninitialized). A crash between a and c leaves data no region owns: invisible to
//!       reads (every read goes through a region), and deleted again by the snapshot that
//!       brings the range back to this store;
//!    d. unregister the FSMs (`store::life::unregister_region`).

use engine_traits::{KvEngine, Mutable, RaftEngine, WriteOptions, CF_RAFT, DATA_CFS};
use proto::raft_serverpb::{PeerState, RegionLocalState};
use slog::{error, info, warn};

use super::Peer;
use crate::apply::ApplyTask;
use crate::error::Error;
use crate::msg::PeerMsg;
use crate::store::{life, PollContext};

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Phase 1 (see the module doc). Idempotent.
    pub fn destroy<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if self.life.pending_remove || self.life.stopped {
            return;
        }
        info!(self.logger, "destroying peer"; "merged_into" => self.life.merged_into.as_ref().map(|t| t.id));
        self.life.pending_remove = true;
        self.fail_pending(&self.removal_error());
        self.ready.pending = None;
        self.leadership.guard = None;
        if ctx.apply_router.force_send(self.region_id.get(), ApplyTask::Destroy).is_err() {
            // No apply FSM (a simulated crash stopped it): nothing can write any more.
            self.on_apply_destroyed(ctx);
        }
    }

    /// Phase 2 (see the module doc).
    pub fn on_apply_destroyed<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if self.life.stopped {
            return;
        }
        if let Some(target) = self.life.replaced_by {
            // A merge target's snapshot replaces this peer: its write tombstones it and
            // unregisters it (`snapshot`, step 4a). Nothing of this region is written now.
            self.life.stopped_for_snapshot = true;
            let _ =
                ctx.router.send(target, PeerMsg::SnapshotSourceStopped { source: self.region_id });
            return;
        }
        let region = self.region().clone();
        // a.
        // A merged source keeps its merge state (the target it went to), written first in
        // the target's batch; rewriting it synced also makes that batch durable.
        let state = RegionLocalState {
            state: PeerState::Tombstone as i32,
            region: Some(region.clone()),
            merge_state: self.merged_tombstone_state(),
            ..Default::default()
        };
        let mut wb = ctx.engines.kv.write_batch();
        wb.put_msg_cf(CF_RAFT, &keys::region_state_key(self.region_id), &state);
        if let Err(e) = ctx.engines.kv.write(&mut wb, &WriteOptions::synced()) {
            error!(self.logger, "cannot write tombstone"; "err" => %e);
            panic!("region {}: cannot write tombstone: {e}", self.region_id);
        }
        // b.
        if let Err(e) = ctx.engines.raft.clean(self.region_id) {
            // The tombstone is durable, so a leftover log is garbage, not a hazard.
            error!(self.logger, "cannot clean raft log of destroyed peer"; "err" => %e);
        }
        // c. and d., under the meta lock: no region can take the range in between.
        let mut meta = ctx.store_meta.lock();
        // An uninitialized peer owns no range (its empty keys would read as all keys).
        let initialized = self.raft_group.store().is_initialized();
        let owned_by_other = !initialized
            || self.life.merged_into.is_some()
            || meta
                .overlapping(&region.start_key, &region.end_key)
                .is_some_and(|r| r.id != region.id);
        if !owned_by_other {
            let start = keys::data_key(&region.start_key);
            let end = keys::enc_end_key(&region.end_key);
            for cf in DATA_CFS {
                if let Err(e) = ctx.engines.kv.delete_range_cf(cf, &start, &end) {
                    // Garbage no region owns; the next snapshot of the range deletes it.
                    warn!(self.logger, "cannot delete data of destroyed peer"; "cf" => cf, "err" => %e);
                }
            }
        }
        life::unregister_region(&ctx.fsm_handles(), &mut meta, self.region_id);
        drop(meta);
        info!(self.logger, "peer destroyed"; "data_deleted" => !owned_by_other);
        self.life.stopped = true;
    }

    /// What a command reaching this peer while (or after) it is destroyed gets: the region
    /// that took its range if it was merged (the client retries there), else
    /// `RegionNotFound`.
    pub(super) fn removal_error(&self) -> Error {
        match &self.life.merged_into {
            Some(target) => Error::EpochNotMatch {
                message: format!("region {} merged into region {}", self.region_id, target.id),
                current_regions: vec![target.clone()],
            },
            None => Error::RegionNotFound(self.region_id),
        }
    }

    /// Answers every command the peer holds: `err` for those not proposed yet, `Undetermined`
    /// for proposals (their entries may still commit on the other replicas).
    fn fail_pending(&mut self, err: &Error) {
        for p in self.proposals.drain(..) {
            for (cb, _) in p.callbacks {
                cb.invoke_with_error(Error::Undetermined(self.region_id));
            }
        }
        if let Some((_, cbs)) = self.batcher.take() {
            for (cb, _) in cbs {
                cb.invoke_with_error(err.clone());
            }
        }
        self.fail_reads(err);
        self.fail_leader_wait(err);
        self.fail_merge_holds(err);
        if let Some(p) = self.leadership.epoch_change.take() {
            for cmd in p.held {
                cmd.callback.invoke_with_error(err.clone());
            }
        }
    }
}
