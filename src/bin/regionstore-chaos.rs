//! `regionstore-chaos`: the nemesis harness (components/chaos). Starts PD and stores as
//! processes, runs the workloads and a fault schedule from the seed, checks the history, and
//! prints a summary whose last line is
//! `chaos: seed=S minutes=M faults=N ops=N anomalies=A lost=L`. Exits 1 when anomalies or
//! lost writes are not 0, 2 when the run could not be done.
//!
//! Ctrl-C, SIGTERM or SIGHUP kill every process the run started (paused ones too) and exit
//! with 128 + the signal.
//!
//! The product binaries must have failpoints (the workspace's test builds: `cargo build
//! --workspace --tests`); they are looked for beside this executable unless `--bin-dir`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "regionstore-chaos", version, about)]
struct Args {
    /// The schedule's seed (printed first by every run); random if not given.
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the run in minutes (fractions allowed).
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Stores in the cluster (regions keep 3 replicas).
    #[arg(long, default_value_t = 5)]
    stores: usize,
    /// Clients of the register workload (the bank and set workloads get half as many each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Directory with regionstore-server, regionstore-pd and regionstore-ctl.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the run's data and logs go (default: a fresh directory under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the data and logs even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Plain kill -9 only: stores keep what the OS has of their unsynced writes (by default a
    /// kill also drops the KV engine's unsynced writes, as a power cut would).
    #[arg(long)]
    no_power_loss: bool,
    /// Instead of the nemesis: fuzz the cluster's network ports for this many seconds with
    /// malformed and hostile requests (exits 1 if a process dies, memory runs away, or the
    /// well-formed client is not served).
    #[arg(long)]
    fuzz_secs: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // First, before any thread starts: Ctrl-C or a SIGTERM kills the cluster with the harness.
    if let Err(e) = chaos::cluster::stop_children_on_signal() {
        eprintln!("regionstore-chaos: {e:#}");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(rand_seed);
    let bins = match &args.bin_dir {
        Some(d) => chaos::cluster::Binaries::in_dir(d),
        None => chaos::cluster::Binaries::beside_current_exe(),
    };
    let bins = match bins {
        Ok(b) => b,
        Err(e) => {
            eprintln!("regionstore-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.stores < 3 {
        eprintln!("regionstore-chaos: --stores must be at least 3 (regions keep 3 replicas)");
        return ExitCode::from(2);
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("regionstore-chaos-{seed}-{}", std::process::id()))
    });
    let opts = chaos::Options {
        seed,
        duration: Duration::from_secs_f64(args.minutes * 60.0),
        stores: args.stores,
        clients: args.clients.max(1),
        bins,
        dir,
        keep: args.keep,
        power_loss: !args.no_power_loss,
    };
    if let Some(secs) = args.fuzz_secs {
        return match chaos::run_fuzz(&opts, Duration::from_secs(secs)) {
            Ok(r) if !r.failures().is_empty() => ExitCode::from(1),
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("regionstore-chaos: fuzz seed {seed}: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match chaos::run(&opts) {
        Ok(s) if s.failed() => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionstore-chaos: seed {seed}: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A seed from the clock and the pid (not cryptographic; it only has to differ per run).
fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 40)) % 1_000_000_007
}
