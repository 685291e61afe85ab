//! The whole-process configuration: one section per component, parsed once here and passed down.
//!
//! Each component crate owns the type of its own section and its `validate()`. This file only
//! composes them, applies command-line overrides and checks what spans sections. Unknown keys are
//! rejected, so a misspelt option fails start-up instead of being ignored.
//!
//! `etc/config-template.toml` documents every option with its default; `tests/config_template.rs`
//! keeps the two in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use util::config::{ConfigError, ReadableDuration};
use util::logger::LogConfig;

/// The contents of a regionstore-server config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    pub server: ServerConfig,
    pub pd: PdConfig,
    pub raftstore: raftstore::Config,
    /// When regions split (TiKV keeps these under `[coprocessor]`).
    pub coprocessor: raftstore::SplitConfig,
    pub storage: StorageConfig,
    /// The KV engine: user data plus region and apply state.
    pub rocksdb: engine_rocks::RocksDbConfig,
    /// The raft engine: raft logs and raft state of every region on the store.
    pub raftdb: engine_rocks::RocksDbConfig,
}

/// Network addresses and the data directory of one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address for clients and for the other stores.
    pub addr: String,
    /// Address advertised to PD and other stores; empty means `addr`. Set it when `addr` is a
    /// wildcard such as 0.0.0.0.
    pub advertise_addr: String,
    /// HTTP address for `/metrics` and `/status`.
    pub status_addr: String,
    /// Holds the KV engine (`db/`) and the raft engine (`raft/`).
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            // TiKV's ports, so habits and tools carry over.
            addr: "127.0.0.1:20160".to_owned(),
            advertise_addr: String::new(),
            status_addr: "127.0.0.1:20180".to_owned(),
            data_dir: PathBuf::from("./data/store"),
        }
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [("addr", &self.addr), ("status-addr", &self.status_addr)] {
            check_socket_addr(key, value)?;
        }
        if !self.advertise_addr.is_empty() {
            check_socket_addr("advertise-addr", &self.advertise_addr)?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data-dir", "must not be empty"));
        }
        if self.addr == self.status_addr {
            return Err(ConfigError::conflict("addr", "status-addr", "must be different ports"));
        }
        Ok(())
    }

    /// Directory of the KV engine.
    pub fn kv_engine_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// Directory of the raft engine.
    pub fn raft_engine_path(&self) -> PathBuf {
        self.data_dir.join("raft")
    }
}

/// Raw KV data on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct StorageConfig {
    /// Expired raw values are removed when compaction rewrites them, and every SST file of the
    /// data CFs is recompacted about this long after it was written, so expired values leave
    /// the disk within about this long even without writes. Each interval rewrites the whole
    /// data set once (see engine_rocks' README for the cost). 0 disables the recompaction.
    pub ttl_check_poll_interval: ReadableDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        // TiKV's default.
        StorageConfig { ttl_check_poll_interval: ReadableDuration::minutes(12 * 60) }
    }
}

impl StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let d = self.ttl_check_poll_interval.as_duration();
        if !d.is_zero() && d < std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "ttl-check-poll-interval",
                "must be 0 or at least 1s",
            ));
        }
        Ok(())
    }
}

fn check_socket_addr(key: &str, value: &str) -> Result<(), ConfigError> {
    value.parse::<SocketAddr>().map(|_| ()).map_err(|e| {
        ConfigError::invalid(key, format!("`{value}` is not an ip:port address ({e})"))
    })
}

/// How to reach the placement driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PdConfig {
    /// PD client endpoints, `host:port` with an optional `http://` prefix.
    pub endpoints: Vec<String>,
    /// How often the store reports its stats to PD.
    pub store_heartbeat_interval: ReadableDuration,
    /// How often each region this store leads is reported to PD (routing for clients).
    pub region_heartbeat_interval: ReadableDuration,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            store_heartbeat_interval: ReadableDuration::secs(10),
            // Shorter than TiKV's 60 s: until leader changes are reported at once, this
            // bounds how stale PD's leader hint is (clients follow NotLeader hints anyway).
            region_heartbeat_interval: ReadableDuration::secs(2),
        }
    }
}

impl PdConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::invalid("endpoints", "needs at least one PD address"));
        }
        if let Some(bad) = self.endpoints.iter().find(|e| e.trim().is_empty()) {
            return Err(ConfigError::invalid("endpoints", format!("empty endpoint in {bad:?}")));
        }
        for (key, d) in [
            ("store-heartbeat-interval", self.store_heartbeat_interval),
            ("region-heartbeat-interval", self.region_heartbeat_interval),
        ] {
            if d.as_duration().is_zero() {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        Ok(())
    }
}

/// Values given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub pd_endpoints: Option<Vec<String>>,
    pub addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub status_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

impl Config {
    /// Reads `path` (defaults when `None`), applies `overrides` and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, LoadError> {
        let mut cfg = match path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|source| LoadError::Parse { path: path.to_owned(), source: Box::new(source) })
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(endpoints) = &o.pd_endpoints {
            self.pd.endpoints = endpoints.clone();
        }
        if let Some(addr) = &o.addr {
            self.server.addr = addr.clone();
        }
        if let Some(addr) = &o.advertise_addr {
            self.server.advertise_addr = addr.clone();
        }
        if let Some(addr) = &o.status_addr {
            self.server.status_addr = addr.clone();
        }
        if let Some(dir) = &o.data_dir {
            self.server.data_dir = dir.clone();
        }
    }

    /// Checks every section, reporting the first problem with its full TOML key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.log.validate().map_err(|e| e.in_section("log"))?;
        self.server.validate().map_err(|e| e.in_section("server"))?;
        self.pd.validate().map_err(|e| e.in_section("pd"))?;
        self.coprocessor.validate().map_err(|e| e.in_section("coprocessor"))?;
        self.raftstore_config().validate().map_err(|e| e.in_section("raftstore"))?;
        self.storage.validate().map_err(|e| e.in_section("storage"))?;
        self.rocksdb.validate().map_err(|e| e.in_section("rocksdb"))?;
        self.raftdb.validate().map_err(|e| e.in_section("raftdb"))?;
        Ok(())
    }

    /// The raftstore's config: `[raftstore]` with `[coprocessor]` inside.
    pub fn raftstore_config(&self) -> raftstore::Config {
        raftstore::Config { coprocessor: self.coprocessor.clone(), ..self.raftstore.clone() }
    }

    /// The config as TOML, as `--check-config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("[server]\nadr = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("adr"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut cfg = Config::default();
        cfg.server.addr = "nowhere".to_owned();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("server.addr") && err.contains("nowhere"), "{err}");

        let mut cfg = Config::default();
        cfg.raftstore.apply_pool_size = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("raftstore.apply-pool-size"), "{err}");

        let mut cfg = Config::default();
        cfg.pd.endpoints.clear();
        assert!(cfg.validate().unwrap_err().to_string().contains("pd.endpoints"));

        let mut cfg = Config::default();
        cfg.storage.ttl_check_poll_interval = ReadableDuration::millis(500);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("storage.ttl-check-poll-interval"), "{err}");
        cfg.storage.ttl_check_poll_interval = ReadableDuration::millis(0);
        cfg.validate().unwrap();
    }

    #[test]
    fn ttl_check_poll_interval_defaults_to_tikvs_12h() {
        let cfg: Config = toml::from_str("[storage]\nttl-check-poll-interval = \"12h\"").unwrap();
        assert_eq!(cfg.storage, StorageConfig::default());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut cfg = Config::default();
        cfg.apply(&Overrides {
            pd_endpoints: Some(vec!["10.0.0.1:2379".to_owned()]),
            addr: Some("127.0.0.1:30160".to_owned()),
            data_dir: Some(PathBuf::from("/tmp/x")),
            ..Overrides::default()
        });
        assert_eq!(cfg.pd.endpoints, ["10.0.0.1:2379"]);
        assert_eq!(cfg.server.addr, "127.0.0.1:30160");
        assert_eq!(cfg.server.kv_engine_path(), PathBuf::from("/tmp/x/db"));
        assert_eq!(cfg.server.raft_engine_path(), PathBuf::from("/tmp/x/raft"));
    }

    #[test]
    fn printed_config_parses_back_identically() {
        let cfg = Config::default();
        let back: Config = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
    }
}
