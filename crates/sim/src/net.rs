//! The simulated replica network: every packet gets a delivery tick; it
//! may be lost, duplicated, delayed (so reordered) or cut by a partition.
//! It carries both kinds of peer traffic the real replicas exchange: Paxos
//! messages and snapshot transfer messages.

use crate::faults::{FaultPlan, Partition};
use chorus_paxos::{Envelope, ReplicaId};
use chorus_proto::Transfer;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// One message between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A message of the consensus core.
    Paxos(Envelope),
    /// A snapshot transfer message (a request, a chunk, or a refusal).
    Transfer { from: ReplicaId, to: ReplicaId, message: Transfer },
}

impl Packet {
    /// Sender and receiver.
    pub fn ends(&self) -> (usize, usize) {
        match self {
            Packet::Paxos(envelope) => (envelope.from as usize, envelope.to as usize),
            Packet::Transfer { from, to, .. } => (*from as usize, *to as usize),
        }
    }
}

/// Packets in flight, by delivery tick (then by send order).
#[derive(Debug, Default)]
pub struct Network {
    in_flight: BTreeMap<(u64, u64), Packet>,
    next_id: u64,
    /// Active partitions, with the tick each ends.
    pub partitions: Vec<(Partition, u64)>,
}

impl Network {
    /// True when a message from `from` to `to` would be cut now.
    pub fn cut(&self, from: usize, to: usize) -> bool {
        self.partitions.iter().any(|(p, _)| p.cuts(from, to))
    }

    /// Sends `packet` at tick `now` under the faults of `plan`.
    pub fn send(&mut self, rng: &mut ChaCha8Rng, plan: &FaultPlan, now: u64, packet: Packet) {
        let (from, to) = packet.ends();
        if self.cut(from, to) || rng.random_bool(plan.loss) {
            return;
        }
        let copies = if rng.random_bool(plan.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if rng.random_bool(0.2) { rng.random_range(0..=plan.delay_ticks_max) } else { 0 };
            let at = now + 1 + delay;
            self.in_flight.insert((at, self.next_id), packet.clone());
            self.next_id += 1;
        }
    }

    /// Packets due at `now`, in delivery order; those now cut are lost.
    pub fn due(&mut self, now: u64) -> Vec<Packet> {
        let later = self.in_flight.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values()
            .filter(|packet| {
                let (from, to) = packet.ends();
                !self.cut(from, to)
            })
            .collect()
    }

    /// Ends partitions whose time is up; returns how many remain.
    pub fn expire_partitions(&mut self, now: u64) -> usize {
        self.partitions.retain(|(_, until)| *until > now);
        self.partitions.len()
    }

    /// Packets still in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
