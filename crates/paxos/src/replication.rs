//! Phase 2 and learning: batching proposals into slots, accepting them,
//! counting votes, spreading the chosen prefix, and catching up.

use crate::durability::Deferred;
use crate::ready::SnapshotWanted;
use crate::replica::{InFlight, LeaderState, Replica, RoleState};
use crate::types::{Ballot, Entry, Message, ReplicaId, Slot, Value};
use chorus_limits as limits;
use std::collections::BTreeSet;

impl Replica {
    pub(crate) fn leader_state(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            RoleState::Leader(state) => Some(state),
            _ => None,
        }
    }

    /// Packs queued commands into new slots while the window has room.
    pub(crate) fn cut_batches(&mut self) {
        let Some(leader) = self.leader_state() else {
            return;
        };
        let mut cut = Vec::new();
        while (leader.in_flight.len() as u64) < limits::SLOTS_IN_FLIGHT_MAX && !leader.queue.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(command) = leader.queue.front() {
                let full = batch.len() == limits::BATCH_COMMANDS_MAX
                    || (!batch.is_empty() && bytes + command.len() > limits::BATCH_BYTES_MAX);
                if full {
                    break;
                }
                bytes += command.len();
                batch.push(leader.queue.pop_front().expect("front exists"));
            }
            leader.queue_bytes -= bytes;
            let slot = leader.next_slot;
            leader.next_slot += 1;
            leader.in_flight.insert(slot, InFlight::default());
            cut.push((slot, Value::batch(batch)));
        }
        if !cut.is_empty() {
            self.send_accepts(cut);
        }
    }

    /// Writes `entries` to the leader's own log under its ballot, marks them
    /// in flight, and sends them to every peer (the leader's own vote counts
    /// once its write is durable).
    pub(crate) fn send_accepts(&mut self, entries: Vec<(Slot, Value)>) {
        let now = self.now;
        let Some(leader) = self.leader_state() else {
            return;
        };
        let ballot = leader.ballot;
        for (slot, _) in &entries {
            leader.in_flight.entry(*slot).or_default().sent_at = now;
        }
        for (slot, value) in &entries {
            let entry = Entry { ballot, value: value.clone(), chosen: false };
            self.log.insert(*slot, entry.clone());
            self.pipeline.put_entry(*slot, entry);
        }
        let slots = entries.iter().map(|(slot, _)| *slot).collect();
        if let Some(work) = self.pipeline.defer(Deferred::SelfAccept { ballot, slots }) {
            self.run_deferred(work);
        }
        for group in split_by_bytes(entries, limits::ACCEPT_BYTES_MAX) {
            let chosen_through = self.chosen_through;
            self.broadcast(Message::Accept { ballot, entries: group, chosen_through });
        }
    }

    /// A message from the leader of `ballot` (at least our promise):
    /// follow it and restart the election timer.
    fn follow(&mut self, ballot: Ballot) {
        self.raise_promise(ballot);
        let already = matches!(self.role, RoleState::Follower) && self.leader == Some(ballot.replica);
        if already {
            self.reset_election_timer();
        } else {
            self.become_follower(Some(ballot.replica));
        }
        self.leader_heard_at = Some(self.now);
    }

    /// Answers a message under a ballot below our promise.
    fn reject(&mut self, to: ReplicaId, ballot: Ballot) {
        let promised = self.promised;
        self.send(to, Message::Reject { ballot, promised });
    }

    pub(crate) fn on_accept(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        entries: Vec<(Slot, Value)>,
        leader_chosen: Slot,
    ) {
        if ballot < self.promised {
            return self.reject(from, ballot);
        }
        if from != ballot.replica || from == self.config.id {
            return;
        }
        self.follow(ballot);
        if self.recovery.is_some() {
            // Lost its disk: learns what is chosen, accepts nothing yet.
            return self.learn_chosen(from, ballot, leader_chosen);
        }
        let mut slots = Vec::with_capacity(entries.len());
        for (slot, value) in entries {
            slots.push(slot);
            let chosen = slot <= self.chosen_through || self.log.get(&slot).is_some_and(|e| e.chosen);
            if !chosen {
                let entry = Entry { ballot, value, chosen: false };
                self.log.insert(slot, entry.clone());
                self.pipeline.put_entry(slot, entry);
            }
        }
        self.learn_chosen(from, ballot, leader_chosen);
        let (chosen_through, incarnations) = (self.chosen_through, self.incarnations.clone());
        self.send_durable(from, Message::Accepted { ballot, slots, chosen_through, incarnations });
    }

    /// The leader of `ballot` says every slot through `leader_chosen` is
    /// chosen: entries we accepted under that same ballot hold its values.
    fn learn_chosen(&mut self, leader: ReplicaId, ballot: Ballot, leader_chosen: Slot) {
        if leader_chosen <= self.chosen_through {
            return;
        }
        for (_, entry) in self.log.range_mut(self.chosen_through + 1..=leader_chosen) {
            if entry.ballot == ballot {
                entry.chosen = true;
            }
        }
        self.advance_chosen();
        if self.chosen_through < leader_chosen {
            self.request_catchup(leader);
        }
    }

    /// The leader's state if `ballot` is its own, after noting that `from`
    /// answered under it (a sign of life for stepping down).
    fn heard_under(&mut self, from: ReplicaId, ballot: Ballot) -> Option<&mut LeaderState> {
        let now = self.now;
        let leader = self.leader_state().filter(|leader| leader.ballot == ballot)?;
        leader.heard.insert(from, now);
        Some(leader)
    }

    pub(crate) fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slots: &[Slot], _chosen: Slot) {
        if self.heard_under(from, ballot).is_some() {
            self.record_accepts(from, ballot, slots);
        }
    }

    /// Counts `who`'s votes; a slot with a majority is chosen.
    pub(crate) fn record_accepts(&mut self, who: ReplicaId, ballot: Ballot, slots: &[Slot]) {
        let quorum = self.config.quorum();
        let Some(leader) = self.leader_state() else {
            return;
        };
        if leader.ballot != ballot {
            return;
        }
        let mut chosen = Vec::new();
        for slot in slots {
            if let Some(in_flight) = leader.in_flight.get_mut(slot) {
                in_flight.voters.insert(who);
                if in_flight.voters.len() >= quorum {
                    leader.in_flight.remove(slot);
                    chosen.push(*slot);
                }
            }
        }
        for slot in chosen {
            let value = self.log.get(&slot).expect("a leader logs what it proposes").value.clone();
            self.mark_chosen(slot, value);
        }
        self.advance_chosen();
    }

    /// Heartbeats, resending unanswered accepts, and stepping down when a
    /// majority has gone quiet.
    pub(crate) fn leader_tick(&mut self) {
        let (now, quorum) = (self.now, self.config.quorum());
        let (heartbeat, silence) = (self.config.heartbeat_ticks, self.config.election_ticks_max);
        let Some(leader) = self.leader_state() else {
            return;
        };
        let in_touch = 1 + leader.heard.values().filter(|at| now - **at < silence).count();
        if in_touch < quorum {
            return self.become_follower(None);
        }
        if now - leader.heartbeat_at >= heartbeat {
            self.resend_unanswered();
            self.send_heartbeat();
        }
    }

    pub(crate) fn send_heartbeat(&mut self) {
        let now = self.now;
        let chosen_through = self.chosen_through;
        let Some(leader) = self.leader_state() else {
            return;
        };
        leader.heartbeat_at = now;
        let (ballot, read_round) = (leader.ballot, leader.read_round);
        self.broadcast(Message::Heartbeat { ballot, chosen_through, read_round });
    }

    /// Sends in-flight slots again to each peer that has not accepted them
    /// within two heartbeats (messages may be lost; Paxos only needs them
    /// to arrive eventually).
    fn resend_unanswered(&mut self) {
        let (now, chosen_through) = (self.now, self.chosen_through);
        let patience = 2 * self.config.heartbeat_ticks;
        let peers: Vec<ReplicaId> = self.config.peers().collect();
        let Some(leader) = self.leader_state() else {
            return;
        };
        let ballot = leader.ballot;
        let mut stale: Vec<(Slot, BTreeSet<ReplicaId>)> = Vec::new();
        for (slot, in_flight) in leader.in_flight.iter_mut() {
            if now - in_flight.sent_at >= patience {
                in_flight.sent_at = now;
                stale.push((*slot, in_flight.voters.clone()));
            }
        }
        for peer in peers {
            let entries: Vec<(Slot, Value)> = stale
                .iter()
                .filter(|(_, voters)| !voters.contains(&peer))
                .map(|(slot, _)| (*slot, self.log[slot].value.clone()))
                .collect();
            for group in split_by_bytes(entries, limits::ACCEPT_BYTES_MAX) {
                self.send(peer, Message::Accept { ballot, entries: group, chosen_through });
            }
        }
    }

    pub(crate) fn on_heartbeat(&mut self, from: ReplicaId, ballot: Ballot, leader_chosen: Slot, read_round: u64) {
        if ballot < self.promised {
            return self.reject(from, ballot);
        }
        if from != ballot.replica || from == self.config.id {
            return;
        }
        self.follow(ballot);
        // The ack vouches only for the promise, so it goes out before
        // learning (which may queue an unrelated write of the chosen prefix).
        // A replica rebuilding after a disk loss vouches for nothing.
        if self.recovery.is_none() {
            let chosen_through = self.chosen_through;
            self.send_durable(from, Message::HeartbeatAck { ballot, read_round, chosen_through });
        }
        self.learn_chosen(from, ballot, leader_chosen);
    }

    pub(crate) fn on_heartbeat_ack(&mut self, from: ReplicaId, ballot: Ballot, read_round: u64, _chosen: Slot) {
        let Some(leader) = self.heard_under(from, ballot) else {
            return;
        };
        let acked = leader.read_acks.entry(from).or_default();
        *acked = (*acked).max(read_round);
    }

    /// Asks `from` for chosen values past our prefix; one request at a time.
    pub(crate) fn request_catchup(&mut self, from: ReplicaId) {
        if self.catchup.is_some() || from == self.config.id {
            return;
        }
        self.catchup = Some((from, self.now));
        let from_slot = self.chosen_through + 1;
        self.send(from, Message::CatchupRequest { from_slot });
    }

    /// Forgets a request that went unanswered, so the next sign of lag asks again.
    pub(crate) fn retry_catchup(&mut self) {
        if let Some((_, at)) = self.catchup {
            if self.now - at >= self.config.catchup_retry_ticks {
                self.catchup = None;
            }
        }
    }

    pub(crate) fn on_catchup_request(&mut self, from: ReplicaId, from_slot: Slot) {
        let from_slot = from_slot.max(1);
        if from_slot > self.chosen_through {
            return; // nothing to offer; the asker will try elsewhere
        }
        if from_slot <= self.compacted_through {
            let (compacted_through, chosen_through) = (self.compacted_through, self.chosen_through);
            return self.send(from, Message::SnapshotNeeded { compacted_through, chosen_through });
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (slot, entry) in self.log.range(from_slot..=self.chosen_through) {
            bytes += entry.value.size_bytes();
            if entries.len() == limits::CATCHUP_ENTRIES_MAX || bytes > limits::CATCHUP_BYTES_MAX {
                break;
            }
            entries.push((*slot, entry.value.clone()));
        }
        let chosen_through = self.chosen_through;
        self.send(from, Message::Catchup { entries, chosen_through });
    }

    pub(crate) fn on_catchup(&mut self, from: ReplicaId, entries: Vec<(Slot, Value)>, their_chosen: Slot) {
        if self.catchup.is_some_and(|(peer, _)| peer == from) {
            self.catchup = None;
        }
        for (slot, value) in entries {
            self.mark_chosen(slot, value);
        }
        self.advance_chosen();
        if self.chosen_through < their_chosen {
            self.request_catchup(from);
        }
    }
}

impl Replica {
    /// A peer cannot serve our catch-up from its log: ask the caller for its
    /// snapshot if we still need it, or carry on catching up from the log.
    pub(crate) fn on_snapshot_needed(&mut self, from: ReplicaId, compacted_through: Slot, their_chosen: Slot) {
        if self.catchup.is_some_and(|(peer, _)| peer == from) {
            self.catchup = None;
        }
        if compacted_through > self.chosen_through {
            self.snapshot_wanted = Some(SnapshotWanted { from, covering: compacted_through });
        } else if their_chosen > self.chosen_through {
            self.request_catchup(from);
        }
    }
}

/// Splits entries into groups of at most `max_bytes` (each group holds at
/// least one entry).
fn split_by_bytes(entries: Vec<(Slot, Value)>, max_bytes: usize) -> Vec<Vec<(Slot, Value)>> {
    let mut groups: Vec<Vec<(Slot, Value)>> = Vec::new();
    let mut bytes = 0;
    for (slot, value) in entries {
        let size = value.size_bytes();
        match groups.last_mut() {
            Some(group) if bytes + size <= max_bytes => group.push((slot, value)),
            _ => {
                groups.push(vec![(slot, value)]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    groups
}
