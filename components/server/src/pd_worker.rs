//! The raftstore's view of PD ([`raftstore::PdHandle`]) over the async [`PdClient`]: each call
//! becomes a task on the server's runtime, so raft threads never wait for the network.
//!
//! And the other direction: [`spawn_operator_executor`] turns the operators PD answers region
//! heartbeats with into admin commands for the regions' leaders.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use engine_traits::KvEngine;
use engine_traits::RaftEngine;
use pd_client::PdClient;
use proto::{metapb, pdpb};
use raftstore::{
    operator_command, Callback, PdError, PdHandle, RaftRouter, RegionCallback, RegionHeartbeat,
    SplitIdsCallback,
};
use slog::{debug, info, warn, Logger};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use util::RegionId;

pub struct PdWorker<EK> {
    pd: Arc<PdClient>,
    runtime: Handle,
    /// To estimate a region's size when the raftstore has not measured it.
    kv: EK,
    /// Region lookups in flight (stale-peer checks); bounded by `REGION_LOOKUPS_MAX`.
    lookups: Arc<AtomicUsize>,
    logger: Logger,
}

/// Most region lookups in flight at once. A store cut off for hours has every peer ask PD
/// on the same check; beyond this they are answered "unreachable" at once and ask again on
/// their next check (`peer-stale-state-check-interval`).
const REGION_LOOKUPS_MAX: usize = 64;

impl<EK: KvEngine> PdWorker<EK> {
    pub fn new(pd: Arc<PdClient>, runtime: Handle, kv: EK, logger: Logger) -> Self {
        PdWorker { pd, runtime, kv, lookups: Arc::new(AtomicUsize::new(0)), logger }
    }
}

/// One lookup counted in `PdWorker::lookups` until dropped (also if the task is cancelled).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
                pending_peers: hb.pending_peers,
                approximate_size: size,
                approximate_keys: keys,
                ..Default::default()
            });
        });
    }

    fn get_region_by_id(&self, region_id: u64, done: RegionCallback) {
        if self.lookups.fetch_add(1, Ordering::Relaxed) >= REGION_LOOKUPS_MAX {
            self.lookups.fetch_sub(1, Ordering::Relaxed);
            let reason = format!("more than {REGION_LOOKUPS_MAX} region lookups in flight");
            return done(Err(PdError::Unreachable { reason }));
        }
        let (pd, in_flight) = (self.pd.clone(), InFlight(self.lookups.clone()));
        self.runtime.spawn(async move {
            let _in_flight = in_flight;
            done(
                pd.get_region_by_id(region_id).await.map(|r| r.map(|r| r.region)).map_err(pd_error),
            );
        });
    }
}

/// Executes PD's operators until `stop` turns true: each becomes an admin command sent to the
/// region's peer on this store, whose ordinary checks (leader, epoch, the membership-change
/// rules) decide. Results are only logged: PD learns the outcome from the next heartbeat and
/// repeats the operator while it is not done.
pub fn spawn_operator_executor<EK: KvEngine, ER: RaftEngine>(
    mut operators: mpsc::Receiver<pdpb::RegionHeartbeatResponse>,
    router: RaftRouter<EK, ER>,
    mut stop: watch::Receiver<bool>,
    logger: Logger,
) {
    tokio::spawn(async move {
        loop {
            let resp = tokio::select! {
                resp = operators.recv() => match resp {
                    Some(resp) => resp,
                    None => return,
                },
                _ = stop.changed() => return,
            };
            let cmd = match operator_command(&resp) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => continue,
                Err(e) => {
                    warn!(logger, "operator from PD not executed"; "err" => %e);
                    continue;
                }
            };
            let region_id = resp.region_id;
            let what = format!("{:?}", cmd.admin_request.as_ref().map(|a| a.cmd_type()));
            debug!(logger, "executing an operator from PD"; "region_id" => region_id, "cmd" => &what);
            let log = logger.clone();
            let cb = Callback::write(RegionId(region_id), move |res| match res {
                Ok(_) => {
                    info!(log, "operator step proposed"; "region_id" => region_id, "cmd" => what)
                }
                Err(e) => {
                    debug!(log, "operator step refused"; "region_id" => region_id, "cmd" => what, "err" => %e)
                }
            });
            router.send_command(cmd, cb);
        }
    });
}
