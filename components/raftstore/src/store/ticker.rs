//! The store's one timer thread, `raft-ticker`: the base tick of every peer, the store tick,
//! and one-shot ticks that a peer asks for at an instant finer than the base tick.
//!
//! 1. Every `raft-base-tick-interval` each peer gets `PeerTick::Raft` (a peer whose mailbox is
//!    full skips that tick), and every [`STORE_TICK_EVERY_BASE_TICKS`]th time the store FSM
//!    gets its tick.
//! 2. A peer asks for a one-shot tick through [`Ticker::schedule`] (e.g. the deadline of
//!    commands waiting for a new region's first leader, `peer::leader_wait`). The request
//!    queue holds [`SCHEDULE_QUEUE_CAPACITY`] requests and the thread keeps at most
//!    [`SCHEDULED_MAX`] deadlines. **Full behaviour:** the request is refused (`false`, or
//!    dropped at the thread) and the peer meets its deadline at its next base tick instead:
//!    late by at most one base tick, never lost. A tick for a peer that is gone is dropped.
//! 3. Stopping: dropping the stop sender ends the thread at its next wake-up (it waits on the
//!    stop channel, so it wakes at once).

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use engine_traits::{KvEngine, RaftEngine};
use util::RegionId;

use super::router::RaftRouter;
use crate::error::StartError;
use crate::msg::{PeerMsg, PeerTick, StoreTick};

/// Store ticks are sent every this many raft base ticks.
pub const STORE_TICK_EVERY_BASE_TICKS: u32 = 10;
/// Schedule requests not yet taken by the timer thread.
pub const SCHEDULE_QUEUE_CAPACITY: usize = 4096;
/// Deadlines the timer thread keeps; more are dropped (the peers fall back to the base tick).
pub const SCHEDULED_MAX: usize = 65_536;

struct Scheduled {
    at: Instant,
    region_id: RegionId,
    tick: PeerTick,
}

/// The handle through which peers schedule one-shot ticks. Cheap to clone.
#[derive(Clone)]
pub struct Ticker {
    tx: Sender<Scheduled>,
}

impl Ticker {
    /// Asks for `tick` to reach `region_id`'s peer at (or soon after) `at`. Returns `false` if
    /// the request queue is full or the timer has stopped; see the module doc (step 2).
    pub fn schedule(&self, region_id: RegionId, at: Instant, tick: PeerTick) -> bool {
        match self.tx.try_send(Scheduled { at, region_id, tick }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The running timer thread; dropping `stop` stops it.
pub(super) struct TickerThread {
    pub stop: Sender<()>,
    pub handle: JoinHandle<()>,
}

/// Starts `raft-ticker`. Returns the scheduling handle and the thread.
pub(super) fn spawn<EK: KvEngine, ER: RaftEngine>(
    router: RaftRouter<EK, ER>,
    base_tick: Duration,
) -> Result<(Ticker, TickerThread), StartError> {
    let (stop, stop_rx) = crossbeam_channel::bounded(0);
    let (tx, rx) = crossbeam_channel::bounded(SCHEDULE_QUEUE_CAPACITY);
    let handle = thread::Builder::new()
        .name("raft-ticker".into())
        .spawn(move || run(router, base_tick, stop_rx, rx))
        .map_err(|source| StartError::Spawn { thread: "raft-ticker", source })?;
    Ok((Ticker { tx }, TickerThread { stop, handle }))
}

fn run<EK: KvEngine, ER: RaftEngine>(
    router: RaftRouter<EK, ER>,
    base_tick: Duration,
    stop: Receiver<()>,
    requests: Receiver<Scheduled>,
) {
    // Min-heap by instant; the sequence number keeps equal instants in request order.
    let mut heap: BinaryHeap<Reverse<(Instant, u64, RegionId, PeerTick)>> = BinaryHeap::new();
    let mut seq: u64 = 0;
    let mut base_ticks: u32 = 0;
    let mut next_base = Instant::now() + base_tick;
    loop {
        let now = Instant::now();
        while let Some(due) = heap.peek_mut().filter(|top| top.0 .0 <= now) {
            let Reverse((_, _, region_id, tick)) = PeekMut::pop(due);
            let _ = router.send(region_id, PeerMsg::Tick(tick));
        }
        if now >= next_base {
            router.broadcast_tick();
            base_ticks = base_ticks.wrapping_add(1);
            if base_ticks % STORE_TICK_EVERY_BASE_TICKS == 0 {
                router.store_tick(StoreTick::Heartbeat);
            }
            // A late thread does not burst ticks to catch up: raft's clock is coarse anyway.
            next_base = (next_base + base_tick).max(now);
        }
        let wake = heap.peek().map_or(next_base, |Reverse((at, ..))| (*at).min(next_base));
        let timeout = wake.saturating_duration_since(Instant::now());
        select! {
            recv(stop) -> _ => return, // only disconnection is ever received: stop
            recv(requests) -> req => match req {
                Ok(s) if heap.len() < SCHEDULED_MAX => {
                    seq += 1;
                    heap.push(Reverse((s.at, seq, s.region_id, s.tick)));
                }
                Ok(_) => {} // full: the peer's next base tick covers it (module doc, step 2)
                Err(_) => return,
            },
            default(timeout) => {}
        }
    }
}
