//! [`ChatState`] and the replicated step [`ChatState::apply`]: the session
//! gate (exactly-once), then the command itself (create, delete, send, ack;
//! the room commands are in `rooms`).

use std::cmp::Ordering;

use chorus_limits::{
    ACCOUNTS_MAX, CLIENT_SESSIONS_MAX, MAILBOX_MESSAGES_MAX, ROOMS_MAX, ROOMS_PER_ACCOUNT_MAX, ROOM_HISTORY_BYTES_MAX,
    ROOM_HISTORY_MESSAGES_MAX, ROOM_MEMBERS_MAX,
};
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::rooms::{History, Room, BROADCAST_ROOM};
use crate::session::SessionTable;
use crate::types::{
    Applied, Command, HistoryBounds, Message, MessageId, Millis, Outcome, Proposal, Queued, StateEvent,
};
use crate::validate::{validate, validate_name};

/// A reply plus the side effect other connections must hear about.
type Step = (Result<Outcome, ChatError>, Option<StateEvent>);

/// The whole replicated chat state. Every replica that applies the same
/// proposals in the same order holds a byte-identical value (see
/// [`ChatState::digest`]).
///
/// The collections inside are persistent (`imbl`): a clone shares their
/// nodes and costs O(1), so the core can hand a copy to a background
/// snapshot writer and go on applying; a later change copies only the nodes
/// on its path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    /// Every account by name; ordered so `list` and encoding are deterministic.
    #[serde(deserialize_with = "crate::bounded::ord_map::<_, _, _, ACCOUNTS_MAX>")]
    pub(crate) accounts: OrdMap<String, Account>,
    /// Id of the last message queued (0 before the first), so ids start at 1.
    pub(crate) last_message_id: MessageId,
    /// Exactly-once sessions, replicated so a new leader still deduplicates.
    pub(crate) sessions: SessionTable,
    /// Proposals applied so far; the logical clock that orders session eviction.
    pub(crate) applied_count: u64,
    /// Every room with at least one member, by name (`#all` aside).
    #[serde(deserialize_with = "crate::bounded::ord_map::<_, _, _, ROOMS_MAX>")]
    pub(crate) rooms: OrdMap<String, Room>,
    /// The history of the built-in room `#all`, which every account is in;
    /// an account's read position there is its `acked_through`.
    pub(crate) broadcasts: History,
    /// How much each room's history retains (set by `Configure`).
    pub(crate) room_history: HistoryBounds,
}

/// One account: its queue of undelivered messages and how far it has acked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Default))]
pub(crate) struct Account {
    /// Messages not yet acknowledged, oldest (lowest id) first.
    #[serde(deserialize_with = "crate::bounded::vector::<_, _, MAILBOX_MESSAGES_MAX>")]
    pub(crate) mailbox: Vector<Queued>,
    /// Highest id the owner acknowledged; nothing at or below it is queued.
    pub(crate) acked_through: MessageId,
    /// The password's argon2id hash (PHC string); it also keys the
    /// account's session tokens.
    pub(crate) password_hash: Box<str>,
    /// The applied-proposal count at creation: an account deleted and
    /// created again gets a new one, so the old account's tokens fail.
    pub(crate) created: u64,
    /// The rooms the account is a member of (`#all` aside).
    #[serde(deserialize_with = "crate::bounded::ord_set::<_, _, ROOMS_PER_ACCOUNT_MAX>")]
    pub(crate) rooms: OrdSet<String>,
}

/// The bounds `apply` enforces. Production always uses [`Bounds::LIMITS`];
/// tests pass small ones to reach eviction and fullness quickly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// Most accounts at once.
    pub(crate) accounts_max: usize,
    /// Most queued messages per mailbox.
    pub(crate) mailbox_messages_max: usize,
    /// Most open client sessions.
    pub(crate) sessions_max: usize,
    /// Most rooms at once.
    pub(crate) rooms_max: usize,
    /// Most members of one room.
    pub(crate) room_members_max: usize,
    /// Most rooms one account is in.
    pub(crate) rooms_per_account_max: usize,
    /// Most messages a room's history retains.
    pub(crate) history_messages_max: usize,
    /// Most bytes a room's history retains.
    pub(crate) history_bytes_max: usize,
}

impl Bounds {
    /// The real limits from `chorus-limits`.
    pub(crate) const LIMITS: Bounds = Bounds {
        accounts_max: ACCOUNTS_MAX,
        mailbox_messages_max: MAILBOX_MESSAGES_MAX,
        sessions_max: CLIENT_SESSIONS_MAX,
        rooms_max: ROOMS_MAX,
        room_members_max: ROOM_MEMBERS_MAX,
        rooms_per_account_max: ROOMS_PER_ACCOUNT_MAX,
        history_messages_max: ROOM_HISTORY_MESSAGES_MAX,
        history_bytes_max: ROOM_HISTORY_BYTES_MAX,
    };
}

impl ChatState {
    /// An empty state: no accounts, no sessions, no messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one committed proposal. Deterministic: the result and the new
    /// state depend only on the current state and `proposal`.
    pub fn apply(&mut self, proposal: &Proposal) -> Applied {
        self.apply_bounded(proposal, Bounds::LIMITS)
    }

    /// True when an account called `name` exists.
    pub fn account_exists(&self, name: &str) -> bool {
        self.accounts.contains_key(name)
    }

    /// The stored password hash of `name` and its creation number, if
    /// the account exists.
    pub fn credentials(&self, name: &str) -> Option<(&str, u64)> {
        self.accounts.get(name).map(|account| (&*account.password_hash, account.created))
    }

    /// Number of accounts.
    pub fn accounts_len(&self) -> usize {
        self.accounts.len()
    }

    /// [`ChatState::apply`] with explicit bounds.
    pub(crate) fn apply_bounded(&mut self, proposal: &Proposal, bounds: Bounds) -> Applied {
        self.applied_count = self.applied_count.checked_add(1).expect("fewer than 2^64 proposals are applied");
        let bounds = Bounds {
            history_messages_max: bounds.history_messages_max.min(self.room_history.messages as usize),
            history_bytes_max: bounds.history_bytes_max.min(self.room_history.bytes as usize),
            ..bounds
        };
        let now = self.applied_count;
        self.carried_ack(proposal);
        let (reply, event) = match &proposal.command {
            Command::RegisterClient => {
                self.sessions.register(proposal.client, now, bounds.sessions_max);
                (Ok(Outcome::Registered), None)
            }
            Command::Ack { name, through } => (self.ack(name, *through), None),
            Command::Configure { room_history } => (self.configure(*room_history), None),
            _ => self.apply_in_session(proposal, now, bounds),
        };
        assert!(self.sessions.len() <= bounds.sessions_max);
        Applied { client: proposal.client, seq: proposal.seq, reply, event }
    }

    /// Applies the read position a post carries ([`Proposal::read_through`]).
    /// Its outcome is not reported: the command's reply stands alone.
    pub(crate) fn carried_ack(&mut self, proposal: &Proposal) {
        let Some(through) = proposal.read_through else { return };
        if chorus_plant::active(chorus_plant::bugs::CARRIED_READ_POSITION_IGNORED) {
            return; // Planted bug: the client is told a position moved that did not.
        }
        let (Command::Send { from, .. } | Command::Say { from, .. } | Command::Broadcast { from, .. }) =
            &proposal.command
        else {
            return;
        };
        let _ = self.ack(from, through);
    }

    /// The exactly-once gate for Create, Delete and Send.
    fn apply_in_session(&mut self, proposal: &Proposal, now: u64, bounds: Bounds) -> Step {
        if chorus_plant::active(chorus_plant::bugs::DEDUP_OUTSIDE_LOG) {
            // Planted bug: the replicated session table is bypassed.
            return self.execute(&proposal.command, proposal.at_millis, bounds);
        }
        let Some(session) = self.sessions.get(proposal.client) else {
            return (Err(ChatError::SessionUnknown), None);
        };
        let last = session.last_seq;
        match proposal.seq.cmp(&last) {
            Ordering::Less => {
                let stale = ChatError::StaleSequence { seq: proposal.seq, last };
                (Err(stale), None)
            }
            Ordering::Equal => {
                let cached = session.last_reply.clone();
                self.sessions.touch(proposal.client, now);
                (cached, None)
            }
            Ordering::Greater => {
                let (reply, event) = self.execute(&proposal.command, proposal.at_millis, bounds);
                self.sessions.record(proposal.client, proposal.seq, reply.clone(), now);
                (reply, event)
            }
        }
    }

    /// Runs a session command for the first time.
    fn execute(&mut self, command: &Command, at_millis: Millis, bounds: Bounds) -> Step {
        if let Err(error) = validate(command) {
            return (Err(error), None);
        }
        match command {
            Command::Create { name, password_hash } => (self.create(name, password_hash, bounds.accounts_max), None),
            Command::Delete { name } => match self.delete(name) {
                Ok(outcome) => {
                    let event = StateEvent::AccountDeleted { name: name.clone() };
                    (Ok(outcome), Some(event))
                }
                Err(error) => (Err(error), None),
            },
            Command::Send { from, to, text } => {
                match self.send(from, to, text, at_millis, bounds.mailbox_messages_max) {
                    Ok(message) => (Ok(Outcome::Sent { id: message.id }), Some(StateEvent::Queued(message))),
                    Err(error) => (Err(error), None),
                }
            }
            Command::Join { name, room } => (self.join(name, room, bounds), None),
            Command::Leave { name, room } => (self.leave(name, room), None),
            Command::Say { from, room, text } => self.post(from, room, text, at_millis, bounds),
            Command::Broadcast { from, text } => self.post(from, BROADCAST_ROOM, text, at_millis, bounds),
            Command::RegisterClient | Command::Ack { .. } | Command::Configure { .. } => {
                unreachable!("session-less commands never reach execute")
            }
        }
    }

    /// Posts to a room (or `#all`), announcing it on success.
    fn post(&mut self, from: &str, room: &str, text: &str, at_millis: Millis, bounds: Bounds) -> Step {
        match self.say((from, room), text, at_millis, bounds) {
            Ok(id) => (Ok(Outcome::Sent { id }), Some(StateEvent::Posted { room: room.to_string() })),
            Err(error) => (Err(error), None),
        }
    }

    /// Creates an empty account. Its read position starts at the last
    /// assigned id, so it receives broadcasts posted from now on.
    fn create(&mut self, name: &str, password_hash: &str, accounts_max: usize) -> Result<Outcome, ChatError> {
        if self.accounts.contains_key(name) {
            return Err(ChatError::NameTaken { name: name.to_string() });
        }
        if self.accounts.len() >= accounts_max {
            return Err(ChatError::AccountsFull);
        }
        let account = Account {
            mailbox: Vector::new(),
            acked_through: self.last_message_id,
            password_hash: password_hash.into(),
            created: self.applied_count,
            rooms: OrdSet::new(),
        };
        self.accounts.insert(name.to_string(), account);
        assert!(self.accounts.len() <= accounts_max);
        Ok(Outcome::Created)
    }

    /// Removes an account, everything queued for it and its memberships.
    fn delete(&mut self, name: &str) -> Result<Outcome, ChatError> {
        let Some(account) = self.accounts.remove(name) else {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        };
        for room in &account.rooms {
            self.remove_member(room, name);
        }
        Ok(Outcome::Deleted)
    }

    /// Queues a message for `to` under the next global id.
    fn send(
        &mut self,
        from: &str,
        to: &str,
        text: &str,
        at_millis: Millis,
        mailbox_messages_max: usize,
    ) -> Result<Message, ChatError> {
        if !self.accounts.contains_key(from) {
            return Err(ChatError::SenderUnknown { name: from.to_string() });
        }
        let next_id = self.last_message_id + 1;
        let Some(recipient) = self.accounts.get_mut(to) else {
            return Err(ChatError::NoSuchAccount { name: to.to_string() });
        };
        if recipient.mailbox.len() >= mailbox_messages_max {
            return Err(ChatError::MailboxFull { name: to.to_string() });
        }
        assert!(recipient.acked_through <= self.last_message_id, "acks are clamped");
        recipient.mailbox.push_back(Queued::new(next_id, from, at_millis, text));
        let message = Message {
            id: next_id,
            from: from.to_string(),
            to: to.to_string(),
            room: None,
            at_millis,
            text: text.to_string(),
        };
        assert!(recipient.mailbox.len() <= mailbox_messages_max);
        self.last_message_id = next_id;
        Ok(message)
    }

    /// Advances `name`'s ack cursor and drops the messages it covers. The
    /// cursor never passes the last assigned id, so acking ahead cannot hide
    /// messages sent later.
    /// `Configure`: new room history bounds; every history over them drops
    /// its oldest messages now (deterministically, in log order).
    fn configure(&mut self, room_history: HistoryBounds) -> Result<Outcome, ChatError> {
        room_history.check()?;
        self.room_history = room_history;
        let (messages, bytes) = (room_history.messages as usize, room_history.bytes as usize);
        let over = |room: &Room| room.history.messages.len() > messages || room.history.bytes > bytes;
        let names: Vec<String> =
            self.rooms.iter().filter(|(_, room)| over(room)).map(|(name, _)| name.clone()).collect();
        for name in names {
            if let Some(room) = self.rooms.get_mut(&name) {
                room.history.trim(messages, bytes);
            }
        }
        self.broadcasts.trim(messages, bytes);
        Ok(Outcome::Configured)
    }

    /// The room history bounds in force.
    pub fn room_history(&self) -> HistoryBounds {
        self.room_history
    }

    fn ack(&mut self, name: &str, through: MessageId) -> Result<Outcome, ChatError> {
        validate_name(name)?;
        let Some(account) = self.accounts.get_mut(name) else {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        };
        let through = through.min(self.last_message_id);
        account.acked_through = account.acked_through.max(through);
        while let Some(oldest) = account.mailbox.front() {
            if oldest.id > account.acked_through {
                break;
            }
            account.mailbox.pop_front();
        }
        assert!(account.mailbox.front().is_none_or(|m| m.id > account.acked_through));
        self.ack_rooms(name, through);
        Ok(Outcome::Acked)
    }
}
