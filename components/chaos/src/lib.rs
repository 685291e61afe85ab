//! The nemesis harness: a seeded, replayable fault schedule against a cluster of real
//! processes, every client operation recorded and the history checked for linearizability.
//!
//! A run, in order:
//! 1. Print the seed (first, so that a run that dies can still be replayed).
//! 2. Start PD and the stores as processes on loopback (`cluster`), wait for a first write.
//! 3. Start the workloads (`workload`: register, bank, set) through the official client, and
//!    the nemesis (`nemesis`) on the schedule the seed gives (`schedule`).
//! 4. Stop the workloads when the schedule's last fault has healed, and read the final state
//!    (recorded, so the checker sees it).
//! 5. Check: the history per key (`lincheck`), the bank's total, the set's acknowledged adds,
//!    and that no store died by itself. Print the summary (`report`) and keep the logs of a
//!    failed run.

pub mod cluster;
pub mod fuzz;
pub mod http;
pub mod nemesis;
pub mod report;
pub mod schedule;
pub mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use parking_lot::Mutex;

use crate::cluster::{Binaries, Cluster};
use crate::nemesis::{FaultLog, Nemesis};
use crate::report::Summary;
use crate::workload::{BankLedger, Recorder};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    pub stores: usize,
    /// Clients of the register workload; the bank and set workloads get about half as many.
    pub clients: usize,
    pub bins: Binaries,
    /// Where the cluster's data and logs go (kept when the run fails or with `keep`).
    pub dir: PathBuf,
    pub keep: bool,
    /// Stores drop unsynced KV writes when killed (a kill is a power cut).
    pub power_loss: bool,
}

/// Runs one seed; the summary says whether it found anomalies.
pub fn run(opts: &Options) -> Result<Summary> {
    println!("chaos: seed={} (replay with --seed {})", opts.seed, opts.seed);
    let steps = schedule::schedule(opts.seed, opts.stores, opts.duration);
    println!(
        "chaos: {} faults scheduled over {:?}, {} stores, data in {}",
        steps.len(),
        opts.duration,
        opts.stores,
        opts.dir.display()
    );
    let cluster = Cluster::start(&opts.dir, opts.bins.clone(), opts.stores, opts.power_loss)?;
    let pd = cluster.pd_addr().to_string();
    let cluster = Arc::new(Mutex::new(cluster));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let origin = Instant::now();
    let rec = Arc::new(Recorder::new(origin));
    let faults = Arc::new(FaultLog::default());
    let ledger = Arc::new(BankLedger::default());
    let stop_nemesis = Arc::new(AtomicBool::new(false));

    let outcome = rt.block_on(async {
        let client = wait_for_cluster(&pd).await?;
        workload::open_accounts(&rec, &client).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_workloads(opts, &client, &rec, &stop, &ledger);
        let nemesis = Nemesis::new(cluster.clone(), faults.clone(), origin);
        let stop_n = stop_nemesis.clone();
        let nemesis = std::thread::Builder::new()
            .name("nemesis".into())
            .spawn(move || nemesis.run(steps, stop_n))?;
        tokio::task::spawn_blocking(move || nemesis.join()).await?.ok();
        // Every fault has healed; a little more load on the healed cluster, then stop.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let mut set = workload::SetAdds::default();
        for t in tasks {
            if let Some(adds) = t.await? {
                set.extend(adds);
            }
        }
        // A fresh client for the final reads: what the cluster holds, not what the
        // workload's client has cached about it.
        let reader = wait_for_cluster(&pd).await?;
        let finals = report::final_reads(&rec, &reader, &set).await;
        anyhow::Ok((set, finals))
    });
    stop_nemesis.store(true, Ordering::Relaxed);
    let elapsed = origin.elapsed();
    let mut c = cluster.lock();
    let crashed = c.crashes();
    let (set, finals) = outcome?;
    let summary = report::summarize(opts, elapsed, &rec, &faults, &ledger, &set, &finals, crashed);
    c.stop();
    drop(c);
    println!("{summary}");
    if summary.failed() || opts.keep {
        println!("chaos: logs and data kept in {}", opts.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&opts.dir);
    }
    Ok(summary)
}

/// Runs the network fuzzer (`fuzz`) for `duration` against a fresh cluster of `opts.stores`
/// stores; keeps the run's directory when it fails.
pub fn run_fuzz(opts: &Options, duration: Duration) -> Result<fuzz::FuzzReport> {
    println!("fuzz: seed={} for {duration:?}, data in {}", opts.seed, opts.dir.display());
    let cluster = Cluster::start(&opts.dir, opts.bins.clone(), opts.stores, false)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let report = fuzz::run(&cluster, opts.seed, duration, 2)?;
    cluster.lock().stop();
    println!("{report}");
    if !report.failures().is_empty() || opts.keep {
        println!("fuzz: logs and data kept in {}", opts.dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&opts.dir);
    }
    Ok(report)
}

/// Connects the official client and waits until a write succeeds (the first region has a
/// leader and PD knows it).
pub(crate) async fn wait_for_cluster(pd: &str) -> Result<tikv_client::RawClient> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let c = workload::connect(pd).await?;
            c.put(b"chaos/ready".to_vec(), b"1".to_vec()).await?;
            anyhow::Ok(c)
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) if Instant::now() > deadline => {
                return Err(e.context("the cluster never served a write"))
            }
            Err(_) if Instant::now() > deadline => {
                anyhow::bail!("the cluster never served a write")
            }
            Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

type SetResult = Option<workload::SetAdds>;

fn spawn_workloads(
    opts: &Options,
    client: &tikv_client::RawClient,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
    ledger: &Arc<BankLedger>,
) -> Vec<tokio::task::JoinHandle<SetResult>> {
    let mut tasks = Vec::new();
    let mut id = 0u64;
    for _ in 0..opts.clients {
        let (rec, c, stop, seed) = (rec.clone(), client.clone(), stop.clone(), opts.seed);
        tasks.push(tokio::spawn(async move {
            workload::register_client(rec, c, id, seed, stop).await;
            None
        }));
        id += 1;
    }
    for _ in 0..opts.clients.div_ceil(2) {
        let (rec, c, stop, seed, ledger) =
            (rec.clone(), client.clone(), stop.clone(), opts.seed, ledger.clone());
        tasks.push(tokio::spawn(async move {
            workload::bank_client(rec, c, id, seed, stop, ledger).await;
            None
        }));
        id += 1;
    }
    for _ in 0..opts.clients.div_ceil(2) {
        let (rec, c, stop) = (rec.clone(), client.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { Some(workload::set_client(rec, c, id, stop).await) }));
        id += 1;
    }
    tasks
}
