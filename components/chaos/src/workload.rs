//! The workloads, through the official client (`tikv-client`), every operation recorded.
//!
//! 1. **register**: clients doing get / put / delete / compare-and-swap on a few keys
//!    (`reg/0`..), so that operations contend; every value is unique (`c3-17`).
//! 2. **bank**: transfers between accounts (`bank/0`..) by compare-and-swap: withdraw, then
//!    deposit; each account's value is `balance:nonce` (unique), so the same register check
//!    covers it, and the total is checked at the end against what the outcomes allow.
//! 3. **set**: clients add fresh keys (`set/<client>/<n>`); every acknowledged add must be
//!    present at the end.
//!
//! Honest outcomes (the rule the checker relies on):
//! - `ok`: the client got an answer; recorded with the answer.
//! - `fail`: the request definitely did not take effect: a read that failed (a read has no
//!   effect), a connection that was never made, or a region error the store answers only
//!   before a command is proposed or for one that provably did not apply (not leader, epoch
//!   not match, key not in region, region not found, server busy, stale command). If the store
//!   ever answers one of these for a command that did apply, the checker finds it.
//! - `unknown`: everything else (a timeout, a lost connection, a status after the request was
//!   sent): may or may not have taken effect.
//!
//! The client runs with its retries off (`Backoff::no_backoff`): a retry inside the client of
//! a compare-and-swap whose first attempt applied would answer the application wrongly (the
//! client's doing, not the store's), so each attempt is its own recorded operation and every
//! retry is the application's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lincheck::{Event, Op, Outcome, Ret};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tikv_client::{Backoff, RawClient};

/// Longest a single operation may take before it is given up as `unknown`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits after an operation that did not succeed.
pub const PAUSE_AFTER_ERROR: Duration = Duration::from_millis(50);
/// Keys of the register workload.
pub const REGISTER_KEYS: usize = 5;
/// Accounts of the bank workload, and each one's opening balance.
pub const ACCOUNTS: usize = 6;
pub const OPENING_BALANCE: i64 = 100;

/// Every operation of the run, with times from one monotonic origin.
pub struct Recorder {
    origin: Instant,
    events: Mutex<Vec<Event>>,
    /// Completion times (ns) of successful operations, for the availability figures.
    ok_times: Mutex<Vec<u64>>,
    /// Errors by kind (the message with its numbers blanked), for the summary.
    errors: Mutex<BTreeMap<String, usize>>,
}

impl Recorder {
    pub fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            events: Mutex::new(Vec::new()),
            ok_times: Mutex::new(Vec::new()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn record(&self, e: Event) {
        if matches!(e.outcome, Outcome::Ok(_)) {
            self.ok_times.lock().push(e.complete_ns);
        }
        self.events.lock().push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    fn record_error(&self, what: String) {
        *self.errors.lock().entry(what).or_default() += 1;
    }

    /// The most frequent error kinds, most frequent first.
    pub fn top_errors(&self, n: usize) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> =
            self.errors.lock().iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1));
        v.truncate(n);
        v
    }

    pub fn ok_times(&self) -> Vec<u64> {
        let mut t = self.ok_times.lock().clone();
        t.sort_unstable();
        t
    }
}

/// How a client error is recorded (see the module doc).
pub fn classify(e: &tikv_client::Error, is_read: bool) -> Outcome {
    use tikv_client::Error as E;
    if is_read {
        return Outcome::Fail;
    }
    match e {
        E::RegionError(r) => {
            let definite = r.not_leader.is_some()
                || r.epoch_not_match.is_some()
                || r.key_not_in_region.is_some()
                || r.region_not_found.is_some()
                || r.server_is_busy.is_some()
                || r.stale_command.is_some();
            if definite {
                Outcome::Fail
            } else {
                Outcome::Unknown
            }
        }
        E::ExtractedErrors(v) | E::MultipleKeyErrors(v) if v.len() == 1 => classify(&v[0], false),
        // No connection was made, or no region/leader was found: nothing was sent.
        E::Grpc(_)
        | E::LeaderNotFound { .. }
        | E::RegionForKeyNotFound { .. }
        | E::NoCurrentRegions
        | E::EntryNotFoundInRegionCache => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

/// An error's kind: its message, numbers blanked, cut to a line.
fn error_kind(e: &tikv_client::Error) -> String {
    let text: String =
        e.to_string().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(120).collect();
    let mut out = String::new();
    for c in text.chars() {
        if !(c == '#' && out.ends_with('#')) {
            out.push(c);
        }
    }
    out
}

/// One operation through the client, recorded. Returns the outcome. A failed or unknown
/// operation is followed by a short pause ([`PAUSE_AFTER_ERROR`]), so that clients do not spin
/// while a region has no leader.
async fn run_op(rec: &Recorder, client: &RawClient, id: u64, key: &[u8], op: Op) -> Outcome {
    let invoke_ns = rec.now_ns();
    let k = key.to_vec();
    let is_read = matches!(op, Op::Get);
    let call = async {
        match &op {
            Op::Get => client.get(k.clone()).await.map(Ret::Get),
            Op::Put(v) => client.put(k.clone(), v.clone()).await.map(|()| Ret::Put),
            Op::Delete => client.delete(k.clone()).await.map(|()| Ret::Delete),
            Op::Cas { expect, new } => client
                .compare_and_swap(k.clone(), expect.clone(), new.clone())
                .await
                .map(|(prev, swapped)| Ret::Cas { prev, swapped }),
        }
    };
    let outcome = match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(ret)) => Outcome::Ok(ret),
        Ok(Err(e)) => {
            rec.record_error(error_kind(&e));
            classify(&e, is_read)
        }
        Err(_) => {
            rec.record_error("timeout".into());
            if is_read {
                Outcome::Fail
            } else {
                Outcome::Unknown
            }
        }
    };
    rec.record(Event {
        client: id,
        key: key.to_vec(),
        op,
        invoke_ns,
        complete_ns: rec.now_ns(),
        outcome: outcome.clone(),
    });
    if !matches!(outcome, Outcome::Ok(_)) {
        tokio::time::sleep(PAUSE_AFTER_ERROR).await;
    }
    outcome
}

/// A client of the official library as the workloads use it.
pub async fn connect(pd: &str) -> anyhow::Result<RawClient> {
    let cfg = tikv_client::Config::default().with_timeout(Duration::from_secs(2));
    let c = RawClient::new_with_config(vec![pd.to_string()], cfg).await?;
    Ok(c.with_atomic_for_cas().with_backoff(Backoff::no_backoff()))
}

/// A client as an application would use it (the library's own retries on), once the cluster
/// serves: for the fuzzer's well-formed client.
pub async fn connect_with_retries(pd: &str) -> anyhow::Result<RawClient> {
    crate::wait_for_cluster(pd).await?;
    let cfg = tikv_client::Config::default().with_timeout(Duration::from_secs(2));
    Ok(RawClient::new_with_config(vec![pd.to_string()], cfg).await?)
}

pub fn register_key(i: usize) -> Vec<u8> {
    format!("reg/{i}").into_bytes()
}

pub fn account_key(i: usize) -> Vec<u8> {
    format!("bank/{i}").into_bytes()
}

/// Register client `id` until `stop`: a mix of reads, writes, deletes and CAS on few keys.
pub async fn register_client(
    rec: Arc<Recorder>,
    client: RawClient,
    id: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 32));
    let mut last_seen: Vec<Option<Vec<u8>>> = vec![None; REGISTER_KEYS];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = rng.gen_range(0..REGISTER_KEYS);
        let key = register_key(k);
        n += 1;
        let value = format!("c{id}-{n}").into_bytes();
        let op = match rng.gen_range(0..100) {
            0..=39 => Op::Get,
            40..=64 => Op::Put(value),
            65..=74 => Op::Delete,
            _ => Op::Cas { expect: last_seen[k].clone(), new: value },
        };
        match run_op(&rec, &client, id, &key, op).await {
            Outcome::Ok(Ret::Get(v)) | Outcome::Ok(Ret::Cas { prev: v, .. }) => last_seen[k] = v,
            Outcome::Ok(Ret::Put | Ret::Delete) | Outcome::Fail | Outcome::Unknown => {}
        }
    }
}

/// What the bank's final check allows: the total may change only by transfers left half
/// done (a definite withdraw whose deposit never got a definite answer) or whose effect is
/// unknown. `lo`/`hi` bound that change.
#[derive(Default)]
pub struct BankLedger {
    pub lo: AtomicI64,
    pub hi: AtomicI64,
    pub transfers_ok: AtomicU64,
}

impl BankLedger {
    fn add(&self, lo: i64, hi: i64) {
        self.lo.fetch_add(lo, Ordering::Relaxed);
        self.hi.fetch_add(hi, Ordering::Relaxed);
    }
}

fn balance_of(v: &Option<Vec<u8>>) -> Option<i64> {
    let s = std::str::from_utf8(v.as_deref()?).ok()?;
    s.split(':').next()?.parse().ok()
}

/// Opens the accounts (recorded puts), retrying until each is acknowledged.
pub async fn open_accounts(rec: &Recorder, client: &RawClient) -> anyhow::Result<()> {
    for i in 0..ACCOUNTS {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = format!("{OPENING_BALANCE}:open-{i}").into_bytes();
            if let Outcome::Ok(_) = run_op(rec, client, u64::MAX, &account_key(i), Op::Put(v)).await
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "account {i} could not be opened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Bank client `id` until `stop`: withdraw by CAS from one account, deposit by CAS to another.
pub async fn bank_client(
    rec: Arc<Recorder>,
    client: RawClient,
    id: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
    ledger: Arc<BankLedger>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 32) ^ 0xba4c);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let from = rng.gen_range(0..ACCOUNTS);
        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = rng.gen_range(1..=5);
        let key = account_key(from);
        let Outcome::Ok(Ret::Get(cur)) = run_op(&rec, &client, id, &key, Op::Get).await else {
            continue;
        };
        let Some(bal) = balance_of(&cur).filter(|b| *b >= amount) else { continue };
        n += 1;
        let new = format!("{}:c{id}-{n}", bal - amount).into_bytes();
        match run_op(&rec, &client, id, &key, Op::Cas { expect: cur, new }).await {
            Outcome::Ok(Ret::Cas { swapped: true, .. }) => {}
            // The withdraw may have happened, and no deposit follows.
            Outcome::Unknown => {
                ledger.add(-amount, 0);
                continue;
            }
            Outcome::Ok(_) | Outcome::Fail => continue,
        }
        match deposit(&rec, &client, id, &mut n, to, amount, &stop).await {
            Some(true) => {
                ledger.transfers_ok.fetch_add(1, Ordering::Relaxed);
            }
            // Unknown: deposited or not.
            Some(false) => ledger.add(-amount, 0),
            // Abandoned at the stop: the money is definitely gone from the total.
            None => ledger.add(-amount, -amount),
        }
    }
}

/// Deposits `amount` into account `to` by CAS until a definite answer: `Some(true)` done,
/// `Some(false)` unknown, `None` abandoned (the run stopped first).
async fn deposit(
    rec: &Recorder,
    client: &RawClient,
    id: u64,
    n: &mut u64,
    to: usize,
    amount: i64,
    stop: &AtomicBool,
) -> Option<bool> {
    let key = account_key(to);
    while !stop.load(Ordering::Relaxed) {
        let Outcome::Ok(Ret::Get(cur)) = run_op(rec, client, id, &key, Op::Get).await else {
            continue;
        };
        // Every value the workload writes has a balance.
        let bal = balance_of(&cur)?;
        *n += 1;
        let new = format!("{}:c{id}-{n}", bal + amount).into_bytes();
        match run_op(rec, client, id, &key, Op::Cas { expect: cur, new }).await {
            Outcome::Ok(Ret::Cas { swapped: true, .. }) => return Some(true),
            Outcome::Unknown => return Some(false),
            Outcome::Ok(_) | Outcome::Fail => {}
        }
    }
    None
}

/// Set client `id` until `stop`: adds fresh keys (recorded puts); returns the keys whose add
/// was acknowledged and those whose outcome is unknown.
/// The set workload's adds, by outcome. Each key is added once, so the end state tells
/// what happened: an acknowledged add must be present, an add answered as failed (no
/// effect) must be absent, an unknown one may be either.
#[derive(Debug, Default)]
pub struct SetAdds {
    pub acked: Vec<Vec<u8>>,
    pub unknown: Vec<Vec<u8>>,
    pub failed: Vec<Vec<u8>>,
}

impl SetAdds {
    pub fn extend(&mut self, other: SetAdds) {
        self.acked.extend(other.acked);
        self.unknown.extend(other.unknown);
        self.failed.extend(other.failed);
    }
}

pub async fn set_client(
    rec: Arc<Recorder>,
    client: RawClient,
    id: u64,
    stop: Arc<AtomicBool>,
) -> SetAdds {
    let mut adds = SetAdds::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // Spread over the split targets (`set/0`..`set/9`) so that splits cut through the set.
        let key = format!("set/{}/{id:02}-{n:06}", n % 10).into_bytes();
        match run_op(&rec, &client, id, &key, Op::Put(b"1".to_vec())).await {
            Outcome::Ok(_) => adds.acked.push(key),
            Outcome::Unknown => adds.unknown.push(key),
            Outcome::Fail => adds.failed.push(key),
        }
    }
    adds
}

/// Reads `key` (recorded, as client `id`) until a definite answer or `deadline`.
pub async fn read_settled(
    rec: &Recorder,
    client: &RawClient,
    id: u64,
    key: &[u8],
    deadline: Instant,
) -> Option<Option<Vec<u8>>> {
    loop {
        if let Outcome::Ok(Ret::Get(v)) = run_op(rec, client, id, key, Op::Get).await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
