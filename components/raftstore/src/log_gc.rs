//! The raft log GC worker: one thread per store deletes compacted raft log entries from the
//! raft engine, off the raft threads.
//!
//! 1. Every replica that applies a `CompactLog` (`peer/log_gc.rs`) sends a task: its region
//!    and the first log index to keep (the new truncated index + 1).
//! 2. The worker takes what is queued (up to [`BATCH_MAX`] tasks; a region's tasks merge into
//!    the highest index) and first **syncs the KV engine**. This is the durability invariant
//!    of log GC: *the raft log is never truncated past what the KV engine has made durable.*
//!    The apply pool writes the KV engine without sync: a power cut may lose its last apply
//!    rounds, which the restart replays from the raft log (synced before the entries were
//!    applied). The `CompactLog`'s apply round was written before its task was sent, so after
//!    this sync the KV engine durably holds an apply state whose applied index is at least
//!    the compaction index, with every write that state covers. Only then do the entries
//!    below it go. `PeerStorage::load` refuses a region whose log starts past its applied
//!    state's truncated index, so a broken ordering is a clear error at restart, never a
//!    silent loss.
//! 3. Each region's entries below its index are deleted, from the first stored entry (so a
//!    dropped task, or one lost in a crash, is covered by the region's next one), in bounded
//!    writes without sync: a deletion a crash undoes only leaves entries below the first
//!    index, which nothing reads and the next GC deletes.
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]); a task that does not fit is dropped and counted
//! (`log_gc_tasks_dropped`): the next compaction of its region covers it.

use std::collections::HashMap;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use engine_traits::{KvEngine, RaftEngine};
use slog::{debug, error, Logger};
use util::{LogIndex, RegionId};

use crate::stats::StoreStats;

/// Tasks waiting for the worker, at most.
pub const QUEUE_CAPACITY: usize = 4096;

/// Tasks handled after one KV sync, at most.
pub const BATCH_MAX: usize = 512;

/// Delete `region_id`'s raft log entries below `keep_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGcTask {
    pub region_id: RegionId,
    pub keep_from: LogIndex,
}

/// The peers' handle on the worker.
#[derive(Clone)]
pub struct LogGcScheduler {
    tx: Sender<LogGcTask>,
    stats: StoreStats,
}

impl LogGcScheduler {
    /// Queues a task; a full queue (or a stopped worker) drops it, counted.
    pub fn schedule(&self, task: LogGcTask) {
        match self.tx.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.record_log_gc_task_dropped();
            }
        }
    }
}

/// Starts the worker thread. It stops when `stop` is dropped; queued tasks are then dropped
/// (garbage below the first index, deleted by the next GC after restart).
pub fn spawn<EK: KvEngine, ER: RaftEngine>(
    kv: EK,
    raft: ER,
    stats: StoreStats,
    stop: Receiver<()>,
    logger: Logger,
) -> std::io::Result<(LogGcScheduler, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<LogGcTask>(QUEUE_CAPACITY);
    let worker_stats = stats.clone();
    let handle = thread::Builder::new().name("raft-log-gc".into()).spawn(move || loop {
        crossbeam_channel::select! {
            recv(rx) -> task => {
                let Ok(first) = task else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    let Ok(t) = rx.try_recv() else { break };
                    batch.push(t);
                }
                run_batch(&kv, &raft, &worker_stats, batch, &logger);
            }
            recv(stop) -> _ => return,
        }
    })?;
    Ok((LogGcScheduler { tx, stats }, handle))
}

/// Step 2 and 3 of the module doc for one batch.
fn run_batch<EK: KvEngine, ER: RaftEngine>(
    kv: &EK,
    raft: &ER,
    stats: &StoreStats,
    batch: Vec<LogGcTask>,
    logger: &Logger,
) {
    let mut keep: HashMap<RegionId, LogIndex> = HashMap::with_capacity(batch.len());
    for t in batch {
        let k = keep.entry(t.region_id).or_insert(t.keep_from);
        *k = (*k).max(t.keep_from);
    }
    // The durability invariant: nothing is deleted unless this sync succeeded.
    let sync = (|| {
        fail::fail_point!("raftstore::log_gc::skip_kv_sync", |_| Ok(()));
        kv.sync_wal()
    })();
    if let Err(e) = sync {
        error!(logger, "KV engine sync failed; raft log GC skipped"; "err" => %e);
        return;
    }
    for (region_id, keep_from) in keep {
        match raft.gc(region_id, LogIndex(0), keep_from) {
            Ok(n) => {
                stats.record_log_entries_deleted(n);
                debug!(logger, "raft log gc"; "region_id" => region_id.get(),
                    "keep_from" => keep_from.get(), "deleted" => n);
            }
            // Garbage left behind is harmless (see the module doc); the next GC retries.
            Err(e) => {
                error!(logger, "raft log gc failed"; "region_id" => region_id.get(), "err" => %e)
            }
        }
    }
}
