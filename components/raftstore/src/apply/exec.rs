//! Executes the data requests of one committed command into the round's KV write batch.
//! Pure with respect to the engine: it only reads the region and writes the batch.

use engine_traits::{WriteBatch, CF_DEFAULT, DATA_CFS};
use proto::metapb;
use proto::raft_cmdpb::{
    CmdType, DeleteRangeResponse, DeleteResponse, PutResponse, RaftCmdRequest, RaftCmdResponse,
    RaftResponseHeader, Request, Response,
};

use crate::error::{Error, Result};
use crate::util::{check_key_in_region, check_range_in_region, check_region_epoch};

/// Size of what a command wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    /// Keys put or deleted, and their bytes (a delete counts its key only).
    pub keys: u64,
    pub bytes: u64,
    /// Of `keys`, the deletes: they shrink the region by a size not known here.
    pub deleted_keys: u64,
    /// Ranges deleted (`DeleteRange`): the region may have shrunk by anything.
    pub deleted_ranges: u64,
}

/// Resolves a request's column family: empty means `default`; only data CFs are writable.
pub fn data_cf(cf: &str) -> Result<&'static str> {
    if cf.is_empty() {
        return Ok(CF_DEFAULT);
    }
    DATA_CFS
        .iter()
        .copied()
        .find(|c| *c == cf)
        .ok_or_else(|| Error::InvalidRequest(format!("unknown column family {cf:?}")))
}

/// Executes `req` into `wb`. On error nothing of `req` is left in `wb` (a save point is
/// rolled back) and the error is the command's answer; the entry still counts as applied.
pub fn exec_write<W: WriteBatch>(
    wb: &mut W,
    region: &metapb::Region,
    req: &RaftCmdRequest,
    stats: &mut WriteStats,
) -> Result<RaftCmdResponse> {
    // The epoch was checked at proposal time, but a split may have applied in between; the
    // apply-time check is what keeps a write from landing in a range the region gave away.
    check_region_epoch(req, region)?;
    wb.set_save_point();
    let mut responses = Vec::with_capacity(req.requests.len());
    for r in &req.requests {
        match exec_one(wb, region, r, stats) {
            Ok(resp) => responses.push(resp),
            Err(e) => {
                wb.rollback_to_save_point();
                return Err(e);
            }
        }
    }
    wb.pop_save_point();
    Ok(RaftCmdResponse {
        header: Some(RaftResponseHeader::default()),
        responses,
        ..Default::default()
    })
}

fn exec_one<W: WriteBatch>(
    wb: &mut W,
    region: &metapb::Region,
    r: &Request,
    stats: &mut WriteStats,
) -> Result<Response> {
    let cmd_type = CmdType::try_from(r.cmd_type).unwrap_or(CmdType::Invalid);
    let mut resp = Response { cmd_type: r.cmd_type, ..Default::default() };
    match cmd_type {
        CmdType::Put => {
            let put = r.put.as_ref().ok_or_else(|| missing("put"))?;
            check_key_in_region(&put.key, region)?;
            let cf = data_cf(&put.cf)?;
            wb.put_cf(cf, &keys::data_key(&put.key), &put.value);
            stats.keys += 1;
            stats.bytes += (put.key.len() + put.value.len()) as u64;
            resp.put = Some(PutResponse {});
        }
        CmdType::Delete => {
            let del = r.delete.as_ref().ok_or_else(|| missing("delete"))?;
            check_key_in_region(&del.key, region)?;
            let cf = data_cf(&del.cf)?;
            wb.delete_cf(cf, &keys::data_key(&del.key));
            stats.keys += 1;
            stats.bytes += del.key.len() as u64;
            stats.deleted_keys += 1;
            resp.delete = Some(DeleteResponse {});
        }
        CmdType::DeleteRange => {
            let dr = r.delete_range.as_ref().ok_or_else(|| missing("delete_range"))?;
            check_range_in_region(&dr.start_key, &dr.end_key, region)?;
            let cf = data_cf(&dr.cf)?;
            if !dr.notify_only {
                // An empty end key means the region's end (+inf only if the region is last).
                let end = if dr.end_key.is_empty() { &region.end_key } else { &dr.end_key };
                wb.delete_range_cf(cf, &keys::data_key(&dr.start_key), &keys::enc_end_key(end));
                stats.deleted_ranges += 1;
            }
            resp.delete_range = Some(DeleteRangeResponse {});
        }
        CmdType::Invalid
        | CmdType::Get
        | CmdType::Snap
        | CmdType::Prewrite
        | CmdType::IngestSst
        | CmdType::ReadIndex => {
            return Err(Error::InvalidRequest(format!("{cmd_type:?} cannot be applied")))
        }
    }
    Ok(resp)
}

fn missing(what: &str) -> Error {
    Error::InvalidRequest(format!("request without its {what} body"))
}
