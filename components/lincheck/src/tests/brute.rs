//! The checker against a brute-force oracle on many small random histories (any verdict),
//! so every pruning rule (removal of unobserved writes, twins, no-ops, forced reads, memo)
//! is tested for agreeing with the definition.

use super::random::XorShift;
use super::*;

/// The definition, by exhaustive search: place, one at a time, any op that no unplaced
/// acknowledged op precedes in real time, applying the register; unknown ops may be skipped
/// forever; succeed when every acknowledged op is placed with the answer it got.
fn oracle(history: &[Event], initial: Option<Value>) -> bool {
    let ops: Vec<&Event> = history
        .iter()
        .filter(|e| match &e.outcome {
            Outcome::Ok(_) => true,
            Outcome::Fail => false,
            Outcome::Unknown => !matches!(e.op, Op::Get),
        })
        .collect();
    let mut placed = vec![false; ops.len()];
    place(&ops, &mut placed, initial)
}

fn place(ops: &[&Event], placed: &mut [bool], value: Option<Value>) -> bool {
    let pending_known =
        |i: usize, placed: &[bool]| !placed[i] && matches!(ops[i].outcome, Outcome::Ok(_));
    if (0..ops.len()).all(|i| !pending_known(i, placed)) {
        return true;
    }
    for i in 0..ops.len() {
        let blocked = (0..ops.len())
            .any(|j| pending_known(j, placed) && ops[j].complete_ns < ops[i].invoke_ns);
        if placed[i] || blocked {
            continue;
        }
        let mut next = value.clone();
        let ret = apply_op(&ops[i].op, &mut next);
        let fits = match &ops[i].outcome {
            Outcome::Ok(r) => *r == ret,
            Outcome::Unknown => true,
            Outcome::Fail => unreachable!("failed ops are filtered out"),
        };
        if fits {
            placed[i] = true;
            let found = place(ops, placed, next);
            placed[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

fn apply_op(op: &Op, value: &mut Option<Value>) -> Ret {
    match op {
        Op::Get => Ret::Get(value.clone()),
        Op::Put(v) => {
            *value = Some(v.clone());
            Ret::Put
        }
        Op::Delete => {
            *value = None;
            Ret::Delete
        }
        Op::Cas { expect, new } => {
            let prev = value.clone();
            let swapped = prev == *expect;
            if swapped {
                *value = Some(new.clone());
            }
            Ret::Cas { prev, swapped }
        }
    }
}

fn small_value(rng: &mut XorShift) -> Option<Value> {
    match rng.below(4) {
        0 => None,
        n => Some(vec![b'a' + n as u8 - 1]),
    }
}

/// A random small history over values {absent, a, b, c}; answers are random but consistent
/// with their op (a CAS answer has `swapped == (prev == expect)`).
fn small_history(rng: &mut XorShift, ops: usize) -> Vec<Event> {
    (0..ops)
        .map(|i| {
            let invoke_ns = rng.below(12);
            let complete_ns = invoke_ns + rng.below(6);
            let (op, ret) = match rng.below(4) {
                0 => (Op::Get, Ret::Get(small_value(rng))),
                1 => (Op::Put(small_value(rng).unwrap_or_else(|| b"a".to_vec())), Ret::Put),
                2 => (Op::Delete, Ret::Delete),
                _ => {
                    let expect = small_value(rng);
                    let new = small_value(rng).unwrap_or_else(|| b"b".to_vec());
                    let prev = if rng.chance(400) { expect.clone() } else { small_value(rng) };
                    let swapped = prev == expect;
                    (Op::Cas { expect, new }, Ret::Cas { prev, swapped })
                }
            };
            let outcome = match rng.below(10) {
                0..=5 => Outcome::Ok(ret),
                6..=8 => Outcome::Unknown,
                _ => Outcome::Fail,
            };
            Event { client: i as u64, key: b"k".to_vec(), op, invoke_ns, complete_ns, outcome }
        })
        .collect()
}

/// A small history simulated on a register (so mostly linearizable, with values repeating),
/// then with probability 1/2 one acknowledged answer replaced by a random one.
fn small_simulated_history(rng: &mut XorShift, ops: usize, initial: Option<Value>) -> Vec<Event> {
    let mut history = small_history(rng, ops);
    let mut effects: Vec<(u64, usize)> = Vec::new();
    for (i, e) in history.iter().enumerate() {
        let span = e.complete_ns - e.invoke_ns;
        let effect = match e.outcome {
            Outcome::Ok(_) => Some(e.invoke_ns + rng.below(span + 1)),
            Outcome::Unknown => rng.chance(500).then(|| e.invoke_ns + rng.below(3 * span + 2)),
            Outcome::Fail => None,
        };
        effects.extend(effect.map(|t| (t, i)));
    }
    effects.sort_unstable();
    let mut value = initial;
    for (_, i) in effects {
        let ret = apply_op(&history[i].op, &mut value);
        if let Outcome::Ok(_) = history[i].outcome {
            history[i].outcome = Outcome::Ok(ret);
        }
    }
    if rng.chance(500) {
        let victim = rng.below(history.len() as u64) as usize;
        let other = small_history(rng, 1).remove(0);
        if let (Outcome::Ok(_), Outcome::Ok(_)) = (&history[victim].outcome, &other.outcome) {
            history[victim].op = other.op;
            history[victim].outcome = other.outcome;
        }
    }
    history
}

#[test]
fn small_histories_agree_with_brute_force() {
    const ROUNDS: usize = 10_000;
    const OPS_MAX: usize = 9;
    let mut rng = XorShift(0x5eed_0000_0000_0001);
    let (mut yes, mut no) = (0, 0);
    for round in 0..ROUNDS {
        let initial = if round % 5 == 0 { Some(b"a".to_vec()) } else { None };
        let history = if round % 2 == 0 {
            small_history(&mut rng, 1 + (round / 2 % OPS_MAX))
        } else {
            small_simulated_history(&mut rng, 1 + (round / 2 % OPS_MAX), initial.clone())
        };
        let expected = oracle(&history, initial.clone());
        let opts = Options { initial, ..Options::default() };
        let report = check(&history, &opts);
        let printed: Vec<String> = history.iter().map(|e| e.to_string()).collect();
        assert_eq!(report.is_linearizable(), expected, "round {round}: {printed:#?}\n{report}");
        assert!(report.undecided().is_empty(), "round {round}");
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    eprintln!("{yes} linearizable, {no} not");
    assert!(yes > 1_000 && no > 1_000, "a mix of verdicts: {yes} linearizable, {no} not");
}
