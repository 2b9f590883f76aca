//! What the core hands back to its caller after a batch of steps.

use crate::types::{Ballot, Envelope, ReplicaId, Slot, Value, WriteBatch};
use serde::{Deserialize, Serialize};

/// Names one linearizable read, chosen by the caller.
pub type ReadId = u64;

/// Everything the caller must do, in this order:
/// 1. start making `write` durable (it may run in the background); report
///    completion with `Event::Persisted(write.id)`;
/// 2. send `messages` (they depend only on state already durable);
/// 3. apply `committed` to the state machine, in order;
/// 4. answer the `reads` that are ready.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// State to persist; `None` when nothing changed.
    pub write: Option<WriteBatch>,
    /// Messages that may leave now.
    pub messages: Vec<Envelope>,
    /// Newly chosen values, contiguous and in slot order.
    pub committed: Vec<(Slot, Value)>,
    /// Reads that may now be served from the applied state, or have failed.
    pub reads: Vec<(ReadId, Result<(), NotLeader>)>,
    /// A peer compacted log this replica still needs: fetch a snapshot
    /// from it, then call [`crate::Replica::install_snapshot`].
    pub snapshot_wanted: Option<SnapshotWanted>,
}

/// Where to fetch a snapshot from, and the least slot it must cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotWanted {
    /// The peer that answered a catch-up request with `SnapshotNeeded`.
    pub from: ReplicaId,
    /// The peer's log starts after this slot.
    pub covering: Slot,
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.write.is_none()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.snapshot_wanted.is_none()
    }
}

/// The replica's part in the protocol right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking peers whether an election would succeed (pre-vote).
    PreCandidate,
    /// Running phase 1 with its own ballot.
    Candidate,
    /// Completed phase 1; proposes values.
    Leader,
    /// Rebuilding after a disk loss: learns chosen values, never votes.
    Recovering,
}

/// Refusal of a proposal or read by a replica that is not the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("not the leader (leader is {leader:?})")]
pub struct NotLeader {
    /// The replica believed to lead, when known.
    pub leader: Option<ReplicaId>,
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    #[error("the leader's proposal queue is full; retry later")]
    Busy,
    #[error("the command is larger than one slot may carry")]
    TooLarge,
}

/// A snapshot of the core's position, for status displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: ReplicaId,
    pub role: Role,
    pub leader: Option<ReplicaId>,
    pub promised: Ballot,
    pub chosen_through: Slot,
    pub applied_through: Slot,
    pub last_slot: Slot,
    /// The log holds no entry at or below this slot (a snapshot covers them).
    pub compacted_through: Slot,
    /// How many times this replica rebuilt after losing its disk (0 for a
    /// founding member that never did).
    pub incarnation: u64,
}
