//! The nemesis: walks the schedule on its own thread, starting each fault at its offset and
//! healing it when its time is up, and logs every action with its time.
//!
//! Steps per tick (every [`TICK`]):
//! 1. Heal the faults whose time is up (restart, SIGCONT, failpoints removed).
//! 2. Start the faults whose time has come. An admin fault is one command through
//!    `regionstore-ctl` (splits; PD operators for leadership and membership); the cluster may
//!    refuse it (a region busy with another change, a split key on a boundary), which is
//!    counted as refused, not as an error of the run.
//! 3. Record and restart any process that exited by itself (`Cluster::reap_crashes`).
//! 4. Reconcile every up store's failpoints with the active network faults (partitions,
//!    client partitions): a restarted process starts with none, and a process paused when its
//!    fault healed still has it when it resumes.
//!
//! At the end every fault still active is healed, whatever the schedule says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use parking_lot::Mutex;
use server_faults::{DROP_RAFT_TO, LOSE_KV_RESPONSE, REFUSE_KV};

use crate::cluster::{Cluster, Ctl};
use crate::schedule::{Fault, Kind, Partition, Step};

/// How often the nemesis looks at its schedule.
const TICK: Duration = Duration::from_millis(50);

/// The failpoint names of `server::fault`, repeated here so the harness does not link the
/// server crate (a test asserts they match).
pub mod server_faults {
    pub const DROP_RAFT_TO: &str = "server::raft_client::drop_to_stores";
    pub const REFUSE_KV: &str = "server::service::refuse_kv";
    pub const LOSE_KV_RESPONSE: &str = "server::service::lose_kv_response";
}

/// What happened to one fault.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub kind: Kind,
    pub started: Duration,
    pub healed: Option<Duration>,
    /// Set when the cluster refused the admin command (not an error of the run).
    pub refused: Option<String>,
    pub detail: String,
}

/// Counts and log of the faults, shared with the summary.
#[derive(Default)]
pub struct FaultLog {
    pub records: Mutex<Vec<FaultRecord>>,
    pub lines: Mutex<Vec<String>>,
}

impl FaultLog {
    fn line(&self, at: Duration, text: String) {
        let l = format!("[{:>8.3}s] {text}", at.as_secs_f64());
        println!("{l}");
        self.lines.lock().push(l);
    }

    pub fn by_kind(&self) -> BTreeMap<Kind, (usize, usize)> {
        let mut m = BTreeMap::new();
        for r in self.records.lock().iter() {
            let e = m.entry(r.kind).or_insert((0, 0));
            e.0 += 1;
            e.1 += usize::from(r.refused.is_some());
        }
        m
    }
}

struct Active {
    step: Step,
    record: usize,
    /// Heals tried and failed (a restart that could not spawn): retried every tick up to
    /// [`HEAL_ATTEMPTS_MAX`].
    failed_heals: u32,
}

/// Heals of one fault tried before the nemesis gives up on it (a store left down is then
/// visible in the run's end: its final reads or the availability figures).
const HEAL_ATTEMPTS_MAX: u32 = 100;

pub struct Nemesis {
    cluster: Arc<Mutex<Cluster>>,
    log: Arc<FaultLog>,
    origin: Instant,
    active: Vec<Active>,
    /// Admin commands running on their own threads.
    admin: Vec<std::thread::JoinHandle<()>>,
}

impl Nemesis {
    pub fn new(cluster: Arc<Mutex<Cluster>>, log: Arc<FaultLog>, origin: Instant) -> Nemesis {
        Nemesis { cluster, log, origin, active: Vec::new(), admin: Vec::new() }
    }

    /// Runs `steps` until they are done or `stop` is set; heals everything before returning.
    pub fn run(mut self, steps: Vec<Step>, stop: Arc<AtomicBool>) {
        let mut next = steps.into_iter().peekable();
        while !stop.load(Ordering::Relaxed) {
            let now = self.origin.elapsed();
            self.heal_due(now);
            while next.peek().is_some_and(|s| s.at <= now) {
                let step = next.next().expect("peeked");
                self.start(step);
            }
            self.cluster.lock().reap_crashes();
            self.reconcile();
            if next.peek().is_none() && self.active.is_empty() {
                break;
            }
            std::thread::sleep(TICK);
        }
        self.heal_due(Duration::MAX);
        self.reconcile();
        for h in self.admin.drain(..) {
            let _ = h.join();
        }
    }

    fn heal_due(&mut self, now: Duration) {
        let (due, keep): (Vec<Active>, Vec<Active>) =
            self.active.drain(..).partition(|a| a.step.at + a.step.duration <= now);
        self.active = keep;
        for mut a in due {
            let at = self.origin.elapsed();
            let r = self.heal(&a.step.fault);
            let what = describe(&a.step.fault);
            match r {
                Ok(()) => self.log.line(at, format!("heal  {what}")),
                Err(e) if a.failed_heals + 1 < HEAL_ATTEMPTS_MAX && now != Duration::MAX => {
                    if a.failed_heals == 0 {
                        self.log.line(at, format!("heal  {what} failed, retrying: {e:#}"));
                    }
                    a.failed_heals += 1;
                    self.active.push(a);
                    continue;
                }
                Err(e) => self.log.line(at, format!("heal  {what} FAILED: {e:#}")),
            }
            self.log.records.lock()[a.record].healed = Some(at);
        }
    }

    fn start(&mut self, step: Step) {
        let at = self.origin.elapsed();
        let detail = describe(&step.fault);
        let record = {
            let mut records = self.log.records.lock();
            records.push(FaultRecord {
                kind: step.fault.kind(),
                started: at,
                healed: None,
                refused: None,
                detail: detail.clone(),
            });
            records.len() - 1
        };
        if is_admin(&step.fault) {
            // One ctl command may take seconds (it retries while regions move): run it apart,
            // so that the schedule's heals stay on time.
            self.admin.retain(|h| !h.is_finished());
            if self.admin.len() >= ADMIN_IN_FLIGHT_MAX {
                self.refused(record, at, &detail, "earlier admin commands still running".into());
                return;
            }
            let (ctl, ids, log, origin) = {
                let c = self.cluster.lock();
                (c.ctl_handle(), c.store_ids(), self.log.clone(), self.origin)
            };
            let fault = step.fault.clone();
            self.admin.push(std::thread::spawn(move || {
                let r = admin(&ctl, &ids, &fault);
                let at = origin.elapsed();
                match r {
                    Ok(()) => log.line(at, format!("done  {detail}")),
                    Err(e) => {
                        let e = format!("{e:#}");
                        log.line(at, format!("start {detail}: refused: {e}"));
                        log.records.lock()[record].refused = Some(e);
                    }
                }
            }));
            return;
        }
        let mut step = step;
        step.fault = self.aim(step.fault);
        let detail = describe(&step.fault);
        match self.inject(&step.fault) {
            Ok(()) => self.log.line(at, format!("start {detail} for {:?}", step.duration)),
            Err(e) => self.refused(record, at, &detail, format!("{e:#}")),
        }
        self.log.records.lock()[record].detail = detail;
        if !step.duration.is_zero() {
            self.active.push(Active { step, record, failed_heals: 0 });
        }
    }

    fn refused(&self, record: usize, at: Duration, detail: &str, why: String) {
        self.log.line(at, format!("start {detail}: refused: {why}"));
        self.log.records.lock()[record].refused = Some(why);
    }

    /// A kill aimed at a leader becomes a kill of the store that leads its key's region now,
    /// if PD knows it and that store is up (`schedule`, rule 6); otherwise of the store the
    /// schedule named. Every other fault is returned as it is.
    fn aim(&self, fault: Fault) -> Fault {
        let Fault::Kill { stores, leader_of: Some(key) } = fault else { return fault };
        let pd = self.cluster.lock().pd_addr().to_string();
        let leader = leader_store_of(&pd, &key);
        let c = self.cluster.lock();
        let stores = match leader.and_then(|id| c.store_index(id)) {
            Some(x) if stores.len() == 1 && c.store_up(x) => vec![x],
            Some(_) | None => stores,
        };
        Fault::Kill { stores, leader_of: Some(key) }
    }

    /// Process faults: at once, under the cluster's lock.
    fn inject(&self, fault: &Fault) -> Result<()> {
        let mut c = self.cluster.lock();
        match fault {
            Fault::Kill { stores, .. } => stores.iter().for_each(|&i| c.kill_store(i)),
            Fault::Pause { stores } => stores.iter().for_each(|&i| c.pause_store(i)),
            // Network faults are failpoints, set by `reconcile` right after.
            Fault::Partition(_) | Fault::ClientPartition { .. } => {}
            Fault::PdRestart => c.kill_pd(),
            Fault::PowerLossAll => (0..c.store_count()).for_each(|i| c.kill_store(i)),
            Fault::Split { .. }
            | Fault::Merge { .. }
            | Fault::Transfer { .. }
            | Fault::ConfChange { .. }
            | Fault::MoveReplica { .. } => unreachable!("admin faults run apart"),
        }
        Ok(())
    }

    fn heal(&self, fault: &Fault) -> Result<()> {
        let mut c = self.cluster.lock();
        match fault {
            Fault::Kill { stores, .. } => {
                for &i in stores {
                    c.start_store(i)?;
                }
            }
            Fault::Pause { stores } => stores.iter().for_each(|&i| c.resume_store(i)),
            // Removed by `reconcile` right after.
            Fault::Partition(_) | Fault::ClientPartition { .. } => {}
            Fault::PdRestart => c.start_pd()?,
            Fault::PowerLossAll => {
                for i in 0..c.store_count() {
                    c.start_store(i)?;
                }
            }
            Fault::Split { .. }
            | Fault::Merge { .. }
            | Fault::Transfer { .. }
            | Fault::ConfChange { .. }
            | Fault::MoveReplica { .. } => {}
        }
        Ok(())
    }

    /// Brings every up store's failpoints to what the active network faults want.
    fn reconcile(&self) {
        let mut c = self.cluster.lock();
        let n = c.store_count();
        let mut want: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); n];
        for a in &self.active {
            match &a.step.fault {
                Fault::Partition(p) => {
                    let mut to: BTreeMap<usize, Vec<String>> = BTreeMap::new();
                    for (x, y) in p.cut_links(n) {
                        if let Some(id) = c.store_id(y) {
                            to.entry(x).or_default().push(id.to_string());
                        }
                    }
                    for (x, ids) in to {
                        want[x].insert(DROP_RAFT_TO.into(), format!("return({})", ids.join(",")));
                    }
                }
                Fault::ClientPartition { store, lose_responses } => {
                    let name = if *lose_responses { LOSE_KV_RESPONSE } else { REFUSE_KV };
                    want[*store].insert(name.into(), "return".into());
                }
                Fault::Kill { .. }
                | Fault::Pause { .. }
                | Fault::PowerLossAll
                | Fault::PdRestart
                | Fault::Split { .. }
                | Fault::Merge { .. }
                | Fault::Transfer { .. }
                | Fault::ConfChange { .. }
                | Fault::MoveReplica { .. } => {}
            }
        }
        for (i, w) in want.iter().enumerate() {
            // A store just restarted does not answer yet: the next tick tries again.
            let _ = c.reconcile_failpoints(i, w);
        }
    }
}

/// Admin commands running at once, at most (more are refused as the nemesis being busy).
const ADMIN_IN_FLIGHT_MAX: usize = 2;

fn is_admin(f: &Fault) -> bool {
    matches!(
        f,
        Fault::Split { .. }
            | Fault::Merge { .. }
            | Fault::Transfer { .. }
            | Fault::ConfChange { .. }
            | Fault::MoveReplica { .. }
    )
}

/// One admin fault through `regionstore-ctl`; `ids` are the stores' ids by index.
fn admin(ctl: &Ctl, ids: &[Option<u64>], fault: &Fault) -> Result<()> {
    let all: Vec<u64> = ids.iter().flatten().copied().collect();
    let non_members =
        |stores: &[u64]| all.iter().copied().filter(|id| !stores.contains(id)).collect::<Vec<_>>();
    match fault {
        Fault::Split { keys } => {
            let mut errs = Vec::new();
            for k in keys {
                let k = String::from_utf8_lossy(k);
                if let Err(e) = ctl.run(&["region", "split", "--key", &k]) {
                    errs.push(format!("{k}: {e}"));
                }
            }
            if errs.len() == keys.len() {
                return Err(anyhow!("{}", errs.join("; ")));
            }
        }
        Fault::Merge { key, racing_split, race_delay_ms } => {
            // The two regions that meet at K: split at K first (refused if K is a boundary
            // already, which is as good), then merge the region just left of K into its right
            // neighbour. The ctl waits for PD's operator to end; one that does not succeed (a
            // refusal, a rollback, the timeout) is an error: the fault counts as refused.
            let _ = ctl.run(&["region", "split", "--key", &String::from_utf8_lossy(key)]);
            let racer = racing_split.clone().map(|k| {
                let (ctl, delay) = (ctl.clone(), Duration::from_millis(*race_delay_ms));
                std::thread::spawn(move || {
                    std::thread::sleep(delay); // the race's offset, part of the fault
                    let _ = ctl.run(&["region", "split", "--key", &String::from_utf8_lossy(&k)]);
                })
            });
            let left: String = key_before(key).iter().map(|b| format!("{b:02x}")).collect();
            let timeout = MERGE_TIMEOUT.as_secs().to_string();
            let merged =
                ctl.run(&["region", "merge", "--key", &left, "--hex", "--timeout", &timeout]);
            if let Some(racer) = racer {
                let _ = racer.join();
            }
            merged?;
        }
        Fault::Transfer { key, to } => {
            // To one of the region's own stores (PD refuses others).
            let (region, stores) = region_of(ctl, key)?;
            let target = pick(&stores, *to)?;
            ctl.run(&["operator", "transfer-leader", &region.to_string(), &target.to_string()])?;
        }
        Fault::ConfChange { key, store } => {
            // Remove a peer from a full region, add one to a region short of replicas.
            let (region, stores) = region_of(ctl, key)?;
            let (verb, target) = if stores.len() >= MAX_REPLICAS {
                ("remove-peer", pick(&stores, *store)?)
            } else {
                ("add-peer", pick(&non_members(&stores), *store)?)
            };
            ctl.run(&["operator", verb, &region.to_string(), &target.to_string()])?;
        }
        Fault::MoveReplica { key, to } => {
            let (region, stores) = region_of(ctl, key)?;
            let from = pick(&stores, *to)?;
            let target = pick(&non_members(&stores), *to)?;
            let (r, f, t) = (region.to_string(), from.to_string(), target.to_string());
            ctl.run(&["operator", "transfer-peer", &r, &f, &t])?;
        }
        Fault::Kill { .. }
        | Fault::Pause { .. }
        | Fault::Partition(_)
        | Fault::ClientPartition { .. }
        | Fault::PdRestart
        | Fault::PowerLossAll => unreachable!("not an admin fault"),
    }
    Ok(())
}

/// How long a merge fault waits for PD's operator (a merge whose stores must be aligned first
/// takes longer, and then counts as refused; PD's own operator goes on).
const MERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A key just below `key` and above every key below it that is not a prefix of it: `key`
/// with its last byte decremented and `\xff`s appended (a key ending in 0 drops that byte).
fn key_before(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match k.pop() {
        Some(0) | None => k,
        Some(b) => {
            k.push(b - 1);
            k.extend_from_slice(&[0xff; 8]);
            k
        }
    }
}

/// PD's `max-replicas` in the harness's clusters (its default).
const MAX_REPLICAS: usize = 3;

/// The `i`-th of `ids` (wrapping), for choices the schedule made as a number.
fn pick(ids: &[u64], i: usize) -> Result<u64> {
    if ids.is_empty() {
        return Err(anyhow!("no store to choose from"));
    }
    Ok(ids[i % ids.len()])
}

/// The id and the stores of the region holding `key`, from PD.
fn region_of(ctl: &Ctl, key: &[u8]) -> Result<(u64, Vec<u64>)> {
    let out = ctl.run(&["--json", "region", "show", "--key", &String::from_utf8_lossy(key)])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let id = v["id"].as_u64().ok_or_else(|| anyhow!("no region id in {out}"))?;
    let stores = v["peers"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["store_id"].as_u64()).collect())
        .unwrap_or_default();
    Ok((id, stores))
}

/// How long the nemesis waits for PD to say who leads a region (it may be down: the kill then
/// takes the store the schedule named).
const LEADER_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// The id of the store leading the region that holds `key`, from PD's region list.
fn leader_store_of(pd: &str, key: &[u8]) -> Option<u64> {
    let (code, body) =
        crate::http::request(pd, "GET", "/pd/api/v1/regions", "", LEADER_LOOKUP_TIMEOUT).ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let hex = |s: &serde_json::Value| -> Option<Vec<u8>> {
        let s = s.as_str()?;
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
    };
    v["regions"].as_array()?.iter().find_map(|r| {
        let (start, end) = (hex(&r["start_key"])?, hex(&r["end_key"])?);
        let inside = start.as_slice() <= key && (end.is_empty() || key < end.as_slice());
        if inside {
            r["leader"]["store_id"].as_u64()
        } else {
            None
        }
    })
}

/// One line for the log.
pub fn describe(f: &Fault) -> String {
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    match f {
        Fault::Kill { stores, leader_of: None } => format!("kill -9 stores {stores:?}"),
        Fault::Kill { stores, leader_of: Some(k) } => {
            format!("kill -9 stores {stores:?} (aimed at the leader of {})", show(k))
        }
        Fault::Pause { stores } => format!("pause stores {stores:?}"),
        Fault::Partition(Partition::Halves { minority }) => {
            format!("partition {minority:?} | rest")
        }
        Fault::Partition(Partition::Bridge { left, bridge, right }) => {
            format!("partition {left:?} | {right:?}, bridged by {bridge}")
        }
        Fault::ClientPartition { store, lose_responses: true } => {
            format!("client partition of store {store}: answers lost")
        }
        Fault::ClientPartition { store, lose_responses: false } => {
            format!("client partition of store {store}: requests refused")
        }
        Fault::PdRestart => "kill -9 PD".to_string(),
        Fault::PowerLossAll => "power loss of every store".to_string(),
        Fault::Split { keys } => {
            format!("split at {:?}", keys.iter().map(|k| show(k)).collect::<Vec<_>>())
        }
        Fault::Merge { key, racing_split: None, .. } => {
            format!("merge the two regions meeting at {}", show(key))
        }
        Fault::Merge { key, racing_split: Some(k), race_delay_ms } => format!(
            "merge the two regions meeting at {}, split at {} {race_delay_ms} ms later",
            show(key),
            show(k)
        ),
        Fault::Transfer { key, to } => format!("transfer leader of {} (choice {to})", show(key)),
        Fault::ConfChange { key, store } => {
            format!("add/remove a peer of {} (choice {store})", show(key))
        }
        Fault::MoveReplica { key, to } => format!("move a replica of {} (choice {to})", show(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::key_before;

    #[test]
    fn key_before_sorts_just_below_the_key() {
        let k = b"bank/3".to_vec();
        let b = key_before(&k);
        assert!(b < k);
        assert!(b > b"bank/2/2".to_vec() && b > b"bank/2".to_vec());
        assert_eq!(key_before(b"a\0"), b"a".to_vec());
    }
}
