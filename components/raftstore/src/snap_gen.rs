//! The `snap-generator` worker: builds a region's snapshot files from a KV snapshot the apply
//! FSM took at its applied index (`peer::snapshot`, step 2), and answers the peer's raft
//! storage with the raft `Snapshot` that describes them.
//!
//! 1. The apply FSM sends a [`GenTask`] (bounded queue, `GEN_QUEUE_MAX`; full: the task is
//!    answered "failed" at once and raft asks again later).
//! 2. The worker builds the `gen_` files (`SnapManager::build`, rate-limited, streaming).
//! 3. It answers `Some(snapshot)` (data: `RaftSnapshotData` with the region and the files'
//!    meta; metadata: index, term and the region's conf state), or `None` on failure. A
//!    snapshot already built under the same key (the same applied index) is reused.
//! 4. Every `GC_INTERVAL` it deletes snapshot files nobody needs.

use std::collections::HashMap;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use engine_traits::KvEngine;
use prost::Message as _;
use proto::metapb;
use proto::raft_serverpb::RaftSnapshotData;
use raft::eraftpb::Snapshot;
use slog::{info, warn, Logger};
use util::{LogIndex, RegionId, Term};

use crate::snap::{self, Side, SnapKey, SnapManager};
use crate::stats::StoreStats;
use crate::util::conf_state_from_region;

/// Tasks waiting for the worker; beyond it generation is refused (raft retries).
pub const GEN_QUEUE_MAX: usize = 64;

/// How often the worker deletes snapshot files nobody needs (`SnapManager::gc`): `gen_`
/// snapshots replaced by a newer one of their region (or older than `snap-gc-timeout`), and
/// leftovers of broken transfers.
const GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// One snapshot to build.
pub struct GenTask<S> {
    pub region: metapb::Region,
    pub index: LogIndex,
    pub term: Term,
    /// The KV engine at exactly `index`.
    pub snapshot: S,
    /// Where the answer goes (`PeerStorage`'s generation channel).
    pub done: Sender<Option<Snapshot>>,
}

/// Hands tasks to the worker.
#[derive(Clone)]
pub struct GenScheduler<S> {
    tx: Sender<GenTask<S>>,
}

impl<S> GenScheduler<S> {
    /// Queues `task`; a full queue answers it "failed" at once.
    pub fn schedule(&self, task: GenTask<S>) {
        match self.tx.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(t) | TrySendError::Disconnected(t)) => {
                let _ = t.done.send(None);
            }
        }
    }
}

/// Starts the worker; it stops when `stop` is dropped.
pub fn spawn<EK: KvEngine>(
    kv: EK,
    snap_mgr: SnapManager,
    stats: StoreStats,
    stop: Receiver<()>,
    logger: Logger,
) -> std::io::Result<(GenScheduler<EK::Snapshot>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<GenTask<EK::Snapshot>>(GEN_QUEUE_MAX);
    let handle = thread::Builder::new().name("snap-generator".into()).spawn(move || {
        // The newest snapshot built per region: older `gen_` ones are garbage.
        let mut latest: HashMap<RegionId, SnapKey> = HashMap::new();
        let gc_tick = crossbeam_channel::tick(GC_INTERVAL);
        loop {
            crossbeam_channel::select! {
                recv(rx) -> task => match task {
                    Ok(task) => {
                        if let Some(key) = generate(&kv, &snap_mgr, task, &logger) {
                            stats.record_snapshot_generated();
                            latest.insert(key.region_id, key);
                        }
                    }
                    Err(_) => return,
                },
                recv(gc_tick) -> _ => {
                    // `rev_` files are deleted once applied (and at start); a received
                    // snapshot waiting for its peer is not touched here.
                    let needed = |key: &SnapKey, side: Side| match side {
                        Side::Gen => latest.get(&key.region_id) == Some(key),
                        Side::Rev => true,
                    };
                    if let Err(e) = snap_mgr.gc(needed) {
                        warn!(logger, "snapshot GC failed"; "err" => %e);
                    }
                }
                recv(stop) -> _ => return,
            }
        }
    })?;
    Ok((GenScheduler { tx }, handle))
}

/// Builds one snapshot and answers the task; the key it built, if it did.
fn generate<EK: KvEngine>(
    kv: &EK,
    mgr: &SnapManager,
    task: GenTask<EK::Snapshot>,
    logger: &Logger,
) -> Option<SnapKey> {
    let key = SnapKey { region_id: RegionId(task.region.id), term: task.term, index: task.index };
    let started = std::time::Instant::now();
    let meta = match mgr.build(kv, &task.snapshot, &task.region, key) {
        Ok(generated) => {
            info!(logger, "snapshot generated"; "key" => %key, "keys" => generated.keys,
                "bytes" => generated.size_bytes, "ms" => started.elapsed().as_millis() as u64);
            Ok(generated.meta)
        }
        // Another request of the same key built it meanwhile, or builds it now.
        Err(snap::Error::InUse { .. }) if mgr.exists(key, Side::Gen) => {
            mgr.load_meta(key, Side::Gen)
        }
        Err(e) => Err(e),
    };
    let answer = match meta {
        Ok(meta) => {
            let data = RaftSnapshotData {
                region: Some(task.region.clone()),
                file_size: meta.cf_files.iter().map(|f| f.size).sum(),
                meta: Some(meta),
                ..Default::default()
            };
            let mut snap = Snapshot::default();
            snap.set_data(data.encode_to_vec().into());
            let m = snap.mut_metadata();
            m.index = task.index.get();
            m.term = task.term.get();
            m.set_conf_state(conf_state_from_region(&task.region));
            Some(snap)
        }
        Err(e) => {
            warn!(logger, "snapshot generation failed"; "key" => %key, "err" => %e);
            None
        }
    };
    let built = answer.is_some().then_some(key);
    let _ = task.done.send(answer);
    built
}
