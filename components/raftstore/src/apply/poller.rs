//! The apply poller: one KV write batch per round for every region it handled.

use batch_system::{HandleResult, HandlerBuilder, NormalFsm, PollHandler, Router};
use engine_traits::{KvEngine, WriteBatch, WriteOptions};
use proto::raft_cmdpb::RaftCmdResponse;
use slog::{error, Logger};
use util::RegionId;

use super::fsm::{split_response, ApplyControlFsm, ApplyFsm};
use super::{ApplyRes, ApplyTask, Proposal};
use crate::callback::Callback;
use crate::error::Error;
use crate::snap::SnapManager;
use crate::snap_apply::ApplyScheduler;
use crate::snap_gen::GenScheduler;
use crate::stats::StoreStats;

pub type ApplyRouter<EK> = Router<ApplyFsm<EK>, ApplyControlFsm>;

/// Where apply results go: the store's peers. Implemented by the raft router.
pub trait ApplyResSink: Clone + Send + 'static {
    fn send_apply_res(&self, res: ApplyRes);

    /// The region's apply FSM stopped for good (`ApplyTask::Destroy`), after the last write
    /// of its data.
    fn send_apply_destroyed(&self, region_id: RegionId);

    /// A merge target's apply FSM asks the local source peer to catch up to its PrepareMerge
    /// at `commit` (`PeerMsg::CatchUpLogs`).
    fn send_catch_up_logs(
        &self,
        source: RegionId,
        target: RegionId,
        commit: u64,
        entries: Vec<raft::eraftpb::Entry>,
    );
}

/// A round's batch grows at most to this before it is written mid-round, so one hot region
/// cannot build an unbounded batch.
const APPLY_BATCH_BYTES_MAX: usize = 4 << 20;

pub struct ApplyContext<EK: KvEngine> {
    pub(super) kv: EK,
    /// The store's snapshot files (applying received snapshots).
    pub(super) snap_mgr: SnapManager,
    /// The `snap-generator` worker (building snapshots for raft).
    pub(super) snap_gen: GenScheduler<EK::Snapshot>,
    /// The `snap-applier` worker (applying received snapshots' files).
    pub(super) snap_apply: ApplyScheduler,
    /// The apply FSMs' router, for the `snap-applier` to wake them.
    pub(super) router: ApplyRouter<EK>,
    pub(super) stats: StoreStats,
    wb: EK::WriteBatch,
    callbacks: Vec<(Callback<EK::Snapshot>, Result<RaftCmdResponse, Error>)>,
    results: Vec<ApplyRes>,
    /// Regions whose apply FSM stopped this round; told after the round's write.
    destroyed: Vec<RegionId>,
    /// Merge targets paused this round: their sources are asked to catch up after the write.
    catch_ups: Vec<(RegionId, RegionId, u64, Vec<raft::eraftpb::Entry>)>,
    /// Merge sources that caught up this round: `(target, source, commit)`; the targets are
    /// woken once the write holds the sources' last round (`peer::merge`, step 6).
    sources_ready: Vec<(RegionId, RegionId, u64)>,
}

impl<EK: KvEngine> ApplyContext<EK> {
    pub(super) fn wb(&mut self) -> &mut EK::WriteBatch {
        &mut self.wb
    }

    /// The engine (to read state a command depends on) and the round's batch.
    pub(super) fn kv_and_wb(&mut self) -> (&EK, &mut EK::WriteBatch) {
        (&self.kv, &mut self.wb)
    }

    pub(super) fn push_result(&mut self, res: ApplyRes) {
        self.results.push(res);
    }

    pub(super) fn push_destroyed(&mut self, region_id: RegionId) {
        self.destroyed.push(region_id);
    }

    pub(super) fn push_catch_up(
        &mut self,
        source: RegionId,
        target: RegionId,
        commit: u64,
        entries: Vec<raft::eraftpb::Entry>,
    ) {
        self.catch_ups.push((source, target, commit, entries));
    }

    pub(super) fn push_source_ready(&mut self, target: RegionId, source: RegionId, commit: u64) {
        self.sources_ready.push((target, source, commit));
    }

    /// Queues the answers of a proposal; they are delivered after the batch is written.
    pub(super) fn answer(
        &mut self,
        p: Proposal<EK::Snapshot>,
        result: Result<RaftCmdResponse, Error>,
        term: u64,
    ) {
        let mut offset = 0;
        for (cb, n) in p.callbacks {
            let resp = split_response(&result, offset, n, term);
            offset += n;
            self.callbacks.push((cb, resp));
        }
    }
}

pub struct ApplyPoller<EK: KvEngine, R> {
    ctx: ApplyContext<EK>,
    sink: R,
    messages_per_tick: usize,
    stats: StoreStats,
    /// A crash failpoint fired this round: every FSM of the round stops (see `drop_round`).
    crashed: bool,
    logger: Logger,
}

impl<EK: KvEngine, R: ApplyResSink> ApplyPoller<EK, R> {
    /// Writes the batch, then answers callbacks and reports results (in that order: a client
    /// never hears of a write the KV engine does not hold).
    fn flush(&mut self) {
        if !self.ctx.wb.is_empty() {
            fail::fail_point!("raftstore::apply::before_write", |_| {
                self.drop_round();
            });
            if let Err(e) = self.ctx.kv.write(&mut self.ctx.wb, &WriteOptions::default()) {
                // The KV engine refusing a write leaves this store unable to apply; carrying on
                // would make it diverge from its replicas.
                error!(self.logger, "apply write failed"; "err" => %e);
                panic!("apply write failed: {e}");
            }
            self.ctx.wb.clear();
            fail::fail_point!("raftstore::apply::after_write", |_| {
                self.drop_round();
            });
        }
        self.stats.record_apply_round(self.ctx.callbacks.len());
        for (cb, resp) in self.ctx.callbacks.drain(..) {
            match resp {
                Ok(resp) => cb.invoke(resp),
                Err(e) => cb.invoke_with_error(e),
            }
        }
        for res in self.ctx.results.drain(..) {
            self.sink.send_apply_res(res);
        }
        for region_id in self.ctx.destroyed.drain(..) {
            self.sink.send_apply_destroyed(region_id);
        }
        for (source, target, commit, entries) in self.ctx.catch_ups.drain(..) {
            self.sink.send_catch_up_logs(source, target, commit, entries);
        }
        for (target, source, commit) in self.ctx.sources_ready.drain(..) {
            // After the write: the target reads the source's state from the engine. Gone:
            // the target was destroyed; its restart (if any) asks again.
            let task = ApplyTask::SourceReady { source_region_id: source, commit };
            let _ = self.ctx.router.force_send(target.get(), task);
        }
    }

    /// Failpoint action: behave as if the process died here. The batch (if unwritten) is lost,
    /// nobody is answered (callbacks are dropped without a result), nothing is reported.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    fn drop_round(&mut self) {
        self.ctx.wb.clear();
        // Dropped callbacks answer "region not found": to the client, not acknowledged.
        self.ctx.callbacks.clear();
        self.ctx.results.clear();
        self.ctx.catch_ups.clear();
        self.ctx.sources_ready.clear();
        self.crashed = true;
    }
}

impl<EK: KvEngine, R: ApplyResSink> PollHandler<ApplyFsm<EK>, ApplyControlFsm>
    for ApplyPoller<EK, R>
{
    fn begin(&mut self, _batch_size: usize) {}

    fn handle_control(&mut self, control: &mut ApplyControlFsm) -> Option<usize> {
        while control.inbox.try_recv().is_some() {}
        Some(0)
    }

    fn handle_normal(&mut self, fsm: &mut ApplyFsm<EK>) -> HandleResult {
        let left = fsm.handle_tasks(&mut self.ctx, self.messages_per_tick);
        fsm.finish_round(&mut self.ctx);
        if self.ctx.wb.data_size() > APPLY_BATCH_BYTES_MAX {
            self.flush();
        }
        if fsm.needs_engine_at_applied() {
            // Snapshot work reads or replaces the region's data in the engine: what this
            // round applied so far goes there first.
            self.flush();
            fsm.on_engine_at_applied(&mut self.ctx);
            fsm.finish_round(&mut self.ctx);
        }
        // Waiting for the `snap-applier`, it leaves its tasks queued and sleeps: its wake-up
        // task brings it back.
        if left > 0 && !fsm.is_stopped_now() && !fsm.is_waiting_for_snapshot() {
            HandleResult::KeepProcessing
        } else {
            HandleResult::stop_at(left, false)
        }
    }

    fn end(&mut self, normals: &mut [NormalFsm<ApplyFsm<EK>>]) {
        self.flush();
        if std::mem::take(&mut self.crashed) {
            for fsm in normals.iter_mut() {
                fsm.crash();
            }
        }
    }
}

pub struct ApplyPollerBuilder<EK: KvEngine, R> {
    kv: EK,
    sink: R,
    snap_mgr: SnapManager,
    snap_gen: GenScheduler<EK::Snapshot>,
    snap_apply: ApplyScheduler,
    router: ApplyRouter<EK>,
    messages_per_tick: usize,
    stats: StoreStats,
    logger: Logger,
}

impl<EK: KvEngine, R: ApplyResSink> ApplyPollerBuilder<EK, R> {
    pub fn new(
        kv: EK,
        sink: R,
        snap_mgr: SnapManager,
        snap_gen: GenScheduler<EK::Snapshot>,
        snap_apply: ApplyScheduler,
        router: ApplyRouter<EK>,
        messages_per_tick: usize,
        stats: StoreStats,
        logger: Logger,
    ) -> Self {
        ApplyPollerBuilder {
            kv,
            sink,
            snap_mgr,
            snap_gen,
            snap_apply,
            router,
            messages_per_tick,
            stats,
            logger,
        }
    }
}

impl<EK: KvEngine, R: ApplyResSink> HandlerBuilder<ApplyFsm<EK>, ApplyControlFsm>
    for ApplyPollerBuilder<EK, R>
{
    type Handler = ApplyPoller<EK, R>;

    fn build(&mut self) -> Self::Handler {
        ApplyPoller {
            ctx: ApplyContext {
                wb: self.kv.write_batch_with_cap(64 << 10),
                kv: self.kv.clone(),
                snap_mgr: self.snap_mgr.clone(),
                snap_gen: self.snap_gen.clone(),
                snap_apply: self.snap_apply.clone(),
                router: self.router.clone(),
                stats: self.stats.clone(),
                callbacks: Vec::new(),
                destroyed: Vec::new(),
                catch_ups: Vec::new(),
                sources_ready: Vec::new(),
                results: Vec::new(),
            },
            sink: self.sink.clone(),
            messages_per_tick: self.messages_per_tick,
            stats: self.stats.clone(),
            crashed: false,
            logger: self.logger.clone(),
        }
    }
}
