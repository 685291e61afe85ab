//! A cluster of real processes on loopback: one `regionstore-pd`, N `regionstore-server`s, each
//! with its data and log under the run's directory, and the process faults done to them.
//!
//! Invariants:
//! 1. A store keeps its addresses and data directory across restarts (a restart is the same
//!    store coming back, as after a crash).
//! 2. A paused process (SIGSTOP) is never sent a status request (it would not answer) and is
//!    resumed before it is killed or the cluster stops, so no process is left stopped.
//! 3. Every child is killed when the cluster is dropped, whatever path the harness took.
//! 4. A process that exits by itself (a crash) is never mistaken for one the harness killed:
//!    every path that takes or replaces a child (`kill_store`, `start_store`, `kill_pd`,
//!    `start_pd`, and `reap_crashes` on every nemesis tick) first looks whether it exited
//!    and records it in `crashes` (an anomaly of the run); the store is then started again,
//!    as a supervisor would, so the run goes on.
//! 5. Every child's pid is in [`CHILDREN`] while it may run, so that a harness stopped by a
//!    signal kills them all ([`kill_all_children`], called by `regionstore-chaos`'s signal
//!    thread): a paused store is never left stopped behind a dead harness. Children start
//!    with the signals unblocked that the harness blocks for that thread (`spawn`).
//!    (A harness killed with SIGKILL cannot do this; its children are orphaned.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};

use crate::http;

/// The pids of the children that may be running (invariant 5).
static CHILDREN: std::sync::Mutex<BTreeSet<i32>> = std::sync::Mutex::new(BTreeSet::new());

/// The signals `regionstore-chaos` blocks in its threads and waits for on one of its own.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Resumes and kills every child that may be running (invariant 5). For the signal thread of
/// a harness that is being stopped; the cluster's own paths do this in order otherwise.
pub fn kill_all_children() {
    let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: kill(2) on a pid this process spawned; no memory is touched.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Blocks [`STOP_SIGNALS`] in the calling thread (and so in every thread it starts later:
/// call it first in `main`) and waits for them on a thread of their own, which kills every
/// child (invariant 5) and exits the process with 128 + the signal's number.
pub fn stop_children_on_signal() -> Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the mask change
    // affects this thread only.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("cannot block the stop signals");
        }
        set
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised above; sigwait writes the signal's number to `sig`.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            eprintln!("regionstore-chaos: signal {sig}: killing the cluster's processes");
            kill_all_children();
            std::process::exit(128 + sig);
        }
    })?;
    Ok(())
}

/// Spawns `cmd`, its pid registered in [`CHILDREN`], with [`STOP_SIGNALS`] unblocked in it
/// (a blocked mask survives exec: a store would ignore the SIGTERM of `Cluster::stop`).
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (sigemptyset, sigaddset, sigprocmask) on a local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in STOP_SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    if let Ok(mut c) = CHILDREN.lock() {
        c.insert(child.id() as i32);
    }
    Ok(child)
}

/// Removes a child that has been reaped from [`CHILDREN`].
fn forget(child: &Child) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.remove(&(child.id() as i32));
    }
}

/// Status requests give up after this (a store that does not answer is treated as down).
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the product's binaries are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub server: PathBuf,
    pub pd: PathBuf,
    pub ctl: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`.
    pub fn in_dir(dir: &Path) -> Result<Binaries> {
        let b = Binaries {
            server: dir.join("regionstore-server"),
            pd: dir.join("regionstore-pd"),
            ctl: dir.join("regionstore-ctl"),
        };
        for p in [&b.server, &b.pd, &b.ctl] {
            if !p.is_file() {
                bail!(
                    "{} not found: build the workspace's test binaries first \
                     (cargo build --workspace --tests), or pass --bin-dir",
                    p.display()
                );
            }
        }
        Ok(b)
    }

    /// The binaries beside the running executable (or one level up, from `deps/`).
    pub fn beside_current_exe() -> Result<Binaries> {
        let exe = std::env::current_exe().context("cannot find the running executable")?;
        let dir = exe.parent().ok_or_else(|| anyhow!("executable has no directory"))?;
        Binaries::in_dir(dir).or_else(|e| dir.parent().map_or(Err(e), Binaries::in_dir))
    }
}

/// The stores' configuration: fast raft timing (50 ms ticks, 500 ms elections) and an eager
/// log GC so that a store cut off for a few seconds catches up by snapshot.
const STORE_CONFIG: &str = r#"
[log]
level = "info"
[pd]
store-heartbeat-interval = "1s"
region-heartbeat-interval = "500ms"
[raftstore]
raft-base-tick-interval = "50ms"
raft-heartbeat-ticks = 2
raft-election-timeout-ticks = 10
raft-store-max-leader-lease = "400ms"
raft-log-gc-tick-interval = "500ms"
raft-log-gc-threshold = 20
raft-log-gc-count-limit = 200
raft-log-reserve-max-ticks = 2
store-pool-size = 1
apply-pool-size = 1
split-region-check-tick-interval = "1s"
[rocksdb]
block-cache-size = "16MiB"
[raftdb]
block-cache-size = "8MiB"
"#;

/// PD's configuration: automatic merge of the (small) workload regions soon after they split,
/// so merges run all along, mixed with every fault, as well as the nemesis's own.
const PD_CONFIG: &str = r#"
[schedule]
max-merge-region-size = 1
max-merge-region-keys = 10000
split-merge-interval = "15s"
merge-schedule-limit = 2
"#;

/// A port that is free now, for a child process to bind. Taken below Linux's ephemeral range
/// (32768..61000): a port the kernel handed out with `bind(0)` can be reused for an outgoing
/// connection before the child binds it. Each process starts at an offset from its pid and
/// walks up, so parallel tests and binaries rarely probe the same port.
///
/// # Panics
/// If no port in the range is free.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() * 7919) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// Runs `regionstore-ctl` against the cluster's PD.
#[derive(Clone, Debug)]
pub struct Ctl {
    path: PathBuf,
    pd: String,
}

/// Longest a ctl command may run (it retries by itself while regions move).
const CTL_TIMEOUT: Duration = Duration::from_secs(15);

impl Ctl {
    /// Runs `regionstore-ctl --pd PD ARGS`; its stdout on success, else its stderr (or a
    /// timeout: the command is killed after [`CTL_TIMEOUT`]) as the error.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let child = spawn(
            Command::new(&self.path)
                .args(["--pd", &self.pd])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .context("cannot run regionstore-ctl")?;
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = child.wait_with_output();
            if let Ok(mut c) = CHILDREN.lock() {
                c.remove(&(pid as i32));
            }
            let _ = tx.send(out);
        });
        let out = match rx.recv_timeout(CTL_TIMEOUT) {
            Ok(out) => out.context("regionstore-ctl failed")?,
            Err(_) => {
                // SAFETY: kill(2) on our child; it is reaped by the waiting thread.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                bail!("regionstore-ctl {} timed out after {CTL_TIMEOUT:?}", args.join(" "));
            }
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }
}

/// One child process.
struct Proc {
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    fn new() -> Proc {
        Proc { child: None, paused: false }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    /// If the process exited by itself, forgets it and returns its status.
    fn take_exit(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        if let Some(c) = self.child.take() {
            forget(&c);
        }
        self.paused = false;
        Some(status)
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.paused {
                self.paused = false;
                // SIGKILL works on a stopped process, but resume it so it never lingers.
                // SAFETY: as in `signal`.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
            }
            let _ = c.kill();
            let _ = c.wait();
            forget(&c);
        }
    }

    fn pause(&mut self) {
        if self.running() && !self.paused {
            self.signal(libc::SIGSTOP);
            self.paused = true;
        }
    }

    fn resume(&mut self) {
        if self.paused {
            self.signal(libc::SIGCONT);
            self.paused = false;
        }
    }
}

struct Store {
    addr: String,
    status_addr: String,
    data_dir: PathBuf,
    proc: Proc,
    /// Learned from the status port once; never changes for a data directory.
    id: Option<u64>,
    /// The failpoints this process has (name → actions); a restart starts with none.
    failpoints: BTreeMap<String, String>,
}

pub struct Cluster {
    dir: PathBuf,
    bins: Binaries,
    /// Stores run with `REGIONSTORE_SIMULATE_POWER_LOSS=1`: a kill drops unsynced KV writes.
    power_loss: bool,
    pd_addr: String,
    pd: Proc,
    stores: Vec<Store>,
    /// Processes that exited by themselves (invariant 4), in order, with their status.
    crashes: Vec<String>,
}

impl Cluster {
    /// Starts PD and `stores` stores with data under `dir`; returns once every store answers
    /// on its status port with its store id.
    pub fn start(dir: &Path, bins: Binaries, stores: usize, power_loss: bool) -> Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("store.toml"), STORE_CONFIG)?;
        std::fs::write(dir.join("pd.toml"), PD_CONFIG)?;
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            bins,
            power_loss,
            pd_addr: format!("127.0.0.1:{}", free_port()),
            pd: Proc::new(),
            stores: Vec::new(),
            crashes: Vec::new(),
        };
        c.start_pd()?;
        for i in 0..stores {
            c.stores.push(Store {
                addr: format!("127.0.0.1:{}", free_port()),
                status_addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.join(format!("store-{i}")),
                proc: Proc::new(),
                id: None,
                failpoints: BTreeMap::new(),
            });
            c.start_store(i)?;
        }
        for i in 0..stores {
            if util::wait::poll_until(Duration::from_secs(60), || c.store_id(i)).is_none() {
                bail!("store {i} did not come up; see {}", c.store_log(i).display());
            }
        }
        Ok(c)
    }

    pub fn pd_addr(&self) -> &str {
        &self.pd_addr
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    pub fn store_log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("store-{i}.log"))
    }

    fn log_file(&self, name: &str) -> Result<std::fs::File> {
        let path = self.dir.join(name);
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))
    }

    pub fn start_pd(&mut self) -> Result<()> {
        self.note_pd_exit();
        if self.pd.running() {
            return Ok(());
        }
        let child = spawn(
            Command::new(&self.bins.pd)
                .args(["--addr", &self.pd_addr, "--data-dir"])
                .arg(self.dir.join("pd"))
                .arg("--config")
                .arg(self.dir.join("pd.toml"))
                .stdout(Stdio::null())
                .stderr(self.log_file("pd.log")?),
        )
        .context("cannot start regionstore-pd")?;
        self.pd.child = Some(child);
        Ok(())
    }

    pub fn kill_pd(&mut self) {
        self.note_pd_exit();
        self.pd.kill9();
    }

    fn note_pd_exit(&mut self) {
        if let Some(st) = self.pd.take_exit() {
            let log = self.dir.join("pd.log");
            self.crashes.push(format!("PD exited by itself ({st}); see {}", log.display()));
        }
    }

    fn note_store_exit(&mut self, i: usize) {
        if let Some(st) = self.stores[i].proc.take_exit() {
            let log = self.store_log(i);
            self.crashes.push(format!("store {i} exited by itself ({st}); see {}", log.display()));
        }
    }

    /// Records the processes that exited by themselves since the last look and starts them
    /// again (invariant 4). Called on every nemesis tick.
    pub fn reap_crashes(&mut self) {
        for i in 0..self.stores.len() {
            if self.stores[i].proc.running() {
                self.note_store_exit(i);
                if !self.stores[i].proc.running() {
                    let _ = self.start_store(i);
                }
            }
        }
        if self.pd.running() {
            self.note_pd_exit();
            if !self.pd.running() {
                let _ = self.start_pd();
            }
        }
    }

    /// The crashes recorded so far plus any process found exited now (invariant 4).
    pub fn crashes(&mut self) -> Vec<String> {
        for i in 0..self.stores.len() {
            self.note_store_exit(i);
        }
        self.note_pd_exit();
        self.crashes.clone()
    }

    /// Starts (or restarts) store `i` from its data directory.
    pub fn start_store(&mut self, i: usize) -> Result<()> {
        self.note_store_exit(i);
        let log = self.log_file(&format!("store-{i}.log"))?;
        let power_loss = self.power_loss;
        let s = &mut self.stores[i];
        if s.proc.running() {
            return Ok(());
        }
        let child = spawn(
            Command::new(&self.bins.server)
                .arg("--config")
                .arg(self.dir.join("store.toml"))
                .args(["--pd", &self.pd_addr, "--addr", &s.addr, "--status-addr", &s.status_addr])
                .arg("--data-dir")
                .arg(&s.data_dir)
                .env("REGIONSTORE_SIMULATE_POWER_LOSS", if power_loss { "1" } else { "0" })
                .stdout(Stdio::null())
                .stderr(log),
        )
        .context("cannot start regionstore-server")?;
        s.proc.child = Some(child);
        s.failpoints.clear();
        Ok(())
    }

    /// Brings store `i`'s failpoints to `want` (name → actions) if it is up; a paused or
    /// killed store is left alone (a paused one is reconciled after it resumes, a killed one
    /// restarts with none).
    pub fn reconcile_failpoints(
        &mut self,
        i: usize,
        want: &BTreeMap<String, String>,
    ) -> Result<()> {
        if !self.store_up(i) {
            return Ok(());
        }
        let have = self.stores[i].failpoints.clone();
        for (name, actions) in want {
            if have.get(name) != Some(actions) {
                self.set_failpoint(i, name, actions)?;
                self.stores[i].failpoints.insert(name.clone(), actions.clone());
            }
        }
        for name in have.keys().filter(|n| !want.contains_key(*n)) {
            self.remove_failpoint(i, name)?;
            self.stores[i].failpoints.remove(name);
        }
        Ok(())
    }

    /// kill -9 of store `i` (resumed first if paused).
    pub fn kill_store(&mut self, i: usize) {
        self.note_store_exit(i);
        self.stores[i].proc.kill9();
    }

    pub fn pause_store(&mut self, i: usize) {
        self.stores[i].proc.pause();
    }

    pub fn resume_store(&mut self, i: usize) {
        self.stores[i].proc.resume();
    }

    /// Whether store `i` runs and is not paused (it can answer).
    pub fn store_up(&self, i: usize) -> bool {
        let p = &self.stores[i].proc;
        p.running() && !p.paused
    }

    pub fn status_addr(&self, i: usize) -> String {
        self.stores[i].status_addr.clone()
    }

    /// The largest resident set (bytes) of the running processes, from `/proc`.
    pub fn rss_max_bytes(&self) -> u64 {
        let procs = self.stores.iter().map(|s| &s.proc).chain(std::iter::once(&self.pd));
        procs
            .filter_map(|p| p.child.as_ref())
            .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/status", c.id())).ok())
            .filter_map(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .max()
            .map_or(0, |kib| kib * 1024)
    }

    /// Store `i`'s id, from its status port (cached once known).
    pub fn store_id(&mut self, i: usize) -> Option<u64> {
        if let Some(id) = self.stores[i].id {
            return Some(id);
        }
        if !self.store_up(i) {
            return None;
        }
        let (code, body) =
            http::request(&self.stores[i].status_addr, "GET", "/status", "", STATUS_TIMEOUT)
                .ok()?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let id = v["store_id"].as_u64().filter(|&id| id != 0)?;
        self.stores[i].id = Some(id);
        Some(id)
    }

    /// The index of the store with id `id`.
    pub fn store_index(&self, id: u64) -> Option<usize> {
        self.stores.iter().position(|s| s.id == Some(id))
    }

    /// Sets a failpoint on store `i` through its status port. A store that is down is
    /// skipped (a restart starts with no failpoints); the error is for a store that refused.
    fn set_failpoint(&self, i: usize, name: &str, actions: &str) -> Result<()> {
        if !self.store_up(i) {
            return Ok(());
        }
        let s = &self.stores[i];
        let path = format!("/fail/{name}");
        let (code, body) = http::request(&s.status_addr, "PUT", &path, actions, STATUS_TIMEOUT)?;
        if code != 200 {
            bail!("store {i} refused failpoint {name}={actions}: {code} {}", body.trim());
        }
        Ok(())
    }

    /// Removes a failpoint on store `i` (skipped if it is down, as above).
    fn remove_failpoint(&self, i: usize, name: &str) -> Result<()> {
        if !self.store_up(i) {
            return Ok(());
        }
        let s = &self.stores[i];
        let path = format!("/fail/{name}");
        let (code, body) = http::request(&s.status_addr, "DELETE", &path, "", STATUS_TIMEOUT)?;
        if code != 200 {
            bail!("store {i} refused to remove failpoint {name}: {code} {}", body.trim());
        }
        Ok(())
    }

    /// Runs `regionstore-ctl --pd PD ARGS` (see [`Ctl::run`]).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        self.ctl_handle().run(args)
    }

    /// A handle to run `regionstore-ctl` without holding the cluster.
    pub fn ctl_handle(&self) -> Ctl {
        Ctl { path: self.bins.ctl.clone(), pd: self.pd_addr.clone() }
    }

    /// The ids of the stores known so far, by index.
    pub fn store_ids(&self) -> Vec<Option<u64>> {
        self.stores.iter().map(|s| s.id).collect()
    }

    /// Stops every process with SIGTERM (so their logs are flushed to the end), waiting up
    /// to 10 s each, then kills what is left.
    pub fn stop(&mut self) {
        for s in &mut self.stores {
            s.proc.resume();
            s.proc.signal(libc::SIGTERM);
        }
        self.pd.signal(libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for p in self.stores.iter_mut().map(|s| &mut s.proc).chain(std::iter::once(&mut self.pd)) {
            let Some(c) = p.child.as_mut() else { continue };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            util::wait::poll_until(left, || c.try_wait().ok().flatten());
        }
        self.shutdown();
    }

    /// Resumes and kills every process.
    pub fn shutdown(&mut self) {
        for s in &mut self.stores {
            s.proc.kill9();
        }
        self.pd.kill9();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
