//! The values that flow into and out of the chat state machine: the logged
//! [`Proposal`] and its [`Command`], the [`Outcome`] a client is told, the
//! [`Message`] that is queued, and the [`Applied`] record of one step.

use serde::{Deserialize, Serialize};

use crate::error::{ChatError, DecodeError};

/// Random 64-bit id a client library picks once, naming its exactly-once session.
pub type ClientId = u64;

/// Global, strictly increasing message number assigned by the state machine,
/// starting at 1; it orders every mailbox and is what `Ack` refers to.
pub type MessageId = u64;

/// Milliseconds since the Unix epoch, stamped by the proposing leader so that
/// every replica records the same time for the same message.
pub type Millis = u64;

/// One replicated command, as logged. Encoded with postcard
/// ([`encode_proposal`] / [`decode_proposal`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Session the command belongs to; its cached reply is keyed by this.
    pub client: ClientId,
    /// Client's sequence number: a retry repeats it, a new command raises it.
    pub seq: u64,
    /// Leader's clock when it proposed, so replicas never read their own clock.
    pub at_millis: Millis,
    /// What the client asked for.
    pub command: Command,
    /// The sender's read position, carried along with a `Send`, `Say` or
    /// `Broadcast` so an active client needs no separate [`Command::Ack`]:
    /// applied as `Ack { name: from, through }` just before the command,
    /// whether or not the command then runs (an ack is idempotent and
    /// session-less). Ignored on any other command.
    pub read_through: Option<MessageId>,
}

impl Proposal {
    /// A proposal that carries no read position.
    pub fn new(client: ClientId, seq: u64, at_millis: Millis, command: Command) -> Self {
        Proposal { client, seq, at_millis, command, read_through: None }
    }
}

/// What a client asks the chat service to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens an exactly-once session for the proposal's `client`
    /// (idempotent: an existing session keeps its sequence number).
    RegisterClient,
    /// Creates an account with an empty mailbox.
    Create {
        /// Account name, checked by [`crate::validate_name`].
        name: String,
        /// The password's argon2id hash as a PHC string, computed (with a
        /// salt it chose) by the replica that proposed the command: every
        /// replica stores the same bytes, and no replica stores the password.
        password_hash: String,
    },
    /// Removes an account and every message still queued for it.
    Delete {
        /// Account to remove.
        name: String,
    },
    /// Queues `text` in the mailbox of `to`.
    Send {
        /// Sending account; must exist.
        from: String,
        /// Receiving account; must exist (may equal `from`).
        to: String,
        /// Message body, non-empty UTF-8 within the size limit.
        text: String,
    },
    /// Makes `name` a member of `room` (created if it does not exist); it
    /// receives the room's messages posted from now on.
    Join {
        /// Joining account; must exist.
        name: String,
        /// Room name, checked by [`crate::validate_room`].
        room: String,
    },
    /// Ends `name`'s membership of `room`; a room without members is removed.
    Leave {
        /// Leaving account.
        name: String,
        /// Room it leaves.
        room: String,
    },
    /// Posts `text` to `room`, of which `from` must be a member.
    Say {
        /// Posting account.
        from: String,
        /// Room posted to.
        room: String,
        /// Message body, non-empty UTF-8 within the size limit.
        text: String,
    },
    /// Posts `text` to the built-in room `#all`, which every account
    /// belongs to (see [`crate::BROADCAST_ROOM`]).
    Broadcast {
        /// Posting account.
        from: String,
        /// Message body, non-empty UTF-8 within the size limit.
        text: String,
    },
    /// Sets how much every room's history retains (the cluster file's
    /// setting, proposed by the leader when it differs from the replicated
    /// one); histories over the new bounds drop their oldest messages at
    /// once. Session-less and idempotent.
    Configure {
        /// The new bounds, within [`HistoryBounds::check`].
        room_history: HistoryBounds,
    },
    /// The recipient has seen every message with id <= `through`; those
    /// messages leave the mailbox, and its read position in each of its
    /// rooms moves to `through`. Session-less and idempotent.
    Ack {
        /// Account whose mailbox is acknowledged.
        name: String,
        /// Highest message id the recipient has seen.
        through: MessageId,
    },
}

/// What a successful command did, as told to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The session exists (new or already open).
    Registered,
    /// The account was created.
    Created,
    /// The account and its queued messages were removed.
    Deleted,
    /// The message was queued.
    Sent {
        /// Id the state machine gave the message; the client's receipt.
        id: MessageId,
    },
    /// The acknowledgement cursor was advanced (or already covered it).
    Acked,
    /// The account became a member of the room.
    Joined,
    /// The account left the room.
    Left,
    /// The room history bounds were set.
    Configured,
}

/// How much each room's history retains, `#all` included: the cluster's
/// setting, part of the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HistoryBounds {
    /// Most messages retained per room.
    pub messages: u32,
    /// Most bytes (senders' names plus texts) retained per room.
    pub bytes: u32,
}

impl HistoryBounds {
    /// The largest bounds, and the default.
    pub const MAX: HistoryBounds = HistoryBounds {
        messages: chorus_limits::ROOM_HISTORY_MESSAGES_MAX as u32,
        bytes: chorus_limits::ROOM_HISTORY_BYTES_MAX as u32,
    };

    /// Checks both bounds against the limits (`ROOM_HISTORY_*_MIN` and
    /// `_MAX` in `chorus-limits`).
    pub fn check(&self) -> Result<(), crate::ChatError> {
        use chorus_limits::{ROOM_HISTORY_BYTES_MAX, ROOM_HISTORY_BYTES_MIN};
        use chorus_limits::{ROOM_HISTORY_MESSAGES_MAX, ROOM_HISTORY_MESSAGES_MIN};
        let messages = (ROOM_HISTORY_MESSAGES_MIN..=ROOM_HISTORY_MESSAGES_MAX).contains(&(self.messages as usize));
        let bytes = (ROOM_HISTORY_BYTES_MIN..=ROOM_HISTORY_BYTES_MAX).contains(&(self.bytes as usize));
        match messages && bytes {
            true => Ok(()),
            false => Err(crate::ChatError::HistoryBoundsInvalid {
                messages: self.messages,
                bytes: self.bytes,
                messages_range: (ROOM_HISTORY_MESSAGES_MIN as u32, ROOM_HISTORY_MESSAGES_MAX as u32),
                bytes_range: (ROOM_HISTORY_BYTES_MIN as u32, ROOM_HISTORY_BYTES_MAX as u32),
            }),
        }
    }
}

impl Default for HistoryBounds {
    fn default() -> Self {
        HistoryBounds::MAX
    }
}

/// A message as queued and delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Global id; orders the mailbox and is what the recipient acks.
    pub id: MessageId,
    /// Account that sent it.
    pub from: String,
    /// Account whose mailbox holds it; for a room message, the member it
    /// is delivered to.
    pub to: String,
    /// The room it was posted to, or `None` for a direct message. A room
    /// message with an empty `from` is a gap notice (see
    /// [`Message::is_gap_notice`]).
    pub room: Option<String>,
    /// Leader's clock when the send was proposed.
    pub at_millis: Millis,
    /// The body.
    pub text: String,
}

impl Message {
    /// True for a gap notice: the room's messages with ids up to `id` that
    /// this member had not read were dropped from the retained history
    /// before they could be delivered. Its `from` is empty (no account
    /// has an empty name).
    pub fn is_gap_notice(&self) -> bool {
        self.room.is_some() && self.from.is_empty()
    }
}

/// A message as a mailbox holds it: the recipient is the mailbox's owner,
/// so it is not stored again, and the sender's name and the text share one
/// allocation (about half the memory of a [`Message`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Queued {
    pub(crate) id: MessageId,
    pub(crate) at_millis: Millis,
    /// Bytes of `body` that are the sender's name.
    from_len: u8,
    /// The sender's name, then the text.
    body: Box<str>,
}

impl Queued {
    /// Packs a message; `from` is a valid (so short, ASCII) name.
    pub(crate) fn new(id: MessageId, from: &str, at_millis: Millis, text: &str) -> Queued {
        let from_len = u8::try_from(from.len()).expect("names are at most NAME_CHARS_MAX ASCII bytes");
        let body = [from, text].concat().into_boxed_str();
        Queued { id, at_millis, from_len, body }
    }

    /// The sender's name ("" if the lengths disagree: only a damaged
    /// snapshot could do that, and its check refuses it).
    pub(crate) fn from(&self) -> &str {
        self.body.get(..usize::from(self.from_len)).unwrap_or("")
    }

    /// The text ("" if the lengths disagree, as for [`Queued::from`]).
    pub(crate) fn text(&self) -> &str {
        self.body.get(usize::from(self.from_len)..).unwrap_or("")
    }

    /// The message as delivered to `to`, the mailbox's owner.
    pub(crate) fn to_message(&self, to: &str) -> Message {
        Message {
            id: self.id,
            from: self.from().to_string(),
            to: to.to_string(),
            room: None,
            at_millis: self.at_millis,
            text: self.text().to_string(),
        }
    }

    /// Bytes the message holds (sender's name plus text), as counted
    /// against a room's history bound.
    pub(crate) fn bytes(&self) -> usize {
        self.body.len()
    }
}

/// What applying one proposal produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Session the reply goes to (copied from the proposal).
    pub client: ClientId,
    /// Sequence number the reply answers (copied from the proposal).
    pub seq: u64,
    /// What the client is told; errors are replies too and are cached.
    pub reply: Result<Outcome, ChatError>,
    /// Side effect other replicas' connections care about.
    pub event: Option<StateEvent>,
}

/// A change that connections watching accounts must hear about, on every
/// replica, whoever proposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateEvent {
    /// A message entered a mailbox: push it to the recipient if connected.
    Queued(Message),
    /// A message was posted to `room`: push it to the members connected.
    Posted {
        /// The room (`#all` for a broadcast).
        room: String,
    },
    /// An account disappeared: drop its subscriptions.
    AccountDeleted {
        /// The removed account.
        name: String,
    },
}

/// Reply to a `list` read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResult {
    /// Matching account names, sorted, at most `LIST_NAMES_MAX`.
    pub names: Vec<String>,
    /// True when more names matched than `names` carries.
    pub truncated: bool,
}

/// One room in a `rooms` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room's name.
    pub name: String,
    /// How many accounts are members.
    pub members: u64,
}

/// Reply to a `rooms` read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomsResult {
    /// Matching rooms, sorted by name, at most `ROOMS_LISTED_MAX`.
    pub rooms: Vec<RoomSummary>,
    /// True when more rooms matched than `rooms` carries.
    pub truncated: bool,
}

/// Reply to a `history` read: retained messages of one room, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The newest retained messages before the requested id, oldest
    /// first, at most `HISTORY_PAGE_MESSAGES_MAX`.
    pub messages: Vec<Message>,
    /// True when older messages are still retained: ask again with the
    /// first id of `messages` to page further back.
    pub more: bool,
}

/// Encodes a proposal for the replicated log (postcard).
pub fn encode_proposal(proposal: &Proposal) -> Vec<u8> {
    // Serializing owned strings and integers into a Vec cannot fail.
    postcard::to_stdvec(proposal).expect("a proposal always encodes")
}

/// Decodes a proposal read from the log or a peer; rejects trailing bytes so
/// that one encoding maps to exactly one proposal.
pub fn decode_proposal(bytes: &[u8]) -> Result<Proposal, DecodeError> {
    let (proposal, rest) = postcard::take_from_bytes::<Proposal>(bytes)
        .map_err(|error| DecodeError::Malformed { reason: error.to_string() })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { bytes: rest.len() });
    }
    Ok(proposal)
}
