//! The `snap-applier` worker: applies received snapshots' files to the KV engine, off the
//! apply pool, so that a large snapshot never holds up the other regions of an apply poller.
//!
//! 1. An apply FSM whose engine holds everything it applied (`apply::fsm`, after the round's
//!    write) queues an [`ApplyJob`] (bounded, `APPLY_QUEUE_MAX`; full: the FSM applies the
//!    files itself, as before this worker existed, which is slower for its poller but never
//!    loses or reorders anything). From then on the FSM handles no later task.
//! 2. The worker runs `SnapManager::apply` (verify the files again, delete the range, ingest)
//!    and hands the result to `done`, which records it where the FSM looks and wakes the FSM.
//! 3. The FSM writes the region `Normal` and goes on with the tasks that waited.
//!
//! A crash anywhere leaves the region `Applying` on disk: the restart applies again.

use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use engine_traits::KvEngine;
use proto::metapb;

use crate::snap::{self, Side, SnapKey, SnapManager};

/// Jobs waiting for the worker; beyond it the apply FSM applies the files itself.
pub const APPLY_QUEUE_MAX: usize = 64;

/// Answers a job: the files' apply result.
pub type ApplyDone = Box<dyn FnOnce(snap::Result<()>) + Send>;

/// One received snapshot to apply.
pub struct ApplyJob {
    pub region: metapb::Region,
    pub key: SnapKey,
    pub done: ApplyDone,
}

/// Hands jobs to the worker.
#[derive(Clone)]
pub struct ApplyScheduler {
    tx: Sender<ApplyJob>,
}

impl ApplyScheduler {
    /// Queues `job`; gives it back if the queue is full or the worker is gone (step 1).
    pub fn schedule(&self, job: ApplyJob) -> Result<(), ApplyJob> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }
}

/// Step 2 for one job, on whichever thread runs it.
pub fn apply_files<EK: KvEngine>(kv: &EK, snap_mgr: &SnapManager, job: ApplyJob) {
    let ApplyJob { region, key, done } = job;
    let result =
        snap_mgr.load_meta(key, Side::Rev).and_then(|meta| snap_mgr.apply(kv, &region, key, &meta));
    done(result);
}

/// Starts the worker; it stops when `stop` is dropped (after the job it is running). It logs
/// nothing itself: the apply FSM logs the outcome (`snapshot files ingested` comes from
/// `SnapManager::apply`).
pub fn spawn<EK: KvEngine>(
    kv: EK,
    snap_mgr: SnapManager,
    stop: Receiver<()>,
) -> std::io::Result<(ApplyScheduler, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<ApplyJob>(APPLY_QUEUE_MAX);
    let handle = thread::Builder::new().name("snap-applier".into()).spawn(move || loop {
        crossbeam_channel::select! {
            recv(rx) -> job => match job {
                Ok(job) => apply_files(&kv, &snap_mgr, job),
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    })?;
    Ok((ApplyScheduler { tx }, handle))
}
