//! Invariant checkers, one module per property, fed continuously by the
//! world. Each returns a [`Violation`] naming itself.

mod acked_survive;
mod agreement;
mod chosen_stable;
mod delivery;
mod exactly_once;
pub use chorus_lincheck as linearizable;
mod promises;
mod rebuilding_abstains;
mod rooms;
mod state_hash;

use crate::client::{Finished, Observation};
use chorus_paxos::Envelope;
use chorus_server::machine::AppliedSlot;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker that caught it.
    pub check: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(check: &'static str, detail: impl Into<String>) -> Self {
        Violation { check, detail: detail.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.check, self.detail)
    }
}

/// Every checker of one run.
#[derive(Debug, Default)]
pub struct Checks {
    agreement: agreement::Agreement,
    chosen_stable: chosen_stable::ChosenStable,
    state_hash: state_hash::StateHash,
    promises: promises::Promises,
    exactly_once: exactly_once::ExactlyOnce,
    delivery: delivery::Delivery,
    rooms: rooms::Rooms,
    finished: Vec<Finished>,
}

impl Checks {
    /// Slots replica `replica` (in its `incarnation`) just applied. A
    /// replica that installs a snapshot skips the slots it covers: every
    /// checker looks only at slots a replica applied, and each slot's first
    /// application anywhere still comes in log order (a snapshot covers
    /// only slots some replica applied before).
    pub fn applied(&mut self, replica: usize, incarnation: u64, slots: &[AppliedSlot]) -> Result<(), Violation> {
        for slot in slots {
            let first = self.agreement.applied(replica, slot)?;
            self.chosen_stable.applied(replica, incarnation, slot)?;
            self.state_hash.applied(replica, slot)?;
            if first {
                let executed = self.exactly_once.first_application(slot)?;
                self.delivery.first_application(slot, &executed);
                self.rooms.first_application(slot, &executed);
            }
        }
        Ok(())
    }

    /// Replica `replica` installed a snapshot of `slot` (from a peer, or
    /// from its disk at a restart) whose state has `digest`.
    pub fn installed(&self, replica: usize, slot: chorus_paxos::Slot, digest: u64) -> Result<(), Violation> {
        self.state_hash.installed(replica, slot, digest)
    }

    /// A Paxos message replica `replica` sent to a peer; `rebuilding`: it
    /// was rebuilding after a disk loss when it produced the message.
    pub fn sent(&mut self, replica: usize, rebuilding: bool, envelope: &Envelope) -> Result<(), Violation> {
        rebuilding_abstains::sent(replica, rebuilding, envelope)?;
        self.promises.sent(replica, envelope);
        Ok(())
    }

    /// Replica `replica`'s disk was wiped: it restarts on an empty one.
    pub fn wiped(&mut self, replica: usize) {
        self.promises.disk_lost(replica);
    }

    /// The promise replica `replica` holds now (after a step or a restart).
    pub fn promised(
        &mut self,
        replica: usize,
        incarnation: u64,
        promised: chorus_paxos::Ballot,
    ) -> Result<(), Violation> {
        self.promises.holds(replica, incarnation, promised)
    }

    /// Something a client saw.
    pub fn observed(&mut self, observation: Observation) -> Result<(), Violation> {
        match observation {
            Observation::Finished(finished) => {
                self.finished.push(finished);
                Ok(())
            }
            other => {
                self.rooms.observed(&other)?;
                self.delivery.observed(other)
            }
        }
    }

    /// The checks that need the whole run: after the liveness phase.
    pub fn finish(&self) -> Result<(), Violation> {
        acked_survive::check(&self.finished, &self.exactly_once)?;
        self.delivery.complete()?;
        self.rooms.complete()?;
        let history = linearizable_history(&self.finished);
        match linearizable::check(&history) {
            Ok(()) => Ok(()),
            Err(linearizable::CheckError::Violation(v)) => Err(Violation::new("linearizable", v.explanation)),
            Err(linearizable::CheckError::TooHard { steps }) => {
                Err(Violation::new("linearizable", format!("checker gave up after {steps} steps")))
            }
        }
    }

    /// Operations finished so far.
    pub fn operations(&self) -> usize {
        self.finished.len()
    }
}

/// The account operations of the run, for the linearizability checker.
fn linearizable_history(finished: &[Finished]) -> Vec<linearizable::Operation> {
    use crate::client::{OpEnd, OpKind};
    use chorus_chat::{ChatError, Outcome};
    use chorus_proto::{RequestError, Response};
    use linearizable::{AccountOp, AccountResult, Operation};
    let mut history = Vec::new();
    for f in finished {
        let op = match &f.kind {
            OpKind::Create(n) => AccountOp::Create(n.clone()),
            OpKind::Delete(n) => AccountOp::Delete(n.clone()),
            OpKind::Send { from, to, .. } => AccountOp::Send { from: from.clone(), to: to.clone() },
            OpKind::List(p) => AccountOp::List(p.clone()),
            OpKind::Register | OpKind::Connect(_) | OpKind::SignIn(_) => continue,
            OpKind::Join { .. } | OpKind::Leave { .. } | OpKind::Say { .. } | OpKind::Broadcast { .. } => continue,
        };
        let completed = match &f.end {
            OpEnd::GaveUp => None,
            OpEnd::Replied(at, result) => {
                let result = match result {
                    Ok(Response::Outcome(Outcome::Created | Outcome::Deleted | Outcome::Sent { .. })) => {
                        Some(AccountResult::Ok)
                    }
                    Ok(Response::List(list)) => Some(AccountResult::Names(list.names.clone())),
                    Err(RequestError::Chat(ChatError::NameTaken { .. })) => Some(AccountResult::NameTaken),
                    Err(RequestError::Chat(ChatError::NoSuchAccount { .. })) => Some(AccountResult::NoSuchAccount),
                    Err(RequestError::Chat(ChatError::SenderUnknown { .. })) => Some(AccountResult::SenderUnknown),
                    _ => None, // not a result of the account model: outcome unknown
                };
                result.map(|r| (*at, r))
            }
        };
        history.push(Operation { client: f.client, op, invoked_at: f.invoked_at, completed });
    }
    history
}
