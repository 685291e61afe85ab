//! Real-process clusters for end-to-end tests: one `regionstore-pd` and N `regionstore-server`
//! processes on loopback, on free ports, with data in a temp dir. A small routing client
//! (PD lookup, follow `NotLeader`) drives the raw KV API over gRPC.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use proto::kvrpcpb::{self, Context};
use proto::tikvpb::tikv_client::TikvClient;
use tonic::transport::Channel;

/// Polls a condition until it yields `Some`, panicking after a deadline (the raftstore tests'
/// helper; no test waits with a fixed sleep).
#[allow(unused_imports)] // not every test binary polls
pub use test_raftstore::util::wait_for;

/// Runs `regionstore-ctl --pd PD ARGS`; returns (success, stdout, stderr).
pub fn ctl(pd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regionstore-ctl"))
        .args(["--pd", pd])
        .args(args)
        .output()
        .expect("run regionstore-ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port that is free now, for a child process to bind (the nemesis harness's picker: below
/// the ephemeral range, offset by the pid).
pub use chaos::cluster::free_port;

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub name: String,
}

impl Proc {
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status (waits up to 30 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let exited =
            util::wait::poll_until(Duration::from_secs(30), || c.try_wait().ok().flatten());
        exited.or_else(|| {
            let _ = c.kill();
            c.wait().ok()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The stores' config, around their raft timing (`{timing}`, a [`RaftTiming`]).
const STORE_CONFIG: &str = r#"
[log]
level = "info"
[pd]
store-heartbeat-interval = "1s"
region-heartbeat-interval = "500ms"
[raftstore]
{timing}
store-pool-size = 1
apply-pool-size = 1
split-region-check-tick-interval = "200ms"
[rocksdb]
block-cache-size = "16MiB"
[raftdb]
block-cache-size = "8MiB"
"#;

/// Raft timing of a test cluster: `[raftstore]` keys.
#[derive(Clone, Copy, Debug)]
pub struct RaftTiming(pub &'static str);

/// Fast raft timing for tests: 50 ms ticks, 100 ms heartbeats, 500 ms elections.
pub const FAST_TICKS: RaftTiming = RaftTiming(
    r#"raft-base-tick-interval = "50ms"
raft-heartbeat-ticks = 2
raft-election-timeout-ticks = 10
raft-store-max-leader-lease = "400ms""#,
);

/// The template's raft timing (TiKV's defaults): 1 s ticks, 2 s heartbeats, 10 s elections.
pub const TEMPLATE_TICKS: RaftTiming = RaftTiming("");

pub struct StoreProc {
    pub proc: Proc,
    pub addr: String,
    pub data_dir: PathBuf,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub pd_addr: String,
    pub pd: Proc,
    pub stores: Vec<StoreProc>,
}

impl TestCluster {
    pub fn start(stores: usize) -> TestCluster {
        Self::start_with(stores, "")
    }

    /// As [`TestCluster::start`], with `extra` TOML appended to the stores' config (whole
    /// sections not already in it, such as `[coprocessor]`).
    pub fn start_with(stores: usize, extra: &str) -> TestCluster {
        Self::start_with_timing(stores, FAST_TICKS, extra)
    }

    /// As [`TestCluster::start_with`], with the given raft timing.
    pub fn start_with_timing(stores: usize, timing: RaftTiming, extra: &str) -> TestCluster {
        Self::start_with_pd_config(stores, timing, extra, "")
    }

    /// As [`TestCluster::start_with_timing`], with `pd_config` as PD's config file (TOML, see
    /// etc/pd-config-template.toml; empty: PD's defaults).
    pub fn start_with_pd_config(
        stores: usize,
        timing: RaftTiming,
        extra: &str,
        pd_config: &str,
    ) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let config = STORE_CONFIG.replace("{timing}", timing.0);
        std::fs::write(dir.path().join("store.toml"), format!("{config}\n{extra}")).unwrap();
        std::fs::write(dir.path().join("pd.toml"), pd_config).unwrap();
        let pd_addr = format!("127.0.0.1:{}", free_port());
        let mut c = TestCluster {
            pd: Proc { child: None, name: "pd".into() },
            pd_addr,
            stores: Vec::new(),
            dir,
        };
        c.start_pd();
        for _ in 0..stores {
            c.add_store();
        }
        c
    }

    /// Starts one more store (a new, empty one); returns its index in `stores`.
    pub fn add_store(&mut self) -> usize {
        let i = self.stores.len();
        let addr = format!("127.0.0.1:{}", free_port());
        let data_dir = self.dir.path().join(format!("store-{i}"));
        self.stores.push(StoreProc {
            proc: Proc { child: None, name: format!("store-{i}") },
            addr,
            data_dir,
        });
        self.start_store(i);
        i
    }

    pub fn start_pd(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("pd.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_regionstore-pd"))
            .args(["--addr", &self.pd_addr, "--data-dir"])
            .arg(self.dir.path().join("pd"))
            .arg("--config")
            .arg(self.dir.path().join("pd.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start regionstore-pd");
        self.pd.child = Some(child);
    }

    pub fn start_store(&mut self, i: usize) {
        self.start_store_with_env(i, &[]);
    }

    /// Starts store `i` with extra environment variables (e.g. `FAILPOINTS`, which test
    /// builds of the server honour).
    pub fn start_store_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let s = &mut self.stores[i];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("store-{i}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_regionstore-server"))
            .arg("--config")
            .arg(self.dir.path().join("store.toml"))
            .args(["--pd", &self.pd_addr, "--addr", &s.addr])
            .args(["--status-addr", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(&s.data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start regionstore-server");
        s.proc.child = Some(child);
    }

    /// Store `i`'s log file (every start of it appends).
    pub fn store_log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("store-{i}.log"))
    }

    /// The logs of every process, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out += &format!(
                    "==== {} (last lines)\n{}\n",
                    p.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        out
    }
}

/// The users' path (`raw_client`), plus raw access to a region's leader for malformed requests.
pub struct Client {
    pub pd: Arc<pd_client::PdClient>,
    pub raw: raw_client::RawClient,
}

impl Client {
    pub async fn connect(pd_addr: &str, wait: Duration) -> Client {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let pd = pd_client::PdClient::connect(vec![pd_addr.to_string()], wait, logger)
            .await
            .unwrap_or_else(|e| panic!("PD at {pd_addr}: {e}"));
        let pd = Arc::new(pd);
        Client { raw: raw_client::RawClient::new(pd.clone()), pd }
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.raw.put(key, value).await.map_err(|e| e.to_string())
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.raw.get(key).await.map_err(|e| e.to_string())
    }

    /// The context of `key`'s region addressed to its current leader, and that store's client.
    pub async fn route(&self, key: &[u8]) -> (Context, TikvClient<Channel>) {
        // Make sure a leader exists and PD knows the region.
        self.raw.get(key).await.expect("region serves");
        let info = self.pd.get_region(key).await.unwrap().expect("region");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for peer in &info.region.peers {
                let store = self.pd.get_store(peer.store_id).await.unwrap();
                let Ok(mut c) = TikvClient::connect(format!("http://{}", store.address)).await
                else {
                    continue;
                };
                let ctx = Context {
                    region_id: info.region.id,
                    region_epoch: info.region.region_epoch,
                    peer: Some(peer.clone()),
                    ..Default::default()
                };
                let r = c
                    .raw_get(kvrpcpb::RawGetRequest {
                        context: Some(ctx.clone()),
                        key: key.to_vec(),
                        ..Default::default()
                    })
                    .await;
                if matches!(r, Ok(ref r) if r.get_ref().region_error.is_none()) {
                    return (ctx, c);
                }
            }
            assert!(Instant::now() < deadline, "no leader for {key:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
