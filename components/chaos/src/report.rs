//! The end of a run: final reads, the checks, and the summary with its machine-readable last
//! line `chaos: seed=S minutes=M faults=N ops=N anomalies=A lost=L`.
//!
//! What counts as an anomaly: a key whose history is not linearizable, a key the checker
//! could not decide (never passed as OK), a bank total outside what the outcomes allow, and a
//! store that exited by itself, and an add of the set workload answered as failed (no effect)
//! that is present at the end. Lost: an acknowledged add of the set workload that is absent
//! at the end.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use lincheck::{Outcome, Verdict};
use tikv_client::RawClient;

use crate::nemesis::FaultLog;
use crate::schedule::Kind;
use crate::workload::{
    self, BankLedger, Recorder, SetAdds, ACCOUNTS, OPENING_BALANCE, REGISTER_KEYS,
};
use crate::Options;

/// The final reader's client id in the history.
const FINAL_READER: u64 = u64::MAX - 1;
/// Longest the final reads may take, all together.
const FINAL_READS_TIMEOUT: Duration = Duration::from_secs(90);
/// Set keys read per batch at the end.
const SET_BATCH: usize = 256;

/// What was read at the end.
pub struct Finals {
    /// Each account's final value; `None` when it could not be read.
    pub accounts: Vec<Option<Option<Vec<u8>>>>,
    /// Set keys found present.
    pub set_present: HashSet<Vec<u8>>,
    /// Whether every set key could be read.
    pub set_read: bool,
}

/// Reads the registers and accounts (recorded: the checker sees the final state) and the
/// set's keys, whatever their adds' outcome (batched, not recorded).
pub async fn final_reads(rec: &Recorder, client: &RawClient, set: &SetAdds) -> Finals {
    let deadline = Instant::now() + FINAL_READS_TIMEOUT;
    for i in 0..REGISTER_KEYS {
        workload::read_settled(rec, client, FINAL_READER, &workload::register_key(i), deadline)
            .await;
    }
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let key = workload::account_key(i);
        accounts.push(workload::read_settled(rec, client, FINAL_READER, &key, deadline).await);
    }
    let mut set_present = HashSet::new();
    let mut set_read = true;
    let all: Vec<&Vec<u8>> = set.acked.iter().chain(&set.unknown).chain(&set.failed).collect();
    for chunk in all.chunks(SET_BATCH) {
        if !set_read {
            break;
        }
        let keys: Vec<Vec<u8>> = chunk.iter().map(|k| k.to_vec()).collect();
        loop {
            let r =
                tokio::time::timeout(workload::OP_TIMEOUT, client.batch_get(keys.clone())).await;
            if let Ok(Ok(pairs)) = r {
                set_present.extend(pairs.into_iter().map(|p| Vec::<u8>::from(p.0)));
                break;
            }
            if Instant::now() > deadline {
                set_read = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Finals { accounts, set_present, set_read }
}

/// The run's result.
pub struct Summary {
    pub seed: u64,
    pub elapsed: Duration,
    pub faults: BTreeMap<Kind, (usize, usize)>,
    pub ops_ok: usize,
    pub ops_fail: usize,
    pub ops_unknown: usize,
    pub check: lincheck::Report,
    pub check_time: Duration,
    pub bank: Result<String, String>,
    pub set: Result<String, String>,
    pub lost: usize,
    /// Adds answered as failed (no effect) that are present at the end.
    pub phantom_adds: usize,
    pub crashed: Vec<String>,
    /// Longest time without a successful operation, and the fault last started before it ended.
    pub longest_gap: (Duration, String),
    /// Per fault kind, the longest time without a successful operation that overlapped a
    /// fault of that kind (from its start to its heal).
    pub gap_by_kind: BTreeMap<Kind, Duration>,
    /// The most frequent client errors.
    pub top_errors: Vec<(String, usize)>,
}

impl Summary {
    pub fn anomalies(&self) -> usize {
        let keys =
            self.check.keys.iter().filter(|k| !matches!(k.verdict, Verdict::Linearizable)).count();
        keys + usize::from(self.bank.is_err()) + self.crashed.len() + self.phantom_adds
    }

    pub fn failed(&self) -> bool {
        self.anomalies() > 0 || self.lost > 0 || self.set.is_err()
    }

    /// Faults injected: scheduled ones minus those the cluster refused (admin commands).
    pub fn injected(&self, kind: Kind) -> usize {
        self.faults.get(&kind).map_or(0, |(n, refused)| n - refused)
    }

    fn fault_total(&self) -> usize {
        self.faults.values().map(|(n, refused)| n - refused).sum()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn summarize(
    opts: &Options,
    elapsed: Duration,
    rec: &Recorder,
    faults: &FaultLog,
    ledger: &BankLedger,
    set: &SetAdds,
    finals: &Finals,
    crashed: Vec<String>,
) -> Summary {
    let events = rec.events();
    let (mut ok, mut fail, mut unknown) = (0, 0, 0);
    for e in &events {
        match e.outcome {
            Outcome::Ok(_) => ok += 1,
            Outcome::Fail => fail += 1,
            Outcome::Unknown => unknown += 1,
        }
    }
    let started = Instant::now();
    let check = lincheck::check(&events, &lincheck::Options::default());
    let check_time = started.elapsed();
    let lost = set.acked.iter().filter(|k| !finals.set_present.contains(*k)).count();
    let phantom_adds = set.failed.iter().filter(|k| finals.set_present.contains(*k)).count();
    let set_check = if !finals.set_read {
        Err("the set's keys could not all be read at the end".to_string())
    } else if phantom_adds > 0 {
        Err(format!("{phantom_adds} adds answered as failed (no effect) are present"))
    } else {
        Ok(format!(
            "{} acknowledged adds, {lost} missing; {} failed adds, none present; {} unknown",
            set.acked.len(),
            set.failed.len(),
            set.unknown.len()
        ))
    };
    Summary {
        seed: opts.seed,
        elapsed,
        faults: faults.by_kind(),
        ops_ok: ok,
        ops_fail: fail,
        ops_unknown: unknown,
        check,
        check_time,
        bank: bank_check(ledger, &finals.accounts),
        set: set_check,
        lost,
        phantom_adds,
        crashed,
        longest_gap: longest_gap(&rec.ok_times(), faults),
        gap_by_kind: gap_by_kind(&rec.ok_times(), faults),
        top_errors: rec.top_errors(8),
    }
}

/// The bank's total at the end against the bounds the outcomes allow.
fn bank_check(ledger: &BankLedger, accounts: &[Option<Option<Vec<u8>>>]) -> Result<String, String> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut total = 0i64;
    for (i, a) in accounts.iter().enumerate() {
        let Some(v) = a else { return Err(format!("account {i} could not be read at the end")) };
        let bal = v
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.split(':').next()?.parse::<i64>().ok())
            .ok_or_else(|| format!("account {i} holds {v:?}, not a balance"))?;
        total += bal;
    }
    let opening = OPENING_BALANCE * ACCOUNTS as i64;
    let (lo, hi) = (ledger.lo.load(Relaxed), ledger.hi.load(Relaxed));
    let change = total - opening;
    let transfers = ledger.transfers_ok.load(Relaxed);
    if (lo..=hi).contains(&change) {
        Ok(format!(
            "total {total} (opening {opening}, allowed change {lo}..={hi}), {transfers} transfers"
        ))
    } else {
        Err(format!("total {total}: changed by {change}, outcomes allow only {lo}..={hi}"))
    }
}

/// The longest time between successful operations, after the warm-up.
fn longest_gap(ok_times: &[u64], faults: &FaultLog) -> (Duration, String) {
    let mut best = (Duration::ZERO, Duration::ZERO);
    for w in ok_times.windows(2) {
        let gap = Duration::from_nanos(w[1] - w[0]);
        if gap > best.0 {
            best = (gap, Duration::from_nanos(w[0]));
        }
    }
    let (gap, from) = best;
    let records = faults.records.lock();
    let cause = records
        .iter()
        .filter(|r| r.started <= from + gap)
        .max_by_key(|r| r.started)
        .map_or("no fault".to_string(), |r| {
            format!("{} at {:.1}s", r.detail, r.started.as_secs_f64())
        });
    (gap, format!("from {:.1}s, after: {cause}", from.as_secs_f64()))
}

/// Gaps shorter than this are not attributed to faults (operations take that long anyway).
const GAP_MIN: Duration = Duration::from_millis(200);

/// Per kind, the longest gap between successful operations that overlaps a fault of that
/// kind: the fault started before the gap ended and healed (or, for a one-command admin
/// fault, started) after the gap began.
fn gap_by_kind(ok_times: &[u64], faults: &FaultLog) -> BTreeMap<Kind, Duration> {
    let records = faults.records.lock();
    let mut by_kind = BTreeMap::new();
    for w in ok_times.windows(2) {
        let (a, b) = (Duration::from_nanos(w[0]), Duration::from_nanos(w[1]));
        let gap = b - a;
        if gap < GAP_MIN {
            continue;
        }
        for r in records.iter().filter(|r| r.refused.is_none()) {
            let end = r.healed.unwrap_or(r.started);
            if r.started <= b && end >= a {
                let e = by_kind.entry(r.kind).or_insert(Duration::ZERO);
                *e = (*e).max(gap);
            }
        }
    }
    by_kind
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "\n== chaos summary (seed {}, {:.1} min) ==",
            self.seed,
            self.elapsed.as_secs_f64() / 60.0
        )?;
        writeln!(f, "{:<18} {:>8} {:>8} {:>12}", "fault", "injected", "refused", "longest gap")?;
        for (k, (n, refused)) in &self.faults {
            let gap = self.gap_by_kind.get(k).copied().unwrap_or_default();
            let gap = format!("{:.2}s", gap.as_secs_f64());
            writeln!(f, "{:<18} {:>8} {:>8} {gap:>12}", k.name(), n - refused, refused)?;
        }
        writeln!(f, "{:<18} {:>8}", "total", self.fault_total())?;
        writeln!(
            f,
            "operations: {} ok, {} failed (no effect), {} unknown",
            self.ops_ok, self.ops_fail, self.ops_unknown
        )?;
        for (e, n) in &self.top_errors {
            writeln!(f, "  {n:>7} x {e}")?;
        }
        let undecided =
            self.check.keys.iter().filter(|k| matches!(k.verdict, Verdict::Undecided)).count();
        writeln!(
            f,
            "linearizability: {} keys checked in {:.2}s, {} not linearizable, {} undecided",
            self.check.keys.len(),
            self.check_time.as_secs_f64(),
            self.check
                .keys
                .iter()
                .filter(|k| matches!(k.verdict, Verdict::NotLinearizable { .. }))
                .count(),
            undecided
        )?;
        for k in &self.check.keys {
            if !matches!(k.verdict, Verdict::Linearizable) {
                writeln!(f, "{k}")?;
            }
        }
        writeln!(
            f,
            "bank: {}",
            self.bank.as_ref().map_or_else(|e| format!("ANOMALY: {e}"), |s| s.clone())
        )?;
        writeln!(
            f,
            "set: {}",
            self.set.as_ref().map_or_else(|e| format!("ANOMALY: {e}"), |s| s.clone())
        )?;
        for c in &self.crashed {
            writeln!(f, "ANOMALY: {c}")?;
        }
        writeln!(
            f,
            "longest unavailability: {:.2}s ({})",
            self.longest_gap.0.as_secs_f64(),
            self.longest_gap.1
        )?;
        write!(
            f,
            "chaos: seed={} minutes={:.1} faults={} ops={} anomalies={} lost={}",
            self.seed,
            self.elapsed.as_secs_f64() / 60.0,
            self.fault_total(),
            self.ops_ok + self.ops_fail + self.ops_unknown,
            self.anomalies(),
            self.lost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::FaultRecord;

    fn record(kind: Kind, started: f64, healed: Option<f64>) -> FaultRecord {
        FaultRecord {
            kind,
            started: Duration::from_secs_f64(started),
            healed: healed.map(Duration::from_secs_f64),
            refused: None,
            detail: String::new(),
        }
    }

    #[test]
    fn a_gap_counts_for_every_fault_it_overlaps_and_for_no_other() {
        let log = FaultLog::default();
        log.records.lock().extend([
            record(Kind::Kill, 10.0, Some(12.0)),
            record(Kind::Split, 11.0, None),
            record(Kind::Pause, 30.0, Some(31.0)),
        ]);
        let secs = |s: &[f64]| s.iter().map(|x| (x * 1e9) as u64).collect::<Vec<_>>();
        // 9.9 -> 13.0 overlaps the kill and the split; 20.0 -> 20.5 overlaps nothing.
        let ok = secs(&[9.8, 9.9, 13.0, 13.1, 20.0, 20.5, 20.6]);
        let by_kind = gap_by_kind(&ok, &log);
        assert_eq!(by_kind.get(&Kind::Kill).map(|d| d.as_millis()), Some(3100));
        assert_eq!(by_kind.get(&Kind::Split).map(|d| d.as_millis()), Some(3100));
        assert_eq!(by_kind.get(&Kind::Pause), None, "no gap while it lasted");
    }
}
