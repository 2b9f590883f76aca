//! Reads of [`ChatState`] that change nothing and are not replicated:
//! `list` (names, optionally filtered by a bounded regex) and `mailbox`
//! (what is still queued for one account).

use chorus_limits::{LIST_NAMES_MAX, LIST_PATTERN_BYTES_MAX, LIST_REGEX_COMPILED_BYTES_MAX};
use regex::{Regex, RegexBuilder};

use crate::error::ChatError;
use crate::state::ChatState;
use crate::types::{ListResult, Message, MessageId};

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
        let messages: Vec<Message> =
            account.mailbox.skip(start).iter().take(max).map(|queued| queued.to_message(name)).collect();
        assert!(messages.len() <= max);
        assert!(messages.first().is_none_or(|message| message.id > floor));
        Ok(messages)
    }
}

/// Orders ids at or below `floor` before it and the rest after it, never
/// equal, so a binary search finds the first id above `floor`.
fn order_by_floor(id: MessageId, floor: MessageId) -> std::cmp::Ordering {
    if id <= floor {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Greater
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
