//! The in-memory transport: `send` buffers, `flush` runs the filters and delivers through the
//! destination store's router, as the gRPC transport would deliver a batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use engine_rocks::{RocksEngine, RocksRaftEngine};
use parking_lot::RwLock;
use proto::raft_serverpb::RaftMessage;
use raftstore::{RaftRouter, Transport, TransportError};
use util::StoreId;

use crate::filter::{Filter, Verdict};

pub type Router = RaftRouter<RocksEngine, RocksRaftEngine>;

/// Buffered messages per sender before `send` refuses (a bound, like the real transport's).
const SEND_BUFFER_MAX: usize = 64 * 1024;

/// What all stores' transports share: the routers of running stores and the filters.
#[derive(Default)]
pub struct Hub {
    routers: RwLock<HashMap<u64, Router>>,
    filters: RwLock<Vec<(u64, Arc<dyn Filter>)>>,
    next_filter_id: parking_lot::Mutex<u64>,
}

impl Hub {
    pub fn register(&self, store_id: u64, router: Router) {
        self.routers.write().insert(store_id, router);
    }

    pub fn unregister(&self, store_id: u64) {
        self.routers.write().remove(&store_id);
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
