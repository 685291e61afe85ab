//! Typed identifiers and log positions.
//!
//! Every id in the cluster is a `u64` on the wire, and mixing them up (passing a peer id where a
//! region id is expected, a term where an index is expected) compiles silently when they are bare
//! integers. These newtypes make such mix-ups type errors in public signatures. They are `Copy`,
//! ordered, hashable and convert to and from `u64` explicitly, so they cost nothing at runtime.
//!
//! Invariant: the value 0 means "none / not yet assigned" for every id type, as in raft-rs and
//! kvproto; `is_none()` tests for it. Log indexes and terms start at 0 as well, and index 0 is the
//! raft "dummy" position before the first entry.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! define_u64_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The reserved value 0, meaning "none" or "not yet assigned".
            pub const NONE: $name = $name(0);

            /// Returns the raw integer, for wire messages and storage keys.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// True when this is the reserved value 0.
            #[inline]
            pub const fn is_none(self) -> bool {
                self.0 == 0
            }
        }

        impl From<u64> for $name {
            #[inline]
            fn from(v: u64) -> Self {
                $name(v)
            }
        }

        impl From<$name> for u64 {
            #[inline]
            fn from(v: $name) -> u64 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        /// Logged as a plain integer, so `"region_id" => id` needs no conversion.
        impl slog::Value for $name {
            fn serialize(
                &self,
                _record: &slog::Record<'_>,
                key: slog::Key,
                serializer: &mut dyn slog::Serializer,
            ) -> slog::Result {
                serializer.emit_u64(key, self.0)
            }
        }
    };
}

define_u64_id!(
    /// Identifies a cluster; every PD response header carries it.
    ClusterId
);
define_u64_id!(
    /// Identifies a store (one server process with its own engines).
    StoreId
);
define_u64_id!(
    /// Identifies a region (a key range with its own raft group). Never reused.
    RegionId
);
define_u64_id!(
    /// Identifies one replica of a region on one store. Never reused, even for the same store.
    PeerId
);
define_u64_id!(
    /// A position in a region's raft log.
    LogIndex
);
define_u64_id!(
    /// A raft term.
    Term
);

impl LogIndex {
    /// The next position. Panics on overflow, which would mean a corrupted index.
    #[inline]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.checked_add(1).expect("log index overflow"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_display_and_order() {
        let r = RegionId::from(7);
        assert_eq!(u64::from(r), 7);
        assert_eq!(r.get(), 7);
        assert_eq!(r.to_string(), "7");
        assert!(RegionId::NONE.is_none());
        assert!(!r.is_none());
        assert!(LogIndex(3) < LogIndex(4));
        assert_eq!(LogIndex(3).next(), LogIndex(4));
    }

    #[test]
    fn ids_serialize_as_plain_integers() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Wrapper {
            store: StoreId,
        }
        let text = toml::to_string(&Wrapper { store: StoreId(42) }).unwrap();
        assert_eq!(text.trim(), "store = 42");
        let back: Wrapper = toml::from_str(&text).unwrap();
        assert_eq!(back.store, StoreId(42));
    }
}
