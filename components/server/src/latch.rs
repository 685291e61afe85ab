//! Per-key latches for atomic read-modify-write (CAS) in raw KV. A fixed number of slots
//! (bounded memory); keys hashing to one slot serialize, which is correct and rare.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

pub struct Latches {
    slots: Vec<Mutex<()>>,
}

/// Held latches; released on drop.
pub struct Guard<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Latches {
    pub fn new(slots: usize) -> Self {
        Latches { slots: (0..slots.max(1)).map(|_| Mutex::new(())).collect() }
    }

    fn slot(&self, key: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.slots.len() as u64) as usize
    }

    /// Acquires the latches of `keys` in slot order (no deadlock between two multi-key calls).
    pub async fn acquire<'a>(&'a self, keys: impl IntoIterator<Item = &[u8]>) -> Guard<'a> {
        let mut slots: Vec<usize> = keys.into_iter().map(|k| self.slot(k)).collect();
        slots.sort_unstable();
        slots.dedup();
        let mut guards = Vec::with_capacity(slots.len());
        for s in slots {
            guards.push(self.slots[s].lock().await);
        }
        Guard { _guards: guards }
    }
}
