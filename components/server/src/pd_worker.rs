//! The raftstore's view of PD ([`raftstore::PdHandle`]) over the async [`PdClient`]: each call
//! becomes a task on the server's runtime, so raft threads never wait for the network.

use std::sync::Arc;

use engine_traits::KvEngine;
use pd_client::PdClient;
use proto::{metapb, pdpb};
use raftstore::{PdError, PdHandle, RegionHeartbeat, SplitIdsCallback};
use slog::{warn, Logger};
use tokio::runtime::Handle;

pub struct PdWorker<EK> {
    pd: Arc<PdClient>,
    runtime: Handle,
    /// To estimate a region's size when the raftstore has not measured it.
    kv: EK,
    logger: Logger,
}

impl<EK: KvEngine> PdWorker<EK> {
    pub fn new(pd: Arc<PdClient>, runtime: Handle, kv: EK, logger: Logger) -> Self {
        PdWorker { pd, runtime, kv, logger }
    }
}

/// The raftstore's view of a PD failure: whether PD was reached at all.
fn pd_error(e: pd_client::Error) -> PdError {
    match e {
        pd_client::Error::Unreachable { .. } | pd_client::Error::Grpc(_) => {
            PdError::Unreachable { reason: e.to_string() }
        }
        pd_client::Error::Pd { .. }
        | pd_client::Error::ClusterMismatch { .. }
        | pd_client::Error::Missing(_) => PdError::Refused { reason: e.to_string() },
    }
}

impl<EK: KvEngine> PdHandle for PdWorker<EK> {
    fn ask_batch_split(&self, region: metapb::Region, count: u32, done: SplitIdsCallback) {
        let pd = self.pd.clone();
        self.runtime.spawn(async move {
            done(pd.ask_batch_split(region, count).await.map_err(pd_error));
        });
    }

    fn report_batch_split(&self, regions: Vec<metapb::Region>) {
        let pd = self.pd.clone();
        let logger = self.logger.clone();
        self.runtime.spawn(async move {
            if let Err(e) = pd.report_batch_split(regions).await {
                // The new regions' leaders heartbeat PD anyway once elected.
                warn!(logger, "cannot report a split to PD"; "err" => %e);
            }
        });
    }

    fn region_heartbeat(&self, hb: RegionHeartbeat) {
        let pd = self.pd.clone();
        let kv = self.kv.clone();
        self.runtime.spawn(async move {
            let (size, keys) = match (hb.approximate_size, hb.approximate_keys) {
                (Some(s), Some(k)) => (s, k),
                _ => {
                    let s = crate::node::approximate_stats(&kv, &hb.region);
                    (s.size_bytes, s.keys)
                }
            };
            pd.region_heartbeat(pdpb::RegionHeartbeatRequest {
                region: Some(hb.region),
                leader: Some(hb.leader),
                approximate_size: size,
                approximate_keys: keys,
                ..Default::default()
            });
        });
    }
}
