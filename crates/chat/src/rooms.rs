//! Rooms: shared conversations ordered by the log.
//!
//! A [`Room`] holds its members, each with a replicated read position (the
//! highest message id the member has acknowledged, or the last id assigned
//! when it joined), and a [`History`]: the room's retained messages, oldest
//! first, bounded by a count and a byte size (cluster-wide constants in
//! `chorus-limits`, so every replica drops the same messages). Room
//! messages take their ids from the same global counter as direct
//! messages, so a room's order is the log's order, and one member's stream
//! (its mailbox merged with its rooms) is strictly increasing in id.
//!
//! The built-in room `#all` ([`BROADCAST_ROOM`]) has every account as a
//! member without listing them: its history lives in
//! `ChatState::broadcasts` and each account's read position there is its
//! mailbox acknowledgement cursor, so a broadcast costs O(1) in the state
//! whatever the number of accounts.

use chorus_limits::{ROOM_HISTORY_MESSAGES_MAX, ROOM_MEMBERS_MAX};
use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::state::{Bounds, ChatState};
use crate::types::{Message, MessageId, Millis, Outcome, Queued};

/// The built-in room every account belongs to; `broadcast` posts to it.
pub const BROADCAST_ROOM: &str = "#all";

/// A room's retained messages, oldest (lowest id) first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct History {
    /// The retained messages, ids strictly increasing.
    #[serde(deserialize_with = "crate::bounded::vector::<_, _, ROOM_HISTORY_MESSAGES_MAX>")]
    pub(crate) messages: Vector<Queued>,
    /// Sum of [`Queued::bytes`] over `messages`.
    pub(crate) bytes: usize,
    /// Highest id dropped from the front to respect the bounds (0: none);
    /// a member whose read position is below it missed messages.
    pub(crate) dropped_through: MessageId,
}

impl History {
    /// Appends `message`, then drops the oldest messages until both the
    /// count and the byte bound hold.
    pub(crate) fn push(&mut self, message: Queued, bounds: Bounds) {
        assert!(self.messages.back().is_none_or(|last| last.id < message.id), "ids increase");
        self.bytes += message.bytes();
        self.messages.push_back(message);
        self.trim(bounds.history_messages_max, bounds.history_bytes_max);
    }

    /// Drops the oldest messages until at most `messages_max` messages and
    /// `bytes_max` bytes remain.
    pub(crate) fn trim(&mut self, messages_max: usize, bytes_max: usize) {
        while self.messages.len() > messages_max || self.bytes > bytes_max {
            let Some(oldest) = self.messages.pop_front() else { break };
            self.bytes -= oldest.bytes();
            self.dropped_through = oldest.id;
        }
        assert!(self.messages.len() <= messages_max);
        assert!(self.bytes <= bytes_max || self.messages.is_empty());
    }

    /// The id of the newest retained message (0 if none).
    pub(crate) fn newest(&self) -> MessageId {
        self.messages.back().map_or(0, |message| message.id)
    }

    /// Up to `max` messages with id > `floor`, oldest first, as delivered
    /// to `to`; led by a gap notice when messages above `floor` were
    /// dropped.
    pub(crate) fn after(&self, room: &str, to: &str, floor: MessageId, max: usize) -> Vec<Message> {
        let mut out = Vec::new();
        if floor < self.dropped_through && max > 0 {
            out.push(gap_notice(room, to, self.dropped_through));
        }
        let start = self.messages.binary_search_by(|m| order_by_floor(m.id, floor)).unwrap_err();
        let end = self.messages.len().min(start + (max - out.len()));
        // A focus walks the tree leaf by leaf, without copying it (this
        // runs for every subscribed member on every post).
        let mut focus = self.messages.focus();
        out.extend((start..end).filter_map(|index| focus.get(index).map(|queued| room_message(queued, room, to))));
        assert!(out.len() <= max);
        out
    }

    /// Up to `max` messages with id < `before`, the newest ones, oldest
    /// first; and whether older ones are retained.
    pub(crate) fn before(&self, room: &str, to: &str, before: MessageId, max: usize) -> (Vec<Message>, bool) {
        let end = self.messages.binary_search_by(|m| order_by_floor(m.id, before.saturating_sub(1))).unwrap_err();
        let start = end.saturating_sub(max);
        let mut focus = self.messages.focus();
        let page: Vec<Message> =
            (start..end).filter_map(|index| focus.get(index).map(|queued| room_message(queued, room, to))).collect();
        assert!(page.len() <= max);
        (page, start > 0)
    }
}

/// Orders ids at or below `floor` before it and the rest after it, never
/// equal, so a binary search finds the first id above `floor`.
pub(crate) fn order_by_floor(id: MessageId, floor: MessageId) -> std::cmp::Ordering {
    if id <= floor {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Greater
    }
}

/// A retained room message as delivered to member `to`.
fn room_message(queued: &Queued, room: &str, to: &str) -> Message {
    let mut message = queued.to_message(to);
    message.room = Some(room.to_string());
    message
}

/// The notice that `room`'s messages up to `through` were dropped before
/// `to` read them.
fn gap_notice(room: &str, to: &str, through: MessageId) -> Message {
    Message {
        id: through,
        from: String::new(),
        to: to.to_string(),
        room: Some(room.to_string()),
        at_millis: 0,
        text: format!("messages of {room} up to id {through} were dropped from its history before you read them"),
    }
}

/// One room: its members with their read positions, and its history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Room {
    /// Member name -> highest message id the member has read.
    #[serde(deserialize_with = "crate::bounded::ord_map::<_, _, _, ROOM_MEMBERS_MAX>")]
    pub(crate) members: OrdMap<String, MessageId>,
    /// The retained messages.
    pub(crate) history: History,
}

impl ChatState {
    /// `Join`: makes `name` a member of `room`, creating the room.
    pub(crate) fn join(&mut self, name: &str, room: &str, bounds: Bounds) -> Result<Outcome, ChatError> {
        refuse_broadcast_room(room)?;
        let Some(account) = self.accounts.get(name) else {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        };
        if account.rooms.contains(room) {
            return Err(ChatError::AlreadyMember { name: name.to_string(), room: room.to_string() });
        }
        if account.rooms.len() >= bounds.rooms_per_account_max {
            return Err(ChatError::TooManyRooms { name: name.to_string(), max: bounds.rooms_per_account_max });
        }
        let exists = self.rooms.get(room);
        if exists.is_none() && self.rooms.len() >= bounds.rooms_max {
            return Err(ChatError::RoomsFull { max: bounds.rooms_max });
        }
        if exists.is_some_and(|r| r.members.len() >= bounds.room_members_max) {
            return Err(ChatError::RoomFull { room: room.to_string(), max: bounds.room_members_max });
        }
        let last_id = self.last_message_id;
        self.rooms.entry(room.to_string()).or_default().members.insert(name.to_string(), last_id);
        self.account_rooms_mut(name).insert(room.to_string());
        assert!(self.rooms.len() <= bounds.rooms_max);
        Ok(Outcome::Joined)
    }

    /// `Leave`: ends `name`'s membership; an empty room is removed.
    pub(crate) fn leave(&mut self, name: &str, room: &str) -> Result<Outcome, ChatError> {
        refuse_broadcast_room(room)?;
        if !self.accounts.contains_key(name) {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        }
        if self.account_rooms_mut(name).remove(room).is_none() {
            return Err(ChatError::NotMember { name: name.to_string(), room: room.to_string() });
        }
        self.remove_member(room, name);
        Ok(Outcome::Left)
    }

    /// Removes `name` from `room`'s members, and the room once empty.
    pub(crate) fn remove_member(&mut self, room: &str, name: &str) {
        let Some(state) = self.rooms.get_mut(room) else { return };
        let removed = state.members.remove(name);
        assert!(removed.is_some(), "an account's rooms list it as a member");
        if state.members.is_empty() {
            self.rooms.remove(room);
        }
    }

    /// `Say` (and `Broadcast`, to `#all`): posts `text` under the next id.
    pub(crate) fn say(
        &mut self,
        (from, room): (&str, &str),
        text: &str,
        at_millis: Millis,
        bounds: Bounds,
    ) -> Result<MessageId, ChatError> {
        let Some(account) = self.accounts.get(from) else {
            return Err(ChatError::SenderUnknown { name: from.to_string() });
        };
        let broadcast = room == BROADCAST_ROOM;
        if !broadcast && !self.rooms.contains_key(room) {
            return Err(ChatError::NoSuchRoom { room: room.to_string() });
        }
        if !broadcast && !account.rooms.contains(room) {
            return Err(ChatError::NotMember { name: from.to_string(), room: room.to_string() });
        }
        let id = self.last_message_id + 1;
        let history = match broadcast {
            true => &mut self.broadcasts,
            false => &mut self.rooms.get_mut(room).expect("checked above").history,
        };
        history.push(Queued::new(id, from, at_millis, text), bounds);
        self.last_message_id = id;
        Ok(id)
    }

    /// Moves `name`'s read position in each of its rooms up to `through`
    /// (already clamped to the last assigned id).
    pub(crate) fn ack_rooms(&mut self, name: &str, through: MessageId) {
        let rooms = self.accounts.get(name).map(|a| a.rooms.clone()).unwrap_or_default();
        for room in &rooms {
            let position = self.rooms.get_mut(room).and_then(|r| r.members.get_mut(name));
            let position = position.expect("an account's rooms list it as a member");
            *position = (*position).max(through);
            assert!(*position <= self.last_message_id);
        }
    }

    /// The rooms `name` belongs to (the built-in `#all` aside), mutable.
    fn account_rooms_mut(&mut self, name: &str) -> &mut OrdSet<String> {
        &mut self.accounts.get_mut(name).expect("the caller checked the account").rooms
    }
}

/// `#all` is not joined or left: every account is always in it.
fn refuse_broadcast_room(room: &str) -> Result<(), ChatError> {
    if room == BROADCAST_ROOM {
        return Err(ChatError::RoomReserved { room: room.to_string() });
    }
    Ok(())
}
