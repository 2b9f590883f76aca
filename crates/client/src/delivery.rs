//! Delivery to the application: the de-duplicating [`DeliveryFilter`] (pure)
//! and [`Deliveries`], which feeds admitted messages, in order, into the
//! stream the application reads.
//!
//! On the wire delivery is at-least-once: a replica re-sends queued messages
//! after every (re)subscription, and two connections may overlap during a
//! switch. The filter passes a message only if it belongs to the current
//! subscription and its id is above the last one passed for that account.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chorus_chat::{Message, MessageId};
use tokio::sync::mpsc;

use crate::limits::DELIVERY_CURSORS_MAX;

/// What the application receives from [`crate::Client::deliveries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message for the subscribed account, never seen before, in id order.
    Message(Message),
    /// Delivery for `name` stopped (the account was deleted, or
    /// resubscribing failed); `reason` is for a human.
    Ended {
        /// The account whose delivery ended.
        name: String,
        /// Why, as the replica or the library put it.
        reason: String,
    },
}

/// Decides which delivered messages reach the application.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    /// The subscription a replica accepted; re-established on every new
    /// connection.
    current: Option<String>,
    /// A subscription being requested; it replaces `current` once a replica
    /// accepts it, and is forgotten if none does.
    pending: Option<String>,
    /// Highest message id passed to the application, per account; at most
    /// `DELIVERY_CURSORS_MAX` entries.
    delivery_cursors: BTreeMap<String, MessageId>,
}

impl DeliveryFilter {
    /// Starts requesting a subscription to `name`; returns the id to
    /// resume after.
    pub fn begin(&mut self, name: &str) -> MessageId {
        self.pending = Some(name.to_string());
        self.cursor(name)
    }

    /// A replica accepted the subscription to `name`: it becomes current.
    /// Returns the account it replaced, if another.
    pub fn confirm(&mut self, name: &str) -> Option<String> {
        if self.pending.as_deref() != Some(name) {
            return None; // Superseded by a later request.
        }
        self.pending = None;
        let previous = self.current.replace(name.to_string());
        previous.filter(|p| p != name)
    }

    /// Requesting `name` failed: the current subscription stays.
    pub fn cancel(&mut self, name: &str) {
        if self.pending.as_deref() == Some(name) {
            self.pending = None;
        }
    }

    /// The current subscription and the id to resume after, to be sent
    /// on a new connection.
    pub fn resume_point(&self) -> Option<(String, MessageId)> {
        let name = self.current.as_ref()?;
        Some((name.clone(), self.cursor(name)))
    }

    /// Whether `message` goes to the application; records it if so.
    pub fn admit(&mut self, message: &Message) -> bool {
        let to = Some(message.to.as_str());
        let subscribed = self.current.as_deref() == to || self.pending.as_deref() == to;
        if !subscribed || message.id <= self.cursor(&message.to) {
            return false;
        }
        self.set_cursor(&message.to, message.id);
        assert_eq!(self.cursor(&message.to), message.id);
        true
    }

    /// Delivery for `name` ended; true if it was the current (or the
    /// requested) subscription.
    pub fn end(&mut self, name: &str) -> bool {
        let mut ended = false;
        if self.current.as_deref() == Some(name) {
            self.current = None;
            ended = true;
        }
        if self.pending.as_deref() == Some(name) {
            self.pending = None;
            ended = true;
        }
        ended
    }

    /// Highest id passed on for `name` (0 if none).
    fn cursor(&self, name: &str) -> MessageId {
        self.delivery_cursors.get(name).copied().unwrap_or(0)
    }

    /// Records `id` as passed on for `name`, keeping the map bounded by
    /// forgetting some other account's cursor.
    fn set_cursor(&mut self, name: &str, id: MessageId) {
        if !self.delivery_cursors.contains_key(name) && self.delivery_cursors.len() >= DELIVERY_CURSORS_MAX {
            let victim = self.delivery_cursors.keys().find(|k| k.as_str() != name).cloned();
            if let Some(victim) = victim {
                self.delivery_cursors.remove(&victim);
            }
        }
        self.delivery_cursors.insert(name.to_string(), id);
        assert!(self.delivery_cursors.len() <= DELIVERY_CURSORS_MAX);
    }
}

/// The filter plus the application's stream. The sender sits behind an
/// async lock held across each send, so that two connections' readers
/// cannot reorder what the filter admitted.
#[derive(Debug)]
pub(crate) struct Deliveries {
    /// Decides what passes (held only briefly, never across an await).
    pub(crate) filter: Mutex<DeliveryFilter>,
    /// The application's stream; bounded, so a slow application slows the reader.
    sender: tokio::sync::Mutex<mpsc::Sender<Delivery>>,
}

impl Deliveries {
    /// A filter with no subscription, feeding `sender`.
    pub(crate) fn new(sender: mpsc::Sender<Delivery>) -> Self {
        Deliveries { filter: Mutex::new(DeliveryFilter::default()), sender: tokio::sync::Mutex::new(sender) }
    }

    /// The filter, locked (a panic elsewhere does not make it unusable).
    pub(crate) fn filter(&self) -> std::sync::MutexGuard<'_, DeliveryFilter> {
        self.filter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Passes the admitted `messages` to the application, in order.
    pub(crate) async fn deliver(&self, messages: Vec<Message>) {
        let sender = self.sender.lock().await;
        for message in messages {
            let admitted = self.filter().admit(&message);
            if admitted && sender.send(Delivery::Message(message)).await.is_err() {
                return; // The application dropped its stream.
            }
        }
    }

    /// Ends the current subscription if it is for `name`, telling the application.
    pub(crate) async fn end(&self, name: String, reason: String) {
        let sender = self.sender.lock().await;
        let ended = self.filter().end(&name);
        if ended {
            let _ = sender.send(Delivery::Ended { name, reason }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: MessageId, to: &str) -> Message {
        Message { id, from: "x".into(), to: to.into(), room: None, at_millis: 0, text: format!("m{id}") }
    }

    #[test]
    fn repeats_and_other_accounts_are_dropped() {
        let mut filter = DeliveryFilter::default();
        assert_eq!(filter.begin("bob"), 0);
        let admitted: Vec<bool> = [(1, "bob"), (2, "bob"), (2, "bob"), (1, "bob"), (3, "al")]
            .iter()
            .map(|(id, to)| filter.admit(&message(*id, to)))
            .collect();
        assert_eq!(admitted, [true, true, false, false, false]);
        assert_eq!(filter.resume_point(), None, "not confirmed yet");
        assert_eq!(filter.confirm("bob"), None);
        assert_eq!(filter.resume_point(), Some(("bob".into(), 2)));
    }

    #[test]
    fn a_failed_switch_keeps_the_current_subscription() {
        let mut filter = DeliveryFilter::default();
        filter.begin("bob");
        filter.confirm("bob");
        assert!(filter.admit(&message(5, "bob")));
        assert_eq!(filter.begin("al"), 0);
        filter.cancel("al");
        assert_eq!(filter.resume_point(), Some(("bob".into(), 5)));
        assert!(!filter.admit(&message(6, "al")), "al was refused");
        assert!(filter.admit(&message(6, "bob")));
    }

    #[test]
    fn switching_replaces_and_remembers_cursors() {
        let mut filter = DeliveryFilter::default();
        filter.begin("bob");
        filter.confirm("bob");
        assert!(filter.admit(&message(5, "bob")));
        filter.begin("al");
        assert_eq!(filter.confirm("al"), Some("bob".into()));
        assert!(!filter.admit(&message(6, "bob")), "bob is no longer current");
        assert_eq!(filter.begin("bob"), 5);
        assert_eq!(filter.confirm("bob"), Some("al".into()));
        assert!(!filter.end("al"));
        assert!(filter.end("bob"));
        assert!(!filter.admit(&message(7, "bob")), "ended");
    }
}
