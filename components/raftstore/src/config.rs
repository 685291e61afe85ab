//! The `[raftstore]` section: thread pools, raft timing and per-region limits.
//!
//! Option names are TiKV's, so an operator's knowledge carries over. Invariants after
//! [`Config::validate`], relied on everywhere in the crate:
//! - `raft_heartbeat_ticks < raft_election_timeout_ticks` (raft-rs requires it);
//! - `raft_store_max_leader_lease <= election timeout - one base tick`: a leader's lease must
//!   expire before any other peer can win an election, or two peers could both serve lease reads;
//! - every count and size used as a bound is at least 1;
//! - `snap-io-max-bytes-per-sec` is 0 (unlimited) or at least 1 MiB/s, the rate a snapshot
//!   sender's deadline assumes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use util::config::{ConfigError, ReadableDuration, ReadableSize};

use crate::split::SplitConfig;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Threads driving raft peers (one FSM per region).
    pub store_pool_size: usize,
    /// Most regions handled in one store poll round; their raft writes share one fsync.
    pub store_max_batch_size: usize,
    /// Threads applying committed entries to the KV engine.
    pub apply_pool_size: usize,
    /// Most regions handled in one apply poll round; their writes share one KV write.
    pub apply_max_batch_size: usize,
    /// Capacity of each region's mailbox; when full, requests are answered "server is busy".
    pub notify_capacity: usize,
    /// A region polled without pause for this long goes to the back of the queue.
    pub reschedule_duration: ReadableDuration,
    /// Most messages one region handles in one poll round before yielding to the others.
    pub messages_per_tick: usize,

    /// The logical clock of every region advances one tick per interval.
    pub raft_base_tick_interval: ReadableDuration,
    pub raft_heartbeat_ticks: usize,
    pub raft_election_timeout_ticks: usize,
    /// Lower bound of the randomized election timeout; 0 means `raft-election-timeout-ticks`.
    pub raft_min_election_timeout_ticks: usize,
    /// Upper bound (exclusive) of the randomized election timeout; 0 means twice
    /// `raft-election-timeout-ticks`.
    pub raft_max_election_timeout_ticks: usize,
    /// Most bytes of entries in one append message.
    pub raft_max_size_per_msg: ReadableSize,
    /// Most append messages in flight to one follower.
    pub raft_max_inflight_msgs: usize,
    /// Largest command accepted; larger ones are refused with `RaftEntryTooLarge`.
    pub raft_entry_max_size: ReadableSize,
    /// How long a leader may serve reads locally after a quorum confirmed its leadership.
    pub raft_store_max_leader_lease: ReadableDuration,
    /// Pre-vote keeps a partitioned peer that rejoins from disrupting the leader.
    pub prevote: bool,
    /// Most proposals a region may have waiting for apply; more are refused as busy.
    pub max_pending_proposals: usize,
    /// Most read-index requests a region may have waiting; more are refused as busy.
    pub max_pending_reads: usize,
    /// How long a command may wait at a peer created moments ago (by a split) for its
    /// region's first leader, instead of failing at once with `NotLeader` and no leader to
    /// try. 0 turns the wait off. See `peer/leader_wait.rs`.
    pub leader_wait_timeout: ReadableDuration,

    /// How often a leader considers compacting its region's raft log (`peer/log_gc.rs`).
    pub raft_log_gc_tick_interval: ReadableDuration,
    /// Compact only once at least this many entries every replica holds can go (unless the
    /// tick was skipped `raft-log-reserve-max-ticks` times).
    pub raft_log_gc_threshold: u64,
    /// Past this many applied entries in the log, compact even what a lagging follower still
    /// needs (it catches up by snapshot). Default: 3/4 of `region-split-size` / 1 KiB.
    pub raft_log_gc_count_limit: Option<u64>,
    /// Past this many bytes of log, compact as with the count limit. Default: 3/4 of
    /// `region-split-size`.
    pub raft_log_gc_size_limit: Option<ReadableSize>,
    /// Ticks a compaction below `raft-log-gc-threshold` may be put off before it happens
    /// anyway (so an idle region's few entries go too).
    pub raft_log_reserve_max_ticks: usize,
    /// A leader transfer is refused while the target lags the leader's log by more than
    /// this many entries (it would have to catch up first; the group would be leaderless
    /// meanwhile if the leader stepped down).
    pub leader_transfer_max_log_lag: u64,

    /// A merge is refused while some peer of the source region lags its leader's log by more
    /// than this many entries: the target carries the entries a lagging store may lack in its
    /// CommitMerge (`peer/merge.rs`). Must stay below `raft-log-gc-count-limit`.
    pub merge_max_log_gap: u64,
    /// How often a merging region checks its target again (commits, waits or votes for
    /// rollback; `peer/merge.rs`).
    pub merge_check_tick_interval: ReadableDuration,
    /// How long a merging source leader holds a client command, hoping the merge ends, before
    /// it answers a retryable error (`ProposalInMergingMode`, `ReadIndexNotReady`).
    pub merge_hold_timeout: ReadableDuration,

    /// How often a peer that does not lead checks whether it still hears a leader
    /// (`peer/stale.rs`).
    pub peer_stale_state_check_interval: ReadableDuration,
    /// A peer that heard no leader for this long is counted and logged as leader-missing.
    pub abnormal_leader_missing_duration: ReadableDuration,
    /// A peer that heard no leader for this long asks PD whether it is still a member, and
    /// destroys itself if PD's newer region no longer lists it.
    pub max_leader_missing_duration: ReadableDuration,

    /// How often a leader considers checking whether its region should split.
    pub split_region_check_tick_interval: ReadableDuration,
    /// A leader checks its region's size only after this many bytes were written to it since
    /// the last check. Default: 1/16 of `coprocessor.region-split-size`.
    pub region_split_check_diff: Option<ReadableSize>,
    /// True: on a split the original region id keeps the rightmost part (TiKV's default).
    pub right_derive_when_split: bool,

    /// Bytes per second of all snapshot I/O of the store together: generating, sending and
    /// receiving share one limiter (`snap/limiter.rs`). 0 = unlimited; otherwise at least
    /// 1MiB, the rate a sender's deadline assumes.
    pub snap_io_max_bytes_per_sec: ReadableSize,
    /// Most snapshots sent at once; a send beyond it is refused as busy and retried later.
    pub concurrent_send_snap_limit: usize,
    /// Most snapshots received at once; a receive beyond it is refused as busy (the sender's
    /// stream gets RESOURCE_EXHAUSTED and retries).
    pub concurrent_recv_snap_limit: usize,
    /// A generated snapshot older than this is deleted by the snapshot GC even if a peer may
    /// still need it (a sender that has not finished by then starts over).
    pub snap_gc_timeout: ReadableDuration,

    /// How often a leader reports its region to PD. The server fills it from
    /// `[pd] region-heartbeat-interval`, the option users set.
    #[serde(skip)]
    pub region_heartbeat_interval: ReadableDuration,

    /// The `[coprocessor]` section (split thresholds). It is a section of its own in the
    /// config file; the binary copies it here so the raftstore gets one config.
    #[serde(skip)]
    pub coprocessor: SplitConfig,
}

impl Default for Config {
    fn default() -> Config {
        let batch = batch_system::Config::default();
        Config {
            store_pool_size: batch.pool_size,
            // TiKV's default without region hibernation, which we do not have yet.
            store_max_batch_size: 1024,
            apply_pool_size: batch.pool_size,
            apply_max_batch_size: batch.max_batch_size,
            notify_capacity: batch.notify_capacity,
            reschedule_duration: batch.reschedule_duration,
            // TiKV's value: enough to drain a burst, small enough to bound one region's turn.
            messages_per_tick: 4096,
            raft_base_tick_interval: ReadableDuration::secs(1),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            raft_min_election_timeout_ticks: 0,
            raft_max_election_timeout_ticks: 0,
            raft_max_size_per_msg: ReadableSize::mib(1),
            raft_max_inflight_msgs: 256,
            raft_entry_max_size: ReadableSize::mib(8),
            // One base tick short of the 10 s election timeout, as TiKV.
            raft_store_max_leader_lease: ReadableDuration::secs(9),
            prevote: true,
            // Bounds the memory of callbacks held per region; a client that hits it gets
            // "server is busy" and backs off.
            max_pending_proposals: 10_000,
            max_pending_reads: 10_000,
            // A new region elects its leader within a few round trips and fsyncs (tens of
            // ms); the official client's whole region backoff is about 1.5 s. Half a second
            // covers a slow election and leaves the client most of its budget.
            leader_wait_timeout: ReadableDuration::millis(500),
            // TiKV's values.
            raft_log_gc_tick_interval: ReadableDuration::secs(3),
            raft_log_gc_threshold: 50,
            raft_log_gc_count_limit: None,
            raft_log_gc_size_limit: None,
            raft_log_reserve_max_ticks: 6,
            leader_transfer_max_log_lag: 128,
            // TiKV's values (`merge-max-log-gap`, `merge-check-tick-interval`); the hold is
            // ours: a third of the official client's 1.5 s region backoff.
            merge_max_log_gap: 10,
            merge_check_tick_interval: ReadableDuration::secs(2),
            merge_hold_timeout: ReadableDuration::millis(500),
            // TiKV's values.
            peer_stale_state_check_interval: ReadableDuration::minutes(5),
            abnormal_leader_missing_duration: ReadableDuration::minutes(10),
            max_leader_missing_duration: ReadableDuration::minutes(2 * 60),
            split_region_check_tick_interval: ReadableDuration::secs(10),
            region_split_check_diff: None,
            right_derive_when_split: true,
            // TiKV's values.
            snap_io_max_bytes_per_sec: ReadableSize::mib(100),
            concurrent_send_snap_limit: 32,
            concurrent_recv_snap_limit: 32,
            snap_gc_timeout: ReadableDuration::minutes(4 * 60),
            region_heartbeat_interval: ReadableDuration::secs(2),
            coprocessor: SplitConfig::default(),
        }
    }
}

impl Config {
    /// A config with short ticks for tests: 10 ms ticks, 50 ms heartbeats, 250 ms elections.
    pub fn for_tests() -> Config {
        Config {
            store_pool_size: 1,
            apply_pool_size: 1,
            raft_base_tick_interval: ReadableDuration::millis(10),
            raft_heartbeat_ticks: 5,
            raft_election_timeout_ticks: 25,
            raft_store_max_leader_lease: ReadableDuration::millis(200),
            split_region_check_tick_interval: ReadableDuration::millis(100),
            raft_log_gc_tick_interval: ReadableDuration::millis(100),
            ..Config::default()
        }
    }

    /// The election timeout as a duration (lower bound of the randomized timeout).
    pub fn election_timeout(&self) -> Duration {
        self.raft_base_tick_interval.as_duration() * self.min_election_ticks() as u32
    }

    pub fn min_election_ticks(&self) -> usize {
        if self.raft_min_election_timeout_ticks == 0 {
            self.raft_election_timeout_ticks
        } else {
            self.raft_min_election_timeout_ticks
        }
    }

    pub fn max_election_ticks(&self) -> usize {
        if self.raft_max_election_timeout_ticks == 0 {
            self.raft_election_timeout_ticks * 2
        } else {
            self.raft_max_election_timeout_ticks
        }
    }

    /// Bytes written to a region between two size checks.
    pub fn split_check_diff(&self) -> u64 {
        self.region_split_check_diff
            .map_or(self.coprocessor.split_size() / 16, |d| d.as_bytes())
            .max(1)
    }

    /// Applied entries in the log past which it is compacted even if a follower needs them.
    pub fn raft_log_gc_count_limit(&self) -> u64 {
        self.raft_log_gc_count_limit.unwrap_or(self.coprocessor.split_size() * 3 / 4 / 1024).max(1)
    }

    /// Log bytes past which it is compacted even if a follower needs them.
    pub fn raft_log_gc_size_limit(&self) -> u64 {
        self.raft_log_gc_size_limit
            .map_or(self.coprocessor.split_size() * 3 / 4, |s| s.as_bytes())
            .max(1)
    }

    /// Raft base ticks between two log GC ticks (at least 1).
    pub fn raft_log_gc_ticks(&self) -> u64 {
        self.in_base_ticks(self.raft_log_gc_tick_interval)
    }

    /// Raft base ticks between two stale-state checks (at least 1).
    pub fn peer_stale_state_check_ticks(&self) -> u64 {
        self.in_base_ticks(self.peer_stale_state_check_interval)
    }

    /// Raft base ticks between two split-check ticks (at least 1).
    pub fn split_check_ticks(&self) -> u64 {
        self.in_base_ticks(self.split_region_check_tick_interval)
    }

    /// Raft base ticks between two merge checks of a merging region (at least 1).
    pub fn merge_check_ticks(&self) -> u64 {
        self.in_base_ticks(self.merge_check_tick_interval)
    }

    /// Raft base ticks between two region heartbeats of a leader (at least 1).
    pub fn region_heartbeat_ticks(&self) -> u64 {
        self.in_base_ticks(self.region_heartbeat_interval)
    }

    fn in_base_ticks(&self, d: ReadableDuration) -> u64 {
        let base = self.raft_base_tick_interval.as_duration().as_millis().max(1);
        (d.as_duration().as_millis() / base).max(1) as u64
    }

    /// The batch-system config of the store (raft) pool.
    pub fn store_batch_system(&self) -> batch_system::Config {
        batch_system::Config {
            pool_size: self.store_pool_size,
            max_batch_size: self.store_max_batch_size,
            notify_capacity: self.notify_capacity,
            reschedule_duration: self.reschedule_duration,
        }
    }

    /// The batch-system config of the apply pool.
    pub fn apply_batch_system(&self) -> batch_system::Config {
        batch_system::Config {
            pool_size: self.apply_pool_size,
            max_batch_size: self.apply_max_batch_size,
            notify_capacity: self.notify_capacity,
            reschedule_duration: self.reschedule_duration,
        }
    }

    /// Checks the invariants in the module doc. Keys are local; the caller adds the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // The batch system names its keys without our store-/apply- prefix; say which pool.
        let pool = |e: ConfigError, pool: &str| match e {
            ConfigError::Invalid { key, reason } => {
                ConfigError::invalid(format!("{pool}-{key}"), reason)
            }
            ConfigError::Conflict { .. } => e,
        };
        self.store_batch_system().validate().map_err(|e| pool(e, "store"))?;
        self.apply_batch_system().validate().map_err(|e| pool(e, "apply"))?;
        for (key, value) in [
            ("messages-per-tick", self.messages_per_tick),
            ("raft-heartbeat-ticks", self.raft_heartbeat_ticks),
            ("raft-max-inflight-msgs", self.raft_max_inflight_msgs),
            ("max-pending-proposals", self.max_pending_proposals),
            ("max-pending-reads", self.max_pending_reads),
            ("raft-log-gc-threshold", self.raft_log_gc_threshold as usize),
            ("raft-log-gc-count-limit", self.raft_log_gc_count_limit.unwrap_or(1) as usize),
            ("concurrent-send-snap-limit", self.concurrent_send_snap_limit),
            ("concurrent-recv-snap-limit", self.concurrent_recv_snap_limit),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if self.merge_check_tick_interval.is_zero() {
            return Err(ConfigError::invalid("merge-check-tick-interval", "must be positive"));
        }
        if self.merge_max_log_gap >= self.raft_log_gc_count_limit() {
            return Err(ConfigError::conflict(
                "merge-max-log-gap",
                "raft-log-gc-count-limit",
                "a merge needs the log of its laggards: the gap must stay below the GC limit",
            ));
        }
        if self.raft_log_gc_tick_interval.is_zero() {
            return Err(ConfigError::invalid("raft-log-gc-tick-interval", "must be positive"));
        }
        if self.raft_log_gc_size_limit.is_some_and(|s| s.as_bytes() == 0) {
            return Err(ConfigError::invalid("raft-log-gc-size-limit", "must be positive"));
        }
        if self.peer_stale_state_check_interval.is_zero() {
            return Err(ConfigError::invalid(
                "peer-stale-state-check-interval",
                "must be positive",
            ));
        }
        if self.abnormal_leader_missing_duration < self.peer_stale_state_check_interval {
            return Err(ConfigError::conflict(
                "abnormal-leader-missing-duration",
                "peer-stale-state-check-interval",
                "a peer must be checked at least once before its leader counts as missing",
            ));
        }
        if self.max_leader_missing_duration < self.abnormal_leader_missing_duration {
            return Err(ConfigError::conflict(
                "max-leader-missing-duration",
                "abnormal-leader-missing-duration",
                "a missing leader is reported before the peer asks PD whether it is stale",
            ));
        }
        if self.split_region_check_tick_interval.is_zero() {
            return Err(ConfigError::invalid(
                "split-region-check-tick-interval",
                "must be positive",
            ));
        }
        let snap_rate = self.snap_io_max_bytes_per_sec.as_bytes();
        if snap_rate != 0 && snap_rate < ReadableSize::mib(1).as_bytes() {
            return Err(ConfigError::invalid(
                "snap-io-max-bytes-per-sec",
                "must be 0 (unlimited) or at least 1MiB",
            ));
        }
        if self.snap_gc_timeout.is_zero() {
            return Err(ConfigError::invalid("snap-gc-timeout", "must be positive"));
        }
        self.coprocessor.validate()?;
        if self.raft_base_tick_interval.is_zero() {
            return Err(ConfigError::invalid("raft-base-tick-interval", "must be positive"));
        }
        if self.raft_election_timeout_ticks <= self.raft_heartbeat_ticks {
            return Err(ConfigError::conflict(
                "raft-election-timeout-ticks",
                "raft-heartbeat-ticks",
                "the election timeout must be longer than the heartbeat interval",
            ));
        }
        if self.min_election_ticks() < self.raft_election_timeout_ticks
            || self.max_election_ticks() <= self.min_election_ticks()
        {
            return Err(ConfigError::conflict(
                "raft-min-election-timeout-ticks",
                "raft-max-election-timeout-ticks",
                "need election-timeout <= min < max",
            ));
        }
        if self.raft_max_size_per_msg.as_bytes() == 0 || self.raft_entry_max_size.as_bytes() == 0 {
            return Err(ConfigError::invalid("raft-entry-max-size", "sizes must be positive"));
        }
        let lease_limit =
            self.election_timeout().saturating_sub(self.raft_base_tick_interval.as_duration());
        if self.raft_store_max_leader_lease.as_duration() > lease_limit {
            return Err(ConfigError::conflict(
                "raft-store-max-leader-lease",
                "raft-election-timeout-ticks",
                format!(
                    "the lease ({}) must not exceed the election timeout minus one tick ({})",
                    self.raft_store_max_leader_lease,
                    ReadableDuration(lease_limit)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_test_config_are_valid() {
        Config::default().validate().unwrap();
        Config::for_tests().validate().unwrap();
        assert_eq!(Config::default().election_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn lease_must_end_before_an_election_can_finish() {
        let cfg =
            Config { raft_store_max_leader_lease: ReadableDuration::secs(10), ..Config::default() };
        let err = cfg.validate().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Conflict { key, .. } if key == "raft-store-max-leader-lease"),
            "{err}"
        );
    }

    #[test]
    fn election_must_be_longer_than_heartbeat() {
        let cfg = Config { raft_heartbeat_ticks: 10, ..Config::default() };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn snapshot_limits_are_checked() {
        let invalid_key = |cfg: Config| match cfg.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let base = Config::default;
        let slow = ReadableSize::kib(512);
        assert_eq!(
            invalid_key(Config { snap_io_max_bytes_per_sec: slow, ..base() }),
            "snap-io-max-bytes-per-sec"
        );
        Config { snap_io_max_bytes_per_sec: ReadableSize(0), ..base() }.validate().unwrap();
        assert_eq!(
            invalid_key(Config { concurrent_recv_snap_limit: 0, ..base() }),
            "concurrent-recv-snap-limit"
        );
        assert_eq!(
            invalid_key(Config { concurrent_send_snap_limit: 0, ..base() }),
            "concurrent-send-snap-limit"
        );
        assert_eq!(
            invalid_key(Config { snap_gc_timeout: ReadableDuration::secs(0), ..base() }),
            "snap-gc-timeout"
        );
    }

    #[test]
    fn pool_errors_name_the_pool() {
        let cfg = Config { apply_pool_size: 0, ..Config::default() };
        let err = cfg.validate().unwrap_err().in_section("raftstore");
        assert_eq!(
            err.to_string(),
            "invalid value for `raftstore.apply-pool-size`: must be at least 1"
        );
    }
}
