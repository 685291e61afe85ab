//! `raftstore_split_leader`: how long a region a split creates goes without a leader (#11).
//! Three stores in this process over `test_raftstore`'s in-memory transport (real RocksDB,
//! real fsyncs) with the template's raft timing (1 s ticks: heartbeats every 2 s, elections
//! after 10 s), so a new region that had to wait for a heartbeat or an election timeout shows.
//!
//! The splits run one after the other, each at a key of the rightmost region. For each split
//! it reports:
//! - `answered`: the `BatchSplit` admin command answered (it is answered when the split
//!   applied on the leader);
//! - `leader`: from that answer until a peer of the new region says it leads (polled with
//!   status commands, without sleeping; includes the poll's own round trip);
//! - the raftstore's own `split_to_leader` histogram (from the split's apply on the leader's
//!   store to the new peer there learning its first leader), summed over the stores.
//!
//! Run: `cargo bench --workspace --bench raftstore_split_leader`. Knobs: `SPLIT_BENCH_SPLITS`
//! (default 30).

use std::time::{Duration, Instant};

use raftstore::stats::SPLIT_TO_LEADER_MS_BUCKETS;
use raftstore::Config;
use test_raftstore::Cluster;

fn main() {
    let splits: u32 =
        std::env::var("SPLIT_BENCH_SPLITS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let cfg = Config::default(); // the template's timing
    let mut cluster = Cluster::new(3, &[], cfg);
    cluster.start();
    let started = Instant::now();
    cluster.must_put(b"k0000", b"v");
    println!("first leader after {:.1?} (an election timeout: 10 s to 20 s)", started.elapsed());

    let mut answered = Vec::new();
    let mut to_leader = Vec::new();
    for i in 1..=splits {
        let key = format!("k{:04}", i * 100);
        let region = cluster.region_for_key(key.as_bytes());
        let t0 = Instant::now();
        let regions = cluster.split_region(region.id, &[key.as_bytes()]).expect("split");
        let t1 = Instant::now();
        let new = regions.iter().find(|r| r.id != region.id).expect("a new region").id;
        let deadline = t1 + Duration::from_secs(60);
        while cluster.leader_of(new).is_none() {
            assert!(Instant::now() < deadline, "region {new} has no leader after 60 s");
        }
        let t2 = Instant::now();
        answered.push(t1 - t0);
        to_leader.push(t2 - t1);
        cluster.must_put(key.as_bytes(), b"v");
    }
    print_row("split answered (applied on the leader)", &mut answered);
    print_row("answer to the new region's leader (polled)", &mut to_leader);

    let mut buckets = vec![0u64; SPLIT_TO_LEADER_MS_BUCKETS.len() + 1];
    let mut sum_ms = 0;
    for &s in cluster.store_ids() {
        let st = cluster.stats(s);
        for (b, n) in buckets.iter_mut().zip(&st.split_to_leader_ms) {
            *b += n;
        }
        sum_ms += st.split_to_leader_ms_sum;
    }
    let n: u64 = buckets.iter().sum();
    println!("\nraftstore split_to_leader histogram ({n} regions, sum {sum_ms} ms):");
    println!("| <= ms | regions |\n|---|---|");
    for (i, count) in buckets.iter().enumerate().filter(|(_, c)| **c > 0) {
        match SPLIT_TO_LEADER_MS_BUCKETS.get(i) {
            Some(b) => println!("| {b} | {count} |"),
            None => println!("| more | {count} |"),
        }
    }
}

fn print_row(what: &str, v: &mut [Duration]) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    println!(
        "| {what} | mean {mean:.2} | p50 {:.2} | p99 {:.2} | max {:.2} |",
        ms(q(0.5)),
        ms(q(0.99)),
        ms(*v.last().expect("at least one split"))
    );
}
