//! Reads of [`ChatState`] that change nothing and are not replicated:
//! `list` (names, optionally filtered by a bounded regex) and `mailbox`
//! (what is still queued for one account), `rooms` (room names and member
//! counts), `history` (a page of a room's retained messages) and `stream`
//! (what a subscription delivers: the mailbox merged with the rooms).

use chorus_limits::{
    HISTORY_PAGE_MESSAGES_MAX, LIST_NAMES_MAX, LIST_PATTERN_BYTES_MAX, LIST_REGEX_COMPILED_BYTES_MAX, ROOMS_LISTED_MAX,
};
use regex::{Regex, RegexBuilder};

use crate::error::ChatError;
use crate::rooms::{order_by_floor, History, BROADCAST_ROOM};
use crate::state::ChatState;
use crate::types::{HistoryPage, ListResult, Message, MessageId, RoomSummary, RoomsResult};

impl ChatState {
    /// Account names, sorted, optionally only those a regex matches anywhere
    /// in; at most `LIST_NAMES_MAX`, with `truncated` set when more matched.
    pub fn list(&self, pattern: Option<&str>) -> Result<ListResult, ChatError> {
        let regex = pattern.map(compile_list_pattern).transpose()?;
        let mut matching = self.accounts.keys().filter(|name| regex.as_ref().is_none_or(|r| r.is_match(name)));
        let names: Vec<String> = matching.by_ref().take(LIST_NAMES_MAX).cloned().collect();
        let truncated = matching.next().is_some();
        assert!(names.len() <= LIST_NAMES_MAX);
        assert!(!truncated || names.len() == LIST_NAMES_MAX);
        Ok(ListResult { names, truncated })
    }

    /// Messages queued for `name` with id > max(after, acked cursor), oldest
    /// first, at most `max`.
    pub fn mailbox(&self, name: &str, after: MessageId, max: usize) -> Result<Vec<Message>, ChatError> {
        let Some(account) = self.accounts.get(name) else {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        };
        let floor = after.max(account.acked_through);
        let start = account.mailbox.binary_search_by(|message| order_by_floor(message.id, floor)).unwrap_err();
        let end = account.mailbox.len().min(start.saturating_add(max));
        // A focus walks the tree leaf by leaf; `skip` would split the
        // vector, cloning a leaf of messages (this runs on every delivery).
        let mut focus = account.mailbox.focus();
        let messages: Vec<Message> =
            (start..end).filter_map(|index| focus.get(index).map(|queued| queued.to_message(name))).collect();
        assert!(messages.len() <= max);
        assert!(messages.first().is_none_or(|message| message.id > floor));
        Ok(messages)
    }

    /// Rooms whose name a regex matches anywhere in (all when `None`),
    /// sorted, `#all` first, with their member counts; at most
    /// `ROOMS_LISTED_MAX`, with `truncated` set when more matched.
    pub fn rooms(&self, pattern: Option<&str>) -> Result<RoomsResult, ChatError> {
        let regex = pattern.map(compile_list_pattern).transpose()?;
        let all = (BROADCAST_ROOM, self.accounts.len());
        let named = self.rooms.iter().map(|(name, room)| (name.as_str(), room.members.len()));
        let mut matching =
            std::iter::once(all).chain(named).filter(|(name, _)| regex.as_ref().is_none_or(|r| r.is_match(name)));
        let rooms: Vec<RoomSummary> = matching
            .by_ref()
            .take(ROOMS_LISTED_MAX)
            .map(|(name, members)| RoomSummary { name: name.to_string(), members: members as u64 })
            .collect();
        let truncated = matching.next().is_some();
        assert!(rooms.len() <= ROOMS_LISTED_MAX);
        Ok(RoomsResult { rooms, truncated })
    }

    /// The members of `room`, sorted (none if it does not exist; `#all`
    /// lists no one, since everyone is in it).
    pub fn room_members(&self, room: &str) -> Vec<String> {
        self.rooms.get(room).map(|r| r.members.keys().cloned().collect()).unwrap_or_default()
    }

    /// The newest retained messages of `room` with id < `before` (all
    /// when `None`), oldest first, at most `max` (and at most
    /// `HISTORY_PAGE_MESSAGES_MAX`), as read by member `name`.
    pub fn history(
        &self,
        name: &str,
        room: &str,
        before: Option<MessageId>,
        max: usize,
    ) -> Result<HistoryPage, ChatError> {
        let max = max.min(HISTORY_PAGE_MESSAGES_MAX);
        let history = self.member_history(name, room)?;
        let (messages, more) = history.before(room, name, before.unwrap_or(MessageId::MAX), max);
        assert!(messages.len() <= max);
        Ok(HistoryPage { messages, more })
    }

    /// The history of `room` if `name` may read it (a member; everyone
    /// for `#all`).
    fn member_history(&self, name: &str, room: &str) -> Result<&History, ChatError> {
        crate::validate_room(room)?;
        let Some(account) = self.accounts.get(name) else {
            return Err(ChatError::NoSuchAccount { name: name.to_string() });
        };
        if room == BROADCAST_ROOM {
            return Ok(&self.broadcasts);
        }
        let Some(state) = self.rooms.get(room) else {
            return Err(ChatError::NoSuchRoom { room: room.to_string() });
        };
        if !account.rooms.contains(room) {
            return Err(ChatError::NotMember { name: name.to_string(), room: room.to_string() });
        }
        Ok(&state.history)
    }

    /// What a subscription of `name` delivers after id `after`: its queued
    /// direct messages, `#all`'s and each of its rooms' messages above the
    /// member's read position (gap notices where history was dropped),
    /// merged in id order, at most `max` (fewer only when that is all of
    /// it). Ids strictly increase.
    pub fn stream(&self, name: &str, after: MessageId, max: usize) -> Result<Vec<Message>, ChatError> {
        let mut merged = self.mailbox(name, after, max)?;
        let account = self.accounts.get(name).expect("mailbox found the account");
        let floor = after.max(account.acked_through);
        merged.extend(self.broadcasts.after(BROADCAST_ROOM, name, floor, max));
        for room in &account.rooms {
            let Some(state) = self.rooms.get(room) else { continue };
            let position = state.members.get(name).copied().unwrap_or(MessageId::MAX);
            let mut floor = after.max(position);
            if chorus_plant::active(chorus_plant::bugs::ROOM_BACKLOG_SKIPPED) {
                floor = floor.max(state.history.newest().saturating_sub(1));
            }
            merged.extend(state.history.after(room, name, floor, max));
        }
        merged.sort_unstable_by_key(|message| message.id);
        merged.truncate(max);
        assert!(merged.windows(2).all(|pair| pair[0].id < pair[1].id), "one id, one message");
        assert!(merged.first().is_none_or(|message| message.id > after));
        Ok(merged)
    }
}

/// Compiles a `list` pattern under the length and compiled-size bounds.
fn compile_list_pattern(pattern: &str) -> Result<Regex, ChatError> {
    if pattern.len() > LIST_PATTERN_BYTES_MAX {
        return Err(ChatError::PatternTooLong { bytes: pattern.len(), max: LIST_PATTERN_BYTES_MAX });
    }
    RegexBuilder::new(pattern)
        .size_limit(LIST_REGEX_COMPILED_BYTES_MAX)
        .dfa_size_limit(LIST_REGEX_COMPILED_BYTES_MAX)
        .build()
        .map_err(|error| ChatError::PatternInvalid { reason: error.to_string() })
}
