//! Which connection receives which account's messages (direct ones and
//! those of its rooms, merged in id order by `ChatState::stream`), and how
//! far each has been sent: one global id per subscription, since the
//! merged stream is strictly increasing. Sending is paced by each connection's bounded queue: a
//! subscription whose queue is full is "backlogged" and pumped again later.

use crate::machine::{ConnId, Outbox, PushError};
use chorus_chat::{ChatState, MessageId};
use chorus_limits as limits;
use chorus_proto::ServerFrame;
use std::collections::{BTreeMap, BTreeSet};

/// One connection's subscription.
#[derive(Debug)]
struct Subscription {
    /// The account whose messages this connection receives.
    name: String,
    /// Highest message id queued towards the connection.
    sent_through: MessageId,
}

/// What became of one pump.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// Everything queued for the account is on its way.
    Drained,
    /// The connection's queue is full; try again later.
    Backlogged,
    /// The connection is gone.
    Closed,
}

/// Every subscription on this replica.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    by_conn: BTreeMap<ConnId, Subscription>,
    by_name: BTreeMap<String, BTreeSet<ConnId>>,
    backlogged: BTreeSet<ConnId>,
}

impl Subscriptions {
    /// Subscribes `conn` to `name` from message id `after` on, replacing
    /// any earlier subscription of that connection.
    pub(crate) fn subscribe(&mut self, conn: ConnId, name: String, after: MessageId) {
        self.unsubscribe(conn);
        self.by_name.entry(name.clone()).or_default().insert(conn);
        self.by_conn.insert(conn, Subscription { name, sent_through: after });
    }

    /// Ends `conn`'s subscription, if any; returns the account it was for.
    pub(crate) fn unsubscribe(&mut self, conn: ConnId) -> Option<String> {
        let subscription = self.by_conn.remove(&conn)?;
        self.backlogged.remove(&conn);
        if let Some(conns) = self.by_name.get_mut(&subscription.name) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.by_name.remove(&subscription.name);
            }
        }
        Some(subscription.name)
    }

    /// Connections subscribed to `name`.
    pub(crate) fn conns_for(&self, name: &str) -> Vec<ConnId> {
        self.by_name.get(name).map(|c| c.iter().copied().collect()).unwrap_or_default()
    }

    /// Connections subscribed to a member of `room` (every subscribed
    /// connection for `#all`).
    pub(crate) fn conns_for_room(&self, chat: &ChatState, room: &str) -> Vec<ConnId> {
        if room == chorus_chat::BROADCAST_ROOM {
            return self.subscribed();
        }
        let members = chat.room_members(room);
        if members.len() < self.by_name.len() {
            members.iter().flat_map(|member| self.conns_for(member)).collect()
        } else {
            let member = |name: &&String| members.binary_search(name).is_ok();
            self.by_name.iter().filter(|(name, _)| member(name)).flat_map(|(_, c)| c.iter().copied()).collect()
        }
    }

    /// Every subscribed connection.
    pub(crate) fn subscribed(&self) -> Vec<ConnId> {
        self.by_conn.keys().copied().collect()
    }

    /// Connections that could not take everything last time.
    pub(crate) fn backlogged(&self) -> Vec<ConnId> {
        self.backlogged.iter().copied().collect()
    }

    /// Queues every message past `sent_through` towards `conn`, as far as
    /// its queue allows.
    pub(crate) fn pump(&mut self, conn: ConnId, chat: &ChatState, out: &mut impl Outbox) -> Pumped {
        let Some(subscription) = self.by_conn.get_mut(&conn) else {
            return Pumped::Drained;
        };
        let outcome = loop {
            if out.room(conn) == 0 {
                break Pumped::Backlogged;
            }
            let max = limits::DELIVERY_MESSAGES_PER_FRAME_MAX;
            let messages = match chat.stream(&subscription.name, subscription.sent_through, max) {
                Ok(messages) if !messages.is_empty() => messages,
                _ => break Pumped::Drained,
            };
            let last = messages.last().expect("not empty").id;
            // Fewer than asked for: that was all of it, no need to look again.
            let drained = messages.len() < max;
            match out.push(conn, ServerFrame::Deliver { messages }) {
                Ok(()) => {
                    subscription.sent_through = last;
                    if drained {
                        break Pumped::Drained;
                    }
                }
                Err(PushError::Full) => break Pumped::Backlogged,
                Err(PushError::Closed) => break Pumped::Closed,
            }
        };
        match outcome {
            Pumped::Backlogged => {
                self.backlogged.insert(conn);
            }
            Pumped::Drained => {
                self.backlogged.remove(&conn);
            }
            Pumped::Closed => {
                self.unsubscribe(conn);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_chat::{Command, Proposal};

    /// An outbox that records frames and holds at most `room` of them.
    struct Frames {
        room: usize,
        sizes: Vec<usize>,
        last: MessageId,
    }

    impl Outbox for Frames {
        fn room(&self, _: ConnId) -> usize {
            self.room - self.sizes.len()
        }

        fn push(&mut self, _: ConnId, frame: ServerFrame) -> Result<(), PushError> {
            if self.room(0) == 0 {
                return Err(PushError::Full);
            }
            let ServerFrame::Deliver { messages } = frame else { panic!("only deliveries are pumped") };
            assert!(messages.first().expect("never an empty frame").id > self.last, "in order, no repeats");
            self.last = messages.last().expect("not empty").id;
            self.sizes.push(messages.len());
            Ok(())
        }

        fn kick(&mut self, _: ConnId) {}
    }

    /// A well-formed argon2id PHC string (the state checks the format only).
    const HASH: &str = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";

    /// `bob` with `queued` messages from `alice` in his mailbox.
    fn mailbox_of(queued: u64) -> ChatState {
        let mut chat = ChatState::default();
        let mut apply = |seq, command| {
            let applied = chat.apply(&Proposal::new(1, seq, 0, command));
            assert!(applied.reply.is_ok(), "{:?}", applied.reply);
        };
        apply(0, Command::RegisterClient);
        for (seq, name) in [(1, "alice"), (2, "bob")] {
            apply(seq, Command::Create { name: name.into(), password_hash: HASH.into() });
        }
        for seq in 3..3 + queued {
            apply(seq, Command::Send { from: "alice".into(), to: "bob".into(), text: format!("m{seq}") });
        }
        chat
    }

    #[test]
    fn a_backlog_goes_out_in_full_frames_then_the_rest_and_stops_when_drained() {
        let max = limits::DELIVERY_MESSAGES_PER_FRAME_MAX;
        let chat = mailbox_of(2 * max as u64 + 5);
        let mut subscriptions = Subscriptions::default();
        subscriptions.subscribe(7, "bob".into(), 0);
        let mut out = Frames { room: 10, sizes: Vec::new(), last: 0 };
        assert_eq!(subscriptions.pump(7, &chat, &mut out), Pumped::Drained);
        assert_eq!(out.sizes, vec![max, max, 5]);
        assert!(subscriptions.backlogged().is_empty());
        assert_eq!(subscriptions.pump(7, &chat, &mut out), Pumped::Drained, "nothing new");
        assert_eq!(out.sizes.len(), 3, "nothing sent twice");
        // From the middle of the mailbox (past its first leaf of 64).
        let last = out.last;
        subscriptions.subscribe(8, "bob".into(), last - 70);
        let mut out = Frames { room: 10, sizes: Vec::new(), last: last - 70 };
        assert_eq!(subscriptions.pump(8, &chat, &mut out), Pumped::Drained);
        assert_eq!((out.sizes, out.last), (vec![max, 70 - max], last));
    }

    #[test]
    fn a_full_queue_leaves_the_subscription_backlogged_where_it_stopped() {
        let max = limits::DELIVERY_MESSAGES_PER_FRAME_MAX;
        let chat = mailbox_of(max as u64 + 1);
        let mut subscriptions = Subscriptions::default();
        subscriptions.subscribe(7, "bob".into(), 0);
        let mut out = Frames { room: 1, sizes: Vec::new(), last: 0 };
        assert_eq!(subscriptions.pump(7, &chat, &mut out), Pumped::Backlogged);
        assert_eq!(subscriptions.backlogged(), vec![7]);
        out.room = 2;
        assert_eq!(subscriptions.pump(7, &chat, &mut out), Pumped::Drained);
        assert_eq!(out.sizes, vec![max, 1]);
        assert!(subscriptions.backlogged().is_empty());
    }
}
