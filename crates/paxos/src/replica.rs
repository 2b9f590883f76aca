//! The replica: state, public entry points, ticks and the `ready` drain.

use crate::config::Config;
use crate::durability::{Deferred, Pipeline};
use crate::ready::{NotLeader, ProposeError, ReadId, Ready, Role, SnapshotWanted, Status};
use crate::recovery::Recovery;
use crate::types::{Ballot, DurableState, Entry, Envelope, Incarnations, Message, ReplicaId, Slot, Value, WriteId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl PartialEq for Replica {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Replica {}

impl std::hash::Hash for Replica {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// One input to the core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// One unit of time passed.
    Tick,
    /// A message from a peer arrived.
    Receive(Envelope),
    /// Every write batch through this id is durable.
    Persisted(WriteId),
}

/// What a candidate learned from one promise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct PromiseData {
    pub(crate) entries: Vec<(Slot, Entry)>,
}

/// A linearizable read waiting for confirmation of leadership.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PendingRead {
    pub(crate) id: ReadId,
    /// Every slot that may have been chosen before the read began is <= this.
    pub(crate) slot: Slot,
    /// Heartbeat round whose majority acknowledgement confirms leadership.
    pub(crate) round: u64,
}

/// A slot the leader proposed and has not yet seen chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct InFlight {
    /// Replicas whose durable accept the leader has counted.
    pub(crate) voters: BTreeSet<ReplicaId>,
    /// Tick at which the slot was last sent to the peers missing from `voters`.
    pub(crate) sent_at: u64,
}

/// Leader-only state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LeaderState {
    pub(crate) ballot: Ballot,
    /// Next slot to propose into.
    pub(crate) next_slot: Slot,
    /// Commands waiting for a slot, and their total size.
    pub(crate) queue: VecDeque<Vec<u8>>,
    pub(crate) queue_bytes: usize,
    /// Proposed, not yet chosen: who has accepted each slot, and when it
    /// was last sent.
    pub(crate) in_flight: BTreeMap<Slot, InFlight>,
    /// Tick at which each peer was last heard under this ballot.
    pub(crate) heard: BTreeMap<ReplicaId, u64>,
    /// Tick of the last heartbeat sent.
    pub(crate) heartbeat_at: u64,
    /// Current read round, and the highest round each peer acknowledged.
    pub(crate) read_round: u64,
    pub(crate) read_acks: BTreeMap<ReplicaId, u64>,
    /// True when a read arrived since the last heartbeat.
    pub(crate) read_round_needed: bool,
    pub(crate) reads: VecDeque<PendingRead>,
}

/// The replica's role with its role-specific state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RoleState {
    Follower,
    PreCandidate { round: u64, grants: BTreeSet<ReplicaId> },
    Candidate { ballot: Ballot, from_slot: Slot, promises: BTreeMap<ReplicaId, PromiseData> },
    Leader(Box<LeaderState>),
}

/// A sans-IO Multi-Paxos replica. See the crate documentation for the
/// caller's duties. Replicas can be cloned, compared and hashed (for model
/// checking); the random generator is left out of the comparison, as its
/// only output (the election timeout) is a field of its own.
#[derive(Clone, Debug)]
pub struct Replica {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha8Rng,
    /// Durable (or about to be): the highest ballot promised.
    pub(crate) promised: Ballot,
    /// Durable (or about to be): accepted and chosen entries.
    pub(crate) log: BTreeMap<Slot, Entry>,
    /// Every slot at or below this is chosen and in `log`.
    pub(crate) chosen_through: Slot,
    /// Every slot at or below this was handed out in `Ready::committed`
    /// (or is covered by a snapshot the caller installed).
    pub(crate) applied_through: Slot,
    /// The log holds no entry at or below this slot: a snapshot covers them.
    pub(crate) compacted_through: Slot,
    /// A peer answered a catch-up request with `SnapshotNeeded`.
    pub(crate) snapshot_wanted: Option<SnapshotWanted>,
    pub(crate) role: RoleState,
    /// The replica believed to lead.
    pub(crate) leader: Option<ReplicaId>,
    /// Ticks since this replica was created.
    pub(crate) now: u64,
    /// Tick at which the leader was last heard from.
    pub(crate) leader_heard_at: Option<u64>,
    /// Ticks of silence after which an election starts; re-drawn each reset.
    pub(crate) election_timeout: u64,
    /// Tick at which the election timer was last reset.
    pub(crate) election_reset_at: u64,
    /// Highest round seen in any ballot, so a new ballot beats all of them.
    pub(crate) round_seen: u64,
    /// An outstanding catch-up request: (asked replica, tick sent).
    pub(crate) catchup: Option<(ReplicaId, u64)>,
    /// Durable (or about to be): every replica's incarnation as known here.
    pub(crate) incarnations: Incarnations,
    /// Set while rebuilding after a disk loss; this replica does not vote.
    pub(crate) recovery: Option<Recovery>,
    /// The nonce of the last recovery request recorded from each peer, so a
    /// resent request is answered again rather than refused.
    pub(crate) recover_nonces: BTreeMap<ReplicaId, u64>,
    pub(crate) pipeline: Pipeline,
    pub(crate) outbox: Vec<Envelope>,
    pub(crate) reads_done: Vec<(ReadId, Result<(), NotLeader>)>,
}

impl Replica {
    /// Every field but the generator, for comparison and hashing.
    #[allow(clippy::type_complexity)]
    fn key(
        &self,
    ) -> (
        &Config,
        Ballot,
        &BTreeMap<Slot, Entry>,
        (Slot, Slot, Slot, Option<SnapshotWanted>),
        &RoleState,
        Option<ReplicaId>,
        (u64, Option<u64>, u64, u64, u64),
        (Option<(ReplicaId, u64)>, &Incarnations, &Option<Recovery>, &BTreeMap<ReplicaId, u64>),
        &Pipeline,
        &Vec<Envelope>,
        &Vec<(ReadId, Result<(), NotLeader>)>,
    ) {
        (
            &self.config,
            self.promised,
            &self.log,
            (self.chosen_through, self.applied_through, self.compacted_through, self.snapshot_wanted),
            &self.role,
            self.leader,
            (self.now, self.leader_heard_at, self.election_timeout, self.election_reset_at, self.round_seen),
            (self.catchup, &self.incarnations, &self.recovery, &self.recover_nonces),
            &self.pipeline,
            &self.outbox,
            &self.reads_done,
        )
    }

    /// Builds a replica from its durable state. `applied_through` is the
    /// slot the caller's state machine already reflects: 0 when it starts
    /// empty, else the slot of the snapshot it loaded, which may be past the
    /// log's chosen prefix (a crash between installing a snapshot and
    /// recording it in the log). Chosen entries after it are handed out by
    /// the first `ready`.
    ///
    /// # Panics
    ///
    /// When the log was compacted past `applied_through`: the caller lost
    /// the snapshot that covered the deleted entries (it must check this
    /// before, and refuse to start).
    pub fn new(config: Config, durable: DurableState, applied_through: Slot) -> Self {
        config.validate().expect("configuration was validated by the caller");
        assert!(applied_through >= durable.compacted_through, "the log was compacted past the caller's state");
        let mut log = durable.entries;
        for (_, entry) in log.range_mut(..=durable.chosen_through) {
            entry.chosen = true;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ u64::from(config.id) << 56);
        let own_incarnation = durable.incarnations.get(config.id);
        let recovering = durable.recovering && !chorus_plant::active(chorus_plant::bugs::WIPED_VOTES_AT_ONCE);
        let recovery = recovering.then(|| Recovery::new(own_incarnation + 1, rng.random()));
        let mut replica = Replica {
            round_seen: durable.promised.round,
            promised: durable.promised,
            chosen_through: durable.chosen_through,
            applied_through: durable.compacted_through,
            compacted_through: durable.compacted_through,
            snapshot_wanted: None,
            log,
            config,
            rng,
            role: RoleState::Follower,
            leader: None,
            now: 0,
            leader_heard_at: None,
            election_timeout: 0,
            election_reset_at: 0,
            catchup: None,
            incarnations: durable.incarnations,
            recovery,
            recover_nonces: BTreeMap::new(),
            pipeline: Pipeline::new(),
            outbox: Vec::new(),
            reads_done: Vec::new(),
        };
        if applied_through > replica.chosen_through {
            replica.install_snapshot(applied_through);
        } else {
            replica.applied_through = applied_through;
        }
        replica.advance_chosen();
        replica.reset_election_timer();
        replica.send_recover();
        replica
    }

    /// The caller replaced its state machine with a snapshot taken at
    /// `slot`, already durable: every slot through it counts as chosen and
    /// applied, and the log entries it covers are deleted. A leader or
    /// candidate steps down first. Returns false, changing nothing, when
    /// the state machine is already at or past `slot`.
    ///
    /// The snapshot must be durable before this call: the write it queues
    /// deletes the log entries the snapshot replaces.
    pub fn install_snapshot(&mut self, slot: Slot) -> bool {
        if slot <= self.applied_through {
            return false;
        }
        if !matches!(self.role, RoleState::Follower) {
            self.become_follower(None);
        }
        self.applied_through = slot;
        if slot > self.chosen_through {
            self.chosen_through = slot;
            self.pipeline.set_chosen_through(slot);
        }
        self.drop_log_through(slot);
        self.snapshot_wanted = None;
        self.catchup = None;
        self.advance_chosen();
        true
    }

    /// The caller holds a durable snapshot at or above `through`: log
    /// entries at or below it are no longer needed and are deleted.
    ///
    /// # Panics
    ///
    /// When `through` is past the applied prefix (the snapshot cannot cover
    /// what the state machine has not applied).
    pub fn compact(&mut self, through: Slot) {
        assert!(through <= self.applied_through, "compacting past the applied prefix");
        if through > self.compacted_through {
            self.drop_log_through(through);
        }
    }

    fn drop_log_through(&mut self, slot: Slot) {
        self.log = self.log.split_off(&slot.saturating_add(1));
        self.compacted_through = self.compacted_through.max(slot);
        self.pipeline.set_compact_through(self.compacted_through);
    }

    /// Feeds one event.
    pub fn step(&mut self, event: Event) {
        match event {
            Event::Tick => self.tick(),
            Event::Receive(envelope) => self.receive(envelope),
            Event::Persisted(id) => self.persisted(id),
        }
    }

    /// Queues a client command for a slot. Only the leader accepts.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(), ProposeError> {
        let not_leader = NotLeader { leader: self.leader };
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(not_leader.into());
        };
        if command.len() > chorus_limits::BATCH_BYTES_MAX {
            return Err(ProposeError::TooLarge);
        }
        let bytes_full = leader.queue_bytes + command.len() > chorus_limits::PROPOSALS_QUEUED_BYTES_MAX;
        if leader.queue.len() >= chorus_limits::PROPOSALS_QUEUED_MAX || bytes_full {
            return Err(ProposeError::Busy);
        }
        leader.queue_bytes += command.len();
        leader.queue.push_back(command);
        Ok(())
    }

    /// Collects what the caller must do now. See [`Ready`].
    pub fn ready(&mut self) -> Ready {
        self.finish_recovery_if_caught_up();
        self.cut_batches();
        self.start_read_round();
        let committed = self.take_committed();
        Ready {
            write: self.pipeline.take_write(),
            messages: std::mem::take(&mut self.outbox),
            committed,
            reads: std::mem::take(&mut self.reads_done),
            snapshot_wanted: self.snapshot_wanted.take(),
        }
    }

    /// Where this replica stands.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role(),
            leader: self.leader,
            promised: self.promised,
            chosen_through: self.chosen_through,
            applied_through: self.applied_through,
            last_slot: self.log.last_key_value().map_or(self.chosen_through, |(slot, _)| *slot),
            compacted_through: self.compacted_through,
            incarnation: self.incarnations.get(self.config.id),
        }
    }

    /// Ticks since this replica last heard from a leader (0 while it leads).
    pub fn leader_silence_ticks(&self) -> u64 {
        if matches!(self.role, RoleState::Leader(_)) {
            return 0;
        }
        self.now - self.leader_heard_at.unwrap_or(0)
    }

    /// The configuration this replica runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current role.
    pub fn role(&self) -> Role {
        if self.recovery.is_some() {
            return Role::Recovering;
        }
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.config.id
    }

    /// The value chosen for `slot`, if this replica knows it.
    pub fn chosen_value(&self, slot: Slot) -> Option<&Value> {
        self.log.get(&slot).filter(|e| e.chosen).map(|e| &e.value)
    }

    fn tick(&mut self) {
        self.now += 1;
        self.retry_catchup();
        if self.recovery.is_some() {
            self.recovery_tick();
        } else if matches!(self.role, RoleState::Leader(_)) {
            self.leader_tick();
        } else if self.now - self.election_reset_at >= self.election_timeout {
            self.start_pre_vote();
        }
    }

    fn persisted(&mut self, id: WriteId) {
        for work in self.pipeline.persisted(id) {
            self.run_deferred(work);
        }
    }

    pub(crate) fn run_deferred(&mut self, work: Deferred) {
        match work {
            Deferred::Send(envelope) => self.outbox.push(envelope),
            Deferred::SelfAccept { ballot, slots } => self.record_accepts(self.config.id, ballot, &slots),
            Deferred::SelfPromise { ballot } => self.record_self_promise(ballot),
        }
    }

    /// Sends now if nothing it reports is still unwritten, else after the write.
    pub(crate) fn send_durable(&mut self, to: ReplicaId, message: Message) {
        let envelope = Envelope { from: self.config.id, to, message };
        if chorus_plant::active(chorus_plant::bugs::REPLY_BEFORE_PERSIST) {
            return self.outbox.push(envelope);
        }
        if let Some(work) = self.pipeline.defer(Deferred::Send(envelope)) {
            self.run_deferred(work);
        }
    }

    /// Sends at once: the message promises nothing about durable state.
    pub(crate) fn send(&mut self, to: ReplicaId, message: Message) {
        debug_assert_ne!(to, self.config.id);
        self.outbox.push(Envelope { from: self.config.id, to, message });
    }

    pub(crate) fn broadcast(&mut self, message: Message) {
        let peers: Vec<ReplicaId> = self.config.peers().collect();
        for peer in peers {
            self.send(peer, message.clone());
        }
    }

    fn receive(&mut self, envelope: Envelope) {
        let from = envelope.from;
        if from == self.config.id || !self.config.replicas.contains(&from) {
            return; // not from a peer: ignore rather than trust it
        }
        match envelope.message {
            Message::PreVote { round, chosen_through } => self.on_pre_vote(from, round, chosen_through),
            Message::PreVoteReply { round, granted, promised } => {
                self.on_pre_vote_reply(from, round, granted, promised)
            }
            Message::Prepare { ballot, from_slot } => self.on_prepare(from, ballot, from_slot),
            Message::Promise { ballot, entries, truncated, chosen_through, incarnations, .. } => {
                if self.vote_is_current(from, &incarnations) {
                    self.on_promise(from, ballot, entries, truncated, chosen_through)
                }
            }
            Message::Accept { ballot, entries, chosen_through } => {
                self.on_accept(from, ballot, entries, chosen_through)
            }
            Message::Accepted { ballot, slots, chosen_through, incarnations } => {
                if self.vote_is_current(from, &incarnations) {
                    self.on_accepted(from, ballot, &slots, chosen_through)
                }
            }
            Message::Reject { ballot, promised } => self.on_reject(ballot, promised),
            Message::Heartbeat { ballot, chosen_through, read_round } => {
                self.on_heartbeat(from, ballot, chosen_through, read_round)
            }
            Message::HeartbeatAck { ballot, read_round, chosen_through } => {
                self.on_heartbeat_ack(from, ballot, read_round, chosen_through)
            }
            Message::CatchupRequest { from_slot } => self.on_catchup_request(from, from_slot),
            Message::Catchup { entries, chosen_through } => self.on_catchup(from, entries, chosen_through),
            Message::SnapshotNeeded { compacted_through, chosen_through } => {
                self.on_snapshot_needed(from, compacted_through, chosen_through)
            }
            Message::Recover { incarnation, nonce } => self.on_recover(from, incarnation, nonce),
            Message::RecoverAck { incarnation, nonce, promised, last_slot, incarnations } => {
                self.on_recover_ack(from, incarnation, nonce, promised, last_slot, &incarnations)
            }
            Message::RecoverNack { known } => self.on_recover_nack(known),
            Message::FillRequest { through } => self.on_fill_request(through),
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        let (low, high) = (self.config.election_ticks_min, self.config.election_ticks_max);
        self.election_timeout = self.rng.random_range(low..high);
        self.election_reset_at = self.now;
    }

    /// Raises the promise to `ballot` (durably) if it is higher.
    pub(crate) fn raise_promise(&mut self, ballot: Ballot) {
        self.round_seen = self.round_seen.max(ballot.round);
        if ballot > self.promised {
            self.promised = ballot;
            self.pipeline.set_promised(ballot);
        }
    }

    /// Drops any leadership or candidacy and follows `leader` (if known).
    pub(crate) fn become_follower(&mut self, leader: Option<ReplicaId>) {
        if let RoleState::Leader(state) = &self.role {
            let failed: Vec<ReadId> = state.reads.iter().map(|r| r.id).collect();
            for id in failed {
                self.reads_done.push((id, Err(NotLeader { leader })));
            }
        }
        self.role = RoleState::Follower;
        self.leader = leader;
        if leader.is_some() {
            self.leader_heard_at = Some(self.now);
        }
        self.reset_election_timer();
    }

    /// Marks `slot` chosen with `value`; writes the entry unless this
    /// replica already holds the same value (then `chosen_through` covers it).
    pub(crate) fn mark_chosen(&mut self, slot: Slot, value: Value) {
        if slot <= self.chosen_through {
            return;
        }
        match self.log.get_mut(&slot) {
            Some(entry) if entry.chosen => {
                assert_eq!(entry.value, value, "two values chosen for slot {slot}");
            }
            Some(entry) if entry.value == value => entry.chosen = true,
            _ => {
                let entry = Entry { ballot: self.promised, value, chosen: true };
                self.log.insert(slot, entry.clone());
                self.pipeline.put_entry(slot, entry);
            }
        }
    }

    /// Moves `chosen_through` over every contiguous chosen slot.
    pub(crate) fn advance_chosen(&mut self) {
        let before = self.chosen_through;
        while self.log.get(&(self.chosen_through + 1)).is_some_and(|e| e.chosen) {
            self.chosen_through += 1;
        }
        if self.chosen_through > before {
            self.pipeline.set_chosen_through(self.chosen_through);
        }
    }

    fn take_committed(&mut self) -> Vec<(Slot, Value)> {
        if self.applied_through >= self.chosen_through {
            return Vec::new();
        }
        let range = self.applied_through + 1..=self.chosen_through;
        let committed: Vec<(Slot, Value)> =
            self.log.range(range).map(|(slot, entry)| (*slot, entry.value.clone())).collect();
        debug_assert_eq!(committed.len() as u64, self.chosen_through - self.applied_through);
        self.applied_through = self.chosen_through;
        committed
    }
}
