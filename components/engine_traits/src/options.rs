//! Options passed with writes and iterators.

/// How a write batch is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Fsync the write-ahead log before returning. Without it a write survives a process crash
    /// but not a machine crash.
    pub sync: bool,
}

impl WriteOptions {
    /// A write that is durable against machine crashes when it returns.
    pub fn synced() -> WriteOptions {
        WriteOptions { sync: true }
    }
}

/// Bounds and caching of an iterator. Keys outside `[lower_bound, upper_bound)` are invisible:
/// seeks are clamped into the range and stepping past either end makes the iterator invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterOptions {
    /// Inclusive lower bound; `None` means from the first key of the CF.
    pub lower_bound: Option<Vec<u8>>,
    /// Exclusive upper bound; `None` means to the last key of the CF.
    pub upper_bound: Option<Vec<u8>>,
    /// Whether blocks read by this iterator enter the block cache. Turn it off for one-off bulk
    /// scans (snapshot generation, consistency checks) so they do not evict the hot set.
    pub fill_cache: bool,
}

impl Default for IterOptions {
    fn default() -> Self {
        IterOptions { lower_bound: None, upper_bound: None, fill_cache: true }
    }
}

impl IterOptions {
    /// An iterator over `[lower, upper)`, either side optional.
    pub fn new(lower_bound: Option<Vec<u8>>, upper_bound: Option<Vec<u8>>) -> IterOptions {
        IterOptions { lower_bound, upper_bound, fill_cache: true }
    }

    /// Sets [`IterOptions::fill_cache`].
    pub fn fill_cache(mut self, fill_cache: bool) -> IterOptions {
        self.fill_cache = fill_cache;
        self
    }
}
