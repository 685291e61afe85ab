//! Linearizability checker for key-value histories: per-key Wing–Gong/Lowe search, unknown
//! outcomes as may-or-may-not-have-happened.
//!
//! This file owns the public vocabulary (events, outcomes, options, the report) and the
//! per-key fan-out; `history` turns one key's events into checkable ops, `search` runs the
//! Wing–Gong/Lowe search, `window` explains a failure, `render` prints everything.
//!
//! The contract, stated once (each rule is implemented in the module named):
//! 1. Every key is an independent register whose value before the history is
//!    [`Options::initial`]; ops on different keys never constrain each other (`check`).
//! 2. Real time is strict: op A precedes op B iff `A.complete_ns < B.invoke_ns`. Ops whose
//!    intervals merely touch (`A.complete_ns == B.invoke_ns`) are concurrent (`search`).
//! 3. [`Outcome::Fail`] events and [`Outcome::Unknown`] gets are removed. An unknown write
//!    may take effect at any instant after its invoke, or never (`history`, `search`).
//! 4. A verdict is one of three, and [`Verdict::Undecided`] is never counted as linearizable:
//!    every key's search uses at most [`Options::max_states_per_key`] states (`search`).
//! 5. Checking is deterministic: the same history and options give the same report.
//!
//! # Memory
//! A key's search keeps ≈ 40 bytes per explored state (the memo table dominates), so one key
//! costs at most ≈ `40 × max_states_per_key` bytes and [`Options::threads`] keys are searched
//! at once.

mod history;
mod model;
mod render;
mod search;
mod window;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Values are opaque bytes.
pub type Value = Vec<u8>;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read the current value.
    Get,
    /// Set the value.
    Put(Value),
    /// Remove the value (the register becomes absent).
    Delete,
    /// If the current value equals `expect` (`None` = absent), set it to `new`.
    Cas { expect: Option<Value>, new: Value },
}

/// What the client saw when the op completed successfully.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// The value read (`None` = absent).
    Get(Option<Value>),
    Put,
    Delete,
    /// The value before the CAS and whether it was replaced. A consistent answer has
    /// `swapped == (prev == expect)`; any other answer is itself not linearizable.
    Cas {
        prev: Option<Value>,
        swapped: bool,
    },
}

/// How an op ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok(Ret),
    /// Definitely did not take effect (e.g. refused before being proposed). Removed from the
    /// history.
    Fail,
    /// May or may not have taken effect, at any time after its invoke (a timeout, a lost
    /// connection).
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub client: u64,
    pub key: Vec<u8>,
    pub op: Op,
    /// Monotonic time the client sent it.
    pub invoke_ns: u64,
    /// Monotonic time the client got the outcome (for `Unknown`: when it gave up). MUST be
    /// `>= invoke_ns`, on the same clock as every other event's times.
    pub complete_ns: u64,
    pub outcome: Outcome,
}

/// How to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Every key's value before the history (`None` = absent).
    pub initial: Option<Value>,
    /// Search budget per key: distinct (linearized set, value) states explored before the key
    /// is reported [`Verdict::Undecided`]. Also bounds the key's memory (≈ 40 bytes a state).
    pub max_states_per_key: usize,
    /// Keys searched at once (one thread each); 0 picks the available parallelism, at most
    /// [`THREADS_AUTO_MAX`].
    pub threads: usize,
}

/// Most threads `threads: 0` picks: each may hold a full memo table.
pub const THREADS_AUTO_MAX: usize = 4;

impl Default for Options {
    fn default() -> Options {
        Options {
            initial: None,
            // ≈ 200 MB of memo table at worst; histories of 20k ops with ~100 timeouts
            // need a few times their op count when linearizable.
            max_states_per_key: 5_000_000,
            threads: 0,
        }
    }
}

/// The verdict for every key of a history, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub keys: Vec<KeyReport>,
}

/// One key's verdict and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyReport {
    pub key: Vec<u8>,
    pub verdict: Verdict,
    /// Events of this key in the history, of every outcome.
    pub ops: usize,
    /// Of which ended `Unknown`.
    pub unknown_ops: usize,
    /// States the search explored (memo table entries).
    pub states: usize,
}

/// Whether one key's history has a linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists. `window` is a small, readable slice of this key's history
    /// that shows the problem: the events from the last point before the failure where no op
    /// with a known outcome was in flight (preferring one where the search knew a single
    /// value), up to the op that could not be placed, one line each; `state_before` is the
    /// register value(s) possible at the window's start; `stuck_op` is the op that could not
    /// be placed, or an answer no register can give.
    NotLinearizable {
        window: Vec<String>,
        state_before: String,
        stuck_op: String,
    },
    /// The search hit `max_states_per_key`: neither proved nor refuted (must be reported,
    /// never counted as OK).
    Undecided,
}

impl Report {
    /// True iff every key is [`Verdict::Linearizable`] (an undecided key is not).
    pub fn is_linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.verdict.is_linearizable())
    }

    /// The keys with no linearization.
    pub fn anomalies(&self) -> Vec<&KeyReport> {
        self.keys.iter().filter(|k| k.verdict.is_anomaly()).collect()
    }

    /// The keys whose search ran out of budget.
    pub fn undecided(&self) -> Vec<&KeyReport> {
        self.keys.iter().filter(|k| k.verdict.is_undecided()).collect()
    }
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        match self {
            Verdict::Linearizable => true,
            Verdict::NotLinearizable { .. } | Verdict::Undecided => false,
        }
    }

    pub fn is_anomaly(&self) -> bool {
        match self {
            Verdict::NotLinearizable { .. } => true,
            Verdict::Linearizable | Verdict::Undecided => false,
        }
    }

    pub fn is_undecided(&self) -> bool {
        match self {
            Verdict::Undecided => true,
            Verdict::Linearizable | Verdict::NotLinearizable { .. } => false,
        }
    }
}

/// Checks every key's sub-history of `history` for linearizability.
///
/// The order of `history` does not matter. Keys are checked independently, up to
/// `opts.threads` at once; the report lists them in byte order.
///
/// # Panics
/// If an event has `complete_ns < invoke_ns` (a recorder bug: times must come from one
/// monotonic clock), or `opts.max_states_per_key == 0`.
pub fn check(history: &[Event], opts: &Options) -> Report {
    assert!(opts.max_states_per_key > 0, "lincheck: max_states_per_key must be positive");
    // 1. Validate times up front, so no worker thread panics halfway.
    for e in history {
        assert!(
            e.complete_ns >= e.invoke_ns,
            "lincheck: event completes before its invoke: {e} (invoke {} ns, complete {} ns)",
            e.invoke_ns,
            e.complete_ns
        );
    }
    // 2. Split per key; each key keeps the events in input order.
    let mut per_key: BTreeMap<&[u8], Vec<&Event>> = BTreeMap::new();
    for e in history {
        per_key.entry(&e.key).or_default().push(e);
    }
    let keys: Vec<(&[u8], Vec<&Event>)> = per_key.into_iter().collect();
    // 3. Check them, on worker threads when there is more than one key.
    let threads = worker_threads(opts.threads).min(keys.len());
    let reports = if threads <= 1 {
        keys.iter().map(|(key, events)| check_key(key, events, opts)).collect()
    } else {
        check_parallel(&keys, opts, threads)
    };
    Report { keys: reports }
}

fn worker_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(THREADS_AUTO_MAX)
}

/// Workers take keys from a shared counter; results land in their key's slot, so the report
/// order does not depend on scheduling.
fn check_parallel(keys: &[(&[u8], Vec<&Event>)], opts: &Options, threads: usize) -> Vec<KeyReport> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<KeyReport>>> = Mutex::new(vec![None; keys.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((key, events)) = keys.get(i) else { return };
                let report = check_key(key, events, opts);
                slots.lock().expect("lincheck: a worker panicked")[i] = Some(report);
            });
        }
    });
    let slots = slots.into_inner().expect("lincheck: a worker panicked");
    slots.into_iter().map(|r| r.expect("lincheck: every key is checked")).collect()
}

/// One key: prepare its ops, search, and explain a failure.
fn check_key(key: &[u8], events: &[&Event], opts: &Options) -> KeyReport {
    let ops = events.len();
    let unknown_ops = events.iter().filter(|e| matches!(e.outcome, Outcome::Unknown)).count();
    let report =
        |verdict, states| KeyReport { key: key.to_vec(), verdict, ops, unknown_ops, states };
    // 1. An answer no register can give fails the key before any search.
    let prepared = match history::prepare(events, opts.initial.as_ref()) {
        Ok(p) => p,
        Err(invalid) => return report(window::for_invalid(events, &invalid), 0),
    };
    // 2. Search; a failure gets its window.
    match search::run(&prepared, opts.max_states_per_key) {
        search::Conclusion::Linearizable { states } => report(Verdict::Linearizable, states),
        search::Conclusion::Undecided { states } => report(Verdict::Undecided, states),
        search::Conclusion::Stuck { states, failure } => {
            report(window::for_failure(events, &prepared, &failure), states)
        }
    }
}
