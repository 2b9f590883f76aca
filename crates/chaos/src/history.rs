//! What the clients saw: the [`History`] of one run, recorded by the
//! workload and read by the checkers.
//!
//! Times are microseconds since the run started ([`Micros`]), read from one
//! monotonic clock in the harness process, so every client's readings are
//! comparable. An operation's window is `[start, end]`: the call was made at
//! `start` and its reply arrived at `end`; a call that timed out has no end
//! (it may take effect at any time after `start`, or never).

use chorus_chat::MessageId;
use chorus_lincheck::Operation;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Microseconds since the start of the run.
pub type Micros = u64;

/// The run's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock reading 0 now.
    pub fn start() -> Clock {
        Clock { origin: Instant::now() }
    }

    /// Microseconds since the start.
    pub fn now(&self) -> Micros {
        self.origin.elapsed().as_micros().try_into().unwrap_or(Micros::MAX)
    }
}

/// How a send ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged with this message id: durable on a majority.
    Acked(MessageId),
    /// Refused by the service: it took no effect.
    Refused,
    /// Timed out or lost with its session: it may or may not have taken effect.
    Unknown,
}

/// One send of the delivery workload. Its text is [`message_text`] of
/// (`sender`, `seq`), unique in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// Index of the sending account.
    pub sender: u16,
    /// The sender's own count, from 0.
    pub seq: u32,
    /// Index of the receiving account.
    pub recipient: u16,
    pub start: Micros,
    /// `None` when the outcome is unknown.
    pub end: Option<Micros>,
    pub outcome: SendOutcome,
}

/// The room every sender and recipient joins at the start; senders post
/// to it, recipients receive its messages merged with their direct ones.
pub const ROOM: &str = "#chaos";

/// One post of the room workload to [`ROOM`]. Its text is [`post_text`]
/// of (`sender`, `seq`), unique in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostRecord {
    /// Index of the posting account.
    pub sender: u16,
    /// The sender's own count (shared with its sends), from 0.
    pub seq: u32,
    pub start: Micros,
    /// `None` when the outcome is unknown.
    pub end: Option<Micros>,
    pub outcome: SendOutcome,
}

/// One message a recipient's client handed to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Index of the receiving account (whose subscription it came on).
    pub recipient: u16,
    pub id: MessageId,
    pub from: String,
    /// The room, for a room message (`from` empty: a gap notice).
    pub room: Option<String>,
    pub text: String,
    pub at: Micros,
}

/// The name of delivery-workload sender `index`.
pub fn sender_name(index: u16) -> String {
    format!("s{index}")
}

/// The name of delivery-workload recipient `index`.
pub fn recipient_name(index: u16) -> String {
    format!("r{index}")
}

/// The text of a sender's `seq`th message: names both, so every text in a
/// run is unique and a delivered text tells which send it came from.
pub fn message_text(sender: u16, seq: u32) -> String {
    format!("m{sender}.{seq}")
}

/// The (sender, seq) a text names, if it is one of ours.
pub fn parse_message_text(text: &str) -> Option<(u16, u32)> {
    parse_numbered(text.strip_prefix('m')?)
}

/// The text of a sender's `seq`th operation when it is a room post.
pub fn post_text(sender: u16, seq: u32) -> String {
    format!("p{sender}.{seq}")
}

/// The (sender, seq) a room post's text names, if it is one of ours.
pub fn parse_post_text(text: &str) -> Option<(u16, u32)> {
    parse_numbered(text.strip_prefix('p')?)
}

fn parse_numbered(text: &str) -> Option<(u16, u32)> {
    let (sender, seq) = text.split_once('.')?;
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

/// Everything the clients recorded, shared by the workload tasks.
#[derive(Debug, Default)]
pub struct History {
    sends: Mutex<Vec<SendRecord>>,
    posts: Mutex<Vec<PostRecord>>,
    delivered: Mutex<Vec<Delivered>>,
    accounts: Mutex<Vec<Operation>>,
    reconnects: Mutex<u64>,
}

impl History {
    pub fn record_send(&self, record: SendRecord) {
        lock(&self.sends).push(record);
    }

    pub fn record_post(&self, record: PostRecord) {
        lock(&self.posts).push(record);
    }

    pub fn posts(&self) -> Vec<PostRecord> {
        lock(&self.posts).clone()
    }

    /// Acknowledged room posts some of the `recipients` members has not
    /// been handed yet (nor told, by a gap notice, that it was dropped).
    pub fn undelivered_posts(&self, recipients: u16) -> usize {
        let mut seen: std::collections::HashSet<(u16, MessageId)> = std::collections::HashSet::new();
        let mut noticed: std::collections::HashMap<u16, MessageId> = std::collections::HashMap::new();
        for d in lock(&self.delivered).iter().filter(|d| d.room.is_some()) {
            seen.insert((d.recipient, d.id));
            if d.from.is_empty() {
                let notice = noticed.entry(d.recipient).or_default();
                *notice = (*notice).max(d.id);
            }
        }
        let covered = |r: u16, id: MessageId| seen.contains(&(r, id)) || noticed.get(&r).is_some_and(|n| id <= *n);
        let acked = lock(&self.posts)
            .iter()
            .filter_map(|p| match p.outcome {
                SendOutcome::Acked(id) => Some(id),
                _ => None,
            })
            .collect::<Vec<_>>();
        acked.into_iter().filter(|id| (0..recipients).any(|r| !covered(r, *id))).count()
    }

    pub fn record_delivery(&self, delivered: Delivered) {
        lock(&self.delivered).push(delivered);
    }

    pub fn record_account_op(&self, operation: Operation) {
        lock(&self.accounts).push(operation);
    }

    /// A subscriber replaced its client (a new session) after a clean flush.
    pub fn record_reconnect(&self) {
        *lock(&self.reconnects) += 1;
    }

    pub fn sends(&self) -> Vec<SendRecord> {
        lock(&self.sends).clone()
    }

    pub fn delivered(&self) -> Vec<Delivered> {
        lock(&self.delivered).clone()
    }

    pub fn account_ops(&self) -> Vec<Operation> {
        lock(&self.accounts).clone()
    }

    pub fn reconnects(&self) -> u64 {
        *lock(&self.reconnects)
    }

    /// Acknowledged sends whose message no recipient has been handed yet.
    pub fn undelivered_acked(&self) -> usize {
        let delivered: std::collections::HashSet<MessageId> = lock(&self.delivered).iter().map(|d| d.id).collect();
        lock(&self.sends)
            .iter()
            .filter(|s| matches!(s.outcome, SendOutcome::Acked(id) if !delivered.contains(&id)))
            .count()
    }

    /// End times of every acknowledged send, sorted.
    pub fn ack_times(&self) -> Vec<Micros> {
        let mut times: Vec<Micros> = lock(&self.sends)
            .iter()
            .filter(|s| matches!(s.outcome, SendOutcome::Acked(_)))
            .filter_map(|s| s.end)
            .collect();
        times.sort_unstable();
        times
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_texts_round_trip_and_foreign_texts_do_not_parse() {
        assert_eq!(parse_message_text(&message_text(7, 123_456)), Some((7, 123_456)));
        for foreign in ["", "m", "m1", "m1.", "x1.2", "m1.2.3", "m-1.2", "m70000.1"] {
            assert_eq!(parse_message_text(foreign), None, "{foreign:?}");
        }
    }
}
