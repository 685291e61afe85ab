//! The raw KV operations, over [`Storage`]. Each validates its input before touching the
//! raftstore, reads through a linearizable region snapshot, and writes through one raft
//! command per request (a batch is one atomic entry).

use engine_traits::{KvEngine, RaftEngine};
use proto::kvrpcpb::{Context, KeyRange, KvPair};
use raftstore::RegionSnapshot;

use crate::storage::*;

/// What a raw scan returns for one range.
fn scan_snapshot<S: engine_traits::Snapshot>(
    snap: &RegionSnapshot<S>,
    cf: &'static str,
    start: &[u8],
    end: &[u8],
    limit: usize,
    key_only: bool,
    reverse: bool,
    bytes_max: usize,
    out: &mut Vec<KvPair>,
) -> Result<()> {
    let now = now_secs();
    let engine = Error::from;
    let mut size = 0usize;
    let (mut it, mut valid) = if reverse {
        // `start` is the exclusive upper bound, `end` the inclusive lower bound.
        let mut it = snap.iter(cf, end, start);
        let valid = it.seek_to_last().map_err(engine)?;
        (it, valid)
    } else {
        let mut it = snap.iter(cf, start, end);
        let valid = it.seek_to_first().map_err(engine)?;
        (it, valid)
    };
    let mut taken = 0;
    while valid && taken < limit {
        if let Some(v) = live_value(it.value(), now)? {
            let value = if key_only { Vec::new() } else { v.to_vec() };
            size += it.key().len() + value.len();
            if size > bytes_max {
                // Cutting the page short would look like the end of the range to the client
                // (it trusts a short page), so refuse the whole scan instead.
                return Err(Error::Invalid(format!(
                    "scan response would exceed {bytes_max} bytes; ask for a smaller limit"
                )));
            }
            out.push(KvPair { key: it.key().to_vec(), value, ..Default::default() });
            taken += 1;
        }
        valid = if reverse { it.prev() } else { it.next() }.map_err(engine)?;
    }
    Ok(())
}

impl<EK: KvEngine, ER: RaftEngine> Storage<EK, ER> {
    pub async fn raw_get(&self, ctx: &Context, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_key(key)?;
        let cf = data_cf(cf)?;
        let snap = self.snapshot(ctx).await?;
        self.get_live(&snap, cf, key)
    }

    fn get_live(
        &self,
        snap: &RegionSnapshot<EK::Snapshot>,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let stored = snap.get_value_cf(cf, key)?;
        match stored {
            None => Ok(None),
            Some(s) => Ok(live_value(&s, now_secs())?.map(<[u8]>::to_vec)),
        }
    }

    /// Existing keys only, in request order.
    pub async fn raw_batch_get(
        &self,
        ctx: &Context,
        cf: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<KvPair>> {
        self.check_batch(keys.len())?;
        for k in keys {
            self.check_key(k)?;
        }
        let cf = data_cf(cf)?;
        let snap = self.snapshot(ctx).await?;
        let mut out = Vec::new();
        let mut size = 0;
        for k in keys {
            if let Some(v) = self.get_live(&snap, cf, k)? {
                size += k.len() + v.len();
                if size > self.limits.response_bytes_max {
                    return Err(Error::Invalid(format!(
                        "batch get response exceeds {} bytes; ask for fewer keys",
                        self.limits.response_bytes_max
                    )));
                }
                out.push(KvPair { key: k.clone(), value: v, ..Default::default() });
            }
        }
        Ok(out)
    }

    pub async fn raw_put(
        &self,
        ctx: &Context,
        cf: &str,
        key: &[u8],
        value: &[u8],
        ttl: u64,
        atomic: bool,
    ) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        let cf = data_cf(cf)?;
        let req = vec![put_request(cf, key, encode_value(value, ttl))];
        if atomic {
            let _g = self.latches().acquire([key]).await;
            self.write(ctx, req).await
        } else {
            self.write(ctx, req).await
        }
    }

    pub async fn raw_batch_put(
        &self,
        ctx: &Context,
        cf: &str,
        pairs: &[KvPair],
        ttls: &[u64],
        atomic: bool,
    ) -> Result<()> {
        self.check_batch(pairs.len())?;
        if ttls.len() > 1 && ttls.len() != pairs.len() {
            return Err(Error::Invalid(format!("{} ttls for {} pairs", ttls.len(), pairs.len())));
        }
        let cf = data_cf(cf)?;
        let mut reqs = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            self.check_key(&p.key)?;
            self.check_value(&p.value)?;
            let ttl = match ttls.len() {
                0 => 0,
                1 => ttls[0],
                _ => ttls[i],
            };
            reqs.push(put_request(cf, &p.key, encode_value(&p.value, ttl)));
        }
        if reqs.is_empty() {
            return Ok(());
        }
        if atomic {
            let _g = self.latches().acquire(pairs.iter().map(|p| p.key.as_slice())).await;
            self.write(ctx, reqs).await
        } else {
            self.write(ctx, reqs).await
        }
    }

    pub async fn raw_delete(
        &self,
        ctx: &Context,
        cf: &str,
        key: &[u8],
        atomic: bool,
    ) -> Result<()> {
        self.check_key(key)?;
        let cf = data_cf(cf)?;
        let req = vec![delete_request(cf, key)];
        if atomic {
            let _g = self.latches().acquire([key]).await;
            self.write(ctx, req).await
        } else {
            self.write(ctx, req).await
        }
    }

    pub async fn raw_batch_delete(&self, ctx: &Context, cf: &str, keys: &[Vec<u8>]) -> Result<()> {
        self.check_batch(keys.len())?;
        let cf = data_cf(cf)?;
        let mut reqs = Vec::with_capacity(keys.len());
        for k in keys {
            self.check_key(k)?;
            reqs.push(delete_request(cf, k));
        }
        if reqs.is_empty() {
            return Ok(());
        }
        self.write(ctx, reqs).await
    }

    pub async fn raw_delete_range(
        &self,
        ctx: &Context,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<()> {
        if !end.is_empty() && start > end {
            return Err(Error::Invalid("delete range start is after its end".into()));
        }
        if start == end && !end.is_empty() {
            return Ok(());
        }
        let cf = data_cf(cf)?;
        self.write(ctx, vec![delete_range_request(cf, start, end)]).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn raw_scan(
        &self,
        ctx: &Context,
        cf: &str,
        start: &[u8],
        end: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        if limit == 0 {
            return Err(Error::Invalid("scan limit must be positive".into()));
        }
        if limit > self.limits.scan_limit_max {
            return Err(Error::Invalid(format!(
                "scan limit {limit} exceeds {}",
                self.limits.scan_limit_max
            )));
        }
        let cf = data_cf(cf)?;
        let snap = self.snapshot(ctx).await?;
        let region = snap.region();
        // Forward: `start` must be in the region. Reverse: `start` is an exclusive upper
        // bound, checked inclusively (it may equal the region's end).
        let in_region = if reverse {
            start.is_empty() && region.end_key.is_empty()
                || (start >= region.start_key.as_slice()
                    && (region.end_key.is_empty() || start <= region.end_key.as_slice()))
        } else {
            raftstore::util::key_in_region(start, region)
        };
        if !in_region {
            let e = raftstore::Error::KeyNotInRegion {
                key: start.to_vec(),
                region: Box::new(region.clone()),
            };
            return Err(e.into());
        }
        let mut out = Vec::new();
        scan_snapshot(
            &snap,
            cf,
            start,
            end,
            limit as usize,
            key_only,
            reverse,
            self.limits.response_bytes_max,
            &mut out,
        )?;
        Ok(out)
    }

    pub async fn raw_batch_scan(
        &self,
        ctx: &Context,
        cf: &str,
        ranges: &[KeyRange],
        each_limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        if each_limit == 0 || each_limit > self.limits.scan_limit_max {
            return Err(Error::Invalid(format!(
                "each_limit must be in 1..={}",
                self.limits.scan_limit_max
            )));
        }
        self.check_batch(ranges.len())?;
        let cf = data_cf(cf)?;
        let snap = self.snapshot(ctx).await?;
        let mut out = Vec::new();
        let mut used = 0;
        for r in ranges {
            let before = out.len();
            let left = self.limits.response_bytes_max - used;
            scan_snapshot(
                &snap,
                cf,
                &r.start_key,
                &r.end_key,
                each_limit as usize,
                key_only,
                reverse,
                left,
                &mut out,
            )?;
            used += out[before..].iter().map(|p| p.key.len() + p.value.len()).sum::<usize>();
        }
        Ok(out)
    }

    /// Remaining TTL in seconds: `None` if the key is absent or expired, `Some(0)` if it
    /// never expires.
    pub async fn raw_get_key_ttl(
        &self,
        ctx: &Context,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<u64>> {
        self.check_key(key)?;
        let cf = data_cf(cf)?;
        let snap = self.snapshot(ctx).await?;
        let stored = snap.get_value_cf(cf, key).map_err(|e| Error::Engine(e.to_string()))?;
        let Some(stored) = stored else { return Ok(None) };
        let (_, expire_at) = decode_value(&stored)
            .ok_or_else(|| Error::Engine("stored value is too short".into()))?;
        let now = now_secs();
        match expire_at {
            0 => Ok(Some(0)),
            t if t > now => Ok(Some(t - now)),
            _ => Ok(None),
        }
    }

    /// Compare-and-swap: writes `value` iff the current value equals `expected` (`None`:
    /// absent). Returns `(previous value, succeeded)`. Atomic with other atomic writes of the
    /// key (latched), and linearizable (the read is a raft read).
    pub async fn raw_cas(
        &self,
        ctx: &Context,
        cf: &str,
        key: &[u8],
        value: &[u8],
        expected: Option<&[u8]>,
        ttl: u64,
    ) -> Result<(Option<Vec<u8>>, bool)> {
        self.check_key(key)?;
        self.check_value(value)?;
        let cf = data_cf(cf)?;
        let _g = self.latches().acquire([key]).await;
        let snap = self.snapshot(ctx).await?;
        let previous = self.get_live(&snap, cf, key)?;
        drop(snap);
        if previous.as_deref() != expected {
            return Ok((previous, false));
        }
        self.write(ctx, vec![put_request(cf, key, encode_value(value, ttl))]).await?;
        Ok((previous, true))
    }
}
