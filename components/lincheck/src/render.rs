//! How events, values and reports print.
//!
//! Invariants:
//! 1. An event is exactly one line: `c3 put k1=v17 [1.204113s..1.210020s] ok`.
//! 2. A key or value prints as UTF-8 when it is non-empty, valid and has no control or
//!    whitespace characters; otherwise as `0x` hex. Either way at most [`BYTES_SHOWN_MAX`]
//!    bytes, then its length, so a line stays short whatever the data.
//! 3. Times are seconds with microsecond precision on the recorder's clock.

use std::fmt;

use crate::{Event, KeyReport, Op, Outcome, Report, Ret, Verdict};

/// Bytes of a key or value printed before it is cut.
pub(crate) const BYTES_SHOWN_MAX: usize = 48;

/// A value, `(absent)` for `None`.
pub(crate) fn value(v: Option<&[u8]>) -> String {
    match v {
        None => "(absent)".to_string(),
        Some(b) => bytes(b),
    }
}

/// A key or value: printable UTF-8 as is, anything else in hex; long ones cut.
pub(crate) fn bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "\"\"".to_string();
    }
    let mut out = match std::str::from_utf8(b) {
        Ok(text) if text.chars().all(|c| !c.is_control() && !c.is_whitespace()) => {
            let mut end = text.len().min(BYTES_SHOWN_MAX);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        }
        Ok(_) | Err(_) => {
            let mut hex = String::from("0x");
            for byte in &b[..b.len().min(BYTES_SHOWN_MAX)] {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    };
    if b.len() > BYTES_SHOWN_MAX {
        out.push_str(&format!("...({} bytes)", b.len()));
    }
    out
}

fn seconds(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, ns % 1_000_000_000 / 1_000)
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = bytes(&self.key);
        write!(f, "c{} ", self.client)?;
        match &self.op {
            Op::Get => write!(f, "get {key}")?,
            Op::Put(v) => write!(f, "put {key}={}", bytes(v))?,
            Op::Delete => write!(f, "delete {key}")?,
            Op::Cas { expect, new } => {
                write!(f, "cas {key} {}->{}", value(expect.as_deref()), bytes(new))?
            }
        }
        write!(f, " [{}..{}] ", seconds(self.invoke_ns), seconds(self.complete_ns))?;
        match &self.outcome {
            Outcome::Ok(Ret::Get(v)) => write!(f, "ok {}", value(v.as_deref())),
            Outcome::Ok(Ret::Put | Ret::Delete) => write!(f, "ok"),
            Outcome::Ok(Ret::Cas { prev, swapped }) => {
                let swapped = if *swapped { "swapped" } else { "not-swapped" };
                write!(f, "ok prev={} {swapped}", value(prev.as_deref()))
            }
            Outcome::Fail => write!(f, "fail"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

impl fmt::Display for KeyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = bytes(&self.key);
        let size =
            format!("{} ops, {} unknown, {} states", self.ops, self.unknown_ops, self.states);
        match &self.verdict {
            Verdict::Linearizable => write!(f, "key {key}: linearizable ({size})"),
            Verdict::Undecided => {
                write!(f, "key {key}: UNDECIDED: search budget exhausted ({size})")
            }
            Verdict::NotLinearizable { window, state_before, stuck_op } => {
                writeln!(f, "key {key}: NOT LINEARIZABLE ({size})")?;
                writeln!(f, "  cannot place: {stuck_op}")?;
                writeln!(f, "  value at the window's start: {state_before}")?;
                write!(f, "  window:")?;
                for line in window {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: usize = self.keys.iter().map(|k| k.ops).sum();
        let unknown: usize = self.keys.iter().map(|k| k.unknown_ops).sum();
        let bad = self.anomalies().len();
        let undecided = self.undecided().len();
        write!(
            f,
            "linearizability: {} keys, {ops} ops ({unknown} unknown): {} linearizable, \
             {bad} not linearizable, {undecided} undecided",
            self.keys.len(),
            self.keys.len() - bad - undecided,
        )?;
        for k in self.keys.iter().filter(|k| !k.verdict.is_linearizable()) {
            write!(f, "\n{k}")?;
        }
        Ok(())
    }
}
