//! Exactly-once effect per (client, sequence number): every later
//! application of the same command returns the first one's reply and so
//! changes nothing.

use super::Violation;
use chorus_chat::{ChatError, ClientId, Command, Outcome};
use chorus_server::machine::AppliedSlot;
use std::collections::BTreeMap;

/// The reply of each command's first application, in log order.
#[derive(Debug, Default)]
pub struct ExactlyOnce {
    first: BTreeMap<(ClientId, u64), Result<Outcome, ChatError>>,
}

impl ExactlyOnce {
    /// A slot applied for the first time anywhere (log order). Returns, per
    /// command, whether it executed (false for a replay of a cached reply).
    pub fn first_application(&mut self, slot: &AppliedSlot) -> Result<Vec<bool>, Violation> {
        let mut executed = Vec::with_capacity(slot.commands.len());
        for (proposal, reply) in &slot.commands {
            if proposal.seq == 0 || matches!(proposal.command, Command::Ack { .. }) {
                executed.push(true); // registrations and session-less acks
                continue;
            }
            let key = (proposal.client, proposal.seq);
            let Some(first) = self.first.get(&key) else {
                self.first.insert(key, reply.clone());
                executed.push(true);
                continue;
            };
            executed.push(false);
            let refused = matches!(reply, Err(ChatError::StaleSequence { .. } | ChatError::SessionUnknown));
            if reply != first && !refused {
                return Err(Violation::new(
                    "exactly-once",
                    format!(
                        "client {:#x} seq {} took effect twice: first {first:?}, then {reply:?} at slot {}",
                        proposal.client, proposal.seq, slot.slot
                    ),
                ));
            }
        }
        Ok(executed)
    }

    /// The first reply to (client, seq), if it was ever applied.
    pub fn reply_of(&self, client: ClientId, seq: u64) -> Option<&Result<Outcome, ChatError>> {
        self.first.get(&(client, seq))
    }
}
