//! Heap bytes per idle FSM: a counting global allocator measures live bytes before and after
//! registering 10,000 FSMs (pollers already running and parked), then again after each FSM
//! has handled one message (the inbox keeps its first queue block after that).
//!
//! The FSM is minimal (just its inbox), so the numbers are the batch system's own overhead:
//! mailbox, ownership cell, channel, address-book entry and the FSM box.
//!
//! Run: `cargo bench -p benches --bench batch_system_memory`

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use batch_system::Config;
use benches::alloc_counter::CountingAlloc;

#[path = "common.rs"]
mod common;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const FSMS: u64 = 10_000;

fn per_fsm(before: isize, after: isize) -> f64 {
    (after - before) as f64 / FSMS as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let cfg = Config { pool_size: 2, ..Config::default() };
    let (router, mut system) = common::system(&cfg, 0);
    let handled = Arc::new(AtomicU64::new(0));
    system.spawn("bench", common::Builder(handled.clone())).unwrap();
    // Let the pollers reach their blocking receive (their start-up allocations happen first).
    router.send_control(0).unwrap();
    while !router.control_mailbox().is_empty() {
        std::thread::yield_now();
    }

    let before = ALLOC.live_bytes();
    let allocs_before = ALLOC.allocations();
    for addr in 0..FSMS {
        common::register(&router, addr);
    }
    let registered = ALLOC.live_bytes();
    let allocs = ALLOC.allocations() - allocs_before;

    for addr in 0..FSMS {
        router.send(addr, addr).unwrap();
    }
    common::wait_until(&handled, FSMS);
    let after_one_message = ALLOC.live_bytes();

    println!(
        "batch_system idle FSM memory ({FSMS} FSMs, message = u64, notify-capacity {})",
        cfg.notify_capacity
    );
    println!(
        "  registered, never messaged: {:.1} bytes/FSM, {:.2} allocations/FSM",
        per_fsm(before, registered),
        allocs as f64 / FSMS as f64
    );
    println!("  after one message each:     {:.1} bytes/FSM", per_fsm(before, after_one_message));
    system.shutdown().unwrap();
    drop(system);
    drop(router);
    // Everything allocated for the FSMs must be gone; what remains was allocated before
    // `before` (or is allocator-internal), so this is <= 0 unless something leaked.
    println!(
        "  after shutdown and drop (leak check): {} bytes above the start",
        ALLOC.live_bytes() - before
    );
}
