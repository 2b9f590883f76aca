//! Every member sees each room's messages in the log's order, with no gaps
//! and no repeats: a room message is shown only as posted and only to an
//! account that was a member when it was posted; one client incarnation
//! shows a member's messages of one room in increasing id order, skipping
//! none that the member should have received unless the account's read
//! position had already passed it (another client of the same account
//! read it) or a gap notice covered it; a message is never shown under a
//! subscription requested after a read position covering it was
//! confirmed; and at the end every message posted to a room while an
//! account that is still a member belonged to it has been shown to that
//! account (or covered by a gap notice). `#all` (broadcasts) counts every
//! account as a member from its creation to its deletion.

use super::Violation;
use crate::client::Observation;
use chorus_chat::{Command, Message, MessageId, Outcome, Proposal, BROADCAST_ROOM};
use chorus_server::machine::AppliedSlot;
use std::collections::{BTreeMap, BTreeSet};

/// A room message as the log created it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Post {
    from: String,
    text: String,
}

/// One membership: the member receives ids in `(after, through]`
/// (`through` is `None` while it lasts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    after: MessageId,
    through: Option<MessageId>,
}

impl Span {
    fn covers(&self, id: MessageId) -> bool {
        id > self.after && self.through.is_none_or(|through| id <= through)
    }
}

#[derive(Debug, Default)]
pub struct Rooms {
    /// Room -> id -> post, from the log.
    posts: BTreeMap<String, BTreeMap<MessageId, Post>>,
    /// (account, room) -> memberships, in log order.
    spans: BTreeMap<(String, String), Vec<Span>>,
    /// The last id the log assigned so far (direct or room message).
    last_id: MessageId,
    /// Highest read position the log applied per account (acks).
    acked: BTreeMap<String, MessageId>,
    /// Highest room id shown per (client, incarnation, account, room).
    last_shown: BTreeMap<(usize, u64, String, String), MessageId>,
    /// (account, room, id) shown to anyone; gap notices included.
    shown: BTreeSet<(String, String, MessageId)>,
    /// Highest gap notice shown per (account, room).
    gap_notices: BTreeMap<(String, String), MessageId>,
    /// Confirmed read positions: (account, through, tick).
    confirmed: Vec<(String, MessageId, u64)>,
}

impl Rooms {
    /// A slot applied for the first time (slots come in log order);
    /// `executed` tells, per command, whether it ran.
    pub fn first_application(&mut self, slot: &AppliedSlot, executed: &[bool]) {
        for (index, (proposal, reply)) in slot.commands.iter().enumerate() {
            self.carried_ack(proposal);
            let ran = executed[index] || matches!(proposal.command, Command::Ack { .. });
            if ran {
                self.apply(&proposal.command, reply);
            }
        }
    }

    /// The read position a post carries moves before the post, whether
    /// or not the post runs, if its sender exists.
    fn carried_ack(&mut self, proposal: &Proposal) {
        let (Some(through), Some(from)) = (proposal.read_through, poster(&proposal.command)) else { return };
        let exists = self
            .spans
            .get(&(from.to_string(), BROADCAST_ROOM.to_string()))
            .and_then(|spans| spans.last())
            .is_some_and(|span| span.through.is_none());
        if exists {
            let acked = self.acked.entry(from.to_string()).or_default();
            *acked = (*acked).max(through.min(self.last_id));
        }
    }

    fn apply(&mut self, command: &Command, reply: &Result<Outcome, chorus_chat::ChatError>) {
        match (command, reply) {
            (Command::Send { .. }, Ok(Outcome::Sent { id })) => self.last_id = self.last_id.max(*id),
            (Command::Say { from, room, text }, Ok(Outcome::Sent { id })) => self.post(room, *id, from, text),
            (Command::Broadcast { from, text }, Ok(Outcome::Sent { id })) => self.post(BROADCAST_ROOM, *id, from, text),
            (Command::Create { name, .. }, Ok(Outcome::Created)) => self.begin_span(name, BROADCAST_ROOM),
            (Command::Join { name, room }, Ok(Outcome::Joined)) => self.begin_span(name, room),
            (Command::Leave { name, room }, Ok(Outcome::Left)) => self.end_span(name, room),
            (Command::Delete { name }, Ok(Outcome::Deleted)) => {
                let rooms: Vec<String> =
                    self.spans.keys().filter(|(member, _)| member == name).map(|(_, room)| room.clone()).collect();
                for room in rooms {
                    self.end_span(name, &room);
                }
            }
            (Command::Ack { name, through }, Ok(Outcome::Acked)) => {
                let acked = self.acked.entry(name.clone()).or_default();
                *acked = (*acked).max((*through).min(self.last_id));
            }
            _ => {}
        }
    }

    fn post(&mut self, room: &str, id: MessageId, from: &str, text: &str) {
        assert!(id > self.last_id, "the log assigns increasing ids");
        self.last_id = id;
        let post = Post { from: from.to_string(), text: text.to_string() };
        self.posts.entry(room.to_string()).or_default().insert(id, post);
    }

    fn begin_span(&mut self, name: &str, room: &str) {
        let span = Span { after: self.last_id, through: None };
        self.spans.entry((name.to_string(), room.to_string())).or_default().push(span);
    }

    fn end_span(&mut self, name: &str, room: &str) {
        let last_id = self.last_id;
        let spans = self.spans.get_mut(&(name.to_string(), room.to_string()));
        if let Some(open) = spans.and_then(|spans| spans.last_mut()).filter(|span| span.through.is_none()) {
            open.through = Some(last_id);
        }
    }

    /// The membership of `name` in `room` when message `id` was posted.
    fn span_at(&self, name: &str, room: &str, id: MessageId) -> Option<Span> {
        let spans = self.spans.get(&(name.to_string(), room.to_string()))?;
        spans.iter().find(|span| span.covers(id)).copied()
    }

    pub fn observed(&mut self, observation: &Observation) -> Result<(), Violation> {
        match observation {
            Observation::Shown { client, incarnation, message, at, subscribed_at } if message.room.is_some() => {
                self.shown_message((*client, *incarnation), message, *at, *subscribed_at)
            }
            Observation::AckConfirmed { name, through, at, .. } => {
                self.confirmed.push((name.clone(), *through, *at));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn shown_message(
        &mut self,
        (client, incarnation): (usize, u64),
        message: &Message,
        at: u64,
        subscribed: u64,
    ) -> Result<(), Violation> {
        let room = message.room.clone().expect("a room message");
        let to = message.to.clone();
        let who = format!("client {client}.{incarnation} (as {to}) at t={at}");
        let Some(posts) = self.posts.get(&room) else {
            return fail(format!("{who} was shown message {} of {room}, a room never posted to", message.id));
        };
        if message.is_gap_notice() {
            if !posts.contains_key(&message.id) {
                return fail(format!("{who} was shown a gap notice at id {}, not a message of {room}", message.id));
            }
            let notice = self.gap_notices.entry((to.clone(), room.clone())).or_default();
            *notice = (*notice).max(message.id);
        } else {
            self.check_post(&who, &room, message)?;
        }
        self.check_no_gap((client, incarnation), &room, message, &who)?;
        self.check_not_reread(&room, message, subscribed, &who)?;
        self.shown.insert((to, room, message.id));
        Ok(())
    }

    /// The message is a post of `room`, as posted, to a member.
    fn check_post(&self, who: &str, room: &str, message: &Message) -> Result<(), Violation> {
        let post = self.posts.get(room).and_then(|posts| posts.get(&message.id));
        let Some(post) = post else {
            return fail(format!("{who} was shown message {} as one of {room}, which it is not", message.id));
        };
        if (&post.from, &post.text) != (&message.from, &message.text) {
            return fail(format!("{who} was shown {message:?} but {room} got {post:?} under that id"));
        }
        if self.span_at(&message.to, room, message.id).is_none() {
            return fail(format!("{who} was shown message {} of {room} posted while not a member", message.id));
        }
        Ok(())
    }

    /// Within one incarnation: ids increase, and every message of the room
    /// between the previous one shown and this one was posted in another
    /// membership (leaving drops what is unread), already read by the
    /// account (an applied ack), or covered by this gap notice.
    fn check_no_gap(
        &mut self,
        (client, incarnation): (usize, u64),
        room: &str,
        message: &Message,
        who: &str,
    ) -> Result<(), Violation> {
        let key = (client, incarnation, message.to.clone(), room.to_string());
        let Some(previous) = self.last_shown.insert(key, message.id) else {
            return Ok(()); // the first of this incarnation: nothing to compare with
        };
        if message.id <= previous {
            return fail(format!("{who} was shown message {} of {room} after {previous}", message.id));
        }
        if message.is_gap_notice() {
            return Ok(());
        }
        let Some(span) = self.span_at(&message.to, room, message.id) else {
            return Ok(()); // check_post refused it already
        };
        let read = self.acked.get(&message.to).copied().unwrap_or(0);
        let from = previous.max(span.after).max(read) + 1;
        let missed = match from < message.id {
            true => self.posts[room].range(from..message.id).next().map(|(id, _)| *id),
            false => None,
        };
        match missed {
            Some(missed) => fail(format!(
                "{who} was shown message {} of {room} after {previous}, skipping {missed} (read position {read})",
                message.id
            )),
            None => Ok(()),
        }
    }

    /// Not shown under a subscription requested after a read position
    /// covering it was confirmed.
    fn check_not_reread(&self, room: &str, message: &Message, subscribed: u64, who: &str) -> Result<(), Violation> {
        let read_before = self
            .confirmed
            .iter()
            .find(|(name, through, when)| *name == message.to && *through >= message.id && *when <= subscribed);
        match read_before {
            Some((_, through, when)) => fail(format!(
                "{who} was shown message {} of {room} again under a subscription of t={subscribed}, after the read position was confirmed through {through} at t={when}",
                message.id
            )),
            None => Ok(()),
        }
    }

    /// At the end of the run: every message posted while a current member
    /// belonged to the room was shown to it, or covered by a gap notice.
    pub fn complete(&self) -> Result<(), Violation> {
        for ((name, room), spans) in &self.spans {
            let Some(open) = spans.last().filter(|span| span.through.is_none()) else { continue };
            let Some(posts) = self.posts.get(room) else { continue };
            let noticed = self.gap_notices.get(&(name.clone(), room.clone())).copied().unwrap_or(0);
            let unseen = posts
                .range(open.after + 1..)
                .map(|(id, _)| *id)
                .find(|id| *id > noticed && !self.shown.contains(&(name.clone(), room.clone(), *id)));
            if let Some(id) = unseen {
                let read = self.acked.get(name).copied().unwrap_or(0);
                return fail(format!(
                    "message {id} of {room} was never shown to member {name} (member since id {}, read position {read})",
                    open.after
                ));
            }
        }
        Ok(())
    }
}

/// The sender of a post.
fn poster(command: &Command) -> Option<&str> {
    match command {
        Command::Send { from, .. } | Command::Say { from, .. } | Command::Broadcast { from, .. } => Some(from),
        _ => None,
    }
}

fn fail<T>(detail: String) -> Result<T, Violation> {
    Err(Violation::new("rooms", detail))
}
