//! Writers running against a cluster while a scenario changes it ("under load").
//!
//! 1. [`with_load`] starts `writers` threads; each writes fresh keys (`load-{w}-{n}`, every key
//!    once) one at a time through the leader, as a client would, following leader changes.
//! 2. A write that is acknowledged is read back at once through the leader: a read that
//!    answers must see it (a read that fails, e.g. during an election, proves nothing and is
//!    not counted). Acknowledged writes are remembered; failed ones are ambiguous (they may
//!    or may not have been applied) and are forgotten.
//! 3. When the scenario returns, the writers stop and the acknowledged writes are handed
//!    back, for the scenario to check on every replica it expects to hold them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::Cluster;
use ::util::wait::wait_for;

/// Progress of the writers, for a scenario to pace itself by.
pub struct Load {
    acked: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `n` more writes than now are acknowledged (the cluster makes progress).
    pub fn wait_more(&self, n: u64) {
        let target = self.acked() + n;
        wait_for(&format!("{n} more acknowledged writes"), Duration::from_secs(60), || {
            (self.acked() >= target).then_some(())
        });
    }
}

/// An acknowledged write: key and value.
pub type Acked = (Vec<u8>, Vec<u8>);

/// Runs `scenario` while `writers` threads write (module doc); returns what the scenario
/// returned and every acknowledged write.
pub fn with_load<R>(
    cluster: &Cluster,
    writers: u32,
    value_len: usize,
    scenario: impl FnOnce(&Load) -> R,
) -> (R, Vec<Acked>) {
    let load = Load { acked: AtomicU64::new(0), stop: AtomicBool::new(false) };
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let load = &load;
                s.spawn(move || write_until_stopped(cluster, load, w, value_len))
            })
            .collect();
        // Stop the writers even if the scenario panics, so the scope can end.
        struct StopOnDrop<'a>(&'a Load);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Ordering::SeqCst);
            }
        }
        let out = {
            let _stop = StopOnDrop(&load);
            scenario(&load)
        };
        let acked =
            threads.into_iter().flat_map(|t| t.join().expect("a writer panicked")).collect();
        (out, acked)
    })
}

fn write_until_stopped(cluster: &Cluster, load: &Load, w: u32, value_len: usize) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut n = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        let key = format!("load-{w}-{n:08}").into_bytes();
        let mut value = format!("{w}-{n}-").into_bytes();
        value.resize(value_len.max(value.len()), b'v');
        n += 1;
        if cluster.put(&key, &value).is_err() {
            continue; // ambiguous (step 2)
        }
        if let Ok(read) = cluster.get(&key) {
            assert_eq!(read.as_deref(), Some(&value[..]), "a read after the ack of {key:?}");
        }
        load.acked.fetch_add(1, Ordering::SeqCst);
        acked.push((key, value));
    }
    acked
}
