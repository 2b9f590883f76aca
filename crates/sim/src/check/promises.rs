//! Promised ballots never decrease: within one incarnation the promise only
//! grows, and across restarts a replica never holds a promise below a
//! ballot it has already vouched for in a Promise or Accepted message. (A
//! promise lost in a crash before anything was sent about it is harmless,
//! and allowed.) A wiped disk resets that floor: the replica's next
//! incarnation may hold a promise below one its lost incarnation vouched
//! for, and is kept safe by incarnation numbers instead (peers drop the
//! lost incarnation's votes once they know of the new one).

use super::Violation;
use chorus_paxos::{Ballot, Envelope, Message};
use std::collections::BTreeMap;

/// Per replica, the highest ballot it vouched for in a message.
#[derive(Debug, Default)]
pub struct Promises {
    floor: BTreeMap<usize, Ballot>,
    /// The promise last seen, with the incarnation it was seen in.
    last: BTreeMap<usize, (u64, Ballot)>,
}

impl Promises {
    pub fn sent(&mut self, replica: usize, envelope: &Envelope) {
        let ballot = match &envelope.message {
            Message::Promise { ballot, .. } | Message::Accepted { ballot, .. } => *ballot,
            _ => return,
        };
        let floor = self.floor.entry(replica).or_default();
        *floor = (*floor).max(ballot);
    }

    /// Replica `replica` lost its disk: what it vouched for before no
    /// longer binds it.
    pub fn disk_lost(&mut self, replica: usize) {
        self.floor.remove(&replica);
    }

    pub fn holds(&mut self, replica: usize, incarnation: u64, promised: Ballot) -> Result<(), Violation> {
        if let Some((seen_in, before)) = self.last.insert(replica, (incarnation, promised)) {
            if seen_in == incarnation && promised < before {
                return Err(Violation::new(
                    "promises",
                    format!("replica {replica}'s promise went down from {before} to {promised}"),
                ));
            }
        }
        let floor = self.floor.get(&replica).copied().unwrap_or_default();
        if promised < floor {
            return Err(Violation::new(
                "promises",
                format!("replica {replica} holds promise {promised} after vouching for ballot {floor}"),
            ));
        }
        Ok(())
    }
}
