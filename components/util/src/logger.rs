//! Builds the process's root `slog::Logger` from [`LogConfig`].
//!
//! Loggers are injected, never global: binaries build one root logger here and pass children
//! (`logger.new(o!("region_id" => ..))`) down. Records are formatted on a background thread
//! behind a bounded channel of [`LOG_CHANNEL_CAPACITY`] records so that a slow terminal or disk
//! never stalls a poller. When that channel is full, records are dropped and the drop count is
//! logged once the channel drains (slog-async's `DropAndReport`); a dropped log line is the price
//! of never blocking the raft loop on logging.
//!
//! The returned [`LogGuard`] flushes the queue when dropped: hold it until the process exits.

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slog::{Drain, Logger};

use crate::config::ConfigError;

/// How many records may wait for the logging thread before new ones are dropped.
pub const LOG_CHANNEL_CAPACITY: usize = 16_384;

/// Minimum severity written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    fn to_slog(self) -> slog::Level {
        match self {
            LogLevel::Trace => slog::Level::Trace,
            LogLevel::Debug => slog::Level::Debug,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Warn => slog::Level::Warning,
            LogLevel::Error => slog::Level::Error,
            LogLevel::Critical => slog::Level::Critical,
        }
    }
}

/// Line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record with key-values, for terminals.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[log]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Append to this file instead of writing to stderr. Empty means stderr.
    pub file: Option<PathBuf>,
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.file {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    "file",
                    "must be a path; leave it out for stderr",
                ));
            }
            if path.is_dir() {
                return Err(ConfigError::invalid(
                    "file",
                    format!("{} is a directory", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// Flushes buffered records when dropped. Keep it alive until the process exits.
#[must_use = "dropping the guard flushes and stops the logging thread"]
pub struct LogGuard {
    _async: Option<slog_async::AsyncGuard>,
}

/// Builds the root logger.
///
/// # Errors
/// Fails when the configured log file cannot be opened for appending.
pub fn build_logger(cfg: &LogConfig) -> io::Result<(Logger, LogGuard)> {
    let writer: Box<dyn io::Write + Send> = match &cfg.file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(io::stderr()),
    };
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = match cfg.format {
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(writer);
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
        LogFormat::Json => Box::new(
            slog_json::Json::new(writer).add_default_keys().set_newlines(true).build().fuse(),
        ),
    };
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(LOG_CHANNEL_CAPACITY)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log-0".to_owned())
        .build_with_guard();
    let drain = drain.filter_level(cfg.level.to_slog()).fuse();
    Ok((Logger::root(drain, slog::o!()), LogGuard { _async: Some(guard) }))
}

/// A logger that discards everything, for tests and benches that don't care.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_logger_writes_json_and_filters_by_level() {
        let dir = std::env::temp_dir().join(format!("util-logger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.log");
        let cfg =
            LogConfig { level: LogLevel::Warn, format: LogFormat::Json, file: Some(path.clone()) };
        cfg.validate().unwrap();
        let (logger, guard) = build_logger(&cfg).unwrap();
        slog::info!(logger, "not written"; "k" => 1);
        slog::warn!(logger, "written"; "region_id" => 7);
        drop(logger);
        drop(guard); // Flushes the async queue.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!text.contains("not written"), "{text}");
        let line = text.lines().find(|l| l.contains("written")).expect("warn record");
        assert!(line.contains("\"region_id\":7"), "{line}");
    }

    #[test]
    fn config_parses_and_rejects_directory_file() {
        let cfg: LogConfig = toml::from_str("level = \"debug\"\nformat = \"json\"").unwrap();
        assert_eq!(cfg.level, LogLevel::Debug);
        assert_eq!(cfg.format, LogFormat::Json);
        assert!(toml::from_str::<LogConfig>("level = \"loud\"").is_err());
        let bad = LogConfig { file: Some(std::env::temp_dir()), ..LogConfig::default() };
        assert!(matches!(bad.validate(), Err(ConfigError::Invalid { .. })));
    }
}
