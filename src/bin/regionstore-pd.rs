//! `regionstore-pd`: the placement driver of a regionstore cluster (one member).
//!
//! Loads and validates its config (`--check-config` prints it and exits), then serves
//! `pdpb.PD`, `keyspacepb.Keyspace` and the HTTP API on one port until SIGTERM or Ctrl-C, and
//! exits 0 after a clean shutdown. Exit code 2: bad config; 1: could not start or serve.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pd_server::{Overrides, PdConfig};
use slog::{error, info};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Worker threads of the gRPC runtime: PD's work is small and mostly waits on fsync.
const RUNTIME_THREADS: usize = 2;

/// The placement driver of a regionstore cluster.
#[derive(Parser, Debug)]
#[command(name = "regionstore-pd", version, about)]
struct Args {
    /// TOML config file; see etc/pd-config-template.toml. Defaults apply when absent.
    #[arg(long, short = 'C', value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC + HTTP listen address (overrides `addr`).
    #[arg(long, value_name = "IP:PORT")]
    addr: Option<String>,
    /// Address given to clients (overrides `advertise-addr`).
    #[arg(long, value_name = "IP:PORT")]
    advertise_addr: Option<String>,
    /// Data directory (overrides `data-dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Validate the configuration, print the effective config and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides =
        Overrides { addr: args.addr, advertise_addr: args.advertise_addr, data_dir: args.data_dir };
    let cfg = match PdConfig::load(args.config.as_deref(), &overrides) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("regionstore-pd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        eprintln!("regionstore-pd: config is valid");
        return ExitCode::SUCCESS;
    }
    let (logger, _log_guard) = match util::logger::build_logger(&cfg.log) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("regionstore-pd: cannot open the log: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name_fn(|| {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            format!("pd-grpc-{}", NEXT.fetch_add(1, Ordering::Relaxed))
        })
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            error!(logger, "cannot start the runtime"; "err" => %e);
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let server = match pd_server::start(cfg, logger.clone()).await {
            Ok(server) => server,
            Err(e) => {
                error!(logger, "PD failed to start"; "err" => %e);
                return ExitCode::from(1);
            }
        };
        match wait_for_signal().await {
            Ok(name) => info!(logger, "shutting down"; "signal" => name),
            Err(e) => error!(logger, "cannot listen for signals, shutting down"; "err" => %e),
        }
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Waits for SIGTERM or Ctrl-C (SIGINT).
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
    }
}
