//! Pre-vote and phase 1: how a replica becomes leader, and how the others
//! answer it.

use crate::durability::Deferred;
use crate::replica::{LeaderState, PromiseData, Replica, RoleState};
use crate::types::{Ballot, Entry, Message, ReplicaId, Slot, Value};
use chorus_limits as limits;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl Replica {
    /// The election timer fired: ask peers whether an election could win
    /// before disturbing anyone with a higher ballot.
    pub(crate) fn start_pre_vote(&mut self) {
        let round = self.round_seen.max(self.promised.round) + 1;
        self.leader = None;
        self.role = RoleState::PreCandidate { round, grants: BTreeSet::from([self.config.id]) };
        self.reset_election_timer();
        let chosen_through = self.chosen_through;
        self.broadcast(Message::PreVote { round, chosen_through });
        self.check_pre_vote_quorum();
    }

    /// True while this replica leads, or heard its leader recently enough
    /// that it should not help depose it.
    fn leader_is_live(&self) -> bool {
        if matches!(self.role, RoleState::Leader(_)) {
            return true;
        }
        let recent = |at: u64| self.now - at < self.config.election_ticks_min;
        self.leader.is_some() && self.leader_heard_at.is_some_and(recent)
    }

    pub(crate) fn on_pre_vote(&mut self, from: ReplicaId, round: u64, chosen_through: Slot) {
        let granted = self.recovery.is_none()
            && !self.leader_is_live()
            && round > self.promised.round
            && chosen_through >= self.chosen_through;
        let promised = self.promised;
        self.send(from, Message::PreVoteReply { round, granted, promised });
    }

    pub(crate) fn on_pre_vote_reply(&mut self, from: ReplicaId, round: u64, granted: bool, promised: Ballot) {
        self.round_seen = self.round_seen.max(promised.round);
        if let RoleState::PreCandidate { round: mine, grants } = &mut self.role {
            if *mine == round && granted {
                grants.insert(from);
            }
        }
        self.check_pre_vote_quorum();
    }

    fn check_pre_vote_quorum(&mut self) {
        let RoleState::PreCandidate { round, grants } = &self.role else {
            return;
        };
        if grants.len() >= self.config.quorum() {
            let round = (*round).max(self.round_seen + 1);
            self.start_prepare(round);
        }
    }

    /// Phase 1a: claim a fresh ballot and ask for promises.
    fn start_prepare(&mut self, round: u64) {
        let ballot = Ballot::new(round, self.config.id);
        assert!(ballot > self.promised, "a new ballot must exceed every promise");
        self.raise_promise(ballot);
        let from_slot = self.chosen_through + 1;
        self.role = RoleState::Candidate { ballot, from_slot, promises: BTreeMap::new() };
        self.reset_election_timer();
        self.broadcast(Message::Prepare { ballot, from_slot });
        if let Some(work) = self.pipeline.defer(Deferred::SelfPromise { ballot }) {
            self.run_deferred(work);
        }
    }

    pub(crate) fn record_self_promise(&mut self, ballot: Ballot) {
        let id = self.config.id;
        if let RoleState::Candidate { ballot: mine, promises, .. } = &mut self.role {
            if *mine == ballot {
                promises.insert(id, PromiseData::default());
            }
        }
        self.check_promise_quorum();
    }

    pub(crate) fn on_prepare(&mut self, from: ReplicaId, ballot: Ballot, from_slot: Slot) {
        if self.recovery.is_some() {
            return; // lost its disk: cannot vouch for what it accepted
        }
        if ballot < self.promised {
            let promised = self.promised;
            self.send(from, Message::Reject { ballot, promised });
            return;
        }
        let following_other =
            matches!(self.role, RoleState::Follower) && self.leader_is_live() && self.leader != Some(ballot.replica);
        if following_other || from != ballot.replica {
            return; // stickiness: a live leader is not deposed by a straggler
        }
        if ballot > self.promised {
            self.raise_promise(ballot);
            self.become_follower(None);
        }
        let (entries, truncated) = self.promise_entries(from_slot);
        let (chosen_through, incarnations) = (self.chosen_through, self.incarnations.clone());
        let promise = Message::Promise { ballot, from_slot, entries, truncated, chosen_through, incarnations };
        self.send_durable(from, promise);
    }

    /// Accepted entries at or after `from_slot`, within the size limits.
    /// A candidate asking from inside our compacted prefix is behind it:
    /// the promise is marked truncated so it catches up first.
    fn promise_entries(&self, from_slot: Slot) -> (Vec<(Slot, Entry)>, bool) {
        if from_slot <= self.compacted_through {
            return (Vec::new(), true);
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (slot, entry) in self.log.range(from_slot.max(1)..) {
            bytes += entry.value.size_bytes();
            if entries.len() == limits::PROMISE_ENTRIES_MAX || bytes > limits::PROMISE_BYTES_MAX {
                return (entries, true);
            }
            entries.push((*slot, entry.clone()));
        }
        (entries, false)
    }

    pub(crate) fn on_promise(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        entries: Vec<(Slot, Entry)>,
        truncated: bool,
        chosen_through: Slot,
    ) {
        let expected = matches!(&self.role, RoleState::Candidate { ballot: mine, .. } if *mine == ballot);
        if !expected {
            return;
        }
        if truncated {
            // The promiser is far ahead: catch up before leading anyone.
            self.become_follower(None);
            self.request_catchup(from);
            return;
        }
        if let RoleState::Candidate { promises, .. } = &mut self.role {
            promises.insert(from, PromiseData { entries });
        }
        if chosen_through > self.chosen_through {
            self.request_catchup(from);
        }
        self.check_promise_quorum();
    }

    fn check_promise_quorum(&mut self) {
        let RoleState::Candidate { promises, .. } = &self.role else {
            return;
        };
        if promises.len() >= self.config.quorum() {
            self.become_leader();
        }
    }

    /// Phase 1 is complete: adopt the highest-ballot value of every
    /// unfinished slot, fill holes with no-ops, and re-propose them all.
    fn become_leader(&mut self) {
        let role = std::mem::replace(&mut self.role, RoleState::Follower);
        let RoleState::Candidate { ballot, from_slot, promises } = role else {
            unreachable!("only a candidate becomes leader");
        };
        let merged = self.merge_promises(from_slot, promises);
        let mut last = self.chosen_through;
        for (slot, entry) in &merged {
            last = last.max(*slot);
            if entry.chosen {
                self.mark_chosen(*slot, entry.value.clone());
            }
        }
        self.advance_chosen();
        let peers: Vec<ReplicaId> = self.config.peers().collect();
        self.role = RoleState::Leader(Box::new(LeaderState {
            ballot,
            next_slot: last + 1,
            queue: VecDeque::new(),
            queue_bytes: 0,
            in_flight: BTreeMap::new(),
            heard: peers.iter().map(|p| (*p, self.now)).collect(),
            heartbeat_at: self.now,
            read_round: 0,
            read_acks: BTreeMap::new(),
            read_round_needed: false,
            reads: VecDeque::new(),
        }));
        self.leader = Some(self.config.id);
        self.leader_heard_at = Some(self.now);
        let recovered = self.recovered_values(&merged, from_slot, last);
        self.send_accepts(recovered);
        self.send_heartbeat();
    }

    /// Per slot, the chosen value if any promise knows it, else the value
    /// accepted under the highest ballot.
    fn merge_promises(&self, from_slot: Slot, promises: BTreeMap<ReplicaId, PromiseData>) -> BTreeMap<Slot, Entry> {
        let own = self.log.range(from_slot..).map(|(s, e)| (*s, e.clone()));
        let theirs = promises.into_values().flat_map(|p| p.entries);
        let mut merged: BTreeMap<Slot, Entry> = BTreeMap::new();
        for (slot, entry) in own.chain(theirs).filter(|(s, _)| *s >= from_slot) {
            let better = match merged.get(&slot) {
                None => true,
                Some(held) => !held.chosen && (entry.chosen || entry.ballot > held.ballot),
            };
            if better {
                merged.insert(slot, entry);
            }
        }
        merged
    }

    /// The values to re-propose for every unchosen slot up to `last`.
    fn recovered_values(&self, merged: &BTreeMap<Slot, Entry>, from_slot: Slot, last: Slot) -> Vec<(Slot, Value)> {
        (from_slot.max(self.chosen_through + 1)..=last)
            .filter(|slot| !self.log.get(slot).is_some_and(|e| e.chosen))
            .map(|slot| {
                let value = merged.get(&slot).map_or(Value::Noop, |e| e.value.clone());
                let skip = chorus_plant::active(chorus_plant::bugs::SKIP_RECOVERY);
                let value = if skip { Value::Noop } else { value };
                (slot, value)
            })
            .collect()
    }

    pub(crate) fn on_reject(&mut self, ballot: Ballot, promised: Ballot) {
        self.round_seen = self.round_seen.max(promised.round);
        let mine = match &self.role {
            RoleState::Leader(state) => Some(state.ballot),
            RoleState::Candidate { ballot, .. } => Some(*ballot),
            _ => None,
        };
        if mine == Some(ballot) && promised > ballot {
            self.become_follower(None);
        }
    }
}
