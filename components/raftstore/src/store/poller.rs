//! `RaftPoller`: the store's poll handler. One round: every peer handles its messages and
//! takes its ready into the shared raft batch; then `end` flushes what the leaders queued (they
//! may replicate before their own append is durable, so the followers' fsyncs overlap the
//! leader's), writes the batch with ONE sync, finishes every peer's ready and flushes the
//! messages that had to wait for the sync. Two flushes per round, each one batch per
//! destination store.

use batch_system::{HandleResult, HandlerBuilder, NormalFsm, PollHandler};
use engine_traits::{KvEngine, RaftEngine, RaftLogBatch};
use slog::{error, Logger};

use super::fsm::StoreFsm;
use super::PollContext;
use crate::msg::PeerMsg;
use crate::peer::fsm::PeerFsm;
use crate::transport::Transport;

/// The round's raft batch is written early once it reaches this, bounding memory per round.
const RAFT_BATCH_BYTES_MAX: usize = 8 << 20;

pub struct RaftPoller<EK: KvEngine, ER: RaftEngine, T> {
    ctx: PollContext<EK, ER, T>,
    logger: Logger,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> RaftPoller<EK, ER, T> {
    fn persist(&mut self) {
        if self.ctx.raft_wb.is_empty() {
            return;
        }
        fail::fail_point!("raftstore::store::before_persist");
        // Only entries, votes and terms need the sync; a batch that merely records a newer
        // commit index can be lost in a power cut (raft re-learns it) and is written unsynced.
        let sync = std::mem::take(&mut self.ctx.sync_needed);
        if let Err(e) = self.ctx.engines.raft.consume(&mut self.ctx.raft_wb, sync) {
            // Raft's safety rests on persisted state; a store that cannot persist must stop.
            error!(self.logger, "raft engine write failed"; "err" => %e);
            panic!("raft engine write failed: {e}");
        }
        let proposals = std::mem::take(&mut self.ctx.proposals_in_round);
        if sync {
            self.ctx.stats.record_fsync(proposals);
        }
        fail::fail_point!("raftstore::store::after_persist");
    }
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> PollHandler<PeerFsm<EK, ER>, StoreFsm>
    for RaftPoller<EK, ER, T>
{
    fn begin(&mut self, _batch_size: usize) {
        self.ctx.proposals_in_round = 0;
    }

    fn handle_control(&mut self, control: &mut StoreFsm) -> Option<usize> {
        Some(control.handle(&mut self.ctx))
    }

    fn handle_normal(&mut self, fsm: &mut PeerFsm<EK, ER>) -> HandleResult {
        let max = self.ctx.cfg.messages_per_tick;
        let left = fsm.handle(&mut self.ctx, max);
        if self.ctx.raft_wb.data_size() > RAFT_BATCH_BYTES_MAX {
            // Readies already taken stay pending until `end`; persisting early only splits
            // the round's write, never reorders it.
            self.persist();
        }
        if left > 0 {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(0, false)
        }
    }

    fn end(&mut self, normals: &mut [NormalFsm<PeerFsm<EK, ER>>]) {
        // Leaders' messages of this round leave before the fsync.
        self.ctx.transport.flush();
        self.persist();
        for fsm in normals.iter_mut() {
            if !std::mem::take(&mut fsm.has_pending_ready) {
                continue;
            }
            if fsm.peer.post_persist(&mut self.ctx) {
                // More raft work (new committed entries, messages): another round, soon.
                let _ = fsm.mailbox().force_send(PeerMsg::Wake);
            }
        }
        self.ctx.transport.flush();
    }
}

pub struct RaftPollerBuilder<EK: KvEngine, ER: RaftEngine, T> {
    pub(super) ctx_template: PollContext<EK, ER, T>,
    pub(super) logger: Logger,
}

impl<EK: KvEngine, ER: RaftEngine, T: Transport> HandlerBuilder<PeerFsm<EK, ER>, StoreFsm>
    for RaftPollerBuilder<EK, ER, T>
{
    type Handler = RaftPoller<EK, ER, T>;

    fn build(&mut self) -> Self::Handler {
        let t = &self.ctx_template;
        RaftPoller {
            ctx: PollContext {
                cfg: t.cfg.clone(),
                store_id: t.store_id,
                engines: t.engines.clone(),
                transport: t.transport.clone(),
                apply_router: t.apply_router.clone(),
                raft_wb: t.engines.raft.log_batch(64 << 10),
                proposals_in_round: 0,
                sync_needed: false,
                stats: t.stats.clone(),
                store_meta: t.store_meta.clone(),
                router: t.router.clone(),
                pd: t.pd.clone(),
                split_checker: t.split_checker.clone(),
                log_gc: t.log_gc.clone(),
                snap_mgr: t.snap_mgr.clone(),
                ticker: t.ticker.clone(),
                clock: t.clock.clone(),
                logger: t.logger.clone(),
            },
            logger: self.logger.clone(),
        }
    }
}
