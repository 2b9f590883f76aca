//! Every acknowledged message is delivered exactly once and in order:
//! a client incarnation shows each account's messages in increasing id
//! order without repeats; nothing is shown that was not sent; a message
//! whose read position was confirmed is never delivered under a
//! subscription requested after that confirmation arrived (a Subscribe
//! sent in the tick a confirmation arrives is processed after it); and at
//! the end every message still addressed to a live
//! account has been shown.

use super::Violation;
use crate::client::Observation;
use chorus_chat::{Command, MessageId, Outcome};
use chorus_paxos::Slot;
use chorus_server::machine::AppliedSlot;
use std::collections::{BTreeMap, BTreeSet};

/// A message as the log created it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sent {
    from: String,
    to: String,
    text: String,
    /// Position in the log: slot, then index within the slot's batch.
    at: (Slot, usize),
}

#[derive(Debug, Default)]
pub struct Delivery {
    sent: BTreeMap<MessageId, Sent>,
    /// Log positions at which each name was deleted.
    deleted: BTreeMap<String, Vec<(Slot, usize)>>,
    /// Highest id shown per (client, incarnation, account).
    last_shown: BTreeMap<(usize, u64, String), MessageId>,
    /// Ids shown by anyone.
    shown: BTreeSet<MessageId>,
    /// Confirmed read positions: (account, through, tick).
    confirmed: Vec<(String, MessageId, u64)>,
}

impl Delivery {
    /// A slot applied for the first time; `executed` tells, per command,
    /// whether it ran (a retried command replays its cached reply instead).
    pub fn first_application(&mut self, slot: &AppliedSlot, executed: &[bool]) {
        for (index, (proposal, reply)) in slot.commands.iter().enumerate() {
            if !executed[index] {
                continue;
            }
            let at = (slot.slot, index);
            match (&proposal.command, reply) {
                (Command::Send { from, to, text }, Ok(Outcome::Sent { id })) => {
                    let sent = Sent { from: from.clone(), to: to.clone(), text: text.clone(), at };
                    self.sent.insert(*id, sent);
                }
                (Command::Delete { name }, Ok(Outcome::Deleted)) => {
                    self.deleted.entry(name.clone()).or_default().push(at);
                }
                _ => {}
            }
        }
    }

    pub fn observed(&mut self, observation: Observation) -> Result<(), Violation> {
        match observation {
            Observation::Shown { client, incarnation, message, at, subscribed_at } => {
                self.shown_message(client, incarnation, &message, at, subscribed_at)
            }
            Observation::AckConfirmed { name, through, at, .. } => {
                self.confirmed.push((name, through, at));
                Ok(())
            }
            Observation::Finished(_) => Ok(()),
        }
    }

    fn shown_message(
        &mut self,
        client: usize,
        incarnation: u64,
        message: &chorus_chat::Message,
        at: u64,
        subscribed: u64,
    ) -> Result<(), Violation> {
        let fail = |detail: String| Err(Violation::new("delivery", detail));
        if message.room.is_some() {
            return Ok(()); // a room message: the rooms checker's
        }
        let Some(sent) = self.sent.get(&message.id) else {
            return fail(format!("client {client} was shown message {} that was never sent", message.id));
        };
        if (&sent.from, &sent.to, &sent.text) != (&message.from, &message.to, &message.text) {
            return fail(format!("message {} was shown as {message:?} but sent as {sent:?}", message.id));
        }
        let key = (client, incarnation, message.to.clone());
        let last = self.last_shown.insert(key.clone(), message.id).unwrap_or(0);
        if message.id <= last {
            return fail(format!(
                "client {client}.{incarnation} was shown message {} for {} after message {last} (repeat or out of order) at t={at}",
                message.id, message.to
            ));
        }
        let read_before = self
            .confirmed
            .iter()
            .find(|(name, through, when)| *name == message.to && *through >= message.id && *when <= subscribed);
        if let Some((_, through, when)) = read_before {
            return fail(format!(
                "message {} for {} was shown again to client {client}.{incarnation} at t={at}; it subscribed at t={subscribed}, after the read position was confirmed through {through} at t={when}",
                message.id, message.to
            ));
        }
        self.shown.insert(message.id);
        Ok(())
    }

    /// At the end of the run: every message to an account not deleted
    /// after it was sent has been shown.
    pub fn complete(&self) -> Result<(), Violation> {
        for (id, sent) in &self.sent {
            let deleted_after = self.deleted.get(&sent.to).is_some_and(|slots| slots.iter().any(|at| *at > sent.at));
            if !deleted_after && !self.shown.contains(id) {
                let acks: Vec<_> = self.confirmed.iter().filter(|(n, t, _)| *n == sent.to && *t >= *id).collect();
                return Err(Violation::new(
                    "delivery",
                    format!(
                        "message {id} from {} to {} (log position {:?}) was never shown; confirmed read positions covering it: {acks:?}; deletions of {}: {:?}",
                        sent.from, sent.to, sent.at, sent.to, self.deleted.get(&sent.to)
                    ),
                ));
            }
        }
        Ok(())
    }
}
