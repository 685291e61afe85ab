//! The register of one key: values interned to dense ids, ops compiled to [`Step`]s, and the
//! transition function the search calls millions of times.
//!
//! Invariants:
//! 1. Id [`ABSENT`] (0) is "no value"; every other id names exactly one byte string, and equal
//!    byte strings get equal ids (so comparing ids is comparing values).
//! 2. A [`Step`] carries only what constrains the register: an unknown write has no answer,
//!    an unknown get does not exist (it is dropped before compiling).
//! 3. [`Step::apply`] is the whole register semantics: Get reads, Put sets, Delete clears, Cas
//!    sets iff current == expect, and a known answer must equal what the register returns.

use std::collections::HashMap;

use crate::{Op, Ret, Value};

/// A value's dense id within one key's history.
pub(crate) type ValueId = u32;

/// The id of "no value".
pub(crate) const ABSENT: ValueId = 0;

/// Byte strings of one key's history, numbered densely from 1.
pub(crate) struct Interner {
    ids: HashMap<Value, ValueId>,
    /// `values[id - 1]` is the bytes of `id`.
    values: Vec<Value>,
}

impl Interner {
    pub(crate) fn new() -> Interner {
        Interner { ids: HashMap::new(), values: Vec::new() }
    }

    pub(crate) fn id(&mut self, v: Option<&Value>) -> ValueId {
        let Some(v) = v else { return ABSENT };
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        self.values.push(v.clone());
        let id =
            ValueId::try_from(self.values.len()).expect("lincheck: fewer than 2^32 values per key");
        self.ids.insert(v.clone(), id);
        id
    }

    /// The bytes of `id`, `None` for [`ABSENT`].
    pub(crate) fn value(&self, id: ValueId) -> Option<&[u8]> {
        if id == ABSENT {
            return None;
        }
        Some(&self.values[id as usize - 1])
    }

    /// Ids in use, [`ABSENT`] included: every id is `< len()`.
    pub(crate) fn len(&self) -> usize {
        self.values.len() + 1
    }
}

/// What a successful CAS answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CasAnswer {
    pub prev: ValueId,
    pub swapped: bool,
}

/// One op as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// A successful get that saw `saw`.
    Get { saw: ValueId },
    /// A put, acknowledged or unknown (blind: any state accepts it).
    Put { new: ValueId },
    /// A delete, acknowledged or unknown.
    Delete,
    /// A CAS; `answer` is `None` when its outcome is unknown.
    Cas { expect: ValueId, new: ValueId, answer: Option<CasAnswer> },
}

/// Why an acknowledged answer can come from no register at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impossible {
    /// The answer is for another kind of op (e.g. `Ret::Put` for `Op::Get`).
    WrongKind,
    /// `swapped == true` but `prev != expect`.
    SwappedWithOtherPrev,
    /// `swapped == false` but `prev == expect`.
    NotSwappedWithExpectedPrev,
}

impl Impossible {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Impossible::WrongKind => "the answer is for another kind of operation",
            Impossible::SwappedWithOtherPrev => {
                "the CAS says it swapped, but prev differs from expect"
            }
            Impossible::NotSwappedWithExpectedPrev => {
                "the CAS says it did not swap, but prev equals expect"
            }
        }
    }
}

impl Step {
    /// The state after this step from `state`, or `None` if its known answer cannot be
    /// given from `state`.
    #[inline]
    pub(crate) fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Step::Get { saw } => (saw == state).then_some(state),
            Step::Put { new } => Some(new),
            Step::Delete => Some(ABSENT),
            Step::Cas { expect, new, answer } => {
                let swapped = state == expect;
                let next = if swapped { new } else { state };
                match answer {
                    None => Some(next),
                    Some(a) => (a.prev == state && a.swapped == swapped).then_some(next),
                }
            }
        }
    }

    /// True if this step never changes the value wherever it fits: a get, or a CAS answered
    /// "not swapped".
    pub(crate) fn is_read_only(self) -> bool {
        match self {
            Step::Get { .. } => true,
            Step::Cas { answer, .. } => answer.is_some_and(|a| !a.swapped),
            Step::Put { .. } | Step::Delete => false,
        }
    }

    /// True if this step's outcome depends on the value it meets (a get, a CAS), false for a
    /// blind write.
    pub(crate) fn reads(self) -> bool {
        match self {
            Step::Get { .. } | Step::Cas { .. } => true,
            Step::Put { .. } | Step::Delete => false,
        }
    }

    /// The value this step may write, if any (a put's value, a CAS's `new`).
    pub(crate) fn written(self) -> Option<ValueId> {
        match self {
            Step::Put { new } | Step::Cas { new, .. } => Some(new),
            Step::Get { .. } | Step::Delete => None,
        }
    }
}

/// Compiles an unknown-outcome op; `None` for a get (it has no effect, so it is dropped).
pub(crate) fn compile_unknown(op: &Op, values: &mut Interner) -> Option<Step> {
    match op {
        Op::Get => None,
        Op::Put(v) => Some(Step::Put { new: values.id(Some(v)) }),
        Op::Delete => Some(Step::Delete),
        Op::Cas { expect, new } => Some(Step::Cas {
            expect: values.id(expect.as_ref()),
            new: values.id(Some(new)),
            answer: None,
        }),
    }
}

/// Compiles an acknowledged op, or says why no register could have answered `ret` to `op`.
pub(crate) fn compile_ok(op: &Op, ret: &Ret, values: &mut Interner) -> Result<Step, Impossible> {
    match (op, ret) {
        (Op::Get, Ret::Get(saw)) => Ok(Step::Get { saw: values.id(saw.as_ref()) }),
        (Op::Put(v), Ret::Put) => Ok(Step::Put { new: values.id(Some(v)) }),
        (Op::Delete, Ret::Delete) => Ok(Step::Delete),
        (Op::Cas { expect, new }, Ret::Cas { prev, swapped }) => {
            match (*swapped, prev == expect) {
                (true, false) => return Err(Impossible::SwappedWithOtherPrev),
                (false, true) => return Err(Impossible::NotSwappedWithExpectedPrev),
                (true, true) | (false, false) => {}
            }
            Ok(Step::Cas {
                expect: values.id(expect.as_ref()),
                new: values.id(Some(new)),
                answer: Some(CasAnswer { prev: values.id(prev.as_ref()), swapped: *swapped }),
            })
        }
        (
            Op::Get | Op::Put(_) | Op::Delete | Op::Cas { .. },
            Ret::Get(_) | Ret::Put | Ret::Delete | Ret::Cas { .. },
        ) => Err(Impossible::WrongKind),
    }
}
