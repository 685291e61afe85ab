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
//! **After deletes** the estimate lies: RocksDB counts deleted data until compaction drops it,
//! so a region emptied by deletes would look full forever and never merge (#14). A task marked
//! `exact` (the peer saw deletes since its last check, or it just took in a merged source)
//! therefore skips the shortcut and counts. If the count is below half the estimate:
//! 1. when the estimate is over by at least `compact_min_bytes` (`region-split-check-diff`),
//!    the range is compacted in every data CF, so the estimate follows again and the space is
//!    reclaimed (TiKV compacts such ranges from its compaction checker). Compactions are thus
//!    bounded by the bytes deleted: one per `compact_min_bytes` at most;
//! 2. otherwise (a little garbage) the outcome says `estimate_off`, and the peer keeps asking
//!    for exact checks, which cost a scan of a region that is small anyway.
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
    /// Count the data even if the estimate says the region is small (see the module doc).
    pub exact: bool,
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
    /// The estimate counts deleted data that was not compacted away: the next check of this
    /// region should be exact too.
    pub estimate_off: bool,
}

/// Starts the checker thread. It stops when `stop` is dropped.
pub fn spawn<EK: KvEngine, ER: RaftEngine>(
    kv: EK,
    router: RaftRouter<EK, ER>,
    cfg: SplitConfig,
    compact_min_bytes: u64,
    stop: Receiver<()>,
    logger: Logger,
) -> std::io::Result<(SplitChecker, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<SplitCheckTask>(QUEUE_CAPACITY);
    let handle = thread::Builder::new().name("split-check".into()).spawn(move || loop {
        crossbeam_channel::select! {
            recv(rx) -> task => {
                let Ok(task) = task else { return };
                let region = task.region;
                let checked = check_region(&kv, &region, &cfg, task.exact, compact_min_bytes);
                let outcome = match checked {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(logger, "split check failed"; "region_id" => region.id, "err" => %e);
                        CheckOutcome::default()
                    }
                };
                debug!(logger, "split check"; "region_id" => region.id, "size" => outcome.size,
                    "keys" => outcome.keys, "split_keys" => outcome.split_keys.len(),
                    "exact" => task.exact, "estimate_off" => outcome.estimate_off);
                let msg = PeerMsg::SplitCheckResult {
                    region_epoch: region.region_epoch.unwrap_or_default(),
                    outcome,
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
    exact: bool,
    compact_min_bytes: u64,
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
    if !exact && approx.size_bytes < cfg.max_size() / 2 && approx.keys < cfg.max_keys() / 2 {
        return Ok(CheckOutcome {
            size: approx.size_bytes,
            keys: approx.keys,
            ..CheckOutcome::default()
        });
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
    let mut estimate_off = false;
    if exact && !truncated && approx.size_bytes / 2 > size {
        if approx.size_bytes - size >= compact_min_bytes {
            // Step 1 of the module doc.
            for cf in DATA_CFS {
                kv.compact_range_cf(cf, &start, &end)?;
            }
        } else {
            estimate_off = true; // step 2
        }
    }
    Ok(CheckOutcome { size, keys: count, split_keys: found, estimate_off })
}

#[cfg(test)]
mod tests {
    use engine_traits::{KvEngine, Mutable, WriteOptions, CF_DEFAULT};
    use proto::metapb;

    use super::{check_region, SplitConfig};

    fn engine(dir: &std::path::Path) -> engine_rocks::RocksEngine {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        engine_rocks::open_kv_engine(dir, &engine_rocks::RocksDbConfig::default(), &logger)
            .expect("open the KV engine")
    }

    /// Writes what `fill` puts in a batch, then flushes it to an SST file.
    fn write_and_flush(
        kv: &engine_rocks::RocksEngine,
        fill: impl FnOnce(&mut engine_rocks::RocksWriteBatch),
    ) {
        let mut wb = kv.write_batch();
        fill(&mut wb);
        kv.write(&mut wb, &WriteOptions::default()).unwrap();
        kv.flush_cf(CF_DEFAULT).unwrap();
    }

    fn put_all(kv: &engine_rocks::RocksEngine, n: u32) {
        write_and_flush(kv, |wb| {
            for i in 0..n {
                let key = keys::data_key(format!("k{i:06}").as_bytes());
                wb.put_cf(CF_DEFAULT, &key, &[7u8; 1000]);
            }
        });
    }

    /// A region emptied by a range delete: the estimate still counts the data; an exact
    /// check counts what is left and compacts, after which the estimate agrees.
    #[test]
    fn an_exact_check_sees_through_deleted_data_and_compacts_it_away() {
        let dir = tempfile::tempdir().unwrap();
        let kv = engine(dir.path());
        put_all(&kv, 2_000); // ~2 MB
        write_and_flush(&kv, |wb| {
            wb.delete_range_cf(CF_DEFAULT, &keys::data_key(b"k000010"), &keys::enc_end_key(b""));
        });
        let region = metapb::Region { id: 1, ..Default::default() };
        let cfg = SplitConfig::with_split_size(util::config::ReadableSize::mib(64));

        let estimated = check_region(&kv, &region, &cfg, false, 64 * 1024).unwrap();
        assert!(estimated.size > 1_000_000, "the estimate counts deleted data: {estimated:?}");

        let exact = check_region(&kv, &region, &cfg, true, 64 * 1024).unwrap();
        assert_eq!(exact.keys, 10, "{exact:?}");
        assert!(exact.size < 11_000, "{exact:?}");
        assert!(!exact.estimate_off, "compacted, so the estimate is right again: {exact:?}");
        let after = check_region(&kv, &region, &cfg, false, 64 * 1024).unwrap();
        assert!(after.size < 100_000, "compaction dropped the deleted data: {after:?}");
    }

    /// Garbage below the compaction floor is not compacted; the outcome says the estimate is
    /// off, so the peer keeps counting.
    #[test]
    fn a_little_garbage_is_counted_not_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let kv = engine(dir.path());
        put_all(&kv, 200); // ~200 KB
        write_and_flush(&kv, |wb| {
            for i in 1..200 {
                wb.delete_cf(CF_DEFAULT, &keys::data_key(format!("k{i:06}").as_bytes()));
            }
        });
        let region = metapb::Region { id: 1, ..Default::default() };
        let cfg = SplitConfig::with_split_size(util::config::ReadableSize::mib(64));
        let exact = check_region(&kv, &region, &cfg, true, 16 << 20).unwrap();
        assert_eq!((exact.keys, exact.size), (1, 1_000 + b"zk000000".len() as u64), "{exact:?}");
        assert!(exact.estimate_off, "{exact:?}");
        let still = check_region(&kv, &region, &cfg, false, 16 << 20).unwrap();
        assert!(still.size > 100_000, "not compacted: {still:?}");
    }
}
