//! Concurrency stress: many senders, 2,000 FSMs, FSMs closed and re-registered while messages
//! fly, tiny mailboxes so `Full` happens. Bounded in count (every thread does a fixed amount
//! of work) and asserted exactly:
//!
//! - every message a sender saw accepted is handled exactly once, or (only if its FSM was
//!   closed) found still queued when that FSM was dropped;
//! - every rejected message came back to its sender (`Full`, `NotFound`, `Disconnected`);
//! - per (sender, address), handled sequence numbers are strictly increasing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{
    create_system, inbox, Config, Fsm, HandleResult, HandlerBuilder, Inbox, NormalFsm, PollHandler,
    Router, SendError,
};
use parking_lot::{Condvar, Mutex};
use util::config::ReadableDuration;

const FSMS: u64 = 2_000;
/// Addresses 0..CHURN are closed and re-registered during the run.
const CHURN: u64 = 300;
const SENDERS: u32 = 4;
const PER_SENDER: u64 = 25_000;
/// Upper bound on churn steps; the churn also stops as soon as the senders are done.
const CHURN_OPS_MAX: u64 = 1_000_000;
const SEEDS: [u64; 3] = [0x5eed_ba7c_4000, 0x0dd_c0ffee, 0x1234_5678_9abc];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Msg {
    sender: u32,
    seq: u64,
}

/// What FSM instances report when they are dropped.
struct Sink {
    /// (sender, addr) → seqs handled / discarded, from every instance at that address.
    handled: Mutex<HashMap<(u32, u64), Vec<u64>>>,
    discarded: Mutex<HashMap<(u32, u64), Vec<u64>>>,
    /// Live progress, for waiting: when handled + discarded reaches `target`, `done` is
    /// signalled. Counts are bumped before `target` is read and vice versa (all SeqCst), so
    /// either the waiter sees the last bump or the last bumper sees the target.
    handled_count: AtomicUsize,
    discarded_count: AtomicUsize,
    target: AtomicUsize,
    done_lock: Mutex<()>,
    done: Condvar,
}

impl Sink {
    fn progress(&self) -> usize {
        self.handled_count.load(Ordering::SeqCst) + self.discarded_count.load(Ordering::SeqCst)
    }

    fn bumped(&self) {
        if self.progress() >= self.target.load(Ordering::SeqCst) {
            let _guard = self.done_lock.lock();
            self.done.notify_all();
        }
    }

    fn wait_for(&self, target: usize, timeout: Duration) {
        self.target.store(target, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut guard = self.done_lock.lock();
        while self.progress() < target {
            let timed_out = self.done.wait_until(&mut guard, deadline).timed_out();
            assert!(
                !timed_out || self.progress() >= target,
                "timed out: {} of {target} messages accounted for",
                self.progress()
            );
        }
    }
}

struct StressFsm {
    addr: u64,
    inbox: Inbox<Msg>,
    last_seq: HashMap<u32, u64>,
    handled: Vec<Msg>,
    sink: Arc<Sink>,
}

impl Fsm for StressFsm {
    type Message = Msg;
    fn is_stopped(&self) -> bool {
        false
    }
}

impl Drop for StressFsm {
    fn drop(&mut self) {
        let mut discarded = Vec::new();
        while let Some(m) = self.inbox.try_recv() {
            discarded.push(m);
        }
        self.sink.discarded_count.fetch_add(discarded.len(), Ordering::SeqCst);
        self.sink.bumped();
        let mut sink = self.sink.handled.lock();
        for m in &self.handled {
            sink.entry((m.sender, self.addr)).or_default().push(m.seq);
        }
        drop(sink);
        let mut sink = self.sink.discarded.lock();
        for m in discarded {
            sink.entry((m.sender, self.addr)).or_default().push(m.seq);
        }
    }
}

struct Handler;

impl PollHandler<StressFsm, StressFsm> for Handler {
    fn begin(&mut self, _batch_size: usize) {}

    fn handle_control(&mut self, control: &mut StressFsm) -> Option<usize> {
        while control.inbox.try_recv().is_some() {}
        Some(0)
    }

    fn handle_normal(&mut self, fsm: &mut StressFsm) -> HandleResult {
        // A per-call cap, as raftstore has, so busy FSMs share the poller.
        for _ in 0..32 {
            let Some(m) = fsm.inbox.try_recv() else {
                return HandleResult::stop_at(0, false);
            };
            let prev = fsm.last_seq.insert(m.sender, m.seq);
            assert!(
                prev.is_none_or(|p| p < m.seq),
                "addr {} sender {}: {prev:?} then {}",
                fsm.addr,
                m.sender,
                m.seq
            );
            fsm.handled.push(m);
            fsm.sink.handled_count.fetch_add(1, Ordering::SeqCst);
            fsm.sink.bumped();
        }
        HandleResult::KeepProcessing
    }

    fn end(&mut self, _normals: &mut [NormalFsm<StressFsm>]) {}
}

struct Builder;

impl HandlerBuilder<StressFsm, StressFsm> for Builder {
    type Handler = Handler;
    fn build(&mut self) -> Handler {
        Handler
    }
}

fn register(router: &Router<StressFsm, StressFsm>, addr: u64, sink: &Arc<Sink>) {
    let (tx, inbox) = router.create_inbox();
    let fsm = StressFsm {
        addr,
        inbox,
        last_seq: HashMap::new(),
        handled: Vec::new(),
        sink: sink.clone(),
    };
    router.register(addr, tx, Box::new(fsm));
}

/// xorshift64*: deterministic per-thread address choice.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[derive(Default)]
struct SenderReport {
    accepted: BTreeMap<(u32, u64), Vec<u64>>,
    full: u64,
    not_found: u64,
    disconnected: u64,
}

fn run_sender(router: Router<StressFsm, StressFsm>, sender: u32, seed: u64) -> SenderReport {
    let mut rng = seed ^ (u64::from(sender) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next_seq: HashMap<u64, u64> = HashMap::new();
    let mut report = SenderReport::default();
    for _ in 0..PER_SENDER {
        // Sender 0 hammers a few addresses so their tiny mailboxes fill up.
        let addr = if sender == 0 { next(&mut rng) % 4 + CHURN } else { next(&mut rng) % FSMS };
        let seq = next_seq.entry(addr).or_default();
        *seq += 1;
        match router.send(addr, Msg { sender, seq: *seq }) {
            Ok(()) => report.accepted.entry((sender, addr)).or_default().push(*seq),
            Err(SendError::Full { .. }) => report.full += 1,
            Err(SendError::NotFound { .. }) => report.not_found += 1,
            Err(SendError::Disconnected { .. }) => report.disconnected += 1,
        }
    }
    report
}

#[test]
fn every_message_is_handled_once_or_returned() {
    for seed in SEEDS {
        run(seed);
    }
}

fn run(seed: u64) {
    println!("seed {seed:#x}");
    let cfg = Config {
        pool_size: 2,
        max_batch_size: 64,
        reschedule_duration: ReadableDuration::millis(1),
        notify_capacity: 16,
    };
    let sink = Arc::new(Sink {
        handled: Mutex::default(),
        discarded: Mutex::default(),
        handled_count: AtomicUsize::new(0),
        discarded_count: AtomicUsize::new(0),
        target: AtomicUsize::new(usize::MAX),
        done_lock: Mutex::new(()),
        done: Condvar::new(),
    });
    let (tx, control_inbox) = inbox(cfg.notify_capacity);
    let control = StressFsm {
        addr: u64::MAX,
        inbox: control_inbox,
        last_seq: HashMap::new(),
        handled: Vec::new(),
        sink: sink.clone(),
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let (router, mut system) = create_system(&cfg, logger, tx, Box::new(control)).unwrap();
    for addr in 0..FSMS {
        register(&router, addr, &sink);
    }
    system.spawn("stress", Builder).unwrap();

    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let router = router.clone();
            std::thread::spawn(move || run_sender(router, s, seed))
        })
        .collect();
    let senders_done = Arc::new(AtomicBool::new(false));
    let churn = {
        let (router, sink, senders_done) = (router.clone(), sink.clone(), senders_done.clone());
        std::thread::spawn(move || {
            let mut rng = seed;
            let mut closed = 0u64;
            for _ in 0..CHURN_OPS_MAX {
                if senders_done.load(Ordering::SeqCst) {
                    break;
                }
                let addr = next(&mut rng) % CHURN;
                if router.close(addr) {
                    closed += 1;
                } else {
                    register(&router, addr, &sink);
                }
                // Also churn the addresses sender 0 is filling up.
                let hot = CHURN + next(&mut rng) % 4;
                if next(&mut rng).is_multiple_of(8) && router.close(hot) {
                    closed += 1;
                    register(&router, hot, &sink);
                }
            }
            closed
        })
    };
    let reports: Vec<SenderReport> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    senders_done.store(true, Ordering::SeqCst);
    let closed = churn.join().unwrap();

    let accepted_total: usize =
        reports.iter().flat_map(|r| r.accepted.values()).map(Vec::len).sum();
    sink.wait_for(accepted_total, Duration::from_secs(120));
    system.shutdown().unwrap();

    // Bookkeeping of every attempt.
    let attempts = u64::from(SENDERS) * PER_SENDER;
    let full: u64 = reports.iter().map(|r| r.full).sum();
    let not_found: u64 = reports.iter().map(|r| r.not_found).sum();
    let disconnected: u64 = reports.iter().map(|r| r.disconnected).sum();
    assert_eq!(accepted_total as u64 + full + not_found + disconnected, attempts);
    println!(
        "accepted {accepted_total}, full {full}, not found {not_found}, disconnected {disconnected}, \
         closed {closed}, discarded {}",
        sink.discarded_count.load(Ordering::SeqCst)
    );
    assert!(closed > 0 && not_found > 0, "the churn must have bitten");

    // Exactly-once: for each (sender, address), handled ∪ discarded == accepted, disjoint.
    let handled = sink.handled.lock();
    let discarded = sink.discarded.lock();
    let mut seen_total = 0usize;
    for r in &reports {
        for (key, accepted) in &r.accepted {
            let mut seen: Vec<u64> = handled.get(key).cloned().unwrap_or_default();
            let lost: &[u64] = discarded.get(key).map_or(&[], Vec::as_slice);
            assert!(
                lost.is_empty() || key.1 < CHURN + 4,
                "messages discarded at address {} that was never closed",
                key.1
            );
            seen.extend_from_slice(lost);
            seen.sort_unstable();
            assert_eq!(&seen, accepted, "sender {} address {}", key.0, key.1);
            seen_total += seen.len();
        }
    }
    assert_eq!(seen_total, accepted_total);
    let handled_total: usize = handled.values().map(Vec::len).sum();
    let discarded_total: usize = discarded.values().map(Vec::len).sum();
    assert_eq!(
        handled_total + discarded_total,
        accepted_total,
        "nothing handled twice or invented"
    );
}
