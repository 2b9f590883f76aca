//! Rejoining after a disk loss, and the incarnation numbers that make it
//! safe.
//!
//! A replica whose store is empty but which is not a founding member lost
//! every promise and accept it ever made. It must not vote until:
//!
//! 1. a new incarnation number of it, above every earlier one, is durable
//!    at enough other replicas that every quorum it could be part of holds
//!    one of them (`n - quorum + 1` others: both others of three, three of
//!    the four others of five);
//! 2. it has raised its promise to the highest promise those replicas
//!    reported, and learned every slot through the last slot any of them
//!    had in its log at that moment.
//!
//! Every vote (promise, accepted) carries the voter's table of
//! incarnations; a candidate or leader merges the tables it hears and
//! discards votes from any incarnation older than the newest it knows of.
//! A vote of the lost incarnation is thus either counted with a vote cast
//! before the new incarnation was recorded (and then step 2 covers what
//! that vote decided), or discarded. The argument, and the papers it rests
//! on, are in `docs/ARCHITECTURE.md`, "Disk loss".

use crate::replica::{Replica, RoleState};
use crate::types::{Ballot, Incarnations, Message, ReplicaId, Slot, Value};
use chorus_limits as limits;
use std::collections::BTreeMap;

/// Progress of a replica rebuilding after a disk loss.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Recovery {
    /// The incarnation this replica is asking the others to record.
    pub(crate) incarnation: u64,
    /// Tells this attempt's requests from an earlier attempt's.
    pub(crate) nonce: u64,
    /// Answers for `incarnation`: each peer's promise and last log slot.
    pub(crate) acks: BTreeMap<ReplicaId, (Ballot, Slot)>,
    /// Tick at which the request was last sent.
    pub(crate) sent_at: u64,
    /// Once enough peers answered: every slot through this must be chosen
    /// here before this replica votes.
    pub(crate) learn_through: Option<Slot>,
}

impl Recovery {
    pub(crate) fn new(incarnation: u64, nonce: u64) -> Self {
        Recovery { incarnation, nonce, acks: BTreeMap::new(), sent_at: 0, learn_through: None }
    }
}

impl Replica {
    /// True while this replica must not vote.
    pub fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// Peers that must record a new incarnation before it is safe: enough
    /// that every majority holding this replica holds one of them.
    fn recovery_acks_needed(&self) -> usize {
        self.config.replicas.len() - self.config.quorum() + 1
    }

    /// Sends (or resends) the request for the current attempt.
    pub(crate) fn send_recover(&mut self) {
        let now = self.now;
        let Some(recovery) = &mut self.recovery else {
            return;
        };
        recovery.sent_at = now;
        let (incarnation, nonce) = (recovery.incarnation, recovery.nonce);
        let waiting: Vec<ReplicaId> = self.config.peers().filter(|peer| !recovery.acks.contains_key(peer)).collect();
        for peer in waiting {
            self.send(peer, Message::Recover { incarnation, nonce });
        }
    }

    /// Every shortest election timeout: resends unanswered requests or,
    /// once answered, asks the leader to make sure every slot it must learn
    /// gets chosen.
    pub(crate) fn recovery_tick(&mut self) {
        let (now, patience, leader) = (self.now, self.config.election_ticks_min, self.leader);
        let Some(recovery) = &mut self.recovery else {
            return;
        };
        if now - recovery.sent_at < patience {
            return;
        }
        match (recovery.learn_through, leader) {
            (None, _) => self.send_recover(),
            (Some(through), Some(leader)) if leader != self.config.id => {
                recovery.sent_at = now;
                self.send(leader, Message::FillRequest { through });
            }
            _ => {}
        }
    }

    /// A rebuilding peer waits for every slot through `through` to be
    /// chosen. A peer may hold a slot there that an earlier leader proposed
    /// and this leader never saw; without new commands it would stay
    /// unchosen, so the leader proposes no-ops up to it (it may: no
    /// promise of its election reported a value at or after `next_slot`).
    pub(crate) fn on_fill_request(&mut self, through: Slot) {
        let Some(leader) = self.leader_state() else {
            return;
        };
        let room = limits::SLOTS_IN_FLIGHT_MAX.saturating_sub(leader.in_flight.len() as u64);
        let first = leader.next_slot;
        let last = through.min(first.saturating_add(room).saturating_sub(1));
        if last < first {
            return;
        }
        leader.next_slot = last + 1;
        self.send_accepts((first..=last).map(|slot| (slot, Value::Noop)).collect());
    }

    /// A peer rebuilds: record its new incarnation durably, then tell it
    /// our promise and how far our log reaches.
    pub(crate) fn on_recover(&mut self, from: ReplicaId, incarnation: u64, nonce: u64) {
        if self.recovery.is_some() {
            return; // a rebuilding replica knows nothing worth reporting
        }
        let known = self.incarnations.get(from);
        let resent = incarnation == known && self.recover_nonces.get(&from) == Some(&nonce);
        if incarnation <= known && !resent {
            return self.send(from, Message::RecoverNack { known });
        }
        if incarnation > known {
            self.learn_incarnation(from, incarnation);
            self.pipeline.set_incarnations(self.incarnations.clone());
            self.recover_nonces.insert(from, nonce);
        }
        let (promised, last_slot, incarnations) = (self.promised, self.status().last_slot, self.incarnations.clone());
        self.send_durable(from, Message::RecoverAck { incarnation, nonce, promised, last_slot, incarnations });
    }

    pub(crate) fn on_recover_nack(&mut self, known: u64) {
        let Some(recovery) = &mut self.recovery else {
            return;
        };
        if recovery.learn_through.is_some() || known < recovery.incarnation {
            return;
        }
        *recovery = Recovery::new(known + 1, recovery.nonce);
        self.send_recover();
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_recover_ack(
        &mut self,
        from: ReplicaId,
        incarnation: u64,
        nonce: u64,
        promised: Ballot,
        last_slot: Slot,
        incarnations: &Incarnations,
    ) {
        let needed = self.recovery_acks_needed();
        let Some(recovery) = &mut self.recovery else {
            return;
        };
        if recovery.learn_through.is_some() || (incarnation, nonce) != (recovery.incarnation, recovery.nonce) {
            return;
        }
        recovery.acks.insert(from, (promised, last_slot));
        if recovery.acks.len() < needed {
            return;
        }
        let highest_promise = recovery.acks.values().map(|(ballot, _)| *ballot).max().unwrap_or_default();
        let learn_through = recovery.acks.values().map(|(_, slot)| *slot).max().unwrap_or_default();
        recovery.learn_through = Some(learn_through);
        self.note_incarnations(incarnations);
        self.raise_promise(highest_promise);
        if learn_through > self.chosen_through {
            self.request_catchup(from);
        }
    }

    /// Called after every batch of steps: a rebuilding replica that has
    /// learned far enough becomes a voter, durably, with its new
    /// incarnation. Any vote it casts later waits behind this write.
    pub(crate) fn finish_recovery_if_caught_up(&mut self) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let Some(learn_through) = recovery.learn_through else {
            return;
        };
        if self.chosen_through < learn_through {
            if self.catchup.is_none() {
                let peer = recovery.acks.iter().max_by_key(|(_, (_, slot))| *slot).map(|(peer, _)| *peer);
                if let Some(peer) = peer {
                    self.request_catchup(peer);
                }
            }
            return;
        }
        let incarnation = recovery.incarnation;
        self.recovery = None;
        self.incarnations.raise(self.config.id, incarnation);
        self.pipeline.set_incarnations(self.incarnations.clone());
        self.pipeline.set_recovered();
        self.role = RoleState::Follower;
        self.reset_election_timer();
    }

    /// Merges a peer's table into ours; votes already counted from an
    /// incarnation that turns out to be stale are dropped.
    pub(crate) fn note_incarnations(&mut self, theirs: &Incarnations) {
        for (replica, incarnation) in theirs.iter() {
            if replica != self.config.id {
                self.learn_incarnation(replica, incarnation);
            }
        }
    }

    fn learn_incarnation(&mut self, replica: ReplicaId, incarnation: u64) {
        if !self.incarnations.raise(replica, incarnation) {
            return;
        }
        match &mut self.role {
            RoleState::Candidate { promises, .. } => {
                promises.remove(&replica);
            }
            RoleState::Leader(leader) => {
                for in_flight in leader.in_flight.values_mut() {
                    in_flight.voters.remove(&replica);
                }
            }
            _ => {}
        }
    }

    /// Notes the voter's table and says whether its vote is from the
    /// newest incarnation of it this replica knows of.
    pub(crate) fn vote_is_current(&mut self, from: ReplicaId, theirs: &Incarnations) -> bool {
        self.note_incarnations(theirs);
        theirs.get(from) >= self.incarnations.get(from)
    }
}
