//! The placement driver's configuration: one TOML file, `etc/pd-config-template.toml`, whose
//! `# key = value` lines are the defaults of [`PdConfig`] (a test keeps the two in step).
//!
//! Unknown keys are rejected, so a misspelt option fails start-up instead of being ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use util::config::ConfigError;
use util::logger::LogConfig;

/// Upper bound of `replication.max-replicas`: a raft group of more voters than this is a
/// misconfiguration, not a deployment.
pub const MAX_REPLICAS_MAX: usize = 9;

/// The contents of a regionstore-pd config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PdConfig {
    /// Listen address of gRPC (`pdpb.PD`, `keyspacepb.Keyspace`) and of the HTTP API, which
    /// share one port. Port 0 picks a free port (tests).
    pub addr: String,
    /// Address given to clients in `GetMembers`; empty means the address actually bound. Set it
    /// when `addr` is a wildcard such as 0.0.0.0.
    pub advertise_addr: String,
    /// Holds the metadata RocksDB (`meta/`).
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub replication: ReplicationConfig,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            // PD's usual client port, so tools and habits carry over.
            addr: "127.0.0.1:2379".to_owned(),
            advertise_addr: String::new(),
            data_dir: PathBuf::from("./pd-data"),
            log: LogConfig::default(),
            replication: ReplicationConfig::default(),
        }
    }
}

/// How many copies of each region PD keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Peers per region. PD bootstraps the cluster itself once this many stores have
    /// registered, putting the first region on the lowest store ids.
    pub max_replicas: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig { max_replicas: 3 }
    }
}

/// Values given on the command line; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub addr: Option<String>,
    pub advertise_addr: Option<String>,
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

impl PdConfig {
    /// Reads `path` (defaults when `None`), applies `overrides` and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<PdConfig, LoadError> {
        let mut cfg = match path {
            Some(path) => PdConfig::from_file(path)?,
            None => PdConfig::default(),
        };
        cfg.apply(overrides);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<PdConfig, LoadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|source| LoadError::Parse { path: path.to_owned(), source: Box::new(source) })
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(addr) = &o.addr {
            self.addr = addr.clone();
        }
        if let Some(addr) = &o.advertise_addr {
            self.advertise_addr = addr.clone();
        }
        if let Some(dir) = &o.data_dir {
            self.data_dir = dir.clone();
        }
    }

    /// Checks every value, naming the offending key as it is spelt in the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_socket_addr("addr", &self.addr)?;
        if !self.advertise_addr.is_empty() {
            check_socket_addr("advertise-addr", &self.advertise_addr)?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data-dir", "must not be empty"));
        }
        self.log.validate().map_err(|e| e.in_section("log"))?;
        self.replication.validate().map_err(|e| e.in_section("replication"))?;
        Ok(())
    }

    /// The config as TOML, as `--check-config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a PdConfig always serializes")
    }

    /// Directory of the metadata RocksDB.
    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta")
    }
}

impl ReplicationConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_replicas == 0 || self.max_replicas > MAX_REPLICAS_MAX {
            return Err(ConfigError::invalid(
                "max-replicas",
                format!("must be in 1..={MAX_REPLICAS_MAX}, got {}", self.max_replicas),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let cfg = PdConfig::default();
        cfg.validate().unwrap();
        let back: PdConfig = toml::from_str(&cfg.to_toml()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut cfg = PdConfig::default();
        cfg.replication.max_replicas = 0;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("replication.max-replicas"), "{err}");

        let mut cfg = PdConfig::default();
        cfg.apply(&Overrides { addr: Some("nowhere".to_owned()), ..Overrides::default() });
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("`addr`") && err.contains("nowhere"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<PdConfig>("[replication]\nmax-replica = 3").unwrap_err();
        assert!(err.to_string().contains("max-replica"), "{err}");
    }
}
