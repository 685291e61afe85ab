//! The split checker: one worker thread per store that measures regions and finds split keys,
//! off the raft threads.
//!
//! For each task it first asks RocksDB for the region's approximate size and key count (index
//! blocks and memtable estimates, no data read; see `engine_rocks::size`). A region clearly
//! below both maximums (under half, leaving room for the estimate's error) is reported as is.
//! Otherwise the region's data is scanned in key order, counting exact bytes (key + value)
//! and keys, and a split key is taken each time a part reaches `region-split-size` bytes or
//! `region-split-keys` keys, up to `batch-split-limit` keys. If the scan finds the region within
//! both maximums after all, it reports the exact numbers and no keys.
//!
//! Only the `default` column family is scanned: raw KV stores everything there. The sizes of
//! the other data column families are added from the estimate.
//!
//! The task queue is bounded; a peer whose task does not fit tries again on a later tick.

use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use engine_traits::{KvEngine, RaftEngine, CF_DEFAULT, DATA_CFS};
use proto::metapb;
use slog::{debug, warn, Logger};
use util::RegionId;

use super::SplitConfig;
use crate::msg::PeerMsg;
use crate::store::RaftRouter;

/// Tasks waiting for the checker, at most.
const QUEUE_CAPACITY: usize = 1024;

/// Measure `region` (as the leader saw it when asking).
#[derive(Debug, Clone)]
pub struct SplitCheckTask {
    pub region: metapb::Region,
}

/// The peers' handle on the checker.
#[derive(Clone)]
pub struct SplitChecker {
    tx: Sender<SplitCheckTask>,
}

impl SplitChecker {
    /// Queues a task; gives it back if the queue is full or the checker stopped.
    pub fn try_send(&self, task: SplitCheckTask) -> Result<(), SplitCheckTask> {
        self.tx.try_send(task).map_err(|e| match e {
            TrySendError::Full(t) | TrySendError::Disconnected(t) => t,
        })
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckOutcome {
    pub size: u64,
    pub keys: u64,
    pub split_keys: Vec<Vec<u8>>,
}

/// Starts the checker thread. It stops when `stop` is dropped.
pub fn spawn<EK: KvEngine, ER: RaftEngine>(
    kv: EK,
    router: RaftRouter<EK, ER>,
    cfg: SplitConfig,
    stop: Receiver<()>,
    logger: Logger,
) -> std::io::Result<(SplitChecker, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<SplitCheckTask>(QUEUE_CAPACITY);
    let handle = thread::Builder::new().name("split-check".into()).spawn(move || loop {
        crossbeam_channel::select! {
            recv(rx) -> task => {
                let Ok(task) = task else { return };
                let region = task.region;
                let outcome = match check_region(&kv, &region, &cfg) {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(logger, "split check failed"; "region_id" => region.id, "err" => %e);
                        CheckOutcome::default()
                    }
                };
                debug!(logger, "split check"; "region_id" => region.id, "size" => outcome.size,
                    "keys" => outcome.keys, "split_keys" => outcome.split_keys.len());
                let msg = PeerMsg::SplitCheckResult {
                    region_epoch: region.region_epoch.unwrap_or_default(),
                    split_keys: outcome.split_keys,
                    approximate_size: outcome.size,
                    approximate_keys: outcome.keys,
                };
                // The peer may be gone; then nobody needs the answer.
                let _ = router.send(RegionId(region.id), msg);
            }
            recv(stop) -> _ => return,
        }
    })?;
    Ok((SplitChecker { tx }, handle))
}

/// Measures `region` and finds its split keys; see the module doc.
pub fn check_region<EK: KvEngine>(
    kv: &EK,
    region: &metapb::Region,
    cfg: &SplitConfig,
) -> engine_traits::Result<CheckOutcome> {
    let start = keys::enc_start_key(&region.start_key);
    let end = keys::enc_end_key(&region.end_key);
    let mut approx = engine_traits::RangeStats::default();
    let mut others = engine_traits::RangeStats::default();
    for cf in DATA_CFS {
        let s = kv.approximate_size_and_keys(cf, &start, &end)?;
        approx.size_bytes += s.size_bytes;
        approx.keys += s.keys;
        if *cf != CF_DEFAULT {
            others.size_bytes += s.size_bytes;
            others.keys += s.keys;
        }
    }
    if approx.size_bytes < cfg.max_size() / 2 && approx.keys < cfg.max_keys() / 2 {
        return Ok(CheckOutcome { size: approx.size_bytes, keys: approx.keys, split_keys: vec![] });
    }
    let limit = cfg.batch_split_limit as usize;
    let (split_size, split_keys) = (cfg.split_size(), cfg.split_keys());
    let (mut size, mut count) = (others.size_bytes, others.keys);
    let (mut part_size, mut part_keys) = (0u64, 0u64);
    let mut found = Vec::new();
    let mut truncated = false;
    kv.scan(CF_DEFAULT, &start, &end, false, |k, v| {
        if part_size >= split_size || part_keys >= split_keys {
            if found.len() == limit {
                truncated = true;
                return Ok(false);
            }
            found.push(keys::origin_key(k).map(<[u8]>::to_vec).unwrap_or_default());
            (part_size, part_keys) = (0, 0);
        }
        let n = (k.len() + v.len()) as u64;
        size += n;
        count += 1;
        part_size += n;
        part_keys += 1;
        Ok(true)
    })?;
    found.retain(|k| !k.is_empty());
    if !truncated && size <= cfg.max_size() && count <= cfg.max_keys() {
        found.clear();
    }
    if truncated {
        // The scan stopped early; the region is at least this big.
        size = size.max(approx.size_bytes);
        count = count.max(approx.keys);
    }
    Ok(CheckOutcome { size, keys: count, split_keys: found })
}
