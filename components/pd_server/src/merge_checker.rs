//! The merge checker: every [`MERGE_CHECK_INTERVAL`] PD looks at a bounded slice of the
//! routing table and merges small regions into a neighbour (#14 item 3), through the same
//! `merge-region` operator a user creates (`operator/merge.rs`).
//!
//! Rules (TiKV PD's `merge_checker.go`, with the differences marked):
//! 1. **Nothing at all** while `max-merge-region-size` or `merge-schedule-limit` is 0, while
//!    `merge-schedule-limit` merge operators run (manual ones count), or during the first
//!    `split-merge-interval` after PD started (sizes and leaders are not all known yet, and a
//!    region split just before the restart must not merge at once).
//! 2. **A source** has a known size (a leader's heartbeat reported it since PD started or since
//!    its last split) below `max-merge-region-size` MiB AND fewer keys than
//!    `max-merge-region-keys` (strictly below; PD compares `<=` on sizes rounded to MiB).
//! 3. **Healthy**, for source and target alike: a known leader, no pending peer, exactly
//!    `max-replicas` peers and all of them voters (PD: no down or pending peer, replicated as
//!    the placement rules say), no operator locking it, not in a split, and no split within
//!    `split-merge-interval` (PD checks the same split cache for both).
//! 4. **The target** is the right neighbour, or the left one if it is smaller (both must be
//!    adjacent: same boundary key). `enable-one-way-merge` forbids the left one.
//! 5. **The merged region** stays within twice both limits: `size(source) + size(target) ≤ 2 ×
//!    max-merge-region-size` and the same for keys, so merging never makes a region that the
//!    store splits again. PD instead asks the store's `region-max-size` / `region-split-size`
//!    (it accepts anything below the store's max size, and above it only if the split would
//!    not leave a small remainder); our PD does not know the stores' split config, so it takes
//!    this stricter bound, and checks it on each candidate before choosing (PD checks it
//!    after, on the chosen one).
//! 6. **Bounded**: at most [`MERGE_CHECK_REGIONS_MAX`] sources examined per round, continuing
//!    from where the last round stopped and wrapping at the end of the key space; at most
//!    `merge-schedule-limit` minus the running merges proposed; a region takes part in at most
//!    one proposal per round.
//!
//! Pure: the caller passes the tree, the state and the time, and creates the operators.

use std::collections::HashSet;
use std::time::Duration;

use proto::metapb::PeerRole;

use crate::config::ScheduleConfig;
use crate::region_tree::{RegionInfo, RegionTree};
use crate::splits::SplitTracker;

/// How often the checker runs.
pub const MERGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Most regions one round examines as sources (rule 6).
pub const MERGE_CHECK_REGIONS_MAX: usize = 128;

/// Where the next round starts.
#[derive(Debug, Default)]
pub struct MergeChecker {
    /// A start key: the next round examines regions from the one holding it.
    cursor: Vec<u8>,
}

/// What a round needs to know besides the tree.
pub struct MergeContext<'a> {
    pub cfg: &'a ScheduleConfig,
    pub max_replicas: usize,
    pub splits: &'a SplitTracker,
    /// Whether an operator locks the region.
    pub busy: &'a dyn Fn(u64) -> bool,
    pub running_merges: usize,
    pub now_ms: u64,
}

impl MergeChecker {
    /// One round: the merges to create, as (source, target) region ids.
    pub fn check(&mut self, tree: &RegionTree, cx: &MergeContext<'_>) -> Vec<(u64, u64)> {
        let interval_ms = cx.cfg.split_merge_interval.as_millis();
        let limit = usize::try_from(cx.cfg.merge_schedule_limit).unwrap_or(usize::MAX);
        let room = limit.saturating_sub(cx.running_merges);
        if !cx.cfg.auto_merge_enabled()
            || room == 0
            || cx.splits.started_within(interval_ms, cx.now_ms)
        {
            return Vec::new();
        }
        let slice = tree.scan(&self.cursor, b"", MERGE_CHECK_REGIONS_MAX);
        let mut taken = HashSet::new();
        let mut pairs = Vec::new();
        let mut examined = 0;
        for source in &slice {
            if pairs.len() == room {
                break;
            }
            examined += 1;
            let id = source.region.id;
            if taken.contains(&id) || !is_small(source, cx.cfg) || !is_healthy(source, cx) {
                continue;
            }
            if let Some(target) = choose_target(tree, source, cx, &taken) {
                taken.extend([id, target]);
                pairs.push((id, target));
            }
        }
        // Rule 6: continue after the last region examined, or wrap at the end.
        self.cursor = match slice.get(examined.max(1) - 1) {
            Some(last) if !(examined == slice.len() && slice.len() < MERGE_CHECK_REGIONS_MAX) => {
                last.region.end_key.clone()
            }
            _ => Vec::new(),
        };
        pairs
    }
}

/// Rule 2.
fn is_small(info: &RegionInfo, cfg: &ScheduleConfig) -> bool {
    info.stats.is_some_and(|s| {
        s.approximate_size < cfg.max_merge_region_size_bytes()
            && s.approximate_keys < cfg.max_merge_region_keys_effective()
    })
}

/// Rule 3.
fn is_healthy(info: &RegionInfo, cx: &MergeContext<'_>) -> bool {
    let id = info.region.id;
    let peers = &info.region.peers;
    let all_voters = peers.iter().all(|p| PeerRole::try_from(p.role) == Ok(PeerRole::Voter));
    let interval_ms = cx.cfg.split_merge_interval.as_millis();
    info.leader.is_some()
        && info.pending_peers.is_empty()
        && peers.len() == cx.max_replicas
        && all_voters
        && info.stats.is_some()
        && !(cx.busy)(id)
        && cx.splits.in_split_ms(id, cx.now_ms).is_none()
        && !cx.splits.split_within(id, interval_ms, cx.now_ms)
}

/// Rules 4 and 5.
fn choose_target(
    tree: &RegionTree,
    source: &RegionInfo,
    cx: &MergeContext<'_>,
    taken: &HashSet<u64>,
) -> Option<u64> {
    let s = &source.region;
    let next = (!s.end_key.is_empty())
        .then(|| tree.search(&s.end_key))
        .flatten()
        .filter(|n| n.region.start_key == s.end_key);
    let prev = (!s.start_key.is_empty() && !cx.cfg.enable_one_way_merge)
        .then(|| tree.prev(&s.start_key))
        .flatten()
        .filter(|p| p.region.end_key == s.start_key);
    let fits = |t: &&RegionInfo| {
        !taken.contains(&t.region.id) && is_healthy(t, cx) && fits_merged(source, t, cx.cfg)
    };
    let size = |t: &RegionInfo| t.stats.map_or(u64::MAX, |s| s.approximate_size);
    match (next.filter(fits), prev.filter(fits)) {
        (Some(n), Some(p)) if size(p) < size(n) => Some(p.region.id),
        (Some(n), _) => Some(n.region.id),
        (None, Some(p)) => Some(p.region.id),
        (None, None) => None,
    }
}

/// Rule 5.
fn fits_merged(source: &RegionInfo, target: &RegionInfo, cfg: &ScheduleConfig) -> bool {
    let (Some(a), Some(b)) = (source.stats, target.stats) else { return false };
    let size = a.approximate_size.saturating_add(b.approximate_size);
    let keys = a.approximate_keys.saturating_add(b.approximate_keys);
    size <= 2 * cfg.max_merge_region_size_bytes()
        && keys <= cfg.max_merge_region_keys_effective().saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use proto::metapb;
    use util::config::ReadableDuration;

    use super::*;
    use crate::region_tree::RegionStats;

    const MIB: u64 = 1024 * 1024;
    const START: u64 = 1_000_000;
    /// Past PD's start interval.
    const NOW: u64 = START + 10_000;

    fn cfg() -> ScheduleConfig {
        ScheduleConfig {
            max_merge_region_size: 4,
            max_merge_region_keys: 100,
            split_merge_interval: ReadableDuration::secs(5),
            merge_schedule_limit: 8,
            enable_one_way_merge: false,
        }
    }

    /// A healthy region on stores 1-3 with a leader and the given size (MiB) and keys.
    fn region(id: u64, start: &str, end: &str, size_mib: u64, keys: u64) -> RegionInfo {
        let peers: Vec<metapb::Peer> = (1..=3)
            .map(|s| metapb::Peer { id: id * 10 + s, store_id: s, ..Default::default() })
            .collect();
        RegionInfo {
            leader: Some(peers[0].clone()),
            region: metapb::Region {
                id,
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
                region_epoch: Some(metapb::RegionEpoch { version: 1, conf_ver: 1 }),
                peers,
                ..Default::default()
            },
            stats: Some(RegionStats { approximate_size: size_mib * MIB, approximate_keys: keys }),
            ..Default::default()
        }
    }

    fn tree(regions: Vec<RegionInfo>) -> RegionTree {
        let mut t = RegionTree::default();
        for r in regions {
            let plan = t.plan(r).unwrap();
            t.apply(plan);
        }
        t
    }

    /// One round of `checker` with `busy` regions locked and `running` merges.
    fn run(
        checker: &mut MergeChecker,
        t: &RegionTree,
        cfg: &ScheduleConfig,
        splits: &SplitTracker,
        busy: &[u64],
        running: usize,
    ) -> Vec<(u64, u64)> {
        let busy = |id| busy.contains(&id);
        let cx = MergeContext {
            cfg,
            max_replicas: 3,
            splits,
            busy: &busy,
            running_merges: running,
            now_ms: NOW,
        };
        checker.check(t, &cx)
    }

    /// One round of a fresh checker, nothing running.
    fn round(
        t: &RegionTree,
        cfg: &ScheduleConfig,
        splits: &SplitTracker,
        busy: &[u64],
    ) -> Vec<(u64, u64)> {
        run(&mut MergeChecker::default(), t, cfg, splits, busy, 0)
    }

    fn quiet() -> SplitTracker {
        SplitTracker::new(START)
    }

    fn pair(a_mib: u64, b_mib: u64) -> RegionTree {
        tree(vec![region(1, "", "b", a_mib, 10), region(2, "b", "", b_mib, 10)])
    }

    #[test]
    fn a_small_region_merges_into_its_right_neighbour() {
        let t = tree(vec![
            region(1, "", "b", 1, 10),
            region(2, "b", "d", 3, 50),
            region(3, "d", "", 9, 900),
        ]);
        // 1 → 2; 2 is taken then, and 3 is too big to be a source.
        assert_eq!(round(&t, &cfg(), &quiet(), &[]), [(1, 2)]);
        assert_eq!(round(&pair(5, 5), &cfg(), &quiet(), &[]), []);
    }

    #[test]
    fn thresholds_are_strict_for_size_and_keys() {
        let t = |size, keys| tree(vec![region(1, "", "b", size, keys), region(2, "b", "", 0, 0)]);
        assert_eq!(round(&t(3, 99), &cfg(), &quiet(), &[]), [(1, 2)]);
        // Region 1 is not a source: 2 (empty) merges left into it instead.
        assert_eq!(round(&t(4, 99), &cfg(), &quiet(), &[]), [(2, 1)], "4 MiB is not below 4");
        assert_eq!(round(&t(3, 100), &cfg(), &quiet(), &[]), [(2, 1)], "100 keys is not below 100");
        // 0 keys means max-merge-region-size × 10 000.
        let derived = ScheduleConfig { max_merge_region_keys: 0, ..cfg() };
        assert_eq!(round(&t(3, 39_999), &derived, &quiet(), &[]), [(1, 2)]);
        // Off switches.
        let off = ScheduleConfig { max_merge_region_size: 0, ..cfg() };
        assert_eq!(round(&t(0, 0), &off, &quiet(), &[]), []);
        let off = ScheduleConfig { merge_schedule_limit: 0, ..cfg() };
        assert_eq!(round(&t(0, 0), &off, &quiet(), &[]), []);
    }

    #[test]
    fn the_left_neighbour_is_taken_when_smaller_unless_one_way() {
        // Neighbours of 2: 1 (left) and 3 (right), neither a source (not below 4 MiB).
        let three = |left, right| {
            tree(vec![
                region(1, "", "b", left, 10),
                region(2, "b", "d", 1, 10),
                region(3, "d", "", right, 10),
            ])
        };
        assert_eq!(round(&three(6, 5), &cfg(), &quiet(), &[]), [(2, 3)]);
        assert_eq!(round(&three(5, 6), &cfg(), &quiet(), &[]), [(2, 1)]);
        assert_eq!(round(&three(5, 5), &cfg(), &quiet(), &[]), [(2, 3)], "a tie goes right");
        let one_way = ScheduleConfig { enable_one_way_merge: true, ..cfg() };
        assert_eq!(round(&three(5, 6), &one_way, &quiet(), &[]), [(2, 3)]);
        // The last region can only go left.
        assert_eq!(round(&pair(5, 1), &cfg(), &quiet(), &[]), [(2, 1)]);
        assert_eq!(round(&pair(5, 1), &one_way, &quiet(), &[]), []);
        // A busy neighbour is skipped for the other one.
        assert_eq!(round(&three(5, 6), &cfg(), &quiet(), &[1]), [(2, 3)]);
    }

    #[test]
    fn the_merged_region_stays_within_twice_the_limits() {
        // 3 + 6 > 8 MiB: the right neighbour does not fit, the left one (3 + 4) does.
        let t = tree(vec![
            region(1, "", "b", 4, 10),
            region(2, "b", "d", 3, 10),
            region(3, "d", "", 6, 10),
        ]);
        assert_eq!(round(&t, &cfg(), &quiet(), &[]), [(2, 1)]);
        let one_way = ScheduleConfig { enable_one_way_merge: true, ..cfg() };
        assert_eq!(round(&t, &one_way, &quiet(), &[]), []);
        // Keys: 99 + 102 > 200.
        let t = tree(vec![region(1, "", "b", 1, 99), region(2, "b", "", 1, 102)]);
        assert_eq!(round(&t, &cfg(), &quiet(), &[]), []);
        let t = tree(vec![region(1, "", "b", 1, 99), region(2, "b", "", 1, 101)]);
        assert_eq!(round(&t, &cfg(), &quiet(), &[]), [(1, 2)]);
    }

    #[test]
    fn nothing_merges_soon_after_pd_start_or_a_split() {
        let t = pair(1, 1);
        assert_eq!(round(&t, &cfg(), &SplitTracker::new(NOW - 4_999), &[]), [], "PD just started");
        assert_eq!(round(&t, &cfg(), &SplitTracker::new(NOW - 5_000), &[]), [(1, 2)]);
        // Either region split within the interval: no merge either way.
        for id in [1, 2] {
            let mut splits = quiet();
            splits.on_report([id], NOW - 4_999);
            assert_eq!(round(&t, &cfg(), &splits, &[]), [], "region {id} split recently");
            let mut splits = quiet();
            splits.on_report([id], NOW - 5_000);
            assert_eq!(round(&t, &cfg(), &splits, &[]), [(1, 2)]);
            let mut splits = quiet();
            splits.on_ask(id, 1, NOW - 100);
            assert_eq!(round(&t, &cfg(), &splits, &[]), [], "region {id} is being split");
        }
    }

    #[test]
    fn unknown_sizes_and_unhealthy_regions_are_never_merged() {
        type Break = fn(&mut RegionInfo);
        let breaks: [(&str, Break); 6] = [
            ("unknown size", |r| r.stats = None),
            ("no leader", |r| r.leader = None),
            ("a pending peer", |r| r.pending_peers = vec![r.region.peers[1].clone()]),
            ("a learner", |r| r.region.peers[2].role = PeerRole::Learner as i32),
            ("a missing replica", |r| {
                r.region.peers.pop();
            }),
            ("a joint state", |r| r.region.peers[1].role = PeerRole::IncomingVoter as i32),
        ];
        assert_eq!(round(&pair(1, 1), &cfg(), &quiet(), &[]), [(1, 2)]);
        for (what, broken) in breaks {
            for i in 0..2 {
                let mut regions = vec![region(1, "", "b", 1, 10), region(2, "b", "", 1, 10)];
                broken(&mut regions[i]);
                assert_eq!(round(&tree(regions), &cfg(), &quiet(), &[]), [], "{what} on {}", i + 1);
            }
        }
        assert_eq!(round(&pair(1, 1), &cfg(), &quiet(), &[1]), [], "source busy");
        assert_eq!(round(&pair(1, 1), &cfg(), &quiet(), &[2]), [], "target busy");
    }

    fn many(n: u64, size_mib: impl Fn(u64) -> u64) -> RegionTree {
        let key = |i: u64| if i == 0 || i == n { String::new() } else { format!("k{i:04}") };
        tree((1..=n).map(|id| region(id, &key(id - 1), &key(id), size_mib(id), 10)).collect())
    }

    #[test]
    fn at_most_the_schedule_limit_runs_at_once() {
        let t = many(6, |_| 1);
        assert_eq!(round(&t, &cfg(), &quiet(), &[]), [(1, 2), (3, 4), (5, 6)]);
        let two = ScheduleConfig { merge_schedule_limit: 2, ..cfg() };
        assert_eq!(round(&t, &two, &quiet(), &[]), [(1, 2), (3, 4)]);
        let mut checker = MergeChecker::default();
        assert_eq!(run(&mut checker, &t, &cfg(), &quiet(), &[], 7), [(1, 2)]);
        assert_eq!(run(&mut checker, &t, &cfg(), &quiet(), &[], 8), []);
    }

    #[test]
    fn each_round_examines_a_bounded_slice_and_the_next_one_continues() {
        let n = MERGE_CHECK_REGIONS_MAX as u64 + 72;
        // Only the last two regions are small.
        let t = many(n, |id| if id >= n - 1 { 1 } else { 9 });
        let mut checker = MergeChecker::default();
        assert_eq!(run(&mut checker, &t, &cfg(), &quiet(), &[], 0), [], "the first 128");
        assert_eq!(run(&mut checker, &t, &cfg(), &quiet(), &[], 0), [(n - 1, n)], "the rest");
        assert_eq!(run(&mut checker, &t, &cfg(), &quiet(), &[], 0), [], "wrapped around");
        // A round that stops at the limit resumes right after its last source.
        let t = many(6, |_| 1);
        let one = ScheduleConfig { merge_schedule_limit: 1, ..cfg() };
        let mut checker = MergeChecker::default();
        assert_eq!(run(&mut checker, &t, &one, &quiet(), &[], 0), [(1, 2)]);
        assert_eq!(run(&mut checker, &t, &one, &quiet(), &[1], 0), [(2, 3)]);
    }
}
