//! Randomized histories from a simulated register: each op takes effect at a random instant
//! within its interval (an unknown one possibly later, or never), so the history is
//! linearizable by construction. Seeds are fixed and printed on failure.

use std::collections::HashMap;
use std::time::Instant;

use super::*;

/// xorshift64*: enough randomness for test histories, no dependency.
pub(super) struct XorShift(pub(super) u64);

impl XorShift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What to generate.
struct Shape {
    seed: u64,
    ops: usize,
    clients: u64,
    keys: u64,
    /// Per mille of ops that end `Unknown`; half of those unknown writes never take effect.
    unknown_per_mille: u64,
    fail_per_mille: u64,
    /// How long after its invoke an unknown write that lands may land; 0: within four times
    /// its duration.
    unknown_lands_within_ns: u64,
}

/// An op with the instant it takes effect (`None`: never).
struct Planned {
    event: Event,
    effect_ns: Option<u64>,
}

/// A linearizable history of `shape`, in invoke order.
fn linearizable_history(shape: &Shape) -> Vec<Event> {
    let mut rng = XorShift(shape.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut planned = plan(shape, &mut rng);
    // Apply the effects in instant order and fill in what each client saw.
    let mut order: Vec<usize> =
        (0..planned.len()).filter(|&i| planned[i].effect_ns.is_some()).collect();
    order.sort_by_key(|&i| (planned[i].effect_ns, i));
    let mut registers: HashMap<Vec<u8>, Option<Value>> = HashMap::new();
    for i in order {
        let e = &mut planned[i].event;
        let current = registers.entry(e.key.clone()).or_default();
        let ret = apply(&e.op, current);
        if let Outcome::Ok(_) = e.outcome {
            e.outcome = Outcome::Ok(ret);
        }
    }
    planned.into_iter().map(|p| p.event).collect()
}

fn apply(op: &Op, current: &mut Option<Value>) -> Ret {
    match op {
        Op::Get => Ret::Get(current.clone()),
        Op::Put(v) => {
            *current = Some(v.clone());
            Ret::Put
        }
        Op::Delete => {
            *current = None;
            Ret::Delete
        }
        Op::Cas { expect, new } => {
            let prev = current.clone();
            let swapped = prev == *expect;
            if swapped {
                *current = Some(new.clone());
            }
            Ret::Cas { prev, swapped }
        }
    }
}

/// Ops in invoke order: each client runs one op at a time; the client free first goes next.
fn plan(shape: &Shape, rng: &mut XorShift) -> Vec<Planned> {
    let mut free_at = vec![0u64; shape.clients as usize];
    let mut written: Vec<Value> = Vec::new();
    let mut out = Vec::with_capacity(shape.ops);
    for n in 0..shape.ops {
        let client = (0..shape.clients).min_by_key(|&c| (free_at[c as usize], c)).expect("clients");
        let invoke_ns = free_at[client as usize] + rng.below(50);
        let duration_ns = 1 + rng.below(400);
        let complete_ns = invoke_ns + duration_ns;
        free_at[client as usize] = complete_ns + 1 + rng.below(20);
        let op = random_op(rng, n, &mut written);
        let key = format!("k{}", rng.below(shape.keys)).into_bytes();
        let mut effect_ns = Some(invoke_ns + rng.below(duration_ns + 1));
        let outcome = if rng.chance(shape.unknown_per_mille) {
            // A timed-out write lands late (after the client gave up) or never.
            let within_ns = match shape.unknown_lands_within_ns {
                0 => 4 * duration_ns,
                ns => ns,
            };
            effect_ns = rng.chance(500).then(|| invoke_ns + rng.below(within_ns + 1));
            Outcome::Unknown
        } else if rng.chance(shape.fail_per_mille) {
            effect_ns = None;
            Outcome::Fail
        } else {
            Outcome::Ok(Ret::Put) // replaced by the real answer when applied
        };
        out.push(Planned {
            event: Event { client, key, op, invoke_ns, complete_ns, outcome },
            effect_ns,
        });
    }
    out
}

/// 40% get, 25% put, 10% delete, 25% CAS expecting a recent value (or absent).
fn random_op(rng: &mut XorShift, n: usize, written: &mut Vec<Value>) -> Op {
    let value = format!("v{n}").into_bytes();
    match rng.below(100) {
        0..=39 => Op::Get,
        40..=64 => {
            written.push(value.clone());
            Op::Put(value)
        }
        65..=74 => Op::Delete,
        _ => {
            let recent = written.len().saturating_sub(1 + rng.below(3) as usize);
            let expect = if rng.chance(100) { None } else { written.get(recent).cloned() };
            written.push(value.clone());
            Op::Cas { expect, new: value }
        }
    }
}

fn shape(seed: u64, ops: usize) -> Shape {
    Shape {
        seed,
        ops,
        clients: 10,
        keys: 1,
        unknown_per_mille: 20,
        fail_per_mille: 20,
        unknown_lands_within_ns: 0,
    }
}

#[test]
fn random_linearizable_history_is_linearizable() {
    for seed in [1, 2, 3] {
        let history = linearizable_history(&shape(seed, 5_000));
        let started = Instant::now();
        let report = check_default(&history);
        assert!(report.is_linearizable(), "seed {seed}:\n{report}");
        let k = single(&report);
        assert!(k.unknown_ops > 50, "seed {seed}: {} unknown", k.unknown_ops);
        eprintln!("seed {seed}: {} ops, {} states, {:?}", k.ops, k.states, started.elapsed());
    }
}

#[test]
fn random_multi_key_history_is_linearizable() {
    let shape = Shape { keys: 5, ..shape(7, 4_000) };
    let history = linearizable_history(&shape);
    let report = check(&history, &Options { threads: 3, ..Options::default() });
    assert_eq!(report.keys.len(), 5);
    assert!(report.is_linearizable(), "{report}");
    let serial = check(&history, &Options { threads: 1, ..Options::default() });
    assert_eq!(report, serial, "the report does not depend on the thread count");
}

#[test]
fn random_history_with_a_corrupted_read_is_not_linearizable() {
    for seed in [4, 5, 6] {
        let mut history = linearizable_history(&shape(seed, 5_000));
        let victim = corrupt_a_read(&mut history);
        let started = Instant::now();
        let report = check_default(&history);
        let k = single(&report);
        eprintln!("seed {seed}: {} ops, {} states, {:?}", k.ops, k.states, started.elapsed());
        let Verdict::NotLinearizable { window, stuck_op, .. } = &k.verdict else {
            panic!("seed {seed}: expected not linearizable:\n{report}");
        };
        assert_eq!(*stuck_op, history[victim].to_string(), "seed {seed}");
        let lines_max = crate::window::WINDOW_EVENTS_MAX + crate::window::PENDING_MAX + 2;
        assert!(window.len() <= lines_max, "seed {seed}: {} lines", window.len());
        assert!(window.iter().any(|l| l.contains("never-written")), "seed {seed}: {window:#?}");
    }
}

/// The performance target: 20,000 ops, 10 clients, ~100 unknown, decided within a state
/// budget that keeps it well under a second in release (a state count, not a timing, so
/// the test is deterministic).
#[test]
fn twenty_thousand_ops_check_within_a_small_state_budget() {
    let shape = Shape { unknown_per_mille: 5, ..shape(11, 20_000) };
    let history = linearizable_history(&shape);
    let started = Instant::now();
    let report = check_default(&history);
    let elapsed = started.elapsed();
    let k = single(&report);
    eprintln!("{} ops, {} unknown, {} states, {elapsed:?}", k.ops, k.unknown_ops, k.states);
    assert!(report.is_linearizable(), "{report}");
    assert!(k.states < 500_000, "{} states", k.states);
}

/// Corrupts the middle acknowledged read to a value never written; returns its index.
fn corrupt_a_read(history: &mut [Event]) -> usize {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].outcome, Outcome::Ok(Ret::Get(_))))
        .collect();
    let victim = reads[reads.len() / 2];
    history[victim].outcome = Outcome::Ok(Ret::Get(Some(val("never-written"))));
    victim
}

/// Timed-out writes that land long after the client gave up (up to ~400 ops later) stay in
/// flight for long: the lazy-placement rule keeps them from multiplying the states.
#[test]
fn late_landing_unknown_writes_stay_within_a_state_budget() {
    for late_ns in [10_000, 100_000] {
        let shape =
            Shape { unknown_per_mille: 5, unknown_lands_within_ns: late_ns, ..shape(12, 20_000) };
        let mut history = linearizable_history(&shape);
        let started = Instant::now();
        let report = check_default(&history);
        let k = single(&report);
        eprintln!(
            "late {late_ns}: {} unknown, {} states, {:?}",
            k.unknown_ops,
            k.states,
            started.elapsed()
        );
        assert!(report.is_linearizable(), "{report}");
        assert!(k.states < 500_000, "late {late_ns}: {} states", k.states);
        corrupt_a_read(&mut history);
        let started = Instant::now();
        let report = check_default(&history);
        let k = single(&report);
        eprintln!("late {late_ns} corrupted: {} states, {:?}", k.states, started.elapsed());
        assert!(k.verdict.is_anomaly(), "{report}");
        assert!(k.states < 3_000_000, "late {late_ns} corrupted: {} states", k.states);
    }
}
