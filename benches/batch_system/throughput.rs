//! Messages per second through the batch system: 10,000 FSMs on 2 pollers, one sender thread
//! sending round-robin (so consecutive messages go to different FSMs, the worst case for
//! batching per FSM and the best for batching per round), timed until all are handled.
//!
//! Run: `cargo bench -p benches --bench batch_system_throughput`

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_system::{Config, SendError};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "common.rs"]
mod common;

const FSMS: u64 = 10_000;

fn round_robin(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_system");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));
    // 1 message per FSM per pass (every send wakes an idle FSM), and 10 (FSMs stay busy).
    for per_fsm in [1u64, 10] {
        let msgs = FSMS * per_fsm;
        group.throughput(Throughput::Elements(msgs));
        let cfg = Config { pool_size: 2, ..Config::default() };
        let (router, mut system) = common::system(&cfg, FSMS);
        let handled = Arc::new(AtomicU64::new(0));
        system.spawn("bench", common::Builder(handled.clone())).unwrap();
        let mut expected = 0u64;
        let mut full = 0u64;
        let id =
            BenchmarkId::new("round_robin_10k_fsms_2_pollers", format!("{per_fsm}_msg_per_fsm"));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..msgs {
                        let mut msg = i;
                        loop {
                            match router.send(i % FSMS, msg) {
                                Ok(()) => break,
                                Err(SendError::Full { msg: m, .. }) => {
                                    full += 1;
                                    msg = m;
                                    std::thread::yield_now();
                                }
                                Err(e) => panic!("send failed: {e}"),
                            }
                        }
                    }
                    expected += msgs;
                    common::wait_until(&handled, expected);
                }
                start.elapsed()
            })
        });
        assert_eq!(full, 0, "default notify-capacity should never be reached here");
        system.shutdown().unwrap();
    }
    group.finish();
}

criterion_group!(benches, round_robin);
criterion_main!(benches);
