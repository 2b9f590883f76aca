//! Static configuration of one replica's core.

use crate::types::ReplicaId;
use chorus_limits as limits;

/// How one replica's core is set up. Time is in ticks; the caller decides
/// how long a tick is (the server uses `limits::TICK_MILLIS`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// This replica.
    pub id: ReplicaId,
    /// Every replica of the cluster, this one included (1, 3, 5 or 7 of them).
    pub replicas: Vec<ReplicaId>,
    /// Ticks between leader heartbeats; at least 1.
    pub heartbeat_ticks: u64,
    /// Shortest election timeout in ticks; a follower that heard its leader
    /// more recently than this refuses to help elect another.
    pub election_ticks_min: u64,
    /// Longest election timeout in ticks (exclusive); also how long a leader
    /// keeps leading without hearing from a majority.
    pub election_ticks_max: u64,
    /// Ticks before an unanswered catch-up request is sent again.
    pub catchup_retry_ticks: u64,
    /// Seeds the generator that randomizes election timeouts.
    pub seed: u64,
}

/// A configuration the core refuses to run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cluster size {0} is not 1, 3, 5 or 7")]
    ClusterSize(usize),
    #[error("replica {0} is not listed among the replicas")]
    NotAMember(ReplicaId),
    #[error("replica ids must be distinct")]
    DuplicateReplica,
    #[error("timeouts must satisfy 1 <= heartbeat < election_min < election_max")]
    Timeouts,
}

impl Config {
    /// A configuration with the default timeouts from `chorus-limits`.
    pub fn new(id: ReplicaId, replicas: Vec<ReplicaId>, seed: u64) -> Self {
        Config {
            id,
            replicas,
            heartbeat_ticks: limits::HEARTBEAT_TICKS,
            election_ticks_min: limits::ELECTION_TICKS_MIN,
            election_ticks_max: limits::ELECTION_TICKS_MAX,
            catchup_retry_ticks: limits::CATCHUP_RETRY_TICKS,
            seed,
        }
    }

    /// Checks the configuration; the core asserts it was validated.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.replicas.len();
        if n == 0 || n.is_multiple_of(2) || n > limits::REPLICAS_MAX {
            return Err(ConfigError::ClusterSize(n));
        }
        if !self.replicas.contains(&self.id) {
            return Err(ConfigError::NotAMember(self.id));
        }
        let mut sorted = self.replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != n {
            return Err(ConfigError::DuplicateReplica);
        }
        let t = (self.heartbeat_ticks, self.election_ticks_min, self.election_ticks_max);
        if t.0 == 0 || t.0 >= t.1 || t.1 >= t.2 || self.catchup_retry_ticks == 0 {
            return Err(ConfigError::Timeouts);
        }
        Ok(())
    }

    /// Votes needed for a decision: a strict majority.
    pub fn quorum(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    /// Every replica but this one.
    pub fn peers(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.replicas.iter().copied().filter(move |r| *r != self.id)
    }
}
