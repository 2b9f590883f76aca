//! Stateless checks on a command: names and text size. A replica runs them
//! before proposing, to refuse bad input early; `apply` runs them again,
//! because the log, not the proposer, is the authority.

use chorus_limits::{
    MESSAGE_TEXT_BYTES_MAX, NAME_CHARS_MAX, NAME_CHARS_MIN, PASSWORD_HASH_BYTES_MAX, ROOM_NAME_CHARS_MAX,
};

use crate::error::ChatError;
use crate::types::Command;

/// Checks every name and text the command carries, without looking at state.
pub fn validate(command: &Command) -> Result<(), ChatError> {
    match command {
        Command::RegisterClient => Ok(()),
        Command::Create { name, password_hash } => {
            validate_name(name)?;
            validate_password_hash(password_hash)
        }
        Command::Delete { name } | Command::Ack { name, .. } => validate_name(name),
        Command::Send { from, to, text } => {
            validate_name(from)?;
            validate_name(to)?;
            validate_text(text)
        }
        Command::Join { name, room } | Command::Leave { name, room } => {
            validate_name(name)?;
            validate_room(room)
        }
        Command::Say { from, room, text } => {
            validate_name(from)?;
            validate_room(room)?;
            validate_text(text)
        }
        Command::Broadcast { from, text } => {
            validate_name(from)?;
            validate_text(text)
        }
        Command::Configure { room_history } => room_history.check(),
    }
}

/// Checks a room name: `#` followed by an account-style name (ASCII
/// letters, digits, `_`, `-` or `.`), at most `ROOM_NAME_CHARS_MAX`
/// characters in all.
pub fn validate_room(room: &str) -> Result<(), ChatError> {
    let Some(rest) = room.strip_prefix('#') else {
        return Err(room_invalid(room, "a room name starts with #".to_string()));
    };
    match validate_name(rest) {
        Ok(()) => Ok(()),
        Err(ChatError::NameInvalid { reason, .. }) => Err(room_invalid(room, reason)),
        Err(other) => Err(other),
    }
}

/// Checks an account name: `NAME_CHARS_MIN..=NAME_CHARS_MAX` characters, each
/// an ASCII letter, digit, `_`, `-` or `.`.
pub fn validate_name(name: &str) -> Result<(), ChatError> {
    let chars = name.chars().count();
    if chars < NAME_CHARS_MIN {
        return Err(name_invalid(name, "a name must not be empty".to_string()));
    }
    if chars > NAME_CHARS_MAX {
        let reason = format!("{chars} characters, longer than the limit of {NAME_CHARS_MAX}");
        return Err(name_invalid(name, reason));
    }
    if let Some(bad) = name.chars().find(|c| !is_name_char(*c)) {
        let reason = format!("character {bad:?} is not allowed (use ASCII letters, digits, _, - or .)");
        return Err(name_invalid(name, reason));
    }
    Ok(())
}

/// Checks the shape of a stored password hash: an argon2id PHC string
/// within `PASSWORD_HASH_BYTES_MAX` bytes. (Whether it verifies is only
/// known at sign-in.)
pub fn validate_password_hash(hash: &str) -> Result<(), ChatError> {
    if hash.len() > PASSWORD_HASH_BYTES_MAX || !hash.starts_with("$argon2id$") || !hash.is_ascii() {
        return Err(ChatError::PasswordHashInvalid);
    }
    Ok(())
}

/// Checks a message body: non-empty, at most `MESSAGE_TEXT_BYTES_MAX` bytes.
fn validate_text(text: &str) -> Result<(), ChatError> {
    if text.is_empty() {
        return Err(ChatError::TextEmpty);
    }
    if text.len() > MESSAGE_TEXT_BYTES_MAX {
        return Err(ChatError::TextTooLong { bytes: text.len(), max: MESSAGE_TEXT_BYTES_MAX });
    }
    Ok(())
}

/// Builds `RoomNameInvalid`, cutting the echoed name like [`name_invalid`].
fn room_invalid(room: &str, reason: String) -> ChatError {
    let mut shown: String = room.chars().take(ROOM_NAME_CHARS_MAX).collect();
    if shown.len() < room.len() {
        shown.push_str("...");
    }
    ChatError::RoomNameInvalid { room: shown, reason }
}

/// True for the characters a name may contain.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Builds `NameInvalid`, cutting the echoed name so that a cached error
/// never holds more than a name's worth of bytes of someone's bad input.
fn name_invalid(name: &str, reason: String) -> ChatError {
    let mut shown: String = name.chars().take(NAME_CHARS_MAX).collect();
    if shown.len() < name.len() {
        shown.push_str("...");
    }
    ChatError::NameInvalid { name: shown, reason }
}
