//! `regionstore-load`: a closed-loop load generator of raw puts and gets against a running
//! cluster, through `raw_client` (the ctl's path: PD lookup, then the region's leader).
//!
//! Phases, in order: connect to PD → prefill (get and mixed workloads: every key of the key
//! space written once, so gets find their keys) → warm-up (the workload, unmeasured: region and
//! store caches fill, connections open) → measurement → report (ops/s, errors, p50/p99/p999/max
//! latency per op kind; one JSON document with `--json`).
//!
//! Bounds, so a run cannot run away (`Args::validate` rejects anything outside them):
//! - Requests in flight ≤ `--clients` (≤ `CLIENTS_MAX`): each client task issues one request
//!   and waits for its answer before the next (a closed loop, like the raftstore bench).
//! - Time: the measurement stops issuing at `--secs` (or after `--ops` requests, whichever
//!   comes first); a request still in flight then is cut at `--op-timeout-ms` and counted as an
//!   error, so the phase ends within `secs + op timeout`. Prefill stops at `PREFILL_TIME_MAX`.
//! - Memory: latencies go to fixed-size HDR histograms (3 significant digits, 1 µs to 60 s), one
//!   per client and op kind, merged at the end; nothing grows with the run's length but the
//!   per-second progress counts (≤ `SECS_MAX` + op timeout entries).
//!
//! Two extras for watching splits: `--track-regions` samples PD's region count every second
//! and reports throughput per region count (run against a cluster with a small
//! `coprocessor.region-split-size` to watch auto split); `--split-latency N` replaces the load
//! with N manual splits, timing each until both halves serve a write and until PD routes by
//! the new layout.
//!
//! Keys are `<key-prefix><index, 10 digits>`, indexes uniform in `[0, key-space)` from a
//! splitmix64 stream per client seeded by `--seed` and the client's number: the same seed gives
//! the same key and op sequence per client (not the same interleaving). Only successful requests
//! are timed into the histograms; failed and timed-out ones are counted by kind.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use raw_client::RawClient;
use serde_json::json;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CLIENTS_MAX: usize = 1024;
const SECS_MAX: u64 = 3600;
const KEY_SPACE_MAX: u64 = 100_000_000;
const VALUE_BYTES_MAX: usize = 1 << 20;
const OP_TIMEOUT_MS_MAX: u64 = 60_000;
/// A prefill that has not finished by then stops the run with an error.
const PREFILL_TIME_MAX: Duration = Duration::from_secs(600);
/// The histograms' range; larger values are recorded as this (an op timeout is ≤ 60 s anyway).
const LATENCY_US_MAX: u64 = 60_000_000;
/// First error messages kept per error kind (the rest are only counted).
const ERROR_SAMPLES_MAX: usize = 3;

/// Drive raw put/get load against a running regionstore cluster and report throughput and
/// latency.
#[derive(Parser, Debug)]
#[command(name = "regionstore-load", version)]
struct Args {
    /// PD endpoint(s), comma separated. Loopback only for benchmarks on shared machines.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pd: Vec<String>,
    /// What each request is: `put`, `get`, or `mixed` (gets with probability --read-ratio).
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    workload: Workload,
    /// Fraction of gets in the mixed workload (default 0.5); only with --workload mixed.
    #[arg(long)]
    read_ratio: Option<f64>,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Length of the measurement.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Stop the measurement after this many requests (if that comes before --secs).
    #[arg(long)]
    ops: Option<u64>,
    /// Unmeasured warm-up before the measurement (0 to skip).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Prefix of every key, to keep the load's keys apart from other data.
    #[arg(long, default_value = "load/")]
    key_prefix: String,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seed of the key and op choice (printed with the results).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Skip the prefill of get and mixed workloads (keys written by an earlier run).
    #[arg(long)]
    no_prefill: bool,
    /// A request not answered within this is abandoned and counted as a `timeout` error.
    #[arg(long, default_value_t = 10_000)]
    op_timeout_ms: u64,
    /// Worker threads of the client runtime (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Also sample PD's region count every second (progress lines and report): for watching
    /// throughput while the cluster splits.
    #[arg(long)]
    track_regions: bool,
    /// Instead of a load: split this many times (at keys spread over the key space, through
    /// the SplitRegion RPC) and time each split until both halves took a write and until PD
    /// routes by the new layout. Runs alone, one split at a time.
    #[arg(long)]
    split_latency: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Put,
    Get,
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
        }
    }
}

impl Args {
    /// Rejects values outside the bounds of the module doc and contradictory flags.
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=CLIENTS_MAX).contains(&self.clients),
            "--clients must be in 1..={CLIENTS_MAX}"
        );
        ensure!((1..=SECS_MAX).contains(&self.secs), "--secs must be in 1..={SECS_MAX}");
        ensure!(self.warmup_secs <= SECS_MAX, "--warmup-secs must be at most {SECS_MAX}");
        ensure!(self.ops != Some(0), "--ops must be at least 1");
        ensure!(
            self.split_latency.is_none_or(|n| (1..=1000).contains(&n)),
            "--split-latency must be in 1..=1000"
        );
        ensure!(
            (1..=KEY_SPACE_MAX).contains(&self.key_space),
            "--key-space must be in 1..={KEY_SPACE_MAX}"
        );
        ensure!(
            self.value_size <= VALUE_BYTES_MAX,
            "--value-size must be at most {VALUE_BYTES_MAX}"
        );
        ensure!(
            (1..=OP_TIMEOUT_MS_MAX).contains(&self.op_timeout_ms),
            "--op-timeout-ms must be in 1..={OP_TIMEOUT_MS_MAX}"
        );
        ensure!(self.threads != Some(0), "--threads must be at least 1");
        match (self.workload, self.read_ratio) {
            (Workload::Mixed, Some(r)) => {
                ensure!((0.0..=1.0).contains(&r), "--read-ratio must be in [0, 1]")
            }
            (Workload::Put | Workload::Get, Some(_)) => {
                bail!("--read-ratio applies to --workload mixed only")
            }
            (_, None) => {}
        }
        Ok(())
    }

    fn read_ratio(&self) -> f64 {
        match self.workload {
            Workload::Put => 0.0,
            Workload::Get => 1.0,
            Workload::Mixed => self.read_ratio.unwrap_or(0.5),
        }
    }

    fn prefill(&self) -> bool {
        self.workload != Workload::Put && !self.no_prefill
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("regionstore-load: {e:#}");
        return ExitCode::from(2);
    }
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("load-client")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("regionstore-load: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionstore-load: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What every client task shares.
struct Shared {
    client: RawClient,
    key_prefix: String,
    key_space: u64,
    read_ratio: f64,
    value: Vec<u8>,
    op_timeout: Duration,
    /// Requests issued in the current phase; a client stops when it reaches the phase's limit.
    issued: AtomicU64,
    /// Requests answered (ok or not) since the start, for the progress lines.
    answered: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn key(&self, index: u64) -> Vec<u8> {
        format!("{}{index:010}", self.key_prefix).into_bytes()
    }
}

/// The end of one phase: issue nothing at or after `deadline`, nor more than `ops_max`.
#[derive(Clone, Copy)]
struct Phase {
    deadline: Instant,
    ops_max: u64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let pd = pd_client::PdClient::connect(args.pd.clone(), Duration::from_secs(5), logger)
        .await
        .with_context(|| format!("cannot reach PD at {:?}", args.pd))?;
    let mut value_rng = SplitMix64(args.seed);
    let shared = Arc::new(Shared {
        client: RawClient::new(Arc::new(pd)),
        key_prefix: args.key_prefix.clone(),
        key_space: args.key_space,
        read_ratio: args.read_ratio(),
        value: (0..args.value_size).map(|_| value_rng.next() as u8).collect(),
        op_timeout: Duration::from_millis(args.op_timeout_ms),
        issued: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let cluster = describe_cluster(shared.client.pd()).await?;
    if let Some(n) = args.split_latency {
        return split_latency(&shared, n, args.json).await;
    }
    if !args.json {
        print_header(&args, &cluster);
    }
    let prefill = if args.prefill() { Some(prefill(&shared, args.clients).await?) } else { None };
    if let (Some(p), false) = (&prefill, args.json) {
        let secs = p.elapsed.as_secs_f64();
        println!("prefill: {} keys in {secs:.1} s ({:.0} puts/s)", p.keys, p.keys as f64 / secs);
    }
    if args.warmup_secs > 0 {
        let until = Instant::now() + Duration::from_secs(args.warmup_secs);
        run_phase(&shared, &args, Phase { deadline: until, ops_max: u64::MAX }, 1).await;
    }
    let started = Instant::now();
    let phase = Phase {
        deadline: started + Duration::from_secs(args.secs),
        ops_max: args.ops.unwrap_or(u64::MAX),
    };
    let (stop_progress, stopped) = tokio::sync::oneshot::channel();
    let progress = tokio::spawn(progress(shared.clone(), stopped, !args.quiet, args.track_regions));
    let tally = run_phase(&shared, &args, phase, 2).await;
    let elapsed = started.elapsed();
    // The progress task ends when told to (or when the sender is dropped), returning its counts.
    let _ = stop_progress.send(());
    let (per_second, regions_per_second) = progress.await.expect("progress task panicked");
    let report = Report { elapsed, tally, prefill, cluster, per_second, regions_per_second };
    if args.json {
        println!("{}", report.json(&args));
    } else {
        report.print();
    }
    Ok(())
}

/// Runs `args.clients` client tasks until `phase` ends and merges what they measured. Client
/// `c` draws from the stream seeded by `(seed, round, c)`, so warm-up and measurement differ.
async fn run_phase(shared: &Arc<Shared>, args: &Args, phase: Phase, round: u64) -> Tally {
    shared.issued.store(0, Ordering::Relaxed);
    let tasks: Vec<_> = (0..args.clients as u64)
        .map(|c| {
            let rng = SplitMix64(
                args.seed ^ round.wrapping_mul(0x5851_f42d_4c95_7f2d) ^ c.wrapping_mul(0x9e37_79b9),
            );
            tokio::spawn(client_loop(shared.clone(), rng, phase))
        })
        .collect();
    let mut total = Tally::new();
    for t in tasks {
        // A client task only ends by returning: a panic in one is a bug of this tool.
        total.merge(t.await.expect("client task panicked"));
    }
    total
}

/// One client: one request at a time, on a uniformly random key, until the phase ends.
async fn client_loop(shared: Arc<Shared>, mut rng: SplitMix64, phase: Phase) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < phase.deadline
        && shared.issued.fetch_add(1, Ordering::Relaxed) < phase.ops_max
    {
        let key = shared.key(rng.next() % shared.key_space);
        let kind = if rng.unit() < shared.read_ratio { OpKind::Get } else { OpKind::Put };
        let started = Instant::now();
        let outcome = tokio::time::timeout(shared.op_timeout, async {
            match kind {
                OpKind::Get => shared.client.get(&key).await.map(|v| v.is_some()),
                OpKind::Put => shared.client.put(&key, &shared.value).await.map(|()| true),
            }
        })
        .await;
        let latency_us = started.elapsed().as_micros() as u64;
        shared.answered.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(Ok(found)) => tally.ok(kind, latency_us, found),
            Ok(Err(e)) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tally.error(error_kind(&e), e.to_string());
            }
            Err(_elapsed) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tally.error("timeout", format!("no answer within {:?}", shared.op_timeout));
            }
        }
    }
    tally
}

/// Writes every key once, `clients` puts in flight (client `c` takes indexes `c`, `c + clients`,
/// ...). Any failed put stops the run: gets would then measure misses, not reads.
async fn prefill(shared: &Arc<Shared>, clients: usize) -> anyhow::Result<PrefillStats> {
    let started = Instant::now();
    let deadline = started + PREFILL_TIME_MAX;
    let tasks: Vec<_> = (0..clients as u64)
        .map(|c| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut i = c;
                while i < shared.key_space {
                    if Instant::now() >= deadline {
                        bail!("prefill did not finish within {PREFILL_TIME_MAX:?}");
                    }
                    let key = shared.key(i);
                    tokio::time::timeout(shared.op_timeout, shared.client.put(&key, &shared.value))
                        .await
                        .map_err(|_| anyhow::anyhow!("prefill put of key {i} timed out"))?
                        .with_context(|| format!("prefill put of key {i}"))?;
                    i += clients as u64;
                }
                Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("prefill task panicked")?;
    }
    Ok(PrefillStats { keys: shared.key_space, elapsed: started.elapsed() })
}

/// `--split-latency n`: splits at `n` keys spread over the key space, one at a time, each time
/// measuring (a) the SplitRegion call, (b) until a put to each half succeeded (the client
/// follows the split through PD), (c) until PD's GetRegion returns the new right half with a
/// leader.
async fn split_latency(shared: &Arc<Shared>, n: u32, json: bool) -> anyhow::Result<()> {
    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
    let (mut call, mut serve, mut routed) = (new_hist(), new_hist(), new_hist());
    let step = shared.key_space / (u64::from(n) + 1);
    ensure!(step >= 2, "--key-space must be well above --split-latency");
    for i in 1..=u64::from(n) {
        let at = shared.key(i * step);
        let (left, right) = (shared.key(i * step - 1), shared.key(i * step + 1));
        let started = Instant::now();
        shared
            .client
            .split_region(None, vec![at.clone()])
            .await
            .with_context(|| format!("split at {}", String::from_utf8_lossy(&at)))?;
        call.saturating_record(started.elapsed().as_micros() as u64);
        let (l, r) = tokio::join!(
            shared.client.put(&left, &shared.value),
            shared.client.put(&right, &shared.value)
        );
        l.context("put left of the split")?;
        r.context("put right of the split")?;
        serve.saturating_record(started.elapsed().as_micros() as u64);
        loop {
            let info = shared.client.pd().get_region(&at).await?;
            if info.is_some_and(|r| r.region.start_key == at && r.leader.is_some()) {
                break;
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "PD never learned the split");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        routed.saturating_record(started.elapsed().as_micros() as u64);
    }
    let row = |h: &Histogram<u64>| {
        json!({"p50": ms(h.value_at_quantile(0.5)), "p99": ms(h.value_at_quantile(0.99)),
            "max": ms(h.max()), "mean": h.mean() / 1e3})
    };
    if json {
        println!(
            "{}",
            json!({"splits": n, "split_call_ms": row(&call), "both_halves_serve_ms": row(&serve),
                "pd_routes_ms": row(&routed)})
        );
    } else {
        println!("{n} splits, one at a time (ms from the SplitRegion call):");
        println!("{:<24} {:>8} {:>8} {:>8} {:>8}", "", "mean", "p50", "p99", "max");
        for (name, h) in [
            ("split answered", &call),
            ("both halves serve", &serve),
            ("PD routes the new half", &routed),
        ] {
            println!(
                "{name:<24} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                h.mean() / 1e3,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            );
        }
    }
    Ok(())
}

/// Counts answered requests in each whole second until `stop` fires (the partial last second
/// is left out) and prints each count to stderr if `print`; with `regions`, also PD's region
/// count at each second.
async fn progress(
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    print: bool,
    regions: bool,
) -> (Vec<u64>, Vec<usize>) {
    let mut region_counts = Vec::new();
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    // A late tick (2 busy cores) is not made up for with a burst; the rate divides by the time
    // that really passed.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut per_second = Vec::new();
    let mut last = (
        Instant::now(),
        shared.answered.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return (per_second, region_counts),
        }
        let now = (
            Instant::now(),
            shared.answered.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        let rate = ((now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64()).round() as u64;
        per_second.push(rate);
        let count = if regions {
            let n = shared.client.pd().scan_regions(b"", b"", 100_000).await.map_or(0, |r| r.len());
            region_counts.push(n);
            format!(" {n:>5} regions")
        } else {
            String::new()
        };
        if print {
            eprintln!(
                "{:>5} s {rate:>9} ops/s {:>6} errors{count}",
                per_second.len(),
                now.2 - last.2
            );
        }
        last = now;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Put,
    Get,
}

/// The name an error is counted under; one per `raw_client::Error` variant.
fn error_kind(e: &raw_client::Error) -> &'static str {
    use raw_client::Error;
    match e {
        Error::Pd(_) => "pd",
        Error::NoRegion(_) => "no-region",
        Error::Store { .. } => "store",
        Error::Region { .. } => "region",
        Error::Server(_) => "server",
        Error::Grpc(_) => "grpc",
    }
}

/// What one or more clients measured in a phase.
struct Tally {
    put_us: Histogram<u64>,
    get_us: Histogram<u64>,
    /// Gets that found no value (0 after a prefill unless data was lost or deleted).
    misses: u64,
    errors: BTreeMap<&'static str, ErrorCount>,
}

#[derive(Default)]
struct ErrorCount {
    count: u64,
    /// The first `ERROR_SAMPLES_MAX` messages.
    samples: Vec<String>,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant histogram bounds are valid")
}

impl Tally {
    fn new() -> Tally {
        Tally {
            put_us: latency_histogram(),
            get_us: latency_histogram(),
            misses: 0,
            errors: BTreeMap::new(),
        }
    }

    fn ok(&mut self, kind: OpKind, latency_us: u64, found: bool) {
        match kind {
            OpKind::Put => self.put_us.saturating_record(latency_us),
            OpKind::Get => {
                self.get_us.saturating_record(latency_us);
                self.misses += u64::from(!found);
            }
        }
    }

    fn error(&mut self, kind: &'static str, message: String) {
        let e = self.errors.entry(kind).or_default();
        e.count += 1;
        if e.samples.len() < ERROR_SAMPLES_MAX {
            e.samples.push(message);
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        self.put_us.add(&other.put_us).expect("histograms with equal bounds");
        self.get_us.add(&other.get_us).expect("histograms with equal bounds");
        self.misses += other.misses;
        for (kind, e) in other.errors {
            let mine = self.errors.entry(kind).or_default();
            mine.count += e.count;
            let room = ERROR_SAMPLES_MAX.saturating_sub(mine.samples.len());
            mine.samples.extend(e.samples.into_iter().take(room));
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

struct PrefillStats {
    keys: u64,
    elapsed: Duration,
}

/// The cluster as PD saw it before the load: stores, regions, and leaders per store.
struct ClusterInfo {
    stores: usize,
    regions: usize,
    leaders_by_store: BTreeMap<u64, usize>,
}

async fn describe_cluster(pd: &pd_client::PdClient) -> anyhow::Result<ClusterInfo> {
    let stores = pd.get_all_stores().await.context("listing stores")?;
    let regions = pd.scan_regions(b"", b"", 100_000).await.context("listing regions")?;
    let mut leaders_by_store = BTreeMap::new();
    for r in &regions {
        if let Some(l) = &r.leader {
            *leaders_by_store.entry(l.store_id).or_default() += 1;
        }
    }
    Ok(ClusterInfo { stores: stores.len(), regions: regions.len(), leaders_by_store })
}

impl ClusterInfo {
    fn leaders(&self) -> String {
        let v: Vec<String> =
            self.leaders_by_store.iter().map(|(s, n)| format!("store {s}: {n}")).collect();
        if v.is_empty() {
            "none known".to_string()
        } else {
            v.join(", ")
        }
    }
}

fn print_header(args: &Args, cluster: &ClusterInfo) {
    let mix = match args.workload {
        Workload::Mixed => format!(" (read ratio {:.2})", args.read_ratio()),
        Workload::Put | Workload::Get => String::new(),
    };
    let limit = args.ops.map_or(String::new(), |n| format!(" or {n} ops"));
    println!(
        "regionstore-load: workload {}{mix}, {} clients, {} s{limit} after {} s warm-up, key space {} (prefix {:?}), \
         value {} B, seed {}",
        args.workload.name(),
        args.clients,
        args.secs,
        args.warmup_secs,
        args.key_space,
        args.key_prefix,
        args.value_size,
        args.seed
    );
    println!(
        "cluster: {} stores, {} regions, leaders {} (PD {})",
        cluster.stores,
        cluster.regions,
        cluster.leaders(),
        args.pd.join(",")
    );
}

struct Report {
    elapsed: Duration,
    tally: Tally,
    prefill: Option<PrefillStats>,
    cluster: ClusterInfo,
    /// Answered requests per second of the measurement, whole seconds only.
    per_second: Vec<u64>,
    /// PD's region count at each of those seconds (with --track-regions).
    regions_per_second: Vec<usize>,
}

/// Milliseconds with two decimals, from microseconds.
fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

impl Report {
    fn all_us(&self) -> Histogram<u64> {
        let mut all = self.tally.put_us.clone();
        all.add(&self.tally.get_us).expect("histograms with equal bounds");
        all
    }

    fn rate(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }

    /// (min, median, max) of the per-second rates; zeros when the run was under a second.
    fn per_second_spread(&self) -> (u64, u64, u64) {
        let mut v = self.per_second.clone();
        v.sort_unstable();
        match (v.first(), v.get(v.len() / 2), v.last()) {
            (Some(&lo), Some(&mid), Some(&hi)) => (lo, mid, hi),
            _ => (0, 0, 0),
        }
    }

    fn print(&self) {
        println!(
            "{:<4} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "op", "count", "ops/s", "mean ms", "p50 ms", "p99 ms", "p999 ms", "max ms"
        );
        let all = self.all_us();
        for (name, h) in [("put", &self.tally.put_us), ("get", &self.tally.get_us), ("all", &all)] {
            if h.is_empty() {
                continue;
            }
            println!(
                "{name:<4} {:>10} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                h.len(),
                self.rate(h.len()),
                h.mean() / 1e3,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            );
        }
        let (lo, mid, hi) = self.per_second_spread();
        println!(
            "elapsed {:.2} s; errors {}; get misses {}; ops/s per second: min {lo}, median {mid}, max {hi}",
            self.elapsed.as_secs_f64(),
            self.tally.error_count(),
            self.tally.misses
        );
        for (kind, e) in &self.tally.errors {
            println!("  {kind}: {} (first: {})", e.count, e.samples.join(" | "));
        }
        if !self.regions_per_second.is_empty() {
            // Throughput by region count: each second is attributed to the count at its end.
            let mut by_count: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
            for (&n, &rate) in self.regions_per_second.iter().zip(&self.per_second) {
                by_count.entry(n).or_default().push(rate);
            }
            println!("{:>8} {:>8} {:>12}", "regions", "seconds", "median ops/s");
            for (n, mut rates) in by_count {
                rates.sort_unstable();
                println!("{n:>8} {:>8} {:>12}", rates.len(), rates[rates.len() / 2]);
            }
        }
    }

    fn json(&self, args: &Args) -> serde_json::Value {
        let op = |h: &Histogram<u64>| {
            json!({
                "count": h.len(),
                "ops_per_sec": self.rate(h.len()),
                "latency_ms": {
                    "mean": h.mean() / 1e3,
                    "p50": ms(h.value_at_quantile(0.5)),
                    "p99": ms(h.value_at_quantile(0.99)),
                    "p999": ms(h.value_at_quantile(0.999)),
                    "max": ms(h.max()),
                },
            })
        };
        let errors: serde_json::Map<String, serde_json::Value> = self
            .tally
            .errors
            .iter()
            .map(|(k, e)| (k.to_string(), json!({"count": e.count, "samples": e.samples})))
            .collect();
        json!({
            "workload": args.workload.name(),
            "read_ratio": args.read_ratio(),
            "clients": args.clients,
            "secs": args.secs,
            "ops_max": args.ops,
            "warmup_secs": args.warmup_secs,
            "key_space": args.key_space,
            "key_prefix": args.key_prefix,
            "value_size": args.value_size,
            "seed": args.seed,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "put": op(&self.tally.put_us),
            "get": op(&self.tally.get_us),
            "all": op(&self.all_us()),
            "errors": self.tally.error_count(),
            "errors_by_kind": errors,
            "get_misses": self.tally.misses,
            "ops_per_sec_each_second": self.per_second,
            "regions_each_second": self.regions_per_second,
            "prefill": self.prefill.as_ref().map(|p| json!({"keys": p.keys, "secs": p.elapsed.as_secs_f64()})),
            "cluster": {
                "stores": self.cluster.stores,
                "regions": self.cluster.regions,
                "leaders_by_store": self.cluster.leaders_by_store.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            },
        })
    }
}

/// A tiny seeded generator (splitmix64), as in the raftstore bench: reproducible across
/// versions, no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["regionstore-load"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).expect("parses").validate()
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--clients", "100000"]).is_err());
        assert!(parse(&["--secs", "0"]).is_err());
        assert!(parse(&["--workload", "put", "--read-ratio", "0.3"]).is_err());
        assert!(parse(&["--workload", "mixed", "--read-ratio", "1.5"]).is_err());
        assert!(parse(&["--workload", "mixed", "--read-ratio", "0.9"]).is_ok());
    }

    #[test]
    fn tally_merges_counts_and_keeps_few_samples() {
        let mut a = Tally::new();
        a.ok(OpKind::Put, 1_000, true);
        a.ok(OpKind::Get, 2_000, false);
        for i in 0..5 {
            a.error("grpc", format!("e{i}"));
        }
        let mut b = Tally::new();
        b.ok(OpKind::Get, 3_000, true);
        b.error("grpc", "late".to_string());
        b.error("timeout", "t".to_string());
        a.merge(b);
        assert_eq!((a.put_us.len(), a.get_us.len(), a.misses), (1, 2, 1));
        assert_eq!(a.error_count(), 7);
        assert_eq!(a.errors["grpc"].samples, ["e0", "e1", "e2"]);
    }

    #[test]
    fn unit_is_in_range_and_ratio_holds() {
        let mut rng = SplitMix64(7);
        let gets = (0..100_000).filter(|_| rng.unit() < 0.25).count();
        assert!((24_000..26_000).contains(&gets), "{gets}");
    }
}
