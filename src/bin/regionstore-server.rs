//! `regionstore-server`: one store of a regionstore cluster.
//!
//! Loads and validates its configuration (`--check-config` stops there), opens its engines
//! under `data-dir`, registers with PD, joins the cluster's first region when PD creates it,
//! serves `tikvpb.Tikv` and raft traffic, and stops cleanly on SIGTERM or Ctrl-C. A panic
//! anywhere aborts the process: a store that lost a poller thread must not keep serving.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use regionstore::config::{Config, Overrides};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One store of a regionstore cluster.
#[derive(Parser, Debug)]
#[command(name = "regionstore-server", version, about)]
struct Args {
    /// TOML config file; see etc/config-template.toml. Defaults apply when absent.
    #[arg(long, short = 'C', value_name = "FILE")]
    config: Option<PathBuf>,
    /// PD endpoints, comma separated (overrides `pd.endpoints`).
    #[arg(long, value_name = "HOST:PORT[,...]", value_delimiter = ',')]
    pd: Option<Vec<String>>,
    /// gRPC listen address (overrides `server.addr`).
    #[arg(long, value_name = "IP:PORT")]
    addr: Option<String>,
    /// Address advertised to PD and peers (overrides `server.advertise-addr`).
    #[arg(long, value_name = "IP:PORT")]
    advertise_addr: Option<String>,
    /// HTTP status address for /metrics and /status (overrides `server.status-addr`).
    #[arg(long, value_name = "IP:PORT")]
    status_addr: Option<String>,
    /// Data directory (overrides `server.data-dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Validate the configuration, print the effective config and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the default configuration as TOML and exit.
    #[arg(long, conflicts_with = "check_config")]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", Config::default().to_toml());
        return ExitCode::SUCCESS;
    }
    let overrides = Overrides {
        pd_endpoints: args.pd,
        addr: args.addr,
        advertise_addr: args.advertise_addr,
        status_addr: args.status_addr,
        data_dir: args.data_dir,
    };
    let cfg = match Config::load(args.config.as_deref(), &overrides) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("regionstore-server: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        eprintln!("regionstore-server: config is valid");
        return ExitCode::SUCCESS;
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionstore-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Aborts the process on any panic, after the default hook has printed it.
fn install_abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("regionstore-server: aborting after a panic");
        std::process::abort();
    }));
}

/// `FAILPOINTS="name=actions;..."` configures failpoints, so that end-to-end tests can hold a
/// real process inside a crash window and kill it there. Only builds with the `failpoints`
/// feature of `fail` have failpoints (the workspace's test builds); elsewhere a set variable is
/// refused, so that a test never silently runs without the fault it asked for.
fn configure_failpoints() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("FAILPOINTS") else { return Ok(()) };
    anyhow::ensure!(fail::has_failpoints(), "FAILPOINTS is set, but this build has no failpoints");
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, actions) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("FAILPOINTS: `{item}` is not name=actions"))?;
        fail::cfg(name.trim(), actions.trim())
            .map_err(|e| anyhow::anyhow!("FAILPOINTS: {}: {e}", name.trim()))?;
    }
    Ok(())
}

/// `REGIONSTORE_SIMULATE_POWER_LOSS=1` opens the KV engine so that what it has not made
/// durable lives only in memory (`engine_rocks::open_kv_engine_losing_unsynced_writes`): a
/// kill -9 then drops it, as a power cut drops unsynced data. The nemesis harness runs its
/// stores this way. Builds without failpoints (release builds) refuse the variable, as they
/// refuse `FAILPOINTS`: it must never reach a real store.
fn simulate_power_loss() -> anyhow::Result<bool> {
    match std::env::var("REGIONSTORE_SIMULATE_POWER_LOSS").as_deref() {
        Err(_) | Ok("") | Ok("0") => Ok(false),
        Ok("1") => {
            anyhow::ensure!(
                fail::has_failpoints(),
                "REGIONSTORE_SIMULATE_POWER_LOSS is set, but this is not a test build"
            );
            Ok(true)
        }
        Ok(v) => anyhow::bail!("REGIONSTORE_SIMULATE_POWER_LOSS must be 0 or 1, not {v:?}"),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    install_abort_on_panic();
    configure_failpoints()?;
    let (logger, _guard) = util::logger::build_logger(&cfg.log).context("cannot set up logging")?;
    let data_dir = &cfg.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // Every value the server writes carries its expiry (`server::storage`), so compaction may
    // drop expired ones.
    let format = engine_rocks::ValueFormat::RawTtl {
        ttl_check_poll_interval: cfg.storage.ttl_check_poll_interval.as_duration(),
    };
    let kv_path = data_dir.join("db");
    let kv = if simulate_power_loss()? {
        slog::warn!(
            logger,
            "REGIONSTORE_SIMULATE_POWER_LOSS: unsynced KV writes are kept in \
            memory only, so that a kill -9 loses them as a power cut would (tests only)"
        );
        engine_rocks::open_kv_engine_losing_unsynced_writes_with_format(
            kv_path,
            &cfg.rocksdb,
            format,
            &logger,
        )
    } else {
        engine_rocks::open_kv_engine_with_format(kv_path, &cfg.rocksdb, format, &logger)
    }
    .context("cannot open the KV engine")?;
    let raft = engine_rocks::open_raft_engine(data_dir.join("raft"), &cfg.raftdb, &logger)
        .context("cannot open the raft engine")?;
    let engines = raftstore::Engines::new(kv, raft);
    let snap_dir = data_dir.join("snap");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("grpc")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Signals first: a SIGTERM during start-up (PD unreachable, waiting for bootstrap)
        // must stop the process cleanly too.
        let stop = stop_signal().context("cannot install signal handlers")?;
        tokio::pin!(stop);
        let start = async {
            let pd = pd_client::PdClient::connect(
                cfg.pd.endpoints.clone(),
                std::time::Duration::from_secs(60),
                logger.clone(),
            )
            .await
            .context("cannot reach PD")?;
            let node_cfg = server::NodeConfig {
                addr: cfg.server.addr.clone(),
                advertise_addr: cfg.server.advertise_addr.clone(),
                status_addr: cfg.server.status_addr.clone(),
                store_heartbeat_interval: cfg.pd.store_heartbeat_interval.as_duration(),
                region_heartbeat_interval: cfg.pd.region_heartbeat_interval.as_duration(),
                limits: server::Limits::default(),
                snap_dir,
            };
            server::Node::start(
                node_cfg,
                cfg.raftstore_config(),
                engines,
                std::sync::Arc::new(pd),
                logger.clone(),
            )
            .await
            .context("cannot start the store")
        };
        let node = tokio::select! {
            node = start => node?,
            _ = &mut stop => {
                slog::info!(logger, "stopped before serving");
                return Ok(());
            }
        };
        eprintln!("regionstore-server: store {} serving on {}", node.store_id(), node.local_addr());
        stop.await;
        slog::info!(logger, "shutting down");
        node.shutdown().await;
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
