//! `regionstore-ctl`: operate a regionstore cluster through PD and the stores' public API.
//!
//! Data commands (`get`, `put`, `delete`, `scan`) take the same path as users: PD lookup,
//! then the region's leader over `tikvpb.Tikv`. Output is a human-readable table by default,
//! JSON with `--json` (one document per command, for scripts).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "regionstore-ctl", version, about)]
struct Args {
    /// PD endpoint(s), comma separated.
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pd: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Read a key.
    Get { key: String },
    /// Write a key.
    Put { key: String, value: String },
    /// Delete a key.
    Delete { key: String },
    /// List keys in [start, end).
    Scan {
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, default_value = "")]
        end: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Stores.
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Regions.
    Region {
        #[command(subcommand)]
        cmd: RegionCmd,
    },
    /// Cluster overview.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// PD operators: membership and leadership changes of one region, run step by step by PD.
    Operator {
        #[command(subcommand)]
        cmd: OperatorCmd,
    },
}

#[derive(Subcommand, Debug)]
enum OperatorCmd {
    /// Add a voter on STORE (added as a learner, promoted once it caught up).
    AddPeer {
        region: u64,
        store: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove the region's peer on STORE (leadership moves away first if it leads).
    RemovePeer {
        region: u64,
        store: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move leadership to the region's peer on STORE.
    TransferLeader {
        region: u64,
        store: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move the region's peer on FROM to TO (add on TO, then remove from FROM).
    TransferPeer {
        region: u64,
        from: u64,
        to: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Running operators (with --finished: the finished ones, oldest first).
    List {
        #[arg(long)]
        finished: bool,
    },
    /// The region's running operator, else its last one.
    Show { region: u64 },
    /// Cancel the region's running operator (steps already done stay done).
    Cancel { region: u64 },
}

#[derive(clap::Args, Debug)]
struct WaitArgs {
    /// Wait until the operator finishes; fail unless it succeeds.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum StoreCmd {
    /// Every store PD knows.
    List,
}

#[derive(Subcommand, Debug)]
enum RegionCmd {
    /// Every region: id, range, epoch, peers, leader, approximate size and keys.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i32,
    },
    /// The region holding a key.
    Show {
        #[arg(long)]
        key: String,
    },
    /// Merge two adjacent regions through PD's merge-region operator: `--source S --target T`,
    /// or `--key K` for the region holding K (the source) and its right neighbour (the target).
    /// PD first moves the source's peers to the target's stores if they differ. Waits for the
    /// merge to end and fails unless it succeeds.
    Merge {
        /// The region that goes away: its range joins the target's.
        #[arg(long, requires = "target", required_unless_present = "key")]
        source: Option<u64>,
        /// The region that absorbs the source (adjacent to it, on either side).
        #[arg(long, requires = "source")]
        target: Option<u64>,
        /// Merge the region holding this key into its right neighbour.
        #[arg(long, conflicts_with_all = ["source", "target"])]
        key: Option<String>,
        /// The key is hex (for binary keys).
        #[arg(long, requires = "key", conflicts_with_all = ["source", "target"])]
        hex: bool,
        /// How long to wait for the merge to end, in seconds (PD gives the merge itself 60 s,
        /// plus the time to move peers first).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Split a region at one or more keys (sorted, in one region, not its start key).
    Split {
        /// A split key; repeat for several.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The region to split (checked against the keys); default: the one holding the keys.
        #[arg(long)]
        region: Option<u64>,
        /// The keys are hex (for binary keys).
        #[arg(long)]
        hex: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Cluster id, bootstrap state, store and region counts.
    Status,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("regionstore-ctl: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regionstore-ctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{text:?} is not an even number of hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(Into::into))
        .collect()
}

fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(""),
    }
}

fn region_json(r: &pd_client::RegionInfo) -> serde_json::Value {
    let epoch = r.region.region_epoch.unwrap_or_default();
    json!({
        "id": r.region.id,
        "start_key": show(&r.region.start_key),
        "end_key": show(&r.region.end_key),
        "epoch": {"conf_ver": epoch.conf_ver, "version": epoch.version},
        "peers": r.region.peers.iter().map(|p| json!({"id": p.id, "store_id": p.store_id})).collect::<Vec<_>>(),
        "leader": r.leader.as_ref().map(|l| json!({"id": l.id, "store_id": l.store_id})),
    })
}

fn region_row(r: &pd_client::RegionInfo) -> String {
    let epoch = r.region.region_epoch.unwrap_or_default();
    let peers: Vec<String> =
        r.region.peers.iter().map(|p| format!("{}@{}", p.id, p.store_id)).collect();
    format!(
        "{:<8} {:<16} {:<16} {:<10} {:<24} {}",
        r.region.id,
        format!("{:?}", show(&r.region.start_key)),
        format!("{:?}", show(&r.region.end_key)),
        format!("{}/{}", epoch.conf_ver, epoch.version),
        peers.join(","),
        r.leader.as_ref().map_or("-".to_string(), |l| format!("{}@{}", l.id, l.store_id)),
    )
}

/// A row of `region list` from PD's HTTP JSON (keys there are hex).
fn region_http_row(r: &serde_json::Value) -> String {
    let key = |k: &serde_json::Value| {
        let hex = k.as_str().unwrap_or("");
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect();
        format!("{:?}", show(&bytes))
    };
    let peer = |p: &serde_json::Value| format!("{}@{}", p["id"], p["store_id"]);
    let peers: Vec<String> =
        r["peers"].as_array().map(|a| a.iter().map(peer).collect()).unwrap_or_default();
    let leader = if r["leader"].is_null() { "-".to_string() } else { peer(&r["leader"]) };
    format!(
        "{:<8} {:<18} {:<18} {:<8} {:<24} {:<10} {:>10} {:>10}",
        // serde_json's Display ignores width: format plain integers.
        r["id"].as_u64().unwrap_or(0),
        key(&r["start_key"]),
        key(&r["end_key"]),
        format!("{}/{}", r["epoch"]["conf_ver"], r["epoch"]["version"]),
        peers.join(","),
        leader,
        human_bytes(r["approximate_size"].as_u64().unwrap_or(0)),
        r["approximate_keys"].as_u64().unwrap_or(0),
    )
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// A plain HTTP/1.1 GET (PD serves its JSON API on the gRPC port); the body on 200.
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    http_request(addr, "GET", path, None)
}

/// One HTTP/1.1 request to PD's API; the body on 200, else an error carrying PD's reason.
fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = addr.trim_start_matches("http://");
    let mut s =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect to PD at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("PD sent a malformed HTTP response")?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        let reason = body.trim();
        if reason.is_empty() {
            bail!("PD answered {method} {path} with {status}");
        }
        bail!("PD refused: {reason}");
    }
    Ok(body.to_string())
}

/// A row of `operator list` from PD's operator JSON.
fn operator_row(op: &serde_json::Value) -> String {
    let steps = op["steps"].as_array().map_or(0, Vec::len);
    let current = op["current_step"].as_u64().unwrap_or(0) as usize;
    let detail = match op["status"].as_str() {
        Some("running") => op["steps"][current].as_str().unwrap_or("").to_string(),
        _ => op["reason"].as_str().unwrap_or("").to_string(),
    };
    format!(
        "{:<8} {:<16} {:<10} {:<6} {}",
        op["region_id"].as_u64().unwrap_or(0),
        op["kind"].as_str().unwrap_or("?"),
        op["status"].as_str().unwrap_or("?"),
        format!("{}/{}", current.min(steps), steps),
        detail,
    )
}

const OPERATOR_HEADER: &str = "REGION   KIND             STATUS     STEP   DETAIL";

/// Creates an operator and, with `--wait`, follows it to its end (a merge by its source).
fn run_operator(
    pd: &str,
    json_out: bool,
    body: serde_json::Value,
    wait: &WaitArgs,
) -> anyhow::Result<()> {
    let region = body["region_id"].as_u64().or(body["source_region_id"].as_u64()).unwrap_or(0);
    let created = http_request(pd, "POST", "/pd/api/v1/operators", Some(&body.to_string()))?;
    let mut op: serde_json::Value =
        serde_json::from_str(&created).context("PD answered the operator with bad JSON")?;
    if wait.wait {
        let deadline = std::time::Instant::now() + Duration::from_secs(wait.timeout);
        while op["status"] == "running" {
            if std::time::Instant::now() >= deadline {
                bail!("operator on region {region} still running after {}s", wait.timeout);
            }
            std::thread::sleep(Duration::from_millis(200));
            let now = http_get(pd, &format!("/pd/api/v1/operators/{region}"))?;
            op = serde_json::from_str(&now).context("PD answered the operator with bad JSON")?;
        }
    }
    if json_out {
        println!("{op}");
    } else {
        println!("{OPERATOR_HEADER}");
        println!("{}", operator_row(&op));
    }
    if wait.wait && op["status"] != "success" {
        bail!(
            "operator on region {region} ended {}: {}",
            op["status"].as_str().unwrap_or("?"),
            op["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let pd_http = args.pd.first().map_or("127.0.0.1:2379", String::as_str);
    if let Cmd::Operator { cmd } = &args.cmd {
        // PD's HTTP API alone: no gRPC connection needed.
        return operator(pd_http, args.json, cmd);
    }
    if let Cmd::Region { cmd: RegionCmd::Merge { source, target, key, hex, timeout } } = &args.cmd {
        let (source, target) = match (source, target, key) {
            (Some(s), Some(t), _) => (*s, *t),
            (_, _, Some(key)) => {
                let key = if *hex { parse_hex(key)? } else { key.as_bytes().to_vec() };
                region_and_right_neighbour(&args.pd, &key).await?
            }
            _ => bail!("give --source and --target, or --key"),
        };
        return merge(pd_http, args.json, source, target, *timeout);
    }
    run_data(args).await
}

/// The region holding `key` and the one right after it, from PD.
async fn region_and_right_neighbour(pd: &[String], key: &[u8]) -> anyhow::Result<(u64, u64)> {
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let pd = pd_client::PdClient::connect(pd.to_vec(), Duration::from_secs(5), logger)
        .await
        .with_context(|| format!("cannot reach PD at {pd:?}"))?;
    let Some(r) = pd.get_region(key).await? else {
        bail!("no region holds {:?} (PD is between a split and its report: retry)", show(key))
    };
    if r.region.end_key.is_empty() {
        bail!(
            "region {} holding {:?} is the last region: it has no right neighbour",
            r.region.id,
            show(key)
        );
    }
    match pd.get_region(&r.region.end_key).await? {
        Some(next) if next.region.start_key == r.region.end_key => {
            Ok((r.region.id, next.region.id))
        }
        _ => bail!(
            "PD knows no region starting at {:?}, the end of region {} (retry)",
            show(&r.region.end_key),
            r.region.id
        ),
    }
}

/// `region merge`: creates the merge-region operator and waits for its end.
fn merge(pd: &str, json_out: bool, source: u64, target: u64, timeout: u64) -> anyhow::Result<()> {
    let body =
        json!({"name": "merge-region", "source_region_id": source, "target_region_id": target});
    run_operator(pd, json_out, body, &WaitArgs { wait: true, timeout })?;
    if !json_out {
        println!("region {source} merged into region {target}");
    }
    Ok(())
}

fn operator(pd: &str, json_out: bool, cmd: &OperatorCmd) -> anyhow::Result<()> {
    match cmd {
        OperatorCmd::AddPeer { region, store, wait } => run_operator(
            pd,
            json_out,
            json!({"name": "add-peer", "region_id": region, "store_id": store}),
            wait,
        ),
        OperatorCmd::RemovePeer { region, store, wait } => run_operator(
            pd,
            json_out,
            json!({"name": "remove-peer", "region_id": region, "store_id": store}),
            wait,
        ),
        OperatorCmd::TransferLeader { region, store, wait } => run_operator(
            pd,
            json_out,
            json!({"name": "transfer-leader", "region_id": region, "to_store_id": store}),
            wait,
        ),
        OperatorCmd::TransferPeer { region, from, to, wait } => run_operator(
            pd,
            json_out,
            json!({"name": "transfer-peer", "region_id": region, "from_store_id": from, "to_store_id": to}),
            wait,
        ),
        OperatorCmd::List { finished } => {
            let path =
                if *finished { "/pd/api/v1/operators/records" } else { "/pd/api/v1/operators" };
            let doc: serde_json::Value = serde_json::from_str(&http_get(pd, path)?)
                .context("PD answered the operator list with bad JSON")?;
            let ops = doc["operators"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", serde_json::Value::Array(ops));
            } else {
                println!("{OPERATOR_HEADER}");
                for op in &ops {
                    println!("{}", operator_row(op));
                }
                println!("({} operators)", ops.len());
            }
            Ok(())
        }
        OperatorCmd::Show { region } => {
            let op: serde_json::Value =
                serde_json::from_str(&http_get(pd, &format!("/pd/api/v1/operators/{region}"))?)
                    .context("PD answered the operator with bad JSON")?;
            if json_out {
                println!("{op}");
            } else {
                println!("{OPERATOR_HEADER}");
                println!("{}", operator_row(&op));
                for (i, step) in op["steps"].as_array().into_iter().flatten().enumerate() {
                    println!("  step {i}: {}", step.as_str().unwrap_or("?"));
                }
            }
            Ok(())
        }
        OperatorCmd::Cancel { region } => {
            let op: serde_json::Value = serde_json::from_str(&http_request(
                pd,
                "DELETE",
                &format!("/pd/api/v1/operators/{region}"),
                None,
            )?)
            .context("PD answered the cancel with bad JSON")?;
            if json_out {
                println!("{op}");
            } else {
                println!("{OPERATOR_HEADER}");
                println!("{}", operator_row(&op));
            }
            Ok(())
        }
    }
}

async fn run_data(args: Args) -> anyhow::Result<()> {
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let pd = pd_client::PdClient::connect(args.pd.clone(), Duration::from_secs(5), logger)
        .await
        .with_context(|| format!("cannot reach PD at {:?}", args.pd))?;
    let pd = Arc::new(pd);
    let client = raw_client::RawClient::new(pd.clone());
    match args.cmd {
        Cmd::Get { key } => {
            let v = client.get(key.as_bytes()).await?;
            if args.json {
                println!(
                    "{}",
                    json!({"key": key, "value": v.as_deref().map(show), "found": v.is_some()})
                );
            } else {
                match v {
                    Some(v) => println!("{}", show(&v)),
                    None => bail!("key {key:?} not found"),
                }
            }
        }
        Cmd::Put { key, value } => {
            client.put(key.as_bytes(), value.as_bytes()).await?;
            if args.json {
                println!("{}", json!({"ok": true}));
            } else {
                println!("OK");
            }
        }
        Cmd::Delete { key } => {
            client.delete(key.as_bytes()).await?;
            if args.json {
                println!("{}", json!({"ok": true}));
            } else {
                println!("OK");
            }
        }
        Cmd::Scan { start, end, limit } => {
            let pairs = client.scan(start.as_bytes(), end.as_bytes(), limit, false).await?;
            if args.json {
                let v: Vec<_> = pairs
                    .iter()
                    .map(|p| json!({"key": show(&p.key), "value": show(&p.value)}))
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for p in &pairs {
                    println!("{}\t{}", show(&p.key), show(&p.value));
                }
                println!("({} pairs)", pairs.len());
            }
        }
        Cmd::Store { cmd: StoreCmd::List } => {
            let stores = pd.get_all_stores().await?;
            if args.json {
                let v: Vec<_> = stores.iter().map(|s| json!({"id": s.id, "address": s.address, "state": s.state, "version": s.version})).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!("{:<8} {:<24} {:<8} {}", "ID", "ADDRESS", "STATE", "VERSION");
                for s in stores {
                    let state = proto::metapb::StoreState::try_from(s.state)
                        .map(|s| s.as_str_name())
                        .unwrap_or("?");
                    println!("{:<8} {:<24} {:<8} {}", s.id, s.address, state, s.version);
                }
            }
        }
        Cmd::Region { cmd: RegionCmd::List { limit } } => {
            // PD's HTTP API carries what the gRPC routing answers lack: approximate sizes.
            let body = http_get(
                args.pd.first().map_or("127.0.0.1:2379", String::as_str),
                "/pd/api/v1/regions",
            )?;
            let doc: serde_json::Value = serde_json::from_str(&body)
                .context("PD answered /pd/api/v1/regions with bad JSON")?;
            let mut regions = doc["regions"].as_array().cloned().unwrap_or_default();
            regions.sort_by(|a, b| a["start_key"].as_str().cmp(&b["start_key"].as_str()));
            regions.truncate(limit.max(0) as usize);
            if args.json {
                println!("{}", serde_json::Value::Array(regions));
            } else {
                println!(
                    "{:<8} {:<18} {:<18} {:<8} {:<24} {:<10} {:>10} {:>10}",
                    "ID", "START", "END", "EPOCH", "PEERS", "LEADER", "SIZE", "KEYS"
                );
                for r in &regions {
                    println!("{}", region_http_row(r));
                }
                println!("({} regions)", regions.len());
            }
        }
        Cmd::Region { cmd: RegionCmd::Show { key } } => {
            let Some(r) = pd.get_region(key.as_bytes()).await? else {
                bail!("no region holds {key:?}")
            };
            if args.json {
                println!("{}", region_json(&r));
            } else {
                println!(
                    "{:<8} {:<16} {:<16} {:<10} {:<24} {}",
                    "ID", "START", "END", "EPOCH", "PEERS", "LEADER"
                );
                println!("{}", region_row(&r));
            }
        }
        Cmd::Region { cmd: RegionCmd::Split { keys, region, hex } } => {
            let keys = keys
                .iter()
                .map(|k| if hex { parse_hex(k) } else { Ok(k.as_bytes().to_vec()) })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let regions = client.split_region(region, keys).await?;
            if args.json {
                let rows: Vec<_> = regions
                    .iter()
                    .map(|r| {
                        let e = r.region_epoch.unwrap_or_default();
                        json!({"id": r.id, "start_key": show(&r.start_key), "end_key": show(&r.end_key),
                            "conf_ver": e.conf_ver, "version": e.version})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<10} {:<18} {:<18} {}", "ID", "START", "END", "EPOCH");
                for r in &regions {
                    let e = r.region_epoch.unwrap_or_default();
                    println!(
                        "{:<10} {:<18} {:<18} {}/{}",
                        r.id,
                        show(&r.start_key),
                        show(&r.end_key),
                        e.conf_ver,
                        e.version
                    );
                }
                println!("(split into {} regions)", regions.len());
            }
        }
        Cmd::Operator { .. } | Cmd::Region { cmd: RegionCmd::Merge { .. } } => {
            unreachable!("handled by `run`")
        }
        Cmd::Cluster { cmd: ClusterCmd::Status } => {
            let bootstrapped = pd.is_bootstrapped().await?;
            let stores = pd.get_all_stores().await?;
            let regions = pd.scan_regions(b"", b"", 100_000).await?;
            let leaderless = regions.iter().filter(|r| r.leader.is_none()).count();
            if args.json {
                println!(
                    "{}",
                    json!({"cluster_id": pd.cluster_id(), "bootstrapped": bootstrapped, "stores": stores.len(), "regions": regions.len(), "regions_without_leader": leaderless})
                );
            } else {
                println!("cluster id      {}", pd.cluster_id());
                println!("bootstrapped    {bootstrapped}");
                println!("stores          {}", stores.len());
                println!(
                    "regions         {} ({} without a known leader)",
                    regions.len(),
                    leaderless
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from([&["regionstore-ctl"], args].concat())
    }

    fn merge_args(args: &[&str]) -> (Option<u64>, Option<u64>, Option<String>, bool, u64) {
        match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")).cmd {
            Cmd::Region { cmd: RegionCmd::Merge { source, target, key, hex, timeout } } => {
                (source, target, key, hex, timeout)
            }
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn region_merge_takes_ids_or_a_key() {
        assert_eq!(
            merge_args(&["region", "merge", "--source", "5", "--target", "6"]),
            (Some(5), Some(6), None, false, 600)
        );
        assert_eq!(
            merge_args(&["region", "merge", "--key", "k", "--timeout", "90"]),
            (None, None, Some("k".into()), false, 90)
        );
        assert_eq!(
            merge_args(&["region", "merge", "--key", "6b", "--hex"]),
            (None, None, Some("6b".into()), true, 600)
        );
        for bad in [
            &["region", "merge"][..],
            &["region", "merge", "--source", "5"],
            &["region", "merge", "--target", "6"],
            &["region", "merge", "--source", "5", "--target", "6", "--key", "k"],
            &["region", "merge", "--source", "5", "--target", "6", "--hex"],
            &["region", "merge", "--source", "x", "--target", "6"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
