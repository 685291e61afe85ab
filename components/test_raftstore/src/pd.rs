//! `TestPd`: the placement driver of the in-process cluster. It allocates ids and records what
//! stores report; ids start far above the ids `Cluster::new` gives bootstrapped regions and
//! their peers, so they never collide.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use proto::{metapb, pdpb};
use raftstore::{PdError, PdHandle, RegionCallback, RegionHeartbeat, SplitIdsCallback};

pub struct TestPd {
    next_id: AtomicU64,
    /// Refuse id requests (a PD outage).
    unavailable: AtomicBool,
    /// Regions by id, as last reported (split reports and leader heartbeats).
    regions: Mutex<HashMap<u64, metapb::Region>>,
    split_reports: AtomicU64,
    /// Region heartbeats received, by region id.
    heartbeats: Mutex<HashMap<u64, u64>>,
}

impl Default for TestPd {
    fn default() -> Self {
        TestPd {
            next_id: AtomicU64::new(1_000_000),
            unavailable: AtomicBool::new(false),
            regions: Mutex::new(HashMap::new()),
            split_reports: AtomicU64::new(0),
            heartbeats: Mutex::new(HashMap::new()),
        }
    }
}

impl TestPd {
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// How many `ReportBatchSplit`s arrived.
    pub fn split_reports(&self) -> u64 {
        self.split_reports.load(Ordering::SeqCst)
    }

    /// How many heartbeats of `region_id` arrived.
    pub fn heartbeats(&self, region_id: u64) -> u64 {
        self.heartbeats.lock().get(&region_id).copied().unwrap_or(0)
    }

    /// The region as PD last heard of it.
    pub fn region(&self, id: u64) -> Option<metapb::Region> {
        self.regions.lock().get(&id).cloned()
    }

    fn record(&self, region: metapb::Region) {
        let mut regions = self.regions.lock();
        let newer = regions.get(&region.id).is_none_or(|old| {
            let (o, n) =
                (old.region_epoch.unwrap_or_default(), region.region_epoch.unwrap_or_default());
            (n.version, n.conf_ver) >= (o.version, o.conf_ver)
        });
        if newer {
            regions.insert(region.id, region);
        }
    }
}

impl PdHandle for TestPd {
    fn ask_batch_split(&self, region: metapb::Region, count: u32, done: SplitIdsCallback) {
        if self.unavailable.load(Ordering::SeqCst) {
            return done(Err(PdError::Unreachable { reason: "PD is unavailable (test)".into() }));
        }
        let per_split = 1 + region.peers.len() as u64;
        let first = self.next_id.fetch_add(per_split * u64::from(count), Ordering::SeqCst);
        let ids = (0..u64::from(count))
            .map(|i| {
                let base = first + i * per_split;
                pdpb::SplitId {
                    new_region_id: base,
                    new_peer_ids: (base + 1..base + per_split).collect(),
                }
            })
            .collect();
        done(Ok(ids));
    }

    fn report_batch_split(&self, regions: Vec<metapb::Region>) {
        self.split_reports.fetch_add(1, Ordering::SeqCst);
        for r in regions {
            self.record(r);
        }
    }

    fn region_heartbeat(&self, heartbeat: RegionHeartbeat) {
        *self.heartbeats.lock().entry(heartbeat.region.id).or_default() += 1;
        self.record(heartbeat.region);
    }

    fn get_region_by_id(&self, region_id: u64, done: RegionCallback) {
        if self.unavailable.load(Ordering::SeqCst) {
            return done(Err(PdError::Unreachable { reason: "PD is unavailable (test)".into() }));
        }
        done(Ok(self.region(region_id)));
    }
}
