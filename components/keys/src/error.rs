//! Errors from parsing stored keys. Building a key cannot fail; parsing one that does not have
//! the expected layout returns [`Error`] naming what was expected and the offending bytes, so a
//! corrupted engine can be diagnosed from the log line alone.

/// A key that does not have the layout its parser expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key is shorter or longer than the fixed layout of `kind`.
    #[error("{kind} key has length {actual}, expected {expected}: {key:?}")]
    BadLength { kind: &'static str, expected: usize, actual: usize, key: Vec<u8> },
    /// The key does not start with the prefix of `kind`.
    #[error("key is not a {kind} key (wrong prefix): {key:?}")]
    BadPrefix { kind: &'static str, key: Vec<u8> },
    /// The key has the right prefix but an unknown suffix byte.
    #[error("{kind} key has unknown suffix {suffix:#04x}: {key:?}")]
    BadSuffix { kind: &'static str, suffix: u8, key: Vec<u8> },
}

pub type Result<T> = std::result::Result<T, Error>;
