//! `regionstore-server`: one store of a regionstore cluster.
//!
//! Today it loads, overrides and validates its configuration (`--check-config`) and prints the
//! defaults (`--print-default-config`). Serving (gRPC, raftstore, PD registration) arrives with
//! the storage-server issue (#4); until then starting without `--check-config` says so and exits.

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
    eprintln!(
        "regionstore-server: the config is valid, but serving is not implemented yet \
         (storage-server issue #4); use --check-config"
    );
    ExitCode::from(1)
}
