//! Typed errors. [`ChatError`] is a reply the world caused (bad input, a full
//! mailbox) and is replicated and cached like any other reply;
//! [`SnapshotError`] and [`DecodeError`] report bytes that do not decode.

use serde::{Deserialize, Serialize};

/// Why a command or a read was refused. Part of the replicated state (cached
/// in sessions), so every field is bounded and deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChatError {
    /// The name breaks the naming rule; `name` is cut to a bounded length.
    #[error("invalid account name {name:?}: {reason}")]
    NameInvalid {
        /// The offending name (at most `NAME_CHARS_MAX` characters, then "...").
        name: String,
        /// Which rule it broke, for a human.
        reason: String,
    },
    /// `Create` of a name that already exists.
    #[error("account name already taken: {name}")]
    NameTaken {
        /// The existing account.
        name: String,
    },
    /// The named account (recipient, target of delete/ack/read) does not exist.
    #[error("no such account: {name}")]
    NoSuchAccount {
        /// The missing account.
        name: String,
    },
    /// The sending account of a `Send` does not exist.
    #[error("sender account does not exist: {name}")]
    SenderUnknown {
        /// The missing sender.
        name: String,
    },
    /// A message must carry at least one byte.
    #[error("message text is empty")]
    TextEmpty,
    /// Room history bounds outside the limits.
    #[error("room history bounds of {messages} messages and {bytes} bytes are outside {messages_range:?} messages and {bytes_range:?} bytes")]
    HistoryBoundsInvalid {
        /// Messages asked for.
        messages: u32,
        /// Bytes asked for.
        bytes: u32,
        /// Allowed messages, inclusive.
        messages_range: (u32, u32),
        /// Allowed bytes, inclusive.
        bytes_range: (u32, u32),
    },
    /// The message body is over the size limit.
    #[error("message text is {bytes} bytes, over the limit of {max} bytes")]
    TextTooLong {
        /// Size of the refused text.
        bytes: usize,
        /// The limit (`MESSAGE_TEXT_BYTES_MAX`).
        max: usize,
    },
    /// The recipient already holds `MAILBOX_MESSAGES_MAX` unacknowledged messages.
    #[error("mailbox full: {name} must acknowledge messages before receiving more")]
    MailboxFull {
        /// The recipient.
        name: String,
    },
    /// A `Create` whose password hash is not an argon2id PHC string within
    /// `PASSWORD_HASH_BYTES_MAX` bytes (only a faulty replica proposes one).
    #[error("the password hash is not an argon2id PHC string within the size limit")]
    PasswordHashInvalid,
    /// The state already holds `ACCOUNTS_MAX` accounts.
    #[error("account limit reached: no room for another account")]
    AccountsFull,
    /// The client has no session: it never registered, or it was evicted.
    #[error("unknown client session: register the client (again) before sending commands")]
    SessionUnknown,
    /// The sequence number is older than the last one the session executed.
    #[error("stale sequence number {seq}: the session has already executed {last}")]
    StaleSequence {
        /// The refused sequence number.
        seq: u64,
        /// The session's last executed sequence number.
        last: u64,
    },
    /// The room name breaks the naming rule; `room` is cut to a bounded length.
    #[error("invalid room name {room:?}: {reason}")]
    RoomNameInvalid {
        /// The offending name (at most `ROOM_NAME_CHARS_MAX` characters, then "...").
        room: String,
        /// Which rule it broke, for a human.
        reason: String,
    },
    /// The room does not exist (it has no members).
    #[error("no such room: {room}")]
    NoSuchRoom {
        /// The missing room.
        room: String,
    },
    /// The account is not a member of the room it posts to, leaves or reads.
    #[error("{name} is not a member of {room}")]
    NotMember {
        /// The account.
        name: String,
        /// The room.
        room: String,
    },
    /// The account is already a member of the room it joins.
    #[error("{name} is already a member of {room}")]
    AlreadyMember {
        /// The account.
        name: String,
        /// The room.
        room: String,
    },
    /// The room already has `ROOM_MEMBERS_MAX` members.
    #[error("room {room} is full: it has the maximum of {max} members")]
    RoomFull {
        /// The room.
        room: String,
        /// The limit (`ROOM_MEMBERS_MAX`).
        max: usize,
    },
    /// The account is already in `ROOMS_PER_ACCOUNT_MAX` rooms.
    #[error("{name} is in {max} rooms, the most one account may join; leave one first")]
    TooManyRooms {
        /// The account.
        name: String,
        /// The limit (`ROOMS_PER_ACCOUNT_MAX`).
        max: usize,
    },
    /// The state already holds `ROOMS_MAX` rooms.
    #[error("room limit reached: no room for another room (the maximum is {max})")]
    RoomsFull {
        /// The limit (`ROOMS_MAX`).
        max: usize,
    },
    /// `#all` cannot be joined or left: every account is always a member.
    #[error("{room} is built in: every account is a member; use broadcast to post to it")]
    RoomReserved {
        /// The built-in room.
        room: String,
    },
    /// A `list` pattern over `LIST_PATTERN_BYTES_MAX`.
    #[error("list pattern is {bytes} bytes, over the limit of {max} bytes")]
    PatternTooLong {
        /// Size of the refused pattern.
        bytes: usize,
        /// The limit (`LIST_PATTERN_BYTES_MAX`).
        max: usize,
    },
    /// A `list` pattern that does not compile (syntax, or too big once compiled).
    #[error("invalid list pattern: {reason}")]
    PatternInvalid {
        /// The regex engine's explanation.
        reason: String,
    },
}

/// Why snapshot bytes were refused by [`crate::ChatState::from_snapshot`]
/// or could not be read by [`crate::ChatState::read_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The reader failed; the snapshot itself may be fine.
    #[error("snapshot could not be read ({kind}): {reason}")]
    Io {
        /// The kind of the reader's error, for a caller to branch on.
        kind: std::io::ErrorKind,
        /// The reader's error, for a human.
        reason: String,
    },
    /// The bytes are not a postcard-encoded state.
    #[error("snapshot does not decode: {reason}")]
    Malformed {
        /// The decoder's explanation.
        reason: String,
    },
    /// Bytes were left over after a complete state.
    #[error("snapshot has {bytes} trailing bytes after the state")]
    TrailingBytes {
        /// How many bytes were left (counted to the end of the input).
        bytes: usize,
    },
    /// The state decoded but breaks an invariant (corruption or a foreign writer).
    #[error("snapshot state is inconsistent: {reason}")]
    Inconsistent {
        /// Which invariant failed.
        reason: &'static str,
    },
}

impl From<std::io::Error> for SnapshotError {
    fn from(error: std::io::Error) -> Self {
        SnapshotError::Io { kind: error.kind(), reason: error.to_string() }
    }
}

/// Why proposal bytes were refused by [`crate::decode_proposal`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a postcard-encoded proposal.
    #[error("proposal does not decode: {reason}")]
    Malformed {
        /// The decoder's explanation.
        reason: String,
    },
    /// Bytes were left over after a complete proposal.
    #[error("proposal has {bytes} trailing bytes")]
    TrailingBytes {
        /// How many bytes were left.
        bytes: usize,
    },
}
