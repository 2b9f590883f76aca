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
                Ok(()) if drained => {
                    subscription.sent_through = last;
                    break Pumped::Drained;
                }
                Ok(()) => subscription.sent_through = last,
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
