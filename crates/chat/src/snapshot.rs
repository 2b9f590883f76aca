//! Snapshots and digests of [`ChatState`]. A snapshot is the postcard
//! encoding of the whole state, sessions included; the digest is FNV-1a over
//! those same bytes, so two replicas agree on the digest exactly when they
//! agree on the snapshot (up to hash collisions).
//!
//! Snapshots stream: [`ChatState::write_snapshot`] encodes into any
//! [`io::Write`] through a fixed buffer, [`ChatState::read_snapshot`] decodes
//! from any [`io::Read`] with a scratch buffer the size of the longest string
//! a state holds, and [`ChatState::digest`] hashes the encoding as it is
//! produced; none of them holds the whole encoding in memory. A background
//! snapshot clones the state (O(1), see [`ChatState`]), moves the clone to
//! another thread and writes it there.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use chorus_limits::{
    ACCOUNTS_MAX, CLIENT_SESSIONS_MAX, MAILBOX_MESSAGES_MAX, MESSAGE_TEXT_BYTES_MAX, NAME_CHARS_MAX,
    ROOMS_PER_ACCOUNT_MAX, ROOM_NAME_CHARS_MAX,
};

use crate::error::SnapshotError;
use crate::rooms::{History, Room, BROADCAST_ROOM};
use crate::state::{Account, ChatState};
use crate::types::Queued;
use crate::validate::{validate_name, validate_room};
use imbl::Vector;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Buffer between postcard, which writes and reads a few bytes at a time,
/// and the caller's writer or reader, in bytes.
const SNAPSHOT_BUFFER_BYTES: usize = 64 * 1024;

/// Scratch postcard's reader decodes each string into before copying it
/// out, in bytes; a string longer than this does not decode. The longest
/// string a state holds is a queued message's body (the sender's name,
/// then the text). Names are ASCII; the longest
/// other string is a cached `NameInvalid` error, which echoes at most
/// `NAME_CHARS_MAX` characters of any script (4 bytes each) plus a
/// one-sentence reason.
const SNAPSHOT_SCRATCH_BYTES: usize = NAME_CHARS_MAX + MESSAGE_TEXT_BYTES_MAX;

const _: () = assert!(SNAPSHOT_SCRATCH_BYTES >= 4 * ROOM_NAME_CHARS_MAX + 256);

impl ChatState {
    /// Deterministic 64-bit digest of the whole state (FNV-1a over the
    /// postcard encoding), for comparing replicas. Hashes the encoding as it
    /// is produced, without allocating it.
    pub fn digest(&self) -> u64 {
        let mut hasher = Fnv1a::new();
        // Hashing maps, strings and integers cannot fail.
        postcard::to_io(self, &mut hasher).expect("the chat state always encodes");
        hasher.finish()
    }

    /// The whole state as postcard bytes, to install on a lagging replica.
    /// The same bytes [`ChatState::write_snapshot`] writes (encoded straight
    /// into the Vec, which is faster than through a writer).
    pub fn to_snapshot(&self) -> Vec<u8> {
        // Encoding maps, strings and integers into a Vec cannot fail.
        postcard::to_stdvec(self).expect("the chat state always encodes")
    }

    /// Streams the snapshot into `writer` through a fixed-size buffer, then
    /// flushes it. Returns the writer's first error. Does not sync: a caller
    /// writing a file syncs it (and its directory) before relying on it.
    pub fn write_snapshot<W: Write>(&self, writer: W) -> io::Result<()> {
        let mut writer = KeepIoError::new(BufWriter::with_capacity(SNAPSHOT_BUFFER_BYTES, writer));
        match postcard::to_io(self, &mut writer) {
            Ok(_) => writer.flush(),
            Err(error) => Err(writer.kept_or(io::Error::other(error))),
        }
    }

    /// Reads a snapshot, refusing bytes that do not decode exactly or that
    /// decode to a state `apply` could never have produced.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Self::read_buffered(bytes)
    }

    /// Streams a snapshot from `reader` (through a buffer of its own, so a
    /// plain `File` is fine) and checks it like [`ChatState::from_snapshot`].
    /// The snapshot must end the input: the reader is read to its end, and
    /// anything after the state is refused.
    pub fn read_snapshot<R: Read>(reader: R) -> Result<Self, SnapshotError> {
        Self::read_buffered(BufReader::with_capacity(SNAPSHOT_BUFFER_BYTES, reader))
    }

    /// Decodes one state, requires the end of the input, then checks the state.
    fn read_buffered<R: BufRead>(reader: R) -> Result<Self, SnapshotError> {
        let mut reader = KeepIoError::new(reader);
        let mut scratch = [0u8; SNAPSHOT_SCRATCH_BYTES];
        let decoded = postcard::from_io::<ChatState, _>((&mut reader, &mut scratch[..]));
        let state = match decoded {
            Ok((state, _)) => state,
            Err(error) => return Err(reader.decode_failure(error)),
        };
        let trailing_bytes = io::copy(&mut reader, &mut io::sink()).map_err(|error| reader.kept_or(error))?;
        if trailing_bytes > 0 {
            return Err(SnapshotError::TrailingBytes { bytes: usize::try_from(trailing_bytes).unwrap_or(usize::MAX) });
        }
        state.check().map_err(|reason| SnapshotError::Inconsistent { reason })?;
        Ok(state)
    }

    /// Checks the invariants `apply` maintains.
    fn check(&self) -> Result<(), &'static str> {
        if self.accounts.len() > ACCOUNTS_MAX {
            return Err("more accounts than the account limit");
        }
        for (name, account) in &self.accounts {
            if validate_name(name).is_err() {
                return Err("an account name breaks the naming rule");
            }
            check_account(account, self.last_message_id, self.applied_count)?;
            self.check_memberships(name, account)?;
        }
        for (name, room) in &self.rooms {
            self.check_room(name, room)?;
        }
        if self.room_history.check().is_err() {
            return Err("the room history bounds are outside the limits");
        }
        check_history(&self.broadcasts, self.room_history, self.last_message_id)?;
        self.sessions.check(CLIENT_SESSIONS_MAX, self.applied_count)
    }

    /// Every room an account lists exists and lists it back.
    fn check_memberships(&self, name: &str, account: &Account) -> Result<(), &'static str> {
        if account.rooms.len() > ROOMS_PER_ACCOUNT_MAX {
            return Err("an account is in more rooms than the per-account limit");
        }
        let listed = |room: &String| self.rooms.get(room).is_some_and(|r| r.members.contains_key(name));
        if !account.rooms.iter().all(listed) {
            return Err("an account lists a room that does not list it as a member");
        }
        Ok(())
    }

    /// A room: a valid, non-reserved name; members that exist, list the room
    /// back and read no further than the last id; a consistent history.
    fn check_room(&self, name: &str, room: &Room) -> Result<(), &'static str> {
        if validate_room(name).is_err() || name == BROADCAST_ROOM {
            return Err("a room name breaks the naming rule or is the built-in room");
        }
        if room.members.is_empty() {
            return Err("a room has no members");
        }
        for (member, position) in &room.members {
            if !self.accounts.get(member).is_some_and(|a| a.rooms.contains(name)) {
                return Err("a room lists a member that does not list the room");
            }
            if *position > self.last_message_id {
                return Err("a room read position is past the last assigned message id");
            }
        }
        check_history(&room.history, self.room_history, self.last_message_id)
    }
}

/// A history: within both bounds, its byte count right, each message from
/// a valid name with a valid text, ids increasing above the dropped ones
/// and not past the last assigned id.
fn check_history(history: &History, bounds: crate::HistoryBounds, last_message_id: u64) -> Result<(), &'static str> {
    if history.messages.len() > bounds.messages as usize || history.bytes > bounds.bytes as usize {
        return Err("a room history is over its bounds");
    }
    if history.bytes != history.messages.iter().map(|m| m.bytes()).sum::<usize>() {
        return Err("a room history's byte count is wrong");
    }
    if history.dropped_through > last_message_id {
        return Err("a room history dropped an id past the last assigned one");
    }
    check_messages(&history.messages, history.dropped_through, last_message_id, &ROOM_MESSAGE_FAULTS)
}

/// Checks one account's mailbox: bounded, each message from a valid name
/// with a text `send` would take, ids increasing, above its ack cursor and
/// not past the last assigned id.
fn check_account(account: &Account, last_message_id: u64, applied_count: u64) -> Result<(), &'static str> {
    if account.mailbox.len() > MAILBOX_MESSAGES_MAX {
        return Err("a mailbox holds more messages than the mailbox limit");
    }
    if crate::validate::validate_password_hash(&account.password_hash).is_err() {
        return Err("an account's password hash is not an argon2id PHC string within the size limit");
    }
    if account.created > applied_count {
        return Err("an account was created after the last applied proposal");
    }
    if account.acked_through > last_message_id {
        return Err("an ack cursor is past the last assigned message id");
    }
    check_messages(&account.mailbox, account.acked_through, last_message_id, &QUEUED_MESSAGE_FAULTS)
}

/// What to call each fault of a list of stored messages.
struct MessageFaults {
    sender: &'static str,
    text: &'static str,
    ids: &'static str,
}

const QUEUED_MESSAGE_FAULTS: MessageFaults = MessageFaults {
    sender: "a queued message's sender breaks the naming rule",
    text: "a queued message's text is empty or over the size limit",
    ids: "queued message ids are out of order or out of range",
};

const ROOM_MESSAGE_FAULTS: MessageFaults = MessageFaults {
    sender: "a room message's sender breaks the naming rule",
    text: "a room message's text is empty or over the size limit",
    ids: "room message ids are out of order or out of range",
};

/// Stored messages (a mailbox or a room history): each from a valid name
/// with a text a send would take, ids increasing above `floor` and not
/// past the last assigned id.
fn check_messages(
    messages: &Vector<Queued>,
    floor: u64,
    last_message_id: u64,
    faults: &MessageFaults,
) -> Result<(), &'static str> {
    let mut previous_id = floor;
    for message in messages {
        if validate_name(message.from()).is_err() {
            return Err(faults.sender);
        }
        if message.text().is_empty() || message.text().len() > MESSAGE_TEXT_BYTES_MAX {
            return Err(faults.text);
        }
        if message.id <= previous_id || message.id > last_message_id {
            return Err(faults.ids);
        }
        previous_id = message.id;
    }
    Ok(())
}

/// Passes reads or writes through to `inner` and keeps the first I/O error.
/// Postcard turns every I/O error into an error of its own ("unexpected
/// end", "buffer full"); the kept error lets a failing disk be reported as
/// such rather than as a corrupt snapshot.
struct KeepIoError<T> {
    /// The caller's reader or writer, buffered.
    inner: T,
    /// First error `inner` returned, other than `Interrupted` (which
    /// `read_exact` and `write_all` retry) and `UnexpectedEof` (the input
    /// ended: a truncated snapshot, which is malformed, not unreadable).
    error: Option<io::Error>,
}

impl<T> KeepIoError<T> {
    /// Wraps `inner`, no error kept yet.
    fn new(inner: T) -> Self {
        KeepIoError { inner, error: None }
    }

    /// Passes `result` on, keeping its error if it is the first one.
    fn keep<V>(&mut self, result: io::Result<V>) -> io::Result<V> {
        match result {
            Err(error) if !matches!(error.kind(), io::ErrorKind::Interrupted | io::ErrorKind::UnexpectedEof) => {
                let kind = error.kind();
                self.error.get_or_insert(error);
                Err(kind.into())
            }
            other => other,
        }
    }

    /// The kept error if there is one, else `error`.
    fn kept_or(&mut self, error: io::Error) -> io::Error {
        self.error.take().unwrap_or(error)
    }

    /// Why decoding failed: the reader's error if it had one, else the bytes.
    fn decode_failure(&mut self, error: postcard::Error) -> SnapshotError {
        match self.error.take() {
            Some(io_error) => SnapshotError::from(io_error),
            None => SnapshotError::Malformed { reason: error.to_string() },
        }
    }
}

impl<R: Read> Read for KeepIoError<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buffer);
        self.keep(result)
    }

    /// Forwarded, so that postcard's one-byte reads take the inner
    /// reader's fast path.
    fn read_exact(&mut self, buffer: &mut [u8]) -> io::Result<()> {
        let result = self.inner.read_exact(buffer);
        self.keep(result)
    }
}

impl<W: Write> Write for KeepIoError<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(bytes);
        self.keep(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.keep(result)
    }
}

/// FNV-1a, 64-bit: simple, fast, stable across platforms and releases. A
/// writer, so that an encoder can stream into it.
pub(crate) struct Fnv1a {
    /// The hash of the bytes written so far.
    hash: u64,
}

impl Fnv1a {
    /// The hash of no bytes.
    pub(crate) fn new() -> Self {
        Fnv1a { hash: FNV_OFFSET_BASIS }
    }

    /// The hash of every byte written so far.
    pub(crate) fn finish(&self) -> u64 {
        self.hash
    }
}

impl Write for Fnv1a {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.hash = bytes.iter().fold(self.hash, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
