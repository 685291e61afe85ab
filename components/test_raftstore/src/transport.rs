//! The in-memory transport: `send` buffers, `flush` runs the filters and delivers through the
//! destination store's router, as the gRPC transport would deliver a batch.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use engine_rocks::{RocksEngine, RocksRaftEngine};
use parking_lot::RwLock;
use proto::raft_serverpb::RaftMessage;
use raftstore::{RaftRouter, SnapManager, SnapshotDone, Transport, TransportError};
use util::StoreId;

use crate::filter::{Filter, Verdict};

pub type Router = RaftRouter<RocksEngine, RocksRaftEngine>;

/// Bytes per snapshot chunk, as the gRPC transport sends them.
const SNAP_CHUNK_BYTES: usize = 1 << 20;

/// Buffered messages per sender before `send` refuses (a bound, like the real transport's).
const SEND_BUFFER_MAX: usize = 64 * 1024;

/// What all stores' transports share: the routers of running stores and the filters.
#[derive(Default)]
pub struct Hub {
    routers: RwLock<HashMap<u64, Router>>,
    snaps: RwLock<HashMap<u64, SnapManager>>,
    filters: RwLock<Vec<(u64, Arc<dyn Filter>)>>,
    next_filter_id: parking_lot::Mutex<u64>,
    /// Snapshot transfers still to corrupt (a byte flipped in their first chunk).
    corrupt_snapshots: std::sync::atomic::AtomicUsize,
    /// Snapshot transfers the receiving store refused (a corrupt one, typically).
    snapshots_refused: std::sync::atomic::AtomicUsize,
}

impl Hub {
    pub fn register(&self, store_id: u64, router: Router, snaps: SnapManager) {
        self.routers.write().insert(store_id, router);
        self.snaps.write().insert(store_id, snaps);
    }

    pub fn unregister(&self, store_id: u64) {
        self.routers.write().remove(&store_id);
        self.snaps.write().remove(&store_id);
    }

    /// Copies a snapshot's files from store `from` to the message's store, chunk by chunk
    /// through the same reader and receiver the gRPC transport uses, then delivers the
    /// message. Whether it all arrived.
    fn send_snapshot(&self, from: u64, msg: RaftMessage) -> bool {
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        let (Some(src), Some(dst)) =
            (self.snaps.read().get(&from).cloned(), self.snaps.read().get(&to).cloned())
        else {
            return false;
        };
        let Some((key, meta, region)) = raftstore::transport::snapshot_files(&msg) else {
            return false;
        };
        match dst.receiver(key, &meta, &region) {
            Ok(mut receiver) => {
                let Ok(reader) = src.reader(key, SNAP_CHUNK_BYTES) else { return false };
                let mut corrupt = self
                    .corrupt_snapshots
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok();
                for chunk in reader {
                    let Ok(mut chunk) = chunk else { return false };
                    if std::mem::take(&mut corrupt) {
                        let mid = chunk.len() / 2;
                        if let Some(b) = chunk.get_mut(mid) {
                            *b ^= 0xff;
                        }
                    }
                    if receiver.write(&chunk).is_err() {
                        self.snapshots_refused.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                }
                if receiver.finish().is_err() {
                    self.snapshots_refused.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
            Err(raftstore::snap::Error::Exists { .. }) => {}
            Err(_) => return false,
        }
        self.deliver(msg);
        true
    }

    /// Flips a byte in the first chunk of the next `n` snapshot transfers (as a bad link or
    /// disk would); the receiving store must refuse them.
    pub fn corrupt_next_snapshots(&self, n: usize) {
        self.corrupt_snapshots.store(n, Ordering::Relaxed);
    }

    /// Snapshot transfers the receiving store refused so far.
    pub fn snapshots_refused(&self) -> usize {
        self.snapshots_refused.load(Ordering::Relaxed)
    }

    /// Adds a filter; returns its id for [`Hub::remove_filter`].
    pub fn add_filter(&self, f: impl Filter + 'static) -> u64 {
        let mut id = self.next_filter_id.lock();
        *id += 1;
        self.filters.write().push((*id, Arc::new(f)));
        *id
    }

    pub fn remove_filter(&self, id: u64) {
        self.filters.write().retain(|(i, _)| *i != id);
    }

    pub fn clear_filters(&self) {
        self.filters.write().clear();
    }

    fn verdict(&self, from: u64, msg: &RaftMessage) -> Verdict {
        let mut delay = None;
        for (_, f) in self.filters.read().iter() {
            match f.verdict(from, msg) {
                Verdict::Pass => {}
                Verdict::Drop => return Verdict::Drop,
                Verdict::Delay(d) => {
                    delay = Some(delay.map_or(d, |x: std::time::Duration| x.max(d)))
                }
            }
        }
        delay.map_or(Verdict::Pass, Verdict::Delay)
    }

    fn deliver(&self, msg: RaftMessage) {
        let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
        let router = self.routers.read().get(&to).cloned();
        if let Some(router) = router {
            // A full mailbox drops the message, as a real network would lose it.
            let _ = router.send_raft_message(msg);
        }
    }
}

/// One store's transport.
#[derive(Clone)]
pub struct SimTransport {
    store_id: StoreId,
    hub: Arc<Hub>,
    buffer: Vec<RaftMessage>,
}

impl SimTransport {
    pub fn new(store_id: StoreId, hub: Arc<Hub>) -> Self {
        SimTransport { store_id, hub, buffer: Vec::new() }
    }
}

impl Transport for SimTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        if self.buffer.len() >= SEND_BUFFER_MAX {
            let to = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
            return Err(TransportError::Full(StoreId(to)));
        }
        self.buffer.push(msg);
        Ok(())
    }

    /// Sends on a thread of its own (files can be large), after the filters: a dropped
    /// snapshot fails, a delayed one waits.
    fn send_snapshot(&mut self, msg: RaftMessage, done: SnapshotDone) {
        let hub = self.hub.clone();
        let from = self.store_id.get();
        let verdict = hub.verdict(from, &msg);
        thread::spawn(move || {
            let ok = match verdict {
                Verdict::Pass => hub.send_snapshot(from, msg),
                Verdict::Drop => false,
                Verdict::Delay(d) => {
                    thread::sleep(d);
                    hub.send_snapshot(from, msg)
                }
            };
            done(ok);
        });
    }

    fn flush(&mut self) {
        for msg in self.buffer.drain(..) {
            match self.hub.verdict(self.store_id.get(), &msg) {
                Verdict::Pass => self.hub.deliver(msg),
                Verdict::Drop => {}
                Verdict::Delay(d) => {
                    let hub = self.hub.clone();
                    thread::spawn(move || {
                        thread::sleep(d);
                        hub.deliver(msg);
                    });
                }
            }
        }
    }
}
