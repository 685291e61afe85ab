//! `raftstore_put`: a load generator for the write path of the raftstore. Three stores run in
//! this process over the in-memory transport of `test_raftstore` (real RocksDB engines in temp
//! directories, real fsyncs); the key space is pre-cut into N regions (N = 1, 100, 1000); C
//! client threads put 100-byte values on uniformly random keys for a fixed time, and we report
//! puts/s, latency percentiles and how many proposals shared one raft fsync.
//!
//! Not a criterion bench: one case takes tens of seconds to set up (1000 regions x 3 stores
//! must elect leaders), and the numbers of interest (tail latency, fsync batching) are
//! properties of a sustained load, not of a repeated closure.
//!
//! Run: `cargo bench --workspace --bench raftstore_put`. Knobs (all optional):
//! - `RAFTSTORE_BENCH_SECS`: measured seconds per case (default 10);
//! - `RAFTSTORE_BENCH_CLIENTS`: client threads (default 16);
//! - `RAFTSTORE_BENCH_REGIONS`: comma-separated region counts (default `1,100,1000`);
//! - `RAFTSTORE_BENCH_SEED`: seed of the key choice (default 42; printed).
//!
//! Every region has a peer on every store, so the three stores split the leaders; all three
//! stores, their pollers and the clients share the machine's cores.

use std::time::{Duration, Instant};

use raftstore::stats::PROPOSALS_PER_FSYNC_BUCKETS;
use raftstore::{Config, StoreStatsSnapshot};
use test_raftstore::Cluster;
use util::config::ReadableDuration;

const STORES: u64 = 3;
/// Keys are `k0000000`..`k0999999`; every region count used divides this, so regions hold
/// equally many keys and a uniform key choice is a uniform region choice.
const KEY_SPACE: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;

struct Params {
    secs: u64,
    clients: usize,
    regions: Vec<u64>,
    seed: u64,
}

/// What one case measured.
struct CaseResult {
    regions: u64,
    clients: usize,
    bootstrap: Duration,
    elect_all: Duration,
    elapsed: Duration,
    /// Latencies of the successful puts, sorted.
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    /// Successful puts per region (index = region id - 1).
    puts_per_region: Vec<u64>,
    /// Per store: stats after the load minus before.
    stats: Vec<StoreStatsSnapshot>,
    /// CPU seconds used during the load, by thread group.
    cpu: cpu::Usage,
}

fn main() {
    let params = params_from_env();
    println!(
        "raftstore_put: {STORES} stores, {} client threads, {} s per case, {VALUE_BYTES}-byte \
         values, seed {}",
        params.clients, params.secs, params.seed
    );
    let mut results = Vec::new();
    for &regions in &params.regions {
        results.push(run_case(&params, regions));
    }
    print_table(&results);
}

fn params_from_env() -> Params {
    fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
        match std::env::var(name) {
            Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
            Err(_) => default,
        }
    }
    let regions: String = var("RAFTSTORE_BENCH_REGIONS", "1,100,1000".to_owned());
    let regions: Vec<u64> = regions
        .split(',')
        .map(|r| r.trim().parse().unwrap_or_else(|_| panic!("bad region count {r:?}")))
        .collect();
    for &n in &regions {
        assert!(n >= 1 && KEY_SPACE % n == 0, "region count {n} must divide {KEY_SPACE}");
    }
    let params = Params {
        secs: var("RAFTSTORE_BENCH_SECS", 10),
        clients: var("RAFTSTORE_BENCH_CLIENTS", 16),
        regions,
        seed: var("RAFTSTORE_BENCH_SEED", 42),
    };
    assert!(params.secs >= 1 && params.clients >= 1, "need at least 1 s and 1 client");
    params
}

/// Default config with 100 ms ticks: elections after 1-2 s instead of 10-20 s. Ticks stay
/// at 100 ms (not the 10 ms of `Config::for_tests`) so that ticking 3000 peers does not eat
/// the CPU the load needs.
fn bench_config() -> Config {
    let cfg = Config {
        raft_base_tick_interval: ReadableDuration::millis(100),
        raft_heartbeat_ticks: 2,
        raft_election_timeout_ticks: 10,
        raft_store_max_leader_lease: ReadableDuration::millis(900),
        ..Config::default()
    };
    cfg.validate().expect("bench config is valid");
    cfg
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:07}").into_bytes()
}

/// Region `r` (id `r + 1`) holds keys `r * KEY_SPACE / n .. (r + 1) * KEY_SPACE / n`.
fn split_keys(regions: u64) -> Vec<Vec<u8>> {
    (1..regions).map(|r| key(r * KEY_SPACE / regions)).collect()
}

fn run_case(params: &Params, regions: u64) -> CaseResult {
    println!("\n== {regions} region(s)");
    let splits = split_keys(regions);
    let split_refs: Vec<&[u8]> = splits.iter().map(Vec::as_slice).collect();
    let started = Instant::now();
    let mut cluster = Cluster::new(STORES, &split_refs, bench_config());
    let bootstrap = started.elapsed();
    check_key_layout(&cluster, regions);
    println!("bootstrapped {STORES} stores x {regions} region(s) in {bootstrap:.2?}");

    let started = Instant::now();
    cluster.start();
    let mut leaders_per_store = vec![0u64; STORES as usize];
    for region in 1..=regions {
        let leader = cluster.wait_leader(region);
        leaders_per_store[leader.store_id as usize - 1] += 1;
    }
    let elect_all = started.elapsed();
    println!(
        "every region has a leader {elect_all:.2?} after start; leaders per store \
         {leaders_per_store:?}"
    );

    let before: Vec<_> = cluster.store_ids().iter().map(|&s| cluster.stats(s)).collect();
    let cpu_before = cpu::Sample::take();
    let load = run_load(&cluster, params, regions);
    let cpu = cpu::Sample::take().since(&cpu_before);
    let after: Vec<_> = cluster.store_ids().iter().map(|&s| cluster.stats(s)).collect();
    let stats = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let result = CaseResult {
        regions,
        clients: params.clients,
        bootstrap,
        elect_all,
        elapsed: load.elapsed,
        latencies: load.latencies,
        errors: load.errors,
        first_error: load.first_error,
        puts_per_region: load.puts_per_region,
        stats,
        cpu,
    };
    print_case(&result);

    let started = Instant::now();
    drop(cluster);
    println!("shut down in {:.2?}", started.elapsed());
    result
}

/// The keys we generate must land in the region we think they do, or the spread is a lie.
fn check_key_layout(cluster: &Cluster, regions: u64) {
    assert_eq!(cluster.regions().len() as u64, regions);
    for r in 0..regions {
        for i in [r * KEY_SPACE / regions, (r + 1) * KEY_SPACE / regions - 1] {
            let got = cluster.region_for_key(&key(i)).id;
            assert_eq!(got, r + 1, "key {i} should be in region {}", r + 1);
        }
    }
}

struct Load {
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
    puts_per_region: Vec<u64>,
}

impl Load {
    fn new(regions: u64) -> Load {
        Load {
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
            puts_per_region: vec![0; regions as usize],
        }
    }

    fn merge(&mut self, other: Load) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        for (t, n) in self.puts_per_region.iter_mut().zip(other.puts_per_region) {
            *t += n;
        }
    }
}

/// `params.clients` threads put until the deadline; each put is timed on its own.
fn run_load(cluster: &Cluster, params: &Params, regions: u64) -> Load {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(params.secs);
    let per_client: Vec<Load> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..params.clients)
            .map(|c| {
                let rng = SplitMix64(params.seed ^ (c as u64).wrapping_mul(0x9e37_79b9));
                std::thread::Builder::new()
                    .name(format!("client-{c}"))
                    .spawn_scoped(scope, move || client(cluster, regions, rng, deadline))
                    .expect("spawn client thread")
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let mut total = Load::new(regions);
    total.elapsed = started.elapsed();
    for load in per_client {
        total.merge(load);
    }
    total.latencies.sort_unstable();
    total
}

/// One client: a put at a time, on a uniformly random key, until `deadline`.
fn client(cluster: &Cluster, regions: u64, mut rng: SplitMix64, deadline: Instant) -> Load {
    let value = vec![b'v'; VALUE_BYTES];
    let mut load = Load::new(regions);
    load.latencies.reserve(1 << 16);
    while Instant::now() < deadline {
        let i = rng.next() % KEY_SPACE;
        let started = Instant::now();
        match cluster.put(&key(i), &value) {
            Ok(()) => {
                load.latencies.push(started.elapsed());
                load.puts_per_region[(i * regions / KEY_SPACE) as usize] += 1;
            }
            Err(e) => {
                load.errors += 1;
                load.first_error.get_or_insert_with(|| format!("{e:?}"));
            }
        }
    }
    load
}

/// A tiny seeded generator (splitmix64): enough to spread keys, no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Counts of sorted latencies in power-of-two millisecond buckets: `<0.5ms 12, <1ms 40, ..`.
fn distribution(sorted: &[Duration]) -> String {
    const BOUNDS_MS: [f64; 11] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    let mut out = Vec::new();
    let mut below = 0;
    for bound in BOUNDS_MS {
        let upto = sorted.partition_point(|d| d.as_secs_f64() * 1e3 < bound);
        out.push(format!("<{bound}ms {}", upto - below));
        below = upto;
    }
    out.push(format!(">=512ms {}", sorted.len() - below));
    out.join(", ")
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Fsyncs that carried at least one proposal: all but the first histogram bucket (`<= 0`).
fn proposing_fsyncs(s: &StoreStatsSnapshot) -> u64 {
    s.raft_fsyncs - s.proposals_per_fsync[0]
}

fn print_case(r: &CaseResult) {
    let puts = r.latencies.len() as u64;
    println!(
        "{puts} puts in {:.2?} ({:.0}/s), {} error(s); latency p50 {} ms, p99 {} ms, \
         p999 {} ms, max {} ms",
        r.elapsed,
        puts as f64 / r.elapsed.as_secs_f64(),
        r.errors,
        ms(quantile(&r.latencies, 0.5)),
        ms(quantile(&r.latencies, 0.99)),
        ms(quantile(&r.latencies, 0.999)),
        ms(r.latencies.last().copied().unwrap_or_default()),
    );
    println!("latency distribution: {}", distribution(&r.latencies));
    if let Some(e) = &r.first_error {
        println!("first error: {e}");
    }
    let min = r.puts_per_region.iter().min().copied().unwrap_or(0);
    let max = r.puts_per_region.iter().max().copied().unwrap_or(0);
    println!("puts per region: min {min}, max {max}, mean {:.1}", ratio(puts, r.regions));
    println!(
        "CPU during the load: {:.2} cores (of {}): {}",
        r.cpu.total_secs / r.elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        r.cpu
            .by_group
            .iter()
            .map(|(g, secs)| format!("{g} {:.2}", secs / r.elapsed.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "fsync histogram bucket upper bounds (proposals): {PROPOSALS_PER_FSYNC_BUCKETS:?}, \
         then open"
    );
    for (i, s) in r.stats.iter().enumerate() {
        println!(
            "store {}: fsyncs {} (with proposals {}), proposals {}, per fsync {:.2}, per \
             proposing fsync {:.2}, dropped {}, apply rounds {} answering {} ({:.2}/round), \
             histogram {:?}",
            i + 1,
            s.raft_fsyncs,
            proposing_fsyncs(s),
            s.proposals_synced,
            ratio(s.proposals_synced, s.raft_fsyncs),
            ratio(s.proposals_synced, proposing_fsyncs(s)),
            s.proposals_dropped,
            s.apply_rounds,
            s.commands_answered,
            ratio(s.commands_answered, s.apply_rounds),
            s.proposals_per_fsync,
        );
    }
}

/// The summary, as a Markdown table for RESULTS.md. "Proposing" fsyncs carried at least one
/// proposal (a leader's); the others persisted only follower appends or commit indexes.
fn print_table(results: &[CaseResult]) {
    println!(
        "\n| regions | clients | puts/s | p50 ms | p99 ms | p999 ms | max ms | errors | \
         all leaders after | CPU cores | fsyncs/s (3 stores) | proposals / fsync | \
         proposals / proposing fsync |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let secs = r.elapsed.as_secs_f64();
        let puts = r.latencies.len() as u64;
        let fsyncs: u64 = r.stats.iter().map(|s| s.raft_fsyncs).sum();
        let proposing: u64 = r.stats.iter().map(proposing_fsyncs).sum();
        let proposals: u64 = r.stats.iter().map(|s| s.proposals_synced).sum();
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} s (bootstrap {:.1} s) | {:.2} | \
             {:.0} | {:.2} | {:.2} |",
            r.regions,
            r.clients,
            puts as f64 / secs,
            ms(quantile(&r.latencies, 0.5)),
            ms(quantile(&r.latencies, 0.99)),
            ms(quantile(&r.latencies, 0.999)),
            ms(r.latencies.last().copied().unwrap_or_default()),
            r.errors,
            r.elect_all.as_secs_f64(),
            r.bootstrap.as_secs_f64(),
            r.cpu.total_secs / secs,
            fsyncs as f64 / secs,
            ratio(proposals, fsyncs),
            ratio(proposals, proposing),
        );
    }
}

mod cpu {
    //! CPU time of this process and of its threads, from `/proc` (Linux; zeros elsewhere).

    use std::collections::{BTreeMap, HashMap};

    /// `/proc` reports CPU time in clock ticks; 100 per second on every Linux we run on
    /// (`getconf CLK_TCK`), and std offers no `sysconf` to ask.
    const TICKS_PER_SEC: f64 = 100.0;

    pub struct Sample {
        process_ticks: u64,
        /// Thread id -> (name, ticks).
        threads: HashMap<u64, (String, u64)>,
    }

    /// CPU seconds in a window: the whole process, and per thread group (the thread name
    /// without a trailing `-<n>`). Threads that exited during the window (the clients) count
    /// in the total only; they appear as `exited (clients)`.
    pub struct Usage {
        pub total_secs: f64,
        pub by_group: BTreeMap<String, f64>,
    }

    impl Sample {
        pub fn take() -> Sample {
            let process_ticks = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| cpu_ticks(&s))
                .unwrap_or(0);
            let mut threads = HashMap::new();
            for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                if let Some(ticks) = cpu_ticks(&stat) {
                    threads.insert(tid, (group(name.trim()), ticks));
                }
            }
            Sample { process_ticks, threads }
        }

        pub fn since(&self, before: &Sample) -> Usage {
            let mut by_group = BTreeMap::new();
            let mut threads_ticks = 0;
            for (tid, (name, ticks)) in &self.threads {
                let start = before.threads.get(tid).map_or(0, |(_, t)| *t);
                let used = ticks.saturating_sub(start);
                threads_ticks += used;
                *by_group.entry(name.clone()).or_insert(0.0) += used as f64 / TICKS_PER_SEC;
            }
            let total = self.process_ticks.saturating_sub(before.process_ticks);
            let rest = total.saturating_sub(threads_ticks);
            by_group.insert("exited (clients)".to_owned(), rest as f64 / TICKS_PER_SEC);
            Usage { total_secs: total as f64 / TICKS_PER_SEC, by_group }
        }
    }

    /// utime + stime of a `/proc/.../stat` line (fields 14 and 15; the name in parentheses
    /// may contain spaces, so count from the last `)`).
    fn cpu_ticks(stat: &str) -> Option<u64> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    fn group(name: &str) -> String {
        match name.rsplit_once('-') {
            Some((prefix, n)) if n.bytes().all(|b| b.is_ascii_digit()) => prefix.to_owned(),
            _ => name.to_owned(),
        }
    }
}
