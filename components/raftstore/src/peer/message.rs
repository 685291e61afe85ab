//! What a peer accepts from the network. Raft messages come from other stores over gRPC, so
//! they may be stale, duplicated, corrupt or forged; raft-rs trusts what it is stepped with
//! and panics on some impossible inputs (a commit index past the log's end, entries that
//! rewrite committed ones). Nothing from the network may abort the store, so every message
//! passes these checks before `RawNode::step`, and a message that fails one is dropped and
//! counted (`StoreStats`, `regionstore_raftstore_raft_messages_dropped_total{reason}`):
//!
//! 1. envelope: both peers present, addressed to this peer on this store, decodable, not a
//!    raft-local message type, and the raft message's `from`/`to` agree with the envelope;
//! 2. sender: a sender that is not a member of the region any more (its epoch is older and
//!    its id is not in the region) must not disturb the group; a member with an older epoch
//!    is legitimate (it has not applied a split yet and needs this group's log to do so);
//! 3. term: a message of an older term that raft-rs would ignore is dropped (`StaleTerm`);
//!    log: `check_log` (below) — the invariants a correct leader's messages keep;
//! 4. a snapshot must be for this peer, not older than the region here, not overlap another
//!    region on this store, and have its files received (`snapshot`, step 4).
//!
//! A message marked `is_tombstone` is a member telling this peer it was removed
//! (`conf_change`, step 5); a stale sender gets such an answer.
//!
//! The per-peer cache of addresses learned from senders is bounded (`PEER_CACHE_MAX`).

use engine_traits::{KvEngine, RaftEngine};
use proto::raft_serverpb::RaftMessage;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use slog::{debug, info};
use util::{PeerId, RegionId};

use super::Peer;
use crate::stats::DroppedMessage;
use crate::store::PollContext;
use crate::transport::Transport;
use crate::util::{epoch, find_peer_by_id, is_epoch_stale};

/// Most peer addresses a peer caches beyond its region's members (senders it heard from
/// before learning of them through the region, e.g. a peer being added). Over it, the cache
/// is rebuilt from the region's members.
const PEER_CACHE_MAX: usize = 64;

impl<EK: KvEngine, ER: RaftEngine> Peer<EK, ER> {
    /// Steps a raft message from another store into the group, or drops and counts it.
    pub fn on_raft_message<T: Transport>(
        &mut self,
        ctx: &mut PollContext<EK, ER, T>,
        msg: RaftMessage,
    ) {
        if let Some(to) = &msg.to_peer {
            let newer_epoch =
                msg.region_epoch.is_some_and(|e| e.conf_ver > epoch(self.region()).conf_ver);
            if to.store_id == ctx.store_id.get() && to.id > self.meta.id && newer_epoch {
                // The region was given a new peer on this store (ids only grow): this one was
                // removed and missed it. Go, so the next message creates the new peer.
                info!(self.logger, "a newer peer of this region is addressed on this store";
                    "new_peer_id" => to.id);
                ctx.stats.record_message_dropped(DroppedMessage::WrongPeer);
                return self.destroy(ctx);
            }
        }
        if let Some(extra) = &msg.extra_msg {
            // Messages of the store's protocol beside raft (a rollback vote, `merge`): only
            // from a member, to this peer.
            let from = msg.from_peer.as_ref().filter(|p| {
                find_peer_by_id(self.region(), PeerId(p.id)).is_some()
                    && msg.to_peer.as_ref().is_some_and(|t| t.id == self.meta.id)
            });
            match from {
                Some(from) => self.on_extra_message(ctx, &from.clone(), extra),
                None => ctx.stats.record_message_dropped(DroppedMessage::WrongPeer),
            }
            return;
        }
        if let Some(target) = &msg.merge_target {
            // A member's store where this region merged away says where (`merge`).
            let from_member = msg
                .from_peer
                .as_ref()
                .is_some_and(|p| find_peer_by_id(self.region(), PeerId(p.id)).is_some());
            if from_member && msg.to_peer.as_ref().is_some_and(|t| t.id == self.meta.id) {
                self.on_merge_target_msg(ctx, target.clone());
            } else {
                ctx.stats.record_message_dropped(DroppedMessage::WrongPeer);
            }
            return;
        }
        if msg.is_tombstone {
            if msg.to_peer.as_ref().is_some_and(|p| p.id == self.meta.id) {
                self.on_tombstone_msg(ctx, &msg);
            } else {
                ctx.stats.record_message_dropped(DroppedMessage::WrongPeer);
            }
            return;
        }
        let (m, sources) = match self.check_message(ctx, &msg) {
            Ok(checked) => checked,
            Err(why) => {
                debug!(self.logger, "raft message dropped"; "why" => why.as_str(),
                    "from" => msg.from_peer.as_ref().map_or(0, |p| p.id));
                ctx.stats.record_message_dropped(why);
                if why == DroppedMessage::StaleSender {
                    // A removed peer that missed its removal: tell it (`conf_change`, step 5).
                    self.tell_removed_peer(ctx, &msg);
                }
                return;
            }
        };
        if m.get_msg_type() == MessageType::MsgSnapshot {
            self.ready.snapshot_reserved = true; // by `check_snapshot`
            self.set_snapshot_sources(sources);
        }
        let from = msg.from_peer.expect("checked");
        if !self.peer_cache.contains_key(&from.id) {
            if self.peer_cache.len() >= self.region().peers.len() + PEER_CACHE_MAX {
                self.peer_cache.clear();
                for p in &self.raft_group.store().region().peers {
                    self.peer_cache.insert(p.id, p.clone());
                }
            }
            self.peer_cache.insert(from.id, from);
        }
        if self.is_leader() && find_peer_by_id(self.region(), PeerId(m.from)).is_some() {
            self.leadership.heard_from.insert(m.from, ctx.clock.now());
        }
        let (msg_type, from) = (m.get_msg_type(), m.from);
        if let Err(e) = self.raft_group.step(m) {
            debug!(self.logger, "raft step failed"; "err" => %e);
        }
        self.note_leader_contact(msg_type, from);
    }

    /// Steps 1–4 of the module doc. Returns the decoded raft message.
    /// Also returns the merge sources a snapshot replaces (`snapshot`, step 4a).
    fn check_message<T>(
        &self,
        ctx: &PollContext<EK, ER, T>,
        msg: &RaftMessage,
    ) -> Result<(Message, Vec<RegionId>), DroppedMessage> {
        let store_id = ctx.store_id.get();
        let (Some(from), Some(to)) = (&msg.from_peer, &msg.to_peer) else {
            return Err(DroppedMessage::Malformed);
        };
        if to.id != self.meta.id || to.store_id != store_id {
            return Err(DroppedMessage::WrongPeer);
        }
        let mut m = Message::default();
        if m.merge_from_bytes(&msg.message).is_err()
            || raft::raw_node::is_local_msg(m.get_msg_type())
            || m.from != from.id
            || m.to != to.id
        {
            return Err(DroppedMessage::Malformed);
        }
        if let Some(e) = msg.region_epoch {
            if is_epoch_stale(&e, &epoch(self.region()))
                && find_peer_by_id(self.region(), PeerId(from.id)).is_none()
            {
                return Err(DroppedMessage::StaleSender);
            }
        }
        // An older term: raft-rs answers a heartbeat or an append (so a deposed leader learns
        // the term) and rejects a pre-vote, and ignores everything else, which is dropped
        // here instead, and counted (a stale snapshot is not even reserved).
        let answered_at_older_term = matches!(
            m.get_msg_type(),
            MessageType::MsgHeartbeat | MessageType::MsgAppend | MessageType::MsgRequestPreVote
        );
        if m.term != 0 && m.term < self.raft_group.raft.term && !answered_at_older_term {
            return Err(DroppedMessage::StaleTerm);
        }
        let sources = if m.get_msg_type() == MessageType::MsgSnapshot {
            self.check_snapshot(ctx, &m)?
        } else {
            Vec::new()
        };
        self.check_log(&m)?;
        Ok((m, sources))
    }

    /// Step 3: what no correct peer sends, where raft-rs would panic on it or act on it.
    /// Only messages of the current term or newer reach raft-rs' log code (older ones are
    /// answered or ignored by term), so only those are checked for the log.
    fn check_log(&self, m: &Message) -> Result<(), DroppedMessage> {
        let raft = &self.raft_group.raft;
        // Every message peers exchange carries a term; term 0 is raft-rs' mark of a local
        // message (a proposal), which a peer never sends here.
        if m.term == 0 {
            return Err(DroppedMessage::Malformed);
        }
        let log = &raft.raft_log;
        let last = log.last_index();
        let current = m.term >= raft.term;
        let valid = match m.get_msg_type() {
            // Proposals, read indexes and transfer requests are never forwarded between
            // stores here (every peer proposes and reads at its own leader): an empty
            // proposal makes raft-rs abort, a garbage one would commit an undecodable entry.
            MessageType::MsgPropose
            | MessageType::MsgReadIndex
            | MessageType::MsgReadIndexResp
            | MessageType::MsgTransferLeader => return Err(DroppedMessage::Malformed),
            // Raft-local types never come from the network (dropped before).
            MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum => return Err(DroppedMessage::Malformed),
            // A leader sends min(matched, committed): never past what this peer holds.
            // (raft-rs: `commit_to` panics past the last index.)
            MessageType::MsgHeartbeat => !current || m.commit <= last,
            // Entries follow `index` without a gap and are not from a later term than the
            // message, and the entry before them is of a term no older than this peer's
            // committed entry's (a correct leader's log agrees with every committed entry).
            // (raft-rs slices the batch by index arithmetic, and walks the log down by term
            // on a mismatch, aborting below the compacted index.)
            MessageType::MsgAppend => {
                !current
                    || (m.log_term <= m.term
                        && (m.index < log.committed
                            || log.term(log.committed).is_ok_and(|t| m.log_term >= t))
                        && m.get_entries()
                            .iter()
                            .enumerate()
                            .all(|(i, e)| e.index == m.index + 1 + i as u64 && e.term <= m.term))
            }
            // A follower acknowledges only what this leader sent it, and never asks for a
            // snapshot here (no peer calls `request_snapshot`). (raft-rs would commit a
            // forged index past its own log and panic; a forged request would make it
            // generate snapshots forever.)
            MessageType::MsgAppendResponse => {
                !current || ((m.reject || m.index <= last) && m.request_snapshot == 0)
            }
            MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgSnapshot
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgTimeoutNow => true,
        };
        if valid {
            Ok(())
        } else {
            Err(DroppedMessage::InvalidLog)
        }
    }
}
