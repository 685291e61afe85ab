//! The store's Prometheus metrics. One [`Registry`] per node, passed in, never global: two
//! nodes in one test process keep their own numbers.
//!
//! Two kinds, updated differently:
//! - the gRPC edge's own metrics ([`GrpcMetrics`]), updated on the request path. Handles are
//!   resolved per (method, result) when the node starts, so a request costs two atomic adds
//!   and one histogram observation, with no label hashing or locking.
//! - the raftstore's counters ([`StoreStats`]) and the region and leader counts, read only
//!   when scraped ([`StoreCollector`]). Exporting them adds nothing to the raftstore's hot path.
//!
//! Names are `regionstore_<crate>_<noun>_<unit>`, where the crate is the one that owns the
//! quantity (`raftstore` for fsyncs), not the one exporting it. Counters end in `_total`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `regionstore_server_grpc_requests_total` | counter | `method`, `result` (`ok`, `region_error`, `error`) |
//! | `regionstore_server_grpc_request_duration_seconds` | histogram | `method` |
//! | `regionstore_raftstore_proposals_total` | counter | |
//! | `regionstore_raftstore_proposals_dropped_total` | counter | |
//! | `regionstore_raftstore_fsyncs_total` | counter | |
//! | `regionstore_raftstore_proposals_per_fsync` | histogram | |
//! | `regionstore_raftstore_apply_rounds_total` | counter | |
//! | `regionstore_raftstore_applied_commands_total` | counter | |
//! | `regionstore_raftstore_reads_total` | counter | `kind` (`lease`, `read_index`) |
//! | `regionstore_raftstore_splits_total` | counter | |
//! | `regionstore_raftstore_split_checks_total` | counter | |
//! | `regionstore_raftstore_held_commands_total` | counter | |
//! | `regionstore_raftstore_leader_wait_commands_total` | counter | |
//! | `regionstore_raftstore_split_to_leader_seconds` | histogram | |
//! | `regionstore_raftstore_raft_log_compactions_total` | counter | |
//! | `regionstore_raftstore_raft_log_gc_deleted_entries_total` | counter | |
//! | `regionstore_raftstore_raft_log_gc_dropped_tasks_total` | counter | |
//! | `regionstore_raftstore_regions` | gauge | |
//! | `regionstore_raftstore_leaders` | gauge | |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricType};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};
use raftstore::stats::{PROPOSALS_PER_FSYNC_BUCKETS, SPLIT_TO_LEADER_MS_BUCKETS};
use raftstore::{DroppedMessage, StoreMeta, StoreStats};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const TEXT_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Every metric of one node, and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    grpc: GrpcMetrics,
}

impl Metrics {
    /// Registers the gRPC metrics and a scrape-time collector over the raftstore's `stats` and
    /// `meta`.
    ///
    /// # Panics
    /// If two metrics share a name or a name is malformed: a programmer error, caught by the
    /// unit tests.
    pub fn new(stats: StoreStats, meta: Arc<Mutex<StoreMeta>>) -> Metrics {
        let registry = Registry::new();
        let grpc = GrpcMetrics::register(&registry);
        registry
            .register(Box::new(StoreCollector::new(stats, meta)))
            .expect("raftstore metrics register once, with valid names");
        Metrics { registry, grpc }
    }

    /// The handles the gRPC service updates.
    pub fn grpc(&self) -> GrpcMetrics {
        self.grpc.clone()
    }

    /// Every metric in Prometheus' text exposition format ([`TEXT_CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("gathered metric families are well formed");
        out
    }
}

/// The raw KV RPCs of `tikvpb.Tikv` and `SplitRegion`, as the `method` label spells them (the gRPC method in
/// snake case). The long-lived raft streams are not requests and are not timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcMethod {
    RawGet,
    RawBatchGet,
    RawPut,
    RawBatchPut,
    RawDelete,
    RawBatchDelete,
    RawDeleteRange,
    RawScan,
    RawBatchScan,
    RawGetKeyTtl,
    RawCompareAndSwap,
    SplitRegion,
}

impl RpcMethod {
    /// Every method, in declaration order (`ALL[m as usize] == m`).
    pub const ALL: [RpcMethod; 12] = [
        RpcMethod::RawGet,
        RpcMethod::RawBatchGet,
        RpcMethod::RawPut,
        RpcMethod::RawBatchPut,
        RpcMethod::RawDelete,
        RpcMethod::RawBatchDelete,
        RpcMethod::RawDeleteRange,
        RpcMethod::RawScan,
        RpcMethod::RawBatchScan,
        RpcMethod::RawGetKeyTtl,
        RpcMethod::RawCompareAndSwap,
        RpcMethod::SplitRegion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RpcMethod::RawGet => "raw_get",
            RpcMethod::RawBatchGet => "raw_batch_get",
            RpcMethod::RawPut => "raw_put",
            RpcMethod::RawBatchPut => "raw_batch_put",
            RpcMethod::RawDelete => "raw_delete",
            RpcMethod::RawBatchDelete => "raw_batch_delete",
            RpcMethod::RawDeleteRange => "raw_delete_range",
            RpcMethod::RawScan => "raw_scan",
            RpcMethod::RawBatchScan => "raw_batch_scan",
            RpcMethod::RawGetKeyTtl => "raw_get_key_ttl",
            RpcMethod::RawCompareAndSwap => "raw_compare_and_swap",
            RpcMethod::SplitRegion => "split_region",
        }
    }
}

/// How a request ended, as the `result` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcResult {
    /// Answered without an error.
    Ok,
    /// Answered with an `errorpb` region error: the client retries elsewhere (not leader,
    /// epoch changed, server busy, ...).
    RegionError,
    /// Answered with the `error` string or a gRPC status: invalid input or an engine failure.
    Error,
}

impl RpcResult {
    /// Every result, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [RpcResult; 3] = [RpcResult::Ok, RpcResult::RegionError, RpcResult::Error];

    pub fn name(self) -> &'static str {
        match self {
            RpcResult::Ok => "ok",
            RpcResult::RegionError => "region_error",
            RpcResult::Error => "error",
        }
    }
}

/// Request counts and latencies of the gRPC edge. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct GrpcMetrics {
    /// `requests[method][result]`.
    requests: Arc<[[IntCounter; RpcResult::ALL.len()]; RpcMethod::ALL.len()]>,
    /// `durations[method]`.
    durations: Arc<[Histogram; RpcMethod::ALL.len()]>,
}

impl GrpcMetrics {
    fn register(registry: &Registry) -> GrpcMetrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "regionstore_server_grpc_requests_total",
                "gRPC requests handled, by method and result.",
            ),
            &["method", "result"],
        )
        .expect("valid metric");
        // 100 µs to ~13 s, doubling: a lease read on loopback up to a stalled disk.
        let buckets = prometheus::exponential_buckets(0.0001, 2.0, 18).expect("valid buckets");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "regionstore_server_grpc_request_duration_seconds",
                "Time from receiving a gRPC request to having its response, by method.",
            )
            .buckets(buckets),
            &["method"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(durations.clone())).expect("registered once");
        // Resolving every label pair now also makes every series visible, at zero, from the
        // first scrape.
        let requests = RpcMethod::ALL
            .map(|m| RpcResult::ALL.map(|r| requests.with_label_values(&[m.name(), r.name()])));
        let durations = RpcMethod::ALL.map(|m| durations.with_label_values(&[m.name()]));
        GrpcMetrics { requests: Arc::new(requests), durations: Arc::new(durations) }
    }

    /// Starts timing one request of `method`; [`RpcTimer::finish`] records it.
    pub fn start(&self, method: RpcMethod) -> RpcTimer<'_> {
        RpcTimer { metrics: self, method, start: Instant::now() }
    }
}

/// One request being timed. Dropping it without [`finish`](RpcTimer::finish) records nothing
/// (a request whose future the client cancelled).
#[must_use = "a request is recorded only by finish()"]
pub struct RpcTimer<'a> {
    metrics: &'a GrpcMetrics,
    method: RpcMethod,
    start: Instant,
}

impl RpcTimer<'_> {
    pub fn finish(self, result: RpcResult) {
        let m = self.method as usize;
        self.metrics.requests[m][result as usize].inc();
        self.metrics.durations[m].observe(self.start.elapsed().as_secs_f64());
    }
}

/// Reads the raftstore's counters, region count and leader count when scraped.
struct StoreCollector {
    stats: StoreStats,
    meta: Arc<Mutex<StoreMeta>>,
    descs: Vec<Desc>,
}

/// (name, help, variable labels) of every family [`StoreCollector`] exports, in the order
/// `collect` builds them.
const STORE_FAMILIES: [(&str, &str, &[&str]); 26] = [
    (
        "regionstore_raftstore_proposals_total",
        "Client commands proposed to raft, counted when the poll round's raft write is synced.",
        &[],
    ),
    (
        "regionstore_raftstore_proposals_dropped_total",
        "Proposals raft refused (no longer leader, leader transfer in progress).",
        &[],
    ),
    (
        "regionstore_raftstore_fsyncs_total",
        "Synced raft-engine writes: at most one per store poll round.",
        &[],
    ),
    (
        "regionstore_raftstore_proposals_per_fsync",
        "Client commands made durable by each synced raft-engine write (0: only follower appends, votes or terms).",
        &[],
    ),
    ("regionstore_raftstore_apply_rounds_total", "Apply poll rounds: one KV write each at most.", &[]),
    (
        "regionstore_raftstore_applied_commands_total",
        "Client commands answered by apply rounds.",
        &[],
    ),
    (
        "regionstore_raftstore_reads_total",
        "Reads served by the raftstore, by how leadership was confirmed (lease or read_index).",
        &["kind"],
    ),
    ("regionstore_raftstore_splits_total", "Splits applied by the peers of this store.", &[]),
    (
        "regionstore_raftstore_split_checks_total",
        "Region size checks sent to the split checker by this store's leaders.",
        &[],
    ),
    (
        "regionstore_raftstore_held_commands_total",
        "Commands held behind a proposed split, then checked again.",
        &[],
    ),
    (
        "regionstore_raftstore_leader_wait_commands_total",
        "Commands held at a peer a split just created until its region's first leader was known (or leader-wait-timeout passed), then checked again.",
        &[],
    ),
    (
        "regionstore_raftstore_split_to_leader_seconds",
        "Time from a split's apply on the store that led the parent to each new region's first leader.",
        &[],
    ),
    (
        "regionstore_raftstore_raft_log_compactions_total",
        "CompactLog commands applied by this store's peers (each replica counts its own).",
        &[],
    ),
    (
        "regionstore_raftstore_raft_log_gc_deleted_entries_total",
        "Raft log entries deleted from the raft engine after compaction.",
        &[],
    ),
    (
        "regionstore_raftstore_raft_log_gc_dropped_tasks_total",
        "Log GC tasks dropped on a full queue (the region's next compaction covers them).",
        &[],
    ),
    (
        "regionstore_raftstore_raft_messages_dropped_total",
        "Raft messages from other stores dropped before raft saw them, by reason (malformed, forged, stale, for unknown regions).",
        &["reason"],
    ),
    (
        "regionstore_raftstore_snapshots_generated_total",
        "Region snapshots built for this store's leaders to send.",
        &[],
    ),
    ("regionstore_raftstore_snapshots_applied_total", "Region snapshots this store's peers applied.", &[]),
    (
        "regionstore_raftstore_leader_missing_total",
        "Times a peer had heard no leader for abnormal-leader-missing-duration.",
        &[],
    ),
    (
        "regionstore_raftstore_stale_peer_checks_total",
        "Times a peer silent past max-leader-missing-duration asked PD whether it is still a member.",
        &[],
    ),
    (
        "regionstore_raftstore_stale_peers_destroyed_total",
        "Peers destroyed because PD's newer region no longer listed them.",
        &[],
    ),
    (
        "regionstore_raftstore_merge_steps_total",
        "Merge steps of this store's peers: prepare, target_wait (a CommitMerge waiting for its source), commit, rollback.",
        &["step"],
    ),
    (
        "regionstore_raftstore_merge_source_mismatch_total",
        "Merge targets that found their source elsewhere than their CommitMerge says (they stay paused).",
        &[],
    ),
    (
        "regionstore_raftstore_merge_source_wait_seconds_total",
        "Time merge targets' apply spent paused for their sources to catch up.",
        &[],
    ),
    ("regionstore_raftstore_regions", "Regions with a peer on this store.", &[]),
    ("regionstore_raftstore_leaders", "Regions whose peer on this store is the raft leader.", &[]),
];

impl StoreCollector {
    fn new(stats: StoreStats, meta: Arc<Mutex<StoreMeta>>) -> StoreCollector {
        let descs = STORE_FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                let labels = labels.iter().map(|l| l.to_string()).collect();
                Desc::new(name.to_string(), help.to_string(), labels, HashMap::new())
                    .expect("valid metric description")
            })
            .collect();
        StoreCollector { stats, meta, descs }
    }
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let s = self.stats.snapshot();
        let regions = self.meta.lock().region_count() as u64;
        let leaders = self.stats.leaders();
        let metrics = [
            (MetricType::COUNTER, vec![counter(s.proposals_synced, None)]),
            (MetricType::COUNTER, vec![counter(s.proposals_dropped, None)]),
            (MetricType::COUNTER, vec![counter(s.raft_fsyncs, None)]),
            (
                MetricType::HISTOGRAM,
                vec![histogram(
                    &PROPOSALS_PER_FSYNC_BUCKETS.map(|b| b as f64),
                    &s.proposals_per_fsync,
                    s.proposals_synced as f64,
                )],
            ),
            (MetricType::COUNTER, vec![counter(s.apply_rounds, None)]),
            (MetricType::COUNTER, vec![counter(s.commands_answered, None)]),
            (
                MetricType::COUNTER,
                vec![
                    counter(s.lease_reads, Some(("kind", "lease"))),
                    counter(s.read_index_reads, Some(("kind", "read_index"))),
                ],
            ),
            (MetricType::COUNTER, vec![counter(s.splits_applied, None)]),
            (MetricType::COUNTER, vec![counter(s.split_checks, None)]),
            (MetricType::COUNTER, vec![counter(s.commands_held, None)]),
            (MetricType::COUNTER, vec![counter(s.commands_held_for_leader, None)]),
            (
                MetricType::HISTOGRAM,
                vec![histogram(
                    &SPLIT_TO_LEADER_MS_BUCKETS.map(|ms| ms as f64 / 1000.0),
                    &s.split_to_leader_ms,
                    s.split_to_leader_ms_sum as f64 / 1000.0,
                )],
            ),
            (MetricType::COUNTER, vec![counter(s.log_compactions, None)]),
            (MetricType::COUNTER, vec![counter(s.log_entries_deleted, None)]),
            (MetricType::COUNTER, vec![counter(s.log_gc_tasks_dropped, None)]),
            (
                MetricType::COUNTER,
                DroppedMessage::ALL
                    .iter()
                    .zip(&s.raft_messages_dropped)
                    .map(|(why, &n)| counter(n, Some(("reason", why.as_str()))))
                    .collect(),
            ),
            (MetricType::COUNTER, vec![counter(s.snapshots_generated, None)]),
            (MetricType::COUNTER, vec![counter(s.snapshots_applied, None)]),
            (MetricType::COUNTER, vec![counter(s.leader_missing, None)]),
            (MetricType::COUNTER, vec![counter(s.stale_peer_checks, None)]),
            (MetricType::COUNTER, vec![counter(s.stale_peers_destroyed, None)]),
            (
                MetricType::COUNTER,
                vec![
                    counter(s.merges_prepared, Some(("step", "prepare"))),
                    counter(s.merge_target_waits, Some(("step", "target_wait"))),
                    counter(s.merges_committed, Some(("step", "commit"))),
                    counter(s.merges_rolled_back, Some(("step", "rollback"))),
                ],
            ),
            (MetricType::COUNTER, vec![counter(s.merge_source_mismatches, None)]),
            (MetricType::COUNTER, vec![counter_f(s.merge_wait_ms_sum as f64 / 1000.0)]),
            (MetricType::GAUGE, vec![gauge(regions)]),
            (MetricType::GAUGE, vec![gauge(leaders)]),
        ];
        STORE_FAMILIES
            .iter()
            .zip(metrics)
            .map(|((name, help, _), (kind, metrics))| {
                let mut f = proto::MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(kind);
                f.set_metric(metrics);
                f
            })
            .collect()
    }
}

fn counter(value: u64, label: Option<(&str, &str)>) -> proto::Metric {
    counter_of(value as f64, label)
}

/// A counter of a fractional quantity (seconds).
fn counter_f(value: f64) -> proto::Metric {
    counter_of(value, None)
}

fn counter_of(value: f64, label: Option<(&str, &str)>) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::default();
    m.set_counter(c);
    if let Some((name, value)) = label {
        let mut l = proto::LabelPair::default();
        l.set_name(name.to_string());
        l.set_value(value.to_string());
        m.set_label(vec![l]);
    }
    m
}

fn gauge(value: u64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value as f64);
    let mut m = proto::Metric::default();
    m.set_gauge(g);
    m
}

/// The raftstore's per-bucket counts (`bounds`, then one open bucket) as a Prometheus
/// histogram (cumulative buckets). The count is the sum of the buckets, not a separate
/// counter, so that `+Inf` is never below a bucket even though the raftstore's counters are
/// read one by one, not atomically.
fn histogram(bounds: &[f64], per_bucket: &[u64], sum: f64) -> proto::Metric {
    assert_eq!(per_bucket.len(), bounds.len() + 1, "one open bucket after the bounds");
    let mut cumulative = 0;
    let mut buckets = Vec::with_capacity(bounds.len());
    for (bound, count) in bounds.iter().zip(per_bucket) {
        cumulative += count;
        let mut b = proto::Bucket::default();
        b.set_upper_bound(*bound);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(per_bucket.iter().sum());
    h.set_sample_sum(sum);
    let mut m = proto::Metric::default();
    m.set_histogram(h);
    m
}

#[cfg(test)]
mod tests {
    use util::StoreId;

    use super::*;

    fn metrics() -> (Metrics, StoreStats) {
        let stats = StoreStats::default();
        let meta = Arc::new(Mutex::new(StoreMeta::new(StoreId(1))));
        (Metrics::new(stats.clone(), meta), stats)
    }

    /// The value of the sample line that starts with `series` (name and labels), if any.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn label_tables_match_the_enums() {
        for (i, m) in RpcMethod::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
        for (i, r) in RpcResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn requests_are_counted_by_method_and_result() {
        let (m, _) = metrics();
        let grpc = m.grpc();
        grpc.start(RpcMethod::RawPut).finish(RpcResult::Ok);
        grpc.start(RpcMethod::RawPut).finish(RpcResult::Ok);
        grpc.start(RpcMethod::RawGet).finish(RpcResult::RegionError);
        let text = m.encode();
        let put_ok = r#"regionstore_server_grpc_requests_total{method="raw_put",result="ok"}"#;
        let get_region =
            r#"regionstore_server_grpc_requests_total{method="raw_get",result="region_error"}"#;
        let scan_ok = r#"regionstore_server_grpc_requests_total{method="raw_scan",result="ok"}"#;
        assert_eq!(sample(&text, put_ok), Some(2.0), "{text}");
        assert_eq!(sample(&text, get_region), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, scan_ok),
            Some(0.0),
            "every series exists from the start:\n{text}"
        );
        let put_count =
            r#"regionstore_server_grpc_request_duration_seconds_count{method="raw_put"}"#;
        assert_eq!(sample(&text, put_count), Some(2.0), "{text}");
    }

    #[test]
    fn raftstore_counters_are_read_at_scrape_time() {
        let (m, stats) = metrics();
        assert_eq!(sample(&m.encode(), "regionstore_raftstore_fsyncs_total"), Some(0.0));
        stats.record_fsync(0);
        stats.record_fsync(3);
        stats.record_apply_round(3);
        stats.record_lease_read();
        let leader = stats.leader_guard();
        let text = m.encode();
        assert_eq!(sample(&text, "regionstore_raftstore_fsyncs_total"), Some(2.0), "{text}");
        assert_eq!(sample(&text, "regionstore_raftstore_proposals_total"), Some(3.0), "{text}");
        assert_eq!(sample(&text, "regionstore_raftstore_apply_rounds_total"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "regionstore_raftstore_applied_commands_total"),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"regionstore_raftstore_reads_total{kind="lease"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, "regionstore_raftstore_leaders"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "regionstore_raftstore_regions"), Some(0.0), "{text}");
        // Histogram: one fsync with 0 proposals, one with 3 (in the <= 4 bucket).
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(r#"regionstore_raftstore_proposals_per_fsync_bucket{{le="{le}"}}"#),
            )
        };
        assert_eq!(bucket("0"), Some(1.0), "{text}");
        assert_eq!(bucket("2"), Some(1.0), "{text}");
        assert_eq!(bucket("4"), Some(2.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(2.0), "{text}");
        assert_eq!(
            sample(&text, "regionstore_raftstore_proposals_per_fsync_sum"),
            Some(3.0),
            "{text}"
        );
        drop(leader);
        assert_eq!(sample(&m.encode(), "regionstore_raftstore_leaders"), Some(0.0));
    }

    #[test]
    fn split_to_leader_is_exported_in_seconds() {
        let (m, stats) = metrics();
        stats.record_split_to_leader(30);
        stats.record_split_to_leader(1500);
        stats.record_command_held_for_leader();
        let text = m.encode();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(r#"regionstore_raftstore_split_to_leader_seconds_bucket{{le="{le}"}}"#),
            )
        };
        assert_eq!(bucket("0.02"), Some(0.0), "{text}");
        assert_eq!(bucket("0.05"), Some(1.0), "{text}");
        assert_eq!(bucket("1"), Some(1.0), "{text}");
        assert_eq!(bucket("2"), Some(2.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(2.0), "{text}");
        assert_eq!(
            sample(&text, "regionstore_raftstore_split_to_leader_seconds_sum"),
            Some(1.53),
            "{text}"
        );
        assert_eq!(
            sample(&text, "regionstore_raftstore_leader_wait_commands_total"),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn every_family_has_help_and_type() {
        let (m, _) = metrics();
        let text = m.encode();
        for (name, _, _) in STORE_FAMILIES {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
    }
}
