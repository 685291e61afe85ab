//! The Wing & Gong search with Lowe's memoization (as in Porcupine) over one key's ops.
//!
//! Shape: every op has a call entry and, if acknowledged ("known"), a return entry. Entries
//! are sorted by time; at equal times calls come before returns, so ops whose intervals touch
//! (`A.complete_ns == B.invoke_ns`) are concurrent and op A precedes op B iff
//! `A.complete_ns < B.invoke_ns` — the conservative reading: it never invents an order the
//! clock did not prove. Known calls and returns live in one doubly linked list, unknown
//! calls in a second one (an unknown write has no return: it may take effect any time after
//! its invoke, or never).
//!
//! One round: the candidates are the calls before the first remaining return `R`. Try known
//! candidates in list order, then unknown ones invoked before `R`; placing an op ("lift")
//! applies it to the register, pushes (op, previous value) and restarts from the list head.
//! When no candidate fits, `R`'s op cannot be placed: pop the last placed op ("unlift") and
//! try the candidates after it. The search succeeds when no return remains (every known op is
//! placed; unknown ops may stay unplaced) and fails when it must pop from an empty stack.
//!
//! Invariants:
//! 1. Lifts and unlifts are strictly LIFO (the stack), which is what makes the list's
//!    dancing-links unlink/relink exact.
//! 2. The memo table holds one entry per (placed set, value) ever reached; a state already in
//!    it is never explored again (Lowe). It never holds more than `max_states` entries:
//!    beyond that the key is undecided, so memory is bounded by the budget.
//! 3. The placed set is a bitset plus a 128-bit Zobrist hash (XOR of per-op random words,
//!    deterministic seeds); the memo key is that hash XOR a random word per value. Two
//!    different states share a key with probability 2^-128, so the chance that any pair among
//!    the ≤ 5M states of a default budget collides is below 2^-84. A collision can only make
//!    the search skip a state it wrongly believes explored: it can turn "linearizable" into
//!    "not linearizable", never hide an anomaly. At these odds a false report is far less
//!    likely than a hardware fault.
//!
//! Pruning rules. Each depends only on the state (placed set, value), so all are compatible
//! with the memo:
//! 4. No-op unknowns: an unknown op that would not change the value is not placed. Any
//!    completion from the state after it is a completion from the state before it.
//! 5. Twins: of unknown ops with identical steps, the one invoked later is placed only after
//!    the earlier one. Both are candidates with no deadline and the same effect, so a
//!    completion placing the later one now maps to one placing the earlier one now and the
//!    later one where the earlier one was (or nowhere). Without this, k timed-out deletes
//!    would multiply the states by 2^k instead of k + 1.
//! 6. Forced reads (a partial-order reduction): a known op that never changes the value (a
//!    get, a CAS answered "not swapped") and fits the current value is placed before anything
//!    else, and if that fails the state fails: no other candidate is tried. Proof: a
//!    completion σ from this state places the read R later; move R to the front. R sees the
//!    current value, and removing R from its old place changes no value. Real time still
//!    holds: R is a candidate, so every op that must precede R returned before the first
//!    remaining return, i.e. is already placed. So reads never multiply the states, only the
//!    orders of writes do: this is what makes refuting a busy history affordable.
//! 7. Lazy unknown writes: an unknown op that makes the value v is placed only if some
//!    candidate would read v right after it: a known op answering v (a get, a CAS's prev),
//!    or an unknown CAS that would swap out of v. Proof: take a shortest completion σ that
//!    starts with the unknown op U. If U were last, or followed by a blind write, σ without U
//!    would be a shorter completion (a blind write ignores what U wrote); so the op after U
//!    reads v, and it is a candidate now, since placing U removes no return. An unknown write
//!    thus waits, unplaced, until a reader needs it, instead of doubling the states ("placed
//!    or not") for as long as it is in flight.
//! 8. Completeness: if a state has a completion, the search finds one from it. If rule 6
//!    applies, the forced read's state has a completion. Otherwise take a shortest
//!    completion: its first op is a known op (always tried) or an unknown op which, swapped
//!    with its earliest unplaced twin, passes rules 4 (a no-op is never in a shortest
//!    completion), 5 and 7. By induction on the ops left, a state the search explored and
//!    left has no completion, which is exactly what the memo assumes.
//! 9. Time: every loop iteration places an op (a new memo entry), pops one (at most one pop
//!    per placement) or skips a candidate, and a state has at most (known width + unknown
//!    ops) candidates, so a search costs O(max_states × candidates²) at worst.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::history::Prepared;
use crate::model::{Step, ValueId};

/// "No node" in links and the end of a list.
const NIL: u32 = u32::MAX;
/// Head sentinel of the list of known calls and returns.
const MAIN: u32 = 0;
/// Head sentinel of the list of unknown calls.
const UNKNOWN: u32 = 1;
/// Values remembered per quiescent cut for the failure window; more are counted, not kept.
const CUT_STATES_MAX: usize = 8;

/// How the search ended.
pub(crate) enum Conclusion {
    Linearizable { states: usize },
    Undecided { states: usize },
    Stuck { states: usize, failure: Failure },
}

/// Where a failed search got furthest, for the window.
pub(crate) struct Failure {
    /// Index into `Prepared::ops` of the op whose return no placement could reach: the
    /// furthest return (in time order) at which the search had to backtrack.
    pub stuck_op: usize,
    /// The quiescent cuts at or before the stuck op's invoke, earliest first.
    pub cuts: Vec<Cut>,
}

/// A point just before a known op's invoke at which no known op was in flight, with the
/// values the search reached there.
pub(crate) struct Cut {
    /// Index into `Prepared::ops` of the known op invoked right after the cut.
    pub next_op: usize,
    /// Distinct values the register could hold at the cut (at most [`CUT_STATES_MAX`]).
    pub values: Vec<ValueId>,
    /// True if there were more values than `values` holds.
    pub more_values: bool,
}

#[derive(Clone, Copy)]
struct Node {
    op: u32,
    /// Position in the time-sorted entries of all ops.
    pos: u32,
    is_return: bool,
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct Frame {
    op: u32,
    prev_value: ValueId,
    /// For an unknown op: the first remaining return when it was placed.
    bound: u32,
    /// Placed by rule 6 (a fitting read): if it fails, its parent state fails too.
    forced: bool,
}

enum Cursor {
    /// A state just reached: look for a forced read first (rule 6).
    Fresh,
    /// Scanning known calls; `NIL` is the end of the list.
    Main(u32),
    /// Scanning unknown calls invoked before the return node `bound`.
    Unknown { node: u32, bound: u32 },
}

enum Lift {
    Placed,
    Skipped,
    OverBudget,
}

/// Runs the search over `p`'s ops with at most `max_states` memo entries.
pub(crate) fn run(p: &Prepared, max_states: usize) -> Conclusion {
    let mut s = Search::new(p, max_states);
    let ended = s.explore();
    let states = s.memo.len().min(max_states);
    match ended {
        Ended::Linearized => Conclusion::Linearizable { states },
        Ended::OverBudget => Conclusion::Undecided { states },
        Ended::Stuck => Conclusion::Stuck { states, failure: s.failure() },
    }
}

enum Ended {
    Linearized,
    OverBudget,
    Stuck,
}

/// Hashes a memo key (already uniformly random) by folding it to 64 bits.
#[derive(Default)]
struct Fold(u64);

impl Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, x: u128) {
        self.0 = (x as u64) ^ ((x >> 64) as u64);
    }
}

struct Search {
    steps: Vec<Step>,
    known: Vec<bool>,
    /// The previous unknown op with an identical step, or `NIL` (rule 5).
    twin_prev: Vec<u32>,
    nodes: Vec<Node>,
    call_node: Vec<u32>,
    ret_node: Vec<u32>,
    placed: Vec<u64>,
    words: Vec<u128>,
    value_words: Vec<u128>,
    memo: HashSet<u128, BuildHasherDefault<Fold>>,
    stack: Vec<Frame>,
    hash: u128,
    value: ValueId,
    known_placed: u32,
    max_states: usize,
    cuts: CutLog,
    /// The return node furthest in time at which the search backtracked.
    furthest: u32,
}

impl Search {
    fn new(p: &Prepared, max_states: usize) -> Search {
        let n = p.ops.len();
        let order = time_order(p);
        let mut rng = SplitMix64(0x6c69_6e63_6865_636b); // "lincheck"
        let mut s = Search {
            steps: p.ops.iter().map(|o| o.step).collect(),
            known: p.ops.iter().map(|o| o.known).collect(),
            twin_prev: vec![NIL; n],
            nodes: Vec::with_capacity(order.len() + 2),
            call_node: vec![NIL; n],
            ret_node: vec![NIL; n],
            placed: vec![0; n.div_ceil(64)],
            words: (0..n).map(|_| rng.next_u128()).collect(),
            value_words: (0..p.values.len()).map(|_| rng.next_u128()).collect(),
            memo: HashSet::default(),
            stack: Vec::new(),
            hash: 0,
            value: p.initial,
            known_placed: 0,
            max_states,
            cuts: CutLog::default(),
            furthest: NIL,
        };
        s.link(&order);
        s.cuts.record(0, p.initial);
        s
    }

    /// Builds both lists, the twins and the cuts from the time-sorted entries.
    fn link(&mut self, order: &[(u32, bool)]) {
        let sentinel = Node { op: NIL, pos: NIL, is_return: false, prev: NIL, next: NIL };
        self.nodes.extend([sentinel, sentinel]);
        let mut tails = [MAIN, UNKNOWN];
        let mut twins: HashMap<Step, u32> = HashMap::new();
        let mut in_flight = 0u32;
        for (pos, &(op, is_return)) in order.iter().enumerate() {
            let known = self.known[op as usize];
            let list = usize::from(!known);
            let id = u32::try_from(self.nodes.len()).expect("lincheck: fewer than 2^32 entries");
            let pos = u32::try_from(pos).expect("lincheck: fewer than 2^32 entries");
            self.nodes.push(Node { op, pos, is_return, prev: tails[list], next: NIL });
            self.nodes[tails[list] as usize].next = id;
            tails[list] = id;
            match (known, is_return) {
                (true, true) => {
                    self.ret_node[op as usize] = id;
                    in_flight -= 1;
                }
                (true, false) => {
                    self.call_node[op as usize] = id;
                    self.cuts.known_call(op, pos, in_flight == 0);
                    in_flight += 1;
                }
                (false, _) => {
                    self.call_node[op as usize] = id;
                    let step = self.steps[op as usize];
                    self.twin_prev[op as usize] = twins.insert(step, op).unwrap_or(NIL);
                }
            }
        }
    }

    fn explore(&mut self) -> Ended {
        let mut cursor = Cursor::Fresh;
        loop {
            cursor = match cursor {
                Cursor::Fresh => match self.forced_read() {
                    None => Cursor::Main(self.nodes[MAIN as usize].next),
                    Some(op) => match self.try_lift(op, NIL, true) {
                        Lift::Placed => Cursor::Fresh,
                        // Its state was explored already and failed, so this one fails.
                        Lift::Skipped => match self.backtrack() {
                            Some(c) => c,
                            None => return Ended::Stuck,
                        },
                        Lift::OverBudget => return Ended::OverBudget,
                    },
                },
                Cursor::Main(NIL) => return Ended::Linearized,
                Cursor::Main(n) => {
                    let node = self.nodes[n as usize];
                    if node.is_return {
                        Cursor::Unknown { node: self.nodes[UNKNOWN as usize].next, bound: n }
                    } else {
                        match self.try_lift(node.op, NIL, false) {
                            Lift::Placed => Cursor::Fresh,
                            Lift::Skipped => Cursor::Main(node.next),
                            Lift::OverBudget => return Ended::OverBudget,
                        }
                    }
                }
                Cursor::Unknown { node: n, bound } => {
                    if n == NIL || self.nodes[n as usize].pos > self.nodes[bound as usize].pos {
                        self.note_stuck(bound);
                        match self.backtrack() {
                            Some(c) => c,
                            None => return Ended::Stuck,
                        }
                    } else {
                        let node = self.nodes[n as usize];
                        match self.try_lift(node.op, bound, false) {
                            Lift::Placed => Cursor::Fresh,
                            Lift::Skipped => Cursor::Unknown { node: node.next, bound },
                            Lift::OverBudget => return Ended::OverBudget,
                        }
                    }
                }
            };
        }
    }

    /// A known candidate that only reads and fits the current value (rule 6), if any.
    fn forced_read(&self) -> Option<u32> {
        let mut n = self.nodes[MAIN as usize].next;
        while n != NIL {
            let node = self.nodes[n as usize];
            if node.is_return {
                return None;
            }
            let step = self.steps[node.op as usize];
            if step.is_read_only() && step.apply(self.value).is_some() {
                return Some(node.op);
            }
            n = node.next;
        }
        None
    }

    /// Places `op` now if its answer fits the current value, the pruning rules allow it and
    /// the resulting state is new.
    fn try_lift(&mut self, op: u32, bound: u32, forced: bool) -> Lift {
        let i = op as usize;
        let known = self.known[i];
        if !known && self.twin_prev[i] != NIL && !self.is_placed(self.twin_prev[i]) {
            return Lift::Skipped; // rule 5
        }
        let Some(next) = self.steps[i].apply(self.value) else { return Lift::Skipped };
        if !known && next == self.value {
            return Lift::Skipped; // rule 4
        }
        if !known && !self.has_reader(next, bound) {
            return Lift::Skipped; // rule 7
        }
        let hash = self.hash ^ self.words[i];
        if !self.memo.insert(hash ^ self.value_words[next as usize]) {
            return Lift::Skipped;
        }
        if self.memo.len() > self.max_states {
            return Lift::OverBudget;
        }
        self.stack.push(Frame { op, prev_value: self.value, bound, forced });
        self.hash = hash;
        self.value = next;
        self.placed[i / 64] |= 1 << (i % 64);
        self.unlink(self.call_node[i]);
        if known {
            self.unlink(self.ret_node[i]);
            self.known_placed += 1;
            self.cuts.record(self.known_placed, next);
        } else {
            let call_pos = self.nodes[self.call_node[i] as usize].pos;
            if self.cuts.before_cut(self.known_placed, call_pos) {
                self.cuts.record(self.known_placed, next);
            }
        }
        Lift::Placed
    }

    /// Whether a candidate other than a blind write would fit right after the value becomes
    /// `value` (rule 7): a known op whose answer is `value` (a get, a CAS's `prev`), or an
    /// unknown CAS invoked before the return `bound` that would swap out of `value`.
    fn has_reader(&self, value: ValueId, bound: u32) -> bool {
        let mut n = self.nodes[MAIN as usize].next;
        while n != NIL && !self.nodes[n as usize].is_return {
            let node = self.nodes[n as usize];
            let step = self.steps[node.op as usize];
            if step.reads() && step.apply(value).is_some() {
                return true;
            }
            n = node.next;
        }
        let bound_pos = self.nodes[bound as usize].pos;
        let mut n = self.nodes[UNKNOWN as usize].next;
        while n != NIL && self.nodes[n as usize].pos < bound_pos {
            let node = self.nodes[n as usize];
            let step = self.steps[node.op as usize];
            if step.reads() && step.apply(value).is_some_and(|next| next != value) {
                return true;
            }
            n = node.next;
        }
        false
    }

    /// Undoes placements up to the last one that was a choice; the cursor resumes at the
    /// candidate after it. `None` when no choice is left: the history has no linearization.
    fn backtrack(&mut self) -> Option<Cursor> {
        loop {
            let f = self.stack.pop()?;
            let i = f.op as usize;
            self.value = f.prev_value;
            self.hash ^= self.words[i];
            self.placed[i / 64] &= !(1 << (i % 64));
            let call = self.call_node[i];
            if self.known[i] {
                self.relink(self.ret_node[i]);
                self.known_placed -= 1;
            }
            self.relink(call);
            if f.forced {
                continue;
            }
            let next = self.nodes[call as usize].next;
            return Some(if self.known[i] {
                Cursor::Main(next)
            } else {
                Cursor::Unknown { node: next, bound: f.bound }
            });
        }
    }

    fn note_stuck(&mut self, ret: u32) {
        if self.furthest == NIL
            || self.nodes[ret as usize].pos > self.nodes[self.furthest as usize].pos
        {
            self.furthest = ret;
        }
    }

    fn is_placed(&self, op: u32) -> bool {
        self.placed[op as usize / 64] & (1 << (op % 64)) != 0
    }

    fn unlink(&mut self, x: u32) {
        let Node { prev, next, .. } = self.nodes[x as usize];
        self.nodes[prev as usize].next = next;
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    /// Reinserts `x` between the neighbours it had when unlinked (valid in LIFO order only).
    fn relink(&mut self, x: u32) {
        let Node { prev, next, .. } = self.nodes[x as usize];
        self.nodes[prev as usize].next = x;
        if next != NIL {
            self.nodes[next as usize].prev = x;
        }
    }

    fn failure(self) -> Failure {
        assert!(self.furthest != NIL, "lincheck: a stuck search noted where it got stuck");
        let stuck_op = self.nodes[self.furthest as usize].op as usize;
        let stuck_call = self.nodes[self.call_node[stuck_op] as usize].pos;
        Failure { stuck_op, cuts: self.cuts.into_cuts(stuck_call) }
    }
}

/// All entries of `p` in time order: (op, is_return). Calls before returns at equal times
/// (touching ops are concurrent), then by op index, so the order is deterministic.
fn time_order(p: &Prepared) -> Vec<(u32, bool)> {
    let mut entries: Vec<(u64, bool, u32)> = Vec::with_capacity(p.ops.len() * 2);
    for (i, op) in p.ops.iter().enumerate() {
        let i = u32::try_from(i).expect("lincheck: fewer than 2^32 ops per key");
        entries.push((op.invoke_ns, false, i));
        if op.known {
            entries.push((op.complete_ns, true, i));
        }
    }
    entries.sort_unstable();
    entries.into_iter().map(|(_, is_return, op)| (op, is_return)).collect()
}

/// Quiescent cuts and the values reached at each; only feeds the failure window.
///
/// Cut k sits just before the (k+1)-th known call. When no known op is in flight there, the
/// search has placed exactly the first k known ops whenever it has placed k of them (an op
/// invoked after the cut cannot be placed before every return preceding it), so the value
/// after k known placements — and after unknown ops invoked before the cut — is a value the
/// register could hold at the cut.
#[derive(Default)]
struct CutLog {
    /// By k: position of the (k+1)-th known call, `NIL` if a known op is in flight there.
    pos: Vec<u32>,
    /// By k: that call's op.
    next_op: Vec<u32>,
    values: Vec<Vec<ValueId>>,
    more_values: Vec<bool>,
}

impl CutLog {
    fn known_call(&mut self, op: u32, pos: u32, quiescent: bool) {
        self.pos.push(if quiescent { pos } else { NIL });
        self.next_op.push(op);
        self.values.push(Vec::new());
        self.more_values.push(false);
    }

    /// Whether an op invoked at `call_pos` is invoked before cut `k` (and the cut exists).
    fn before_cut(&self, k: u32, call_pos: u32) -> bool {
        self.pos.get(k as usize).is_some_and(|&p| p != NIL && call_pos < p)
    }

    fn record(&mut self, k: u32, value: ValueId) {
        let k = k as usize;
        if self.pos.get(k).is_none_or(|&p| p == NIL) || self.values[k].contains(&value) {
            return;
        }
        if self.values[k].len() < CUT_STATES_MAX {
            self.values[k].push(value);
        } else {
            self.more_values[k] = true;
        }
    }

    /// The cuts at or before `stuck_call` that the search reached, earliest first.
    fn into_cuts(self, stuck_call: u32) -> Vec<Cut> {
        let mut cuts = Vec::new();
        for (k, values) in self.values.into_iter().enumerate() {
            let pos = self.pos[k];
            if pos == NIL || values.is_empty() {
                continue;
            }
            if pos > stuck_call {
                break;
            }
            cuts.push(Cut {
                next_op: self.next_op[k] as usize,
                values,
                more_values: self.more_values[k],
            });
        }
        cuts
    }
}

/// Deterministic 64-bit generator for the Zobrist words (Steele et al., SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }
}
