//! A minimal FSM and handler shared by the batch-system benches: each message is a u64 that
//! the handler adds to a counter, so the cost measured is the batch system's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use batch_system::{
    create_system, inbox, BatchSystem, Config, Fsm, HandleResult, HandlerBuilder, Inbox, NormalFsm,
    PollHandler, Router,
};

pub struct BenchFsm {
    inbox: Inbox<u64>,
}

impl Fsm for BenchFsm {
    type Message = u64;
    fn is_stopped(&self) -> bool {
        false
    }
}

pub struct Handler {
    handled: Arc<AtomicU64>,
    local: u64,
}

impl PollHandler<BenchFsm, BenchFsm> for Handler {
    fn begin(&mut self, _batch_size: usize) {}

    fn handle_control(&mut self, control: &mut BenchFsm) -> Option<usize> {
        while control.inbox.try_recv().is_some() {}
        Some(0)
    }

    fn handle_normal(&mut self, fsm: &mut BenchFsm) -> HandleResult {
        // Like raftstore's messages-per-tick cap.
        for _ in 0..4096 {
            match fsm.inbox.try_recv() {
                Some(_) => self.local += 1,
                None => return HandleResult::stop_at(0, false),
            }
        }
        HandleResult::KeepProcessing
    }

    fn end(&mut self, _normals: &mut [NormalFsm<BenchFsm>]) {
        // Published once per round, as a real handler would flush once per round.
        self.handled.fetch_add(std::mem::take(&mut self.local), Ordering::Release);
    }
}

pub struct Builder(pub Arc<AtomicU64>);

impl HandlerBuilder<BenchFsm, BenchFsm> for Builder {
    type Handler = Handler;
    fn build(&mut self) -> Handler {
        Handler { handled: self.0.clone(), local: 0 }
    }
}

pub type BenchRouter = Router<BenchFsm, BenchFsm>;

/// A system with `fsms` idle FSMs at addresses `0..fsms`, not yet spawned.
pub fn system(cfg: &Config, fsms: u64) -> (BenchRouter, BatchSystem<BenchFsm, BenchFsm>) {
    let (tx, control_inbox) = inbox(cfg.notify_capacity);
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let control = Box::new(BenchFsm { inbox: control_inbox });
    let (router, system) = create_system(cfg, logger, tx, control).expect("valid config");
    for addr in 0..fsms {
        register(&router, addr);
    }
    (router, system)
}

pub fn register(router: &BenchRouter, addr: u64) {
    let (tx, inbox) = router.create_inbox();
    router.register(addr, tx, Box::new(BenchFsm { inbox }));
}

/// Waits (spinning, then yielding) until `counter` reaches `target`.
pub fn wait_until(counter: &AtomicU64, target: u64) {
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < target {
        if spins < 100 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}
