//! Options of one batch system (`[raftstore]` and `[apply]` each embed one).
//!
//! Invariant after [`Config::validate`]: `1 <= max_batch_size <= 10240`, `pool_size >= 1`,
//! `notify_capacity >= 1`. Everything else in the crate relies on it.

use serde::{Deserialize, Serialize};
use util::config::{ConfigError, ReadableDuration};

/// The largest allowed `max-batch-size`. A round handles every FSM in its batch before any
/// of them is released, so a huge batch turns into a huge latency for the first FSM in it.
pub const MAX_BATCH_SIZE_LIMIT: usize = 10240;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Config {
    /// The most normal FSMs a poller handles in one round (between `begin` and `end`).
    pub max_batch_size: usize,
    /// Number of poller threads.
    pub pool_size: usize,
    /// An FSM that has stayed in one poller's batch for this long is "hot", and every second
    /// hot FSM of a round is pushed to the back of the shared queue so that a few busy FSMs
    /// cannot monopolise a poller while others wait.
    pub reschedule_duration: ReadableDuration,
    /// Capacity of each FSM's mailbox, in messages. `try_send` to a mailbox holding this many
    /// messages fails with `Full`; `force_send` ignores it.
    pub notify_capacity: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // TiKV's default for a store with hibernating regions: big enough that one fsync
            // covers many regions, small enough that a round stays short.
            max_batch_size: 256,
            // Two pollers use both cores of a small machine; raise it on bigger ones.
            pool_size: 2,
            // TiKV's value: long enough that ordinary bursts finish in one poller, short
            // enough that a hotspot is spread within seconds.
            reschedule_duration: ReadableDuration::secs(5),
            // TiKV's `notify-capacity`. A mailbox holds no memory for capacity it does not use
            // (the queue is a linked list of blocks), so a generous bound costs nothing while
            // idle and only limits a runaway producer.
            notify_capacity: 40960,
        }
    }
}

impl Config {
    /// Checks the invariants in the module doc. Keys in the error are local (`max-batch-size`);
    /// the caller adds its section with [`ConfigError::in_section`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_batch_size == 0 || self.max_batch_size > MAX_BATCH_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "max-batch-size",
                format!("{} is outside 1..={MAX_BATCH_SIZE_LIMIT}", self.max_batch_size),
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::invalid("pool-size", "must be at least 1"));
        }
        if self.notify_capacity == 0 {
            return Err(ConfigError::invalid("notify-capacity", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("max-batch-size = 256"), "{text}");
        assert!(text.contains("reschedule-duration = \"5s\""), "{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn partial_toml_keeps_defaults() {
        let cfg: Config = toml::from_str("pool-size = 4\nreschedule-duration = \"250ms\"").unwrap();
        assert_eq!(cfg.pool_size, 4);
        assert_eq!(cfg.reschedule_duration, ReadableDuration::millis(250));
        assert_eq!(cfg.max_batch_size, 256);
        assert_eq!(cfg.notify_capacity, 40960);
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let cases = [
            (Config { max_batch_size: 0, ..Config::default() }, "max-batch-size"),
            (Config { max_batch_size: 10241, ..Config::default() }, "max-batch-size"),
            (Config { pool_size: 0, ..Config::default() }, "pool-size"),
            (Config { notify_capacity: 0, ..Config::default() }, "notify-capacity"),
        ];
        for (cfg, key) in cases {
            match cfg.validate() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("expected invalid {key}, got {other:?}"),
            }
        }
        let edge = Config { max_batch_size: 10240, pool_size: 1, ..Config::default() };
        edge.validate().unwrap();
    }
}
