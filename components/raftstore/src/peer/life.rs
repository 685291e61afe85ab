//! Destroying a peer: the peer's region state becomes `Tombstone`, its raft log is deleted,
//! its apply FSM stops, and every command it still holds is answered `RegionNotFound`.
//!
//! Order matters for crash safety: the tombstone is written (synced) first, so a crash at any
//! later point restarts without this peer, and the raft log is cleaned after it.
//! TODO(#membership): the region's data range is cleaned by the membership issue, which is
//! also when this is triggered by a ConfChange rather than a test.

use engine_traits::{KvEngine, Mutable, RaftEngine, WriteOptions, CF_RAFT};
use proto::raft_serverpb::{PeerState, RegionLocalState};
use slog::{error, info};

use super::Peer;
use crate::apply::ApplyTask;
use crate::error::Error;
use crate::store::PollContext;

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    pub fn destroy<T>(&mut self, ctx: &mut PollContext<EK, ER, T>) {
        if self.life.stopped {
            return;
        }
        info!(self.logger, "destroying peer");
        let _ = ctx.apply_router.force_send(self.region_id.get(), ApplyTask::Destroy);
        let state = RegionLocalState {
            state: PeerState::Tombstone as i32,
            region: Some(self.region().clone()),
            ..Default::default()
        };
        let mut wb = ctx.engines.kv.write_batch();
        wb.put_msg_cf(CF_RAFT, &keys::region_state_key(self.region_id), &state);
        if let Err(e) = ctx.engines.kv.write(&mut wb, &WriteOptions::synced()) {
            error!(self.logger, "cannot write tombstone"; "err" => %e);
            panic!("region {}: cannot write tombstone: {e}", self.region_id);
        }
        if let Err(e) = ctx.engines.raft.clean(self.region_id) {
            // The tombstone is durable, so a leftover log is garbage, not a hazard.
            error!(self.logger, "cannot clean raft log of destroyed peer"; "err" => %e);
        }
        ctx.store_meta.lock().remove_region(self.region_id);
        let err = Error::RegionNotFound(self.region_id);
        let e = err.clone().into_region_error();
        for p in self.proposals.drain(..) {
            for (cb, _) in p.callbacks {
                cb.invoke_with_error(e.clone());
            }
        }
        if let Some((_, cbs)) = self.batcher.take() {
            for (cb, _) in cbs {
                cb.invoke_with_error(e.clone());
            }
        }
        self.fail_reads(&err);
        self.fail_leader_wait(&err);
        if let Some(p) = self.leadership.epoch_change.take() {
            for cmd in p.held {
                cmd.callback.invoke_with_error(e.clone());
            }
        }
        self.ready.pending = None;
        self.leadership.guard = None;
        self.life.stopped = true;
    }
}
