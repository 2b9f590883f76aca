//! The vocabulary of the protocol: ballots, slots, values, log entries,
//! durable write batches and the messages replicas exchange.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Identifies one replica of the cluster. Small and dense: 0, 1, 2, ...
pub type ReplicaId = u8;

/// Position in the replicated log. Slot 0 is never used; the first slot is 1.
pub type Slot = u64;

/// A proposal number: ordered by round first, then by the proposing replica,
/// so two replicas never share a ballot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// Increases each time some replica starts phase 1.
    pub round: u64,
    /// The replica that owns this ballot (and leads with it).
    pub replica: ReplicaId,
}

impl Ballot {
    /// The ballot every replica starts with; no leader owns it.
    pub const ZERO: Ballot = Ballot { round: 0, replica: 0 };

    /// Builds a ballot from its parts.
    pub fn new(round: u64, replica: ReplicaId) -> Self {
        Ballot { round, replica }
    }
}

impl std::fmt::Display for Ballot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.round, self.replica)
    }
}

/// What one slot decides: either nothing (a hole filled by a new leader) or
/// a batch of opaque, already-encoded client commands.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Fills a hole; the state machine skips it.
    Noop,
    /// Commands in the order the leader received them. Shared, not
    /// copied: one slot's value sits in the log, the pending write, each
    /// peer's Accept and the committed batch at once. Encoded exactly as
    /// a `Vec` would be.
    Batch(Arc<[Vec<u8>]>),
}

impl Value {
    /// A batch of `commands`.
    pub fn batch(commands: Vec<Vec<u8>>) -> Self {
        Value::Batch(commands.into())
    }

    /// Estimated encoded size, used to respect the byte limits on messages.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Noop => chorus_limits::VALUE_OVERHEAD_BYTES,
            Value::Batch(commands) => commands
                .iter()
                .map(|c| c.len() + chorus_limits::VALUE_OVERHEAD_BYTES)
                .sum::<usize>()
                .max(chorus_limits::VALUE_OVERHEAD_BYTES),
        }
    }
}

/// One slot of an acceptor's log, as kept on disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Ballot under which `value` was accepted (for a chosen entry learned by
    /// catch-up, the ballot is unknown and recorded as the learner's promise
    /// at the time; it is never used to decide anything once chosen).
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Value,
    /// True once this replica knows the value is chosen.
    pub chosen: bool,
}

/// How many times each replica has rebuilt itself after losing its disk,
/// as far as the holder knows (absent means 0, a founding member that
/// never lost its disk). Votes carry the voter's table; a vote from an
/// older incarnation of a replica than one the counter knows of is
/// discarded, since that incarnation's promises and accepts were lost
/// with its disk. See `docs/ARCHITECTURE.md`, "Disk loss".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Incarnations(std::collections::BTreeMap<ReplicaId, u64>);

impl Incarnations {
    /// The incarnation of `replica` (0 when never recorded).
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.0.get(&replica).copied().unwrap_or(0)
    }

    /// Raises `replica`'s incarnation to `incarnation`; returns true when it rose.
    pub fn raise(&mut self, replica: ReplicaId, incarnation: u64) -> bool {
        if incarnation <= self.get(replica) {
            return false;
        }
        self.0.insert(replica, incarnation);
        true
    }

    /// Every (replica, incarnation) recorded.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        self.0.iter().map(|(replica, incarnation)| (*replica, *incarnation))
    }
}

/// Identifies one write batch handed to the caller; durability of a batch
/// is reported back with [`crate::Event::Persisted`].
pub type WriteId = u64;

/// State the caller must make durable (fsync) before reporting
/// `Event::Persisted(id)`. Batches are made durable in id order; a later
/// batch overrides an earlier one field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteBatch {
    /// Strictly increasing across the life of one core instance.
    pub id: WriteId,
    /// New promised ballot, if it changed.
    pub promised: Option<Ballot>,
    /// Log entries to insert or overwrite, in slot order.
    pub entries: Vec<(Slot, Entry)>,
    /// New highest slot such that every slot at or below it is chosen.
    pub chosen_through: Option<Slot>,
    /// Delete every log entry at or below this slot: the caller holds a
    /// durable snapshot that covers it. Applied after `entries`.
    pub compact_through: Option<Slot>,
    /// The replica's table of incarnations, whole, if it changed.
    pub incarnations: Option<Incarnations>,
    /// The replica finished rebuilding after a disk loss: from now on it
    /// votes. Written together with its new incarnation and promise.
    pub recovered: bool,
}

impl WriteBatch {
    /// True when the batch carries nothing to write.
    pub fn is_empty(&self) -> bool {
        self.chosen_through.is_none() && !self.sets_more_than_chosen()
    }

    /// True when the batch carries a new `chosen_through` and nothing else.
    pub fn is_only_chosen_mark(&self) -> bool {
        self.chosen_through.is_some() && !self.sets_more_than_chosen()
    }

    /// True when the batch sets any field besides `chosen_through`.
    fn sets_more_than_chosen(&self) -> bool {
        self.promised.is_some()
            || !self.entries.is_empty()
            || self.compact_through.is_some()
            || self.incarnations.is_some()
            || self.recovered
    }
}

/// Everything a replica reloads from disk after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DurableState {
    /// Highest ballot this replica promised.
    pub promised: Ballot,
    /// Every log entry, by slot.
    pub entries: std::collections::BTreeMap<Slot, Entry>,
    /// Every slot at or below this is chosen.
    pub chosen_through: Slot,
    /// Log entries at or below this slot were deleted (a snapshot covers them).
    pub compacted_through: Slot,
    /// Incarnations this replica recorded, its own included.
    pub incarnations: Incarnations,
    /// True when this replica's disk is new (or was wiped) and it has not
    /// finished rebuilding: it must not vote. A founding member's store
    /// starts with this false; every other empty store starts with it true.
    pub recovering: bool,
}

impl DurableState {
    /// Applies one write batch as a store must on persist: each field the
    /// batch sets overrides the one held, entry by entry; compaction last.
    pub fn apply(&mut self, batch: &WriteBatch) {
        if let Some(ballot) = batch.promised {
            self.promised = ballot;
        }
        for (slot, entry) in &batch.entries {
            self.entries.insert(*slot, entry.clone());
        }
        if let Some(slot) = batch.chosen_through {
            self.chosen_through = slot;
        }
        if let Some(slot) = batch.compact_through {
            self.entries = self.entries.split_off(&slot.saturating_add(1));
            self.compacted_through = self.compacted_through.max(slot);
        }
        if let Some(incarnations) = &batch.incarnations {
            self.incarnations = incarnations.clone();
        }
        if batch.recovered {
            self.recovering = false;
        }
    }
}

/// A message between replicas. `from`/`to` travel in the [`Envelope`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Message {
    /// Phase 0: "would you vote for me?" Changes no state at the receiver;
    /// it stops a cut-off replica from disrupting a healthy leader.
    PreVote { round: u64, chosen_through: Slot },
    /// Answer to a pre-vote; `promised` lets a refused candidate pick a
    /// round above every promise next time.
    PreVoteReply { round: u64, granted: bool, promised: Ballot },
    /// Phase 1a: promise not to accept below `ballot`, and report what you
    /// accepted at or after `from_slot`.
    Prepare { ballot: Ballot, from_slot: Slot },
    /// Phase 1b, sent only once `promised >= ballot` is durable.
    Promise {
        ballot: Ballot,
        from_slot: Slot,
        /// Accepted (or chosen) entries at or after `from_slot`, slot order.
        entries: Vec<(Slot, Entry)>,
        /// True when entries were left out for the size limit: the
        /// promiser is far ahead and the candidate must catch up first.
        truncated: bool,
        chosen_through: Slot,
        /// The promiser's table of incarnations (its own included).
        incarnations: Incarnations,
    },
    /// Phase 2a for a run of slots, plus the leader's chosen prefix.
    Accept { ballot: Ballot, entries: Vec<(Slot, Value)>, chosen_through: Slot },
    /// Phase 2b, sent only once the entries are durable.
    Accepted { ballot: Ballot, slots: Vec<Slot>, chosen_through: Slot, incarnations: Incarnations },
    /// The receiver has promised a higher ballot than the one it was sent.
    Reject { ballot: Ballot, promised: Ballot },
    /// Leader liveness, chosen prefix, and read-index confirmation.
    Heartbeat { ballot: Ballot, chosen_through: Slot, read_round: u64 },
    /// Answer to a heartbeat from a replica that accepts `ballot`.
    HeartbeatAck { ballot: Ballot, read_round: u64, chosen_through: Slot },
    /// "Send me chosen values from `from_slot` on."
    CatchupRequest { from_slot: Slot },
    /// Chosen values, contiguous from the requested slot.
    Catchup { entries: Vec<(Slot, Value)>, chosen_through: Slot },
    /// Answer to a catch-up request from below the sender's compacted log:
    /// the asker must fetch the sender's snapshot (covering at least
    /// `compacted_through`) before the log can help it.
    SnapshotNeeded { compacted_through: Slot, chosen_through: Slot },
    /// From a replica rebuilding after a disk loss: "record that I am now
    /// `incarnation`" (`nonce` tells a resent request from a new attempt).
    Recover { incarnation: u64, nonce: u64 },
    /// Sent once `incarnation` is durable at the sender: its promise and
    /// the last slot of its log at that moment, and its incarnation table.
    RecoverAck { incarnation: u64, nonce: u64, promised: Ballot, last_slot: Slot, incarnations: Incarnations },
    /// The sender already knows incarnation `known` of the asker (at or
    /// above the one asked for): try again above it.
    RecoverNack { known: u64 },
    /// From a rebuilding replica to the leader: it must learn every slot
    /// through `through` before it votes; fill any not yet proposed.
    FillRequest { through: Slot },
}

/// A message with its addressing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Envelope {
    pub from: ReplicaId,
    pub to: ReplicaId,
    pub message: Message,
}
