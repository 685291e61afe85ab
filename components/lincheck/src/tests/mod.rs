//! Unit tests: hand-made histories with their verdicts (`hand`), output format (`format`),
//! randomized register histories (`random`) and a brute-force oracle (`brute`). Helpers here build events on key `k` with
//! times in nanoseconds.

mod brute;
mod format;
mod hand;
mod random;

use crate::{check, Event, KeyReport, Op, Options, Outcome, Report, Ret, Value, Verdict};

fn val(s: &str) -> Value {
    s.as_bytes().to_vec()
}

fn opt(s: Option<&str>) -> Option<Value> {
    s.map(val)
}

fn event(client: u64, op: Op, invoke_ns: u64, complete_ns: u64, outcome: Outcome) -> Event {
    Event { client, key: b"k".to_vec(), op, invoke_ns, complete_ns, outcome }
}

fn put(client: u64, invoke_ns: u64, complete_ns: u64, v: &str) -> Event {
    event(client, Op::Put(val(v)), invoke_ns, complete_ns, Outcome::Ok(Ret::Put))
}

fn get(client: u64, invoke_ns: u64, complete_ns: u64, saw: Option<&str>) -> Event {
    event(client, Op::Get, invoke_ns, complete_ns, Outcome::Ok(Ret::Get(opt(saw))))
}

fn delete(client: u64, invoke_ns: u64, complete_ns: u64) -> Event {
    event(client, Op::Delete, invoke_ns, complete_ns, Outcome::Ok(Ret::Delete))
}

/// An acknowledged CAS `expect -> new` that answered (`prev`, `swapped`).
#[allow(clippy::too_many_arguments)]
fn cas(
    client: u64,
    invoke_ns: u64,
    complete_ns: u64,
    expect: Option<&str>,
    new: &str,
    prev: Option<&str>,
    swapped: bool,
) -> Event {
    let op = Op::Cas { expect: opt(expect), new: val(new) };
    event(client, op, invoke_ns, complete_ns, Outcome::Ok(Ret::Cas { prev: opt(prev), swapped }))
}

fn unknown(mut e: Event) -> Event {
    e.outcome = Outcome::Unknown;
    e
}

fn failed(mut e: Event) -> Event {
    e.outcome = Outcome::Fail;
    e
}

fn on_key(mut e: Event, key: &str) -> Event {
    e.key = val(key);
    e
}

fn check_default(history: &[Event]) -> Report {
    check(history, &Options::default())
}

/// The verdict of a single-key history.
fn verdict(history: &[Event]) -> Verdict {
    single(&check_default(history)).verdict.clone()
}

fn single(report: &Report) -> &KeyReport {
    assert_eq!(report.keys.len(), 1, "one key expected: {report}");
    &report.keys[0]
}

fn assert_linearizable(history: &[Event]) {
    let report = check_default(history);
    assert!(report.is_linearizable(), "expected linearizable:\n{report}");
}

/// Asserts no linearization exists and returns the window's pieces for more checks.
fn assert_not_linearizable(history: &[Event]) -> (Vec<String>, String, String) {
    match verdict(history) {
        Verdict::NotLinearizable { window, state_before, stuck_op } => {
            (window, state_before, stuck_op)
        }
        other @ (Verdict::Linearizable | Verdict::Undecided) => {
            panic!("expected not linearizable, got {other:?}")
        }
    }
}
