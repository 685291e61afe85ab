//! The fault schedule: a pure function of the seed, the store count and the run's length, so
//! that `--seed S` replays the same faults at the same offsets (what they hit at run time, such
//! as which region holds a key, follows the cluster).
//!
//! Rules the schedule keeps (checked by its tests):
//! 1. Every fault kind appears at least once when the run is long enough: the first faults are
//!    a seeded permutation of [`Kind::ALL`].
//! 2. At no instant are more than a minority of stores (`(n - 1) / 2`) down: killed, paused or
//!    on the minority side of a partition. A majority of stores stays up, but a region whose
//!    three replicas are spread over five stores can lose two of them at once: such a region
//!    waits for the heal, which the availability figures show. The one exception is
//!    [`Fault::PowerLossAll`], which takes every store down at once, alone (no other fault
//!    overlaps it).
//! 3. At most one store partition and one client partition are active at once (their
//!    failpoints would overwrite each other).
//! 4. Faults overlap: the next fault starts after a gap shorter than most faults last.
//! 5. Every fault heals before the run's end minus [`SETTLE`], so the final checks run on a
//!    healthy cluster.
//! 6. A kill aimed at a leader (`Fault::Kill::leader_of`) may kill another store than the
//!    schedule named, and rules 2–5 still hold: the nemesis substitutes the leader's store `x`
//!    for the named store `s` only if `x` is up (neither killed nor paused) at that instant.
//!    The stores down at any instant are then those the schedule counts, with `s` replaced by
//!    `x` (or with `x` counted twice, if a later fault also takes it): never more. Later
//!    faults that name `x` find it down already (a kill or pause of a dead process does
//!    nothing; the earlier heal may bring it back first), which only shortens what is down.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Quiet time at the end of a run: no fault active, so the final reads can succeed.
pub const SETTLE: Duration = Duration::from_secs(8);
/// Quiet time at the start: the workload gets going before the first fault.
pub const WARMUP: Duration = Duration::from_secs(3);

/// What a fault does, for counting and the summary table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    ClientPartition,
    PdRestart,
    Split,
    Merge,
    Transfer,
    ConfChange,
    MoveReplica,
    PowerLossAll,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Kill,
        Kind::Pause,
        Kind::Partition,
        Kind::ClientPartition,
        Kind::PdRestart,
        Kind::Split,
        Kind::Merge,
        Kind::Transfer,
        Kind::ConfChange,
        Kind::MoveReplica,
        Kind::PowerLossAll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::ClientPartition => "client-partition",
            Kind::PdRestart => "pd-restart",
            Kind::Split => "split",
            Kind::Merge => "merge",
            Kind::Transfer => "transfer",
            Kind::ConfChange => "conf-change",
            Kind::MoveReplica => "move-replica",
            Kind::PowerLossAll => "power-loss-all",
        }
    }

    /// Relative frequency after the first round.
    fn weight(self) -> u32 {
        match self {
            Kind::Kill | Kind::Pause | Kind::Partition | Kind::Transfer => 3,
            Kind::Split
            | Kind::Merge
            | Kind::ConfChange
            | Kind::MoveReplica
            | Kind::ClientPartition => 2,
            Kind::PdRestart | Kind::PowerLossAll => 1,
        }
    }
}

/// How stores are cut apart. Indices are store positions in the cluster, not store ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// `minority` cannot talk to the others (one store isolated, or a minority group).
    Halves { minority: Vec<usize> },
    /// `left` and `right` cannot talk to each other; `bridge` talks to both.
    Bridge { left: Vec<usize>, bridge: usize, right: Vec<usize> },
}

impl Partition {
    /// Pairs (from, to) whose raft traffic is dropped: both directions of every cut link.
    pub fn cut_links(&self, stores: usize) -> Vec<(usize, usize)> {
        let mut links = Vec::new();
        let mut cut = |a: &[usize], b: &[usize]| {
            for &x in a {
                for &y in b {
                    links.push((x, y));
                    links.push((y, x));
                }
            }
        };
        match self {
            Partition::Halves { minority } => {
                let rest: Vec<usize> = (0..stores).filter(|i| !minority.contains(i)).collect();
                cut(minority, &rest);
            }
            Partition::Bridge { left, right, .. } => cut(left, right),
        }
        links
    }

    /// Stores cut off from a majority.
    fn down(&self) -> Vec<usize> {
        match self {
            Partition::Halves { minority } => minority.clone(),
            // Without the bridge, neither side is a majority: it counts as down.
            Partition::Bridge { bridge, .. } => vec![*bridge],
        }
    }
}

/// One fault, concrete: which stores, which key's region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, restarted at the heal. Stores run with `REGIONSTORE_SIMULATE_POWER_LOSS`
    /// (unless the run turns it off), so a kill also drops what the KV engine had not synced:
    /// a power cut of those stores.
    ///
    /// With `leader_of`, the kill aims at a leader: at run time the nemesis kills the store
    /// that leads `key`'s region instead of `stores[0]` (one store only), if that store is up
    /// then (rule 6).
    Kill {
        stores: Vec<usize>,
        leader_of: Option<Vec<u8>>,
    },
    /// Every store killed at once (a power cut of the whole cluster), restarted at the heal.
    PowerLossAll,
    /// SIGSTOP, SIGCONT at the heal (longer than an election: a paused leader is deposed).
    Pause {
        stores: Vec<usize>,
    },
    Partition(Partition),
    /// The store refuses client requests, or runs them and loses the answers.
    ClientPartition {
        store: usize,
        lose_responses: bool,
    },
    /// kill -9 of PD, restarted at the heal.
    PdRestart,
    /// Splits at these keys, one admin command each, in quick succession.
    Split {
        keys: Vec<Vec<u8>>,
    },
    /// Merges the two regions that meet at `key` (splitting there first if needed), through
    /// PD's merge-region operator, which first aligns their stores. PD also merges small
    /// regions by itself all run long (the harness's PD config), so merges meet every other
    /// fault. With `racing_split`, a split at that key starts `race_delay_ms` after the merge:
    /// landing in either region while it merges, it makes the merge be refused, or roll back
    /// (PrepareMerge applied against a target epoch the split changed), or split the result.
    Merge {
        key: Vec<u8>,
        racing_split: Option<Vec<u8>>,
        race_delay_ms: u64,
    },
    /// Leadership of the region holding `key` to the store at `to`.
    Transfer {
        key: Vec<u8>,
        to: usize,
    },
    /// Adds a peer of `key`'s region on `store`, or removes it if the region has one there.
    ConfChange {
        key: Vec<u8>,
        store: usize,
    },
    /// Moves `key`'s region's replica from a store that has one to `to` if it has none.
    MoveReplica {
        key: Vec<u8>,
        to: usize,
    },
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill { .. } => Kind::Kill,
            Fault::Pause { .. } => Kind::Pause,
            Fault::Partition(_) => Kind::Partition,
            Fault::ClientPartition { .. } => Kind::ClientPartition,
            Fault::PdRestart => Kind::PdRestart,
            Fault::Split { .. } => Kind::Split,
            Fault::Merge { .. } => Kind::Merge,
            Fault::Transfer { .. } => Kind::Transfer,
            Fault::ConfChange { .. } => Kind::ConfChange,
            Fault::MoveReplica { .. } => Kind::MoveReplica,
            Fault::PowerLossAll => Kind::PowerLossAll,
        }
    }

    /// Stores (of `n`) this fault takes away from the majority while it lasts.
    fn down(&self, n: usize) -> Vec<usize> {
        match self {
            Fault::PowerLossAll => (0..n).collect(),
            Fault::Kill { stores, .. } | Fault::Pause { stores } => stores.clone(),
            Fault::Partition(p) => p.down(),
            Fault::ClientPartition { .. }
            | Fault::PdRestart
            | Fault::Split { .. }
            | Fault::Merge { .. }
            | Fault::Transfer { .. }
            | Fault::ConfChange { .. }
            | Fault::MoveReplica { .. } => Vec::new(),
        }
    }
}

/// A fault at an offset from the run's start, healed `duration` later (zero for the admin
/// faults, which are one command each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub duration: Duration,
    pub fault: Fault,
}

/// Keys the admin faults aim at: they fall inside the workloads' key ranges. Splits at them
/// can cut the key space into at most ~120 regions, so a long soak keeps splitting (a key
/// that is already a boundary is refused) without growing regions without bound.
pub fn target_keys() -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for p in ["bank/", "reg/", "set/"] {
        for i in 0..10 {
            keys.push(format!("{p}{i}").into_bytes());
            for j in 0..3 {
                keys.push(format!("{p}{i}/{j}").into_bytes());
            }
        }
    }
    keys
}

/// The schedule for `seed` over `total` with `stores` stores.
pub fn schedule(seed: u64, stores: usize, total: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut first: Vec<Kind> = Kind::ALL.to_vec();
    first.shuffle(&mut rng);
    let mut steps: Vec<Step> = Vec::new();
    let end = total.saturating_sub(SETTLE);
    let mut at = WARMUP;
    let mut first = std::collections::VecDeque::from(first);
    while at < end {
        // A kind of the first round that does not fit yet is tried again at the next slot.
        let kind = first.front().copied().unwrap_or_else(|| weighted(&mut rng));
        let duration = duration_of(kind, &mut rng).min(end - at);
        if let Some(fault) = pick(kind, stores, at, duration, &steps, &mut rng) {
            steps.push(Step { at, duration, fault });
            first.pop_front();
        }
        at += Duration::from_millis(rng.gen_range(500..2_500));
    }
    steps
}

fn weighted(rng: &mut StdRng) -> Kind {
    let total: u32 = Kind::ALL.iter().map(|k| k.weight()).sum();
    let mut x = rng.gen_range(0..total);
    for k in Kind::ALL {
        if x < k.weight() {
            return k;
        }
        x -= k.weight();
    }
    unreachable!("x < total")
}

fn duration_of(kind: Kind, rng: &mut StdRng) -> Duration {
    let ms = match kind {
        Kind::Kill => rng.gen_range(500..5_000),
        Kind::Pause => rng.gen_range(1_000..4_000),
        Kind::Partition => rng.gen_range(1_000..8_000),
        Kind::ClientPartition => rng.gen_range(500..3_000),
        Kind::PdRestart => rng.gen_range(500..3_000),
        Kind::PowerLossAll => rng.gen_range(500..2_000),
        Kind::Split | Kind::Merge | Kind::Transfer | Kind::ConfChange | Kind::MoveReplica => 0,
    };
    Duration::from_millis(ms)
}

/// Steps active at some instant of [at, at + d].
fn overlapping(steps: &[Step], at: Duration, d: Duration) -> impl Iterator<Item = &Step> {
    steps.iter().filter(move |s| s.at <= at + d && at <= s.at + s.duration)
}

/// A concrete fault of `kind` that keeps the rules, or `None` if none fits now.
fn pick(
    kind: Kind,
    stores: usize,
    at: Duration,
    d: Duration,
    steps: &[Step],
    rng: &mut StdRng,
) -> Option<Fault> {
    let minority = (stores - 1) / 2;
    let down: Vec<usize> = overlapping(steps, at, d).flat_map(|s| s.fault.down(stores)).collect();
    let quiet = overlapping(steps, at, d).next().is_none();
    if overlapping(steps, at, d).any(|s| s.fault == Fault::PowerLossAll) {
        return None; // it runs alone
    }
    let room = minority.saturating_sub(down.len());
    let up: Vec<usize> = (0..stores).filter(|i| !down.contains(i)).collect();
    let busy = |k: Kind| overlapping(steps, at, d).any(|s| s.fault.kind() == k);
    let key = |rng: &mut StdRng| target_keys().choose(rng).expect("keys").clone();
    let some_stores = |rng: &mut StdRng| {
        let n = rng.gen_range(1..=room);
        up.choose_multiple(rng, n).copied().collect::<Vec<_>>()
    };
    match kind {
        Kind::Kill if room > 0 => {
            let stores = some_stores(rng);
            // Half the single-store kills aim at the leader of a workload key's region.
            let leader_of = (stores.len() == 1 && rng.gen_bool(0.5)).then(|| key(rng));
            Some(Fault::Kill { stores, leader_of })
        }
        Kind::Pause if room > 0 => Some(Fault::Pause { stores: some_stores(rng) }),
        Kind::Partition if !busy(Kind::Partition) => {
            if stores >= 3 && room > 0 && rng.gen_bool(0.3) {
                let bridge = *up.choose(rng).expect("room > 0: a store is up");
                let mut all: Vec<usize> = (0..stores).filter(|&i| i != bridge).collect();
                all.shuffle(rng);
                let right = all.split_off(all.len() / 2);
                Some(Fault::Partition(Partition::Bridge { left: all, bridge, right }))
            } else if room > 0 {
                Some(Fault::Partition(Partition::Halves { minority: some_stores(rng) }))
            } else {
                None
            }
        }
        Kind::ClientPartition if !busy(Kind::ClientPartition) => Some(Fault::ClientPartition {
            store: rng.gen_range(0..stores),
            lose_responses: rng.gen_bool(0.5),
        }),
        Kind::PdRestart if !busy(Kind::PdRestart) => Some(Fault::PdRestart),
        Kind::PowerLossAll if quiet => Some(Fault::PowerLossAll),
        Kind::Split => {
            let n = rng.gen_range(1..=4);
            let keys = (0..n).map(|_| key(rng)).collect();
            Some(Fault::Split { keys })
        }
        Kind::Merge => Some(Fault::Merge {
            key: key(rng),
            racing_split: rng.gen_bool(0.5).then(|| key(rng)),
            race_delay_ms: rng.gen_range(0..1_500),
        }),
        Kind::Transfer => Some(Fault::Transfer { key: key(rng), to: rng.gen_range(0..stores) }),
        Kind::ConfChange => {
            Some(Fault::ConfChange { key: key(rng), store: rng.gen_range(0..stores) })
        }
        Kind::MoveReplica => {
            Some(Fault::MoveReplica { key: key(rng), to: rng.gen_range(0..stores) })
        }
        Kind::Kill
        | Kind::Pause
        | Kind::Partition
        | Kind::ClientPartition
        | Kind::PdRestart
        | Kind::PowerLossAll => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = schedule(7, 5, Duration::from_secs(120));
        assert_eq!(a, schedule(7, 5, Duration::from_secs(120)));
        assert_ne!(a, schedule(8, 5, Duration::from_secs(120)));
    }

    #[test]
    fn every_kind_appears_in_a_short_run() {
        for seed in 0..20 {
            let s = schedule(seed, 5, Duration::from_secs(60));
            for k in Kind::ALL {
                assert!(s.iter().any(|x| x.fault.kind() == k), "seed {seed}: no {k:?}");
            }
        }
    }

    #[test]
    fn never_more_than_a_minority_down_and_all_healed_before_the_end() {
        for seed in 0..50 {
            for stores in [3, 4, 5] {
                let total = Duration::from_secs(300);
                let s = schedule(seed, stores, total);
                for t in (0..300_000).step_by(50).map(Duration::from_millis) {
                    let now: Vec<&Step> = overlapping(&s, t, Duration::ZERO).collect();
                    if now.iter().any(|x| x.fault == Fault::PowerLossAll) {
                        assert_eq!(now.len(), 1, "seed {seed} at {t:?}: {now:?}");
                        continue;
                    }
                    let down: std::collections::HashSet<usize> =
                        now.iter().flat_map(|x| x.fault.down(stores)).collect();
                    assert!(down.len() <= (stores - 1) / 2, "seed {seed} at {t:?}: {down:?}");
                    let parts = overlapping(&s, t, Duration::ZERO)
                        .filter(|x| x.fault.kind() == Kind::Partition)
                        .count();
                    assert!(parts <= 1, "seed {seed} at {t:?}: {parts} partitions");
                }
                for x in &s {
                    assert!(x.at + x.duration <= total - SETTLE, "seed {seed}: {x:?}");
                }
            }
        }
    }

    #[test]
    fn some_single_store_kills_aim_at_a_leader() {
        let s = schedule(3, 5, Duration::from_secs(300));
        let aimed = |x: &&Step| matches!(&x.fault, Fault::Kill { leader_of: Some(_), .. });
        assert!(s.iter().filter(aimed).count() > 2, "{s:?}");
        for x in s.iter().filter(aimed) {
            assert!(matches!(&x.fault, Fault::Kill { stores, .. } if stores.len() == 1), "{x:?}");
        }
    }

    #[test]
    fn faults_overlap() {
        let s = schedule(3, 5, Duration::from_secs(300));
        let overlaps = s.windows(2).filter(|w| w[1].at < w[0].at + w[0].duration).count();
        assert!(overlaps > 5, "{overlaps} overlaps in {} faults", s.len());
    }
}
