//! One key's events turned into the ops the search must place.
//!
//! Owns the removal rules; each keeps a history linearizable iff it was:
//! 1. A `Fail` event never took effect: removed.
//! 2. An `Unknown` get has no effect and nobody saw its answer: removed.
//! 3. An acknowledged answer that no register can give (wrong kind, inconsistent CAS) fails
//!    the key at once, see [`Invalid`].
//! 4. An unknown write of a value nobody observed is removed, see [`drop_unobserved_writes`].
//!
//! Invariant: every [`PreparedOp`] refers to its event by index into the key's event slice, so
//! reports can always print the client's own view of the op.

use crate::model::{self, Impossible, Interner, Step, ValueId};
use crate::{Event, Outcome, Value};

/// One key's ops ready for the search.
pub(crate) struct Prepared {
    pub values: Interner,
    /// The register's value before the history.
    pub initial: ValueId,
    /// The ops to place, in event order.
    pub ops: Vec<PreparedOp>,
}

/// One op to place.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreparedOp {
    /// Index into the key's events.
    pub event: usize,
    pub step: Step,
    /// True for an acknowledged op (it MUST be placed before its return); false for an
    /// unknown write (it MAY be placed anywhere after its invoke, or nowhere).
    pub known: bool,
    pub invoke_ns: u64,
    pub complete_ns: u64,
}

/// An acknowledged answer no register can give.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Invalid {
    /// Index into the key's events.
    pub event: usize,
    pub why: Impossible,
}

/// Compiles one key's events (rules 1–4 above). On several invalid answers, reports the one
/// invoked first.
pub(crate) fn prepare(events: &[&Event], initial: Option<&Value>) -> Result<Prepared, Invalid> {
    let mut values = Interner::new();
    let initial = values.id(initial);
    let mut ops = Vec::with_capacity(events.len());
    let mut invalid: Option<Invalid> = None;
    for (i, e) in events.iter().enumerate() {
        let (step, known) = match &e.outcome {
            Outcome::Fail => continue,
            Outcome::Unknown => match model::compile_unknown(&e.op, &mut values) {
                Some(step) => (step, false),
                None => continue,
            },
            Outcome::Ok(ret) => match model::compile_ok(&e.op, ret, &mut values) {
                Ok(step) => (step, true),
                Err(why) => {
                    let earlier = invalid.is_some_and(|v| events[v.event].invoke_ns <= e.invoke_ns);
                    if !earlier {
                        invalid = Some(Invalid { event: i, why });
                    }
                    continue;
                }
            },
        };
        ops.push(PreparedOp {
            event: i,
            step,
            known,
            invoke_ns: e.invoke_ns,
            complete_ns: e.complete_ns,
        });
    }
    if let Some(invalid) = invalid {
        return Err(invalid);
    }
    drop_unobserved_writes(&mut ops, initial, values.len());
    Ok(Prepared { values, initial, ops })
}

/// Removes every unknown Put or Cas of a value `v` that no op can have observed after its
/// invoke, and that nothing else writes (no other op, not the initial value). An op observes
/// `v` if it is an acknowledged get that returned `v`, an acknowledged CAS that answered
/// `prev = v`, or an unknown CAS that expects `v`; an observation only counts if the op does
/// not precede the write in real time (an unknown CAS never completes, so it always counts).
///
/// Why this keeps the verdict. Removing an unknown op can only lose linearizations, so take a
/// linearization L that places such a write W and build one without it:
/// 1. Right after W the register holds `v`. Until the next blind write (Put, Delete) no
///    acknowledged op can be placed: a get would return `v`, a CAS would answer `prev = v`
///    (whatever it expects), and such an op, placed after W, does not precede W.
/// 2. So between W and the next blind write (or the end) there are only unknown CASes, and
///    they do not swap (none expects `v`): they are no-ops.
/// 3. Remove W and those no-op CASes from L. Every other op sees the same value as before
///    (the blind write does not read), real-time order is a sub-order of L's, and unknown ops
///    need not be placed. So L without them is a linearization too.
///
/// A CAS W that did not swap was a no-op and removing it is trivial. An acknowledged CAS that
/// expected `v` but answered another `prev` is no observation: it was placed where the value
/// was not `v`. The rule only needs the observation condition; uniqueness is kept as a
/// margin. Several writes are removed at once by applying the argument once per write (the
/// observations do not change). This keeps histories with many timeouts tractable: an unknown
/// write left in stays in flight until the end, and every subset of those still "in limbo"
/// (placed or not) is a distinct search state.
fn drop_unobserved_writes(ops: &mut Vec<PreparedOp>, initial: ValueId, values: usize) {
    // 1. The latest completion of an op observing each value, and each value's writers.
    let mut observed_until_ns: Vec<Option<u64>> = vec![None; values];
    let mut writers = vec![0u32; values];
    writers[initial as usize] += 1;
    for op in ops.iter() {
        let observation = match op.step {
            Step::Get { saw } => Some((saw, op.complete_ns)),
            Step::Cas { answer: Some(a), .. } => Some((a.prev, op.complete_ns)),
            Step::Cas { expect, answer: None, .. } => Some((expect, u64::MAX)),
            Step::Put { .. } | Step::Delete => None,
        };
        if let Some((v, until_ns)) = observation {
            let slot = &mut observed_until_ns[v as usize];
            *slot = Some(slot.map_or(until_ns, |t| t.max(until_ns)));
        }
        if let Some(v) = op.step.written() {
            writers[v as usize] = writers[v as usize].saturating_add(1);
        }
    }
    // 2. Drop the unknown writes nobody can have seen.
    ops.retain(|op| {
        let removable = match op.step {
            Step::Put { new } | Step::Cas { new, .. } => {
                let unseen = observed_until_ns[new as usize].is_none_or(|t| t < op.invoke_ns);
                !op.known && unseen && writers[new as usize] == 1
            }
            Step::Get { .. } | Step::Delete => false,
        };
        !removable
    });
}
