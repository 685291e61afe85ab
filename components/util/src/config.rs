//! Human-readable config values and the shared validation error.
//!
//! Sizes and durations in TOML are written the way operators think of them (`"256MiB"`,
//! `"10s"`) and parse into [`ReadableSize`] and [`ReadableDuration`]. Both also accept a bare
//! integer (bytes, milliseconds) so a generated config round-trips. They serialize back to the
//! shortest exact text form, so `Display` followed by parsing is the identity.
//!
//! Every crate's `Config::validate()` reports problems as [`ConfigError`], naming the offending
//! key the way it is spelled in the TOML file, so that the operator can find it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A config value that failed validation. `key` is the dotted TOML path (`raftstore.pool-size`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The value is out of its allowed range or otherwise unusable on its own.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// Two values contradict each other.
    #[error("`{key}` conflicts with `{other_key}`: {reason}")]
    Conflict { key: String, other_key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.into(), reason: reason.into() }
    }

    pub fn conflict(
        key: impl Into<String>,
        other_key: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Conflict {
            key: key.into(),
            other_key: other_key.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the key with the section it was validated in, so a crate can validate its own
    /// config with local key names and the binary reports the full path.
    pub fn in_section(self, section: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { key, reason } => {
                ConfigError::Invalid { key: format!("{section}.{key}"), reason }
            }
            ConfigError::Conflict { key, other_key, reason } => ConfigError::Conflict {
                key: format!("{section}.{key}"),
                other_key: format!("{section}.{other_key}"),
                reason,
            },
        }
    }
}

/// Why a size or duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty value")]
    Empty,
    #[error("`{text}` has no number")]
    NoNumber { text: String },
    #[error("unknown unit `{unit}` in `{text}`")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` overflows")]
    Overflow { text: String },
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = KIB * 1024;
pub const GIB: u64 = MIB * 1024;
pub const TIB: u64 = GIB * 1024;

/// Size units from largest to smallest; `Display` picks the largest that divides exactly.
const SIZE_UNITS: [(&str, u64); 5] =
    [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB), ("B", 1)];

/// A byte count written as `"64MiB"`, `"1.5GiB"`, `"4KB"` (KB, MB, GB, TB are read as binary
/// units, as RocksDB and TiKV do) or a bare number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadableSize(pub u64);

impl ReadableSize {
    pub const fn kib(n: u64) -> ReadableSize {
        ReadableSize(n * KIB)
    }
    pub const fn mib(n: u64) -> ReadableSize {
        ReadableSize(n * MIB)
    }
    pub const fn gib(n: u64) -> ReadableSize {
        ReadableSize(n * GIB)
    }
    pub const fn as_bytes(self) -> u64 {
        self.0
    }
    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

fn split_number(text: &str) -> Result<(&str, &str), ParseError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ParseError::Empty);
    }
    let end = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    if end == 0 {
        return Err(ParseError::NoNumber { text: text.to_owned() });
    }
    Ok((&trimmed[..end], trimmed[end..].trim()))
}

/// Multiplies a decimal literal (`"1.5"`) by an integer unit without going through floating
/// point for whole numbers, so `"9007199254740993B"` stays exact.
fn scale(number: &str, unit: u64, text: &str) -> Result<u64, ParseError> {
    let overflow = || ParseError::Overflow { text: text.to_owned() };
    match number.split_once('.') {
        None => {
            let n: u64 = number.parse().map_err(|_| overflow())?;
            n.checked_mul(unit).ok_or_else(overflow)
        }
        Some(_) => {
            let f: f64 =
                number.parse().map_err(|_| ParseError::NoNumber { text: text.to_owned() })?;
            let v = f * unit as f64;
            if !v.is_finite() || v >= u64::MAX as f64 {
                return Err(overflow());
            }
            Ok(v.round() as u64)
        }
    }
}

impl FromStr for ReadableSize {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (number, unit) = split_number(text)?;
        let multiplier = match unit {
            "" | "B" => 1,
            "K" | "KB" | "KiB" => KIB,
            "M" | "MB" | "MiB" => MIB,
            "G" | "GB" | "GiB" => GIB,
            "T" | "TB" | "TiB" => TIB,
            other => {
                return Err(ParseError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                })
            }
        };
        scale(number, multiplier, text).map(ReadableSize)
    }
}

impl fmt::Display for ReadableSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "0B");
        }
        let (name, unit) = SIZE_UNITS
            .iter()
            .find(|(_, unit)| self.0.is_multiple_of(*unit))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{}", self.0 / unit, name)
    }
}

/// A duration written as `"10s"`, `"250ms"`, `"1h30m"`, `"1.5s"` or a bare number of
/// milliseconds. Units: `us`, `ms`, `s`, `m`, `h`, `d`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadableDuration(pub Duration);

impl ReadableDuration {
    pub const fn millis(ms: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_millis(ms))
    }
    pub const fn secs(s: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_secs(s))
    }
    pub const fn minutes(m: u64) -> ReadableDuration {
        ReadableDuration(Duration::from_secs(m * 60))
    }
    pub const fn as_duration(self) -> Duration {
        self.0
    }
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

const DURATION_UNITS_US: [(&str, u64); 6] = [
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

impl FromStr for ReadableDuration {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(ParseError::Empty);
        }
        if rest.bytes().all(|b| b.is_ascii_digit()) {
            return scale(rest, 1_000, text).map(|us| ReadableDuration(Duration::from_micros(us)));
        }
        let mut total_us: u64 = 0;
        while !rest.is_empty() {
            let (number, after) = split_number(rest)?;
            let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
            let unit = &after[..unit_len];
            let micros = DURATION_UNITS_US
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, us)| *us)
                .ok_or_else(|| ParseError::UnknownUnit {
                    text: text.to_owned(),
                    unit: unit.to_owned(),
                })?;
            let part = scale(number, micros, text)?;
            total_us = total_us
                .checked_add(part)
                .ok_or_else(|| ParseError::Overflow { text: text.to_owned() })?;
            rest = after[unit_len..].trim_start();
        }
        Ok(ReadableDuration(Duration::from_micros(total_us)))
    }
}

impl fmt::Display for ReadableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut us = u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX);
        if us == 0 {
            return write!(f, "0s");
        }
        // The largest units first, dropping zero parts: 5400s prints as "1h30m".
        for (name, unit) in DURATION_UNITS_US {
            if us >= unit {
                write!(f, "{}{}", us / unit, name)?;
                us %= unit;
            }
        }
        Ok(())
    }
}

macro_rules! impl_serde_via_str {
    ($ty:ty, $expecting:expr, $from_int:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        Ok($from_int(v))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        u64::try_from(v)
                            .map($from_int)
                            .map_err(|_| E::custom("a negative value is not allowed"))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

impl_serde_via_str!(ReadableSize, "a size such as \"64MiB\" or a number of bytes", ReadableSize);
impl_serde_via_str!(
    ReadableDuration,
    "a duration such as \"10s\" or a number of milliseconds",
    ReadableDuration::millis
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        for (text, bytes) in [
            ("0", 0),
            ("123", 123),
            ("1B", 1),
            ("4KiB", 4 * KIB),
            ("4KB", 4 * KIB),
            ("256MiB", 256 * MIB),
            (" 1.5 GiB ", 3 * GIB / 2),
            ("2T", 2 * TIB),
        ] {
            assert_eq!(text.parse::<ReadableSize>().unwrap(), ReadableSize(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_reject_garbage() {
        assert_eq!("".parse::<ReadableSize>(), Err(ParseError::Empty));
        assert!(matches!("MiB".parse::<ReadableSize>(), Err(ParseError::NoNumber { .. })));
        assert!(matches!("3 parsecs".parse::<ReadableSize>(), Err(ParseError::UnknownUnit { .. })));
        assert!(matches!(
            "99999999999TiB".parse::<ReadableSize>(),
            Err(ParseError::Overflow { .. })
        ));
    }

    #[test]
    fn sizes_display_round_trips() {
        for bytes in [0, 1, 1023, KIB, 3 * MIB, 3 * MIB + 1, 96 * MIB, 10 * GIB, TIB] {
            let s = ReadableSize(bytes);
            assert_eq!(s.to_string().parse::<ReadableSize>().unwrap(), s, "{s}");
        }
        assert_eq!(ReadableSize::mib(96).to_string(), "96MiB");
        assert_eq!(ReadableSize(1536).to_string(), "1536B");
    }

    #[test]
    fn durations_parse() {
        for (text, ms) in [
            ("0", 0),
            ("1500", 1500),
            ("10ms", 10),
            ("2s", 2000),
            ("1.5s", 1500),
            ("3m", 180_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
        ] {
            assert_eq!(
                text.parse::<ReadableDuration>().unwrap(),
                ReadableDuration::millis(ms),
                "{text}"
            );
        }
        assert_eq!(
            "250us".parse::<ReadableDuration>().unwrap(),
            ReadableDuration(Duration::from_micros(250))
        );
    }

    #[test]
    fn durations_reject_garbage() {
        assert_eq!("".parse::<ReadableDuration>(), Err(ParseError::Empty));
        assert!(matches!(
            "10 fortnights".parse::<ReadableDuration>(),
            Err(ParseError::UnknownUnit { .. })
        ));
        assert!(matches!("s".parse::<ReadableDuration>(), Err(ParseError::NoNumber { .. })));
    }

    #[test]
    fn durations_display_round_trips() {
        for ms in [0, 1, 10, 999, 1000, 1500, 60_000, 5_400_000, 86_400_000 + 1] {
            let d = ReadableDuration::millis(ms);
            assert_eq!(d.to_string().parse::<ReadableDuration>().unwrap(), d, "{d}");
        }
        assert_eq!(ReadableDuration::millis(5_400_000).to_string(), "1h30m");
        assert_eq!(ReadableDuration::millis(1500).to_string(), "1s500ms");
    }

    #[test]
    fn serde_accepts_strings_and_integers() {
        #[derive(Deserialize, Serialize, Debug, PartialEq)]
        struct C {
            size: ReadableSize,
            timeout: ReadableDuration,
        }
        let c: C = toml::from_str("size = \"8MiB\"\ntimeout = \"2s\"").unwrap();
        assert_eq!(c, C { size: ReadableSize::mib(8), timeout: ReadableDuration::secs(2) });
        let c: C = toml::from_str("size = 4096\ntimeout = 250").unwrap();
        assert_eq!(c, C { size: ReadableSize::kib(4), timeout: ReadableDuration::millis(250) });
        let back: C = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = toml::from_str::<C>("size = \"lots\"\ntimeout = \"1s\"").unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
        assert!(toml::from_str::<C>("size = -1\ntimeout = \"1s\"").is_err());
    }

    #[test]
    fn config_error_names_the_full_key() {
        let e = ConfigError::invalid("pool-size", "must be at least 1").in_section("raftstore");
        assert_eq!(e.to_string(), "invalid value for `raftstore.pool-size`: must be at least 1");
    }
}
