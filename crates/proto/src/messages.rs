//! The frames themselves.

use chorus_chat::{
    ChatError, ClientId, Command, HistoryPage, ListResult, Message, MessageId, Outcome, RoomsResult, SessionToken,
};
use chorus_paxos::{Ballot, Envelope, ReplicaId, Role, Slot};
use serde::{Deserialize, Serialize};

/// Identifies the protocol in the first frame ("CHRS").
pub const MAGIC: u32 = 0x4348_5253;
/// Bumped on any incompatible change to a frame.
pub const PROTOCOL_VERSION: u16 = 5;

/// Who is connecting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Peer {
    /// A chat client or the status tool.
    Client,
    /// Another replica of the cluster.
    Replica(ReplicaId),
}

/// First frame on every connection, from the side that connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: u32,
    pub version: u16,
    pub peer: Peer,
}

impl Hello {
    /// The hello this build sends.
    pub fn new(peer: Peer) -> Self {
        Hello { magic: MAGIC, version: PROTOCOL_VERSION, peer }
    }

    /// Why this hello cannot be served, if it cannot.
    pub fn check(&self) -> Result<(), RequestError> {
        if self.magic != MAGIC {
            return Err(RequestError::BadRequest("not a Chorus connection".into()));
        }
        if self.version != PROTOCOL_VERSION {
            return Err(RequestError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: self.version });
        }
        Ok(())
    }
}

/// A client's request, tagged so the reply can be matched to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    pub request_id: u64,
    pub request: Request,
}

/// A password as typed, on its way to be hashed or checked. Its `Debug`
/// form hides it, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// What a client can ask of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens an exactly-once session through the log.
    Register { client: ClientId },
    /// Creates account `name` with `password`, exactly once per (client,
    /// seq): the leader hashes the password (argon2id, a salt of its
    /// choosing) and proposes `Command::Create` with the hash.
    CreateAccount { client: ClientId, seq: u64, name: String, password: Password },
    /// A state-changing chat command (delete, send, join, leave, say,
    /// broadcast), exactly once per (client, seq). `Command::Create` is
    /// refused here: accounts are created with `CreateAccount`, so a
    /// client never picks the hash. The command must act for the account
    /// this connection signed in as. A send, say or broadcast may carry
    /// that account's read position (`read_through`, as in `Ack`); it
    /// takes effect with the command, so a reply to the command confirms
    /// it and an active client needs no separate `Ack`.
    Command { client: ClientId, seq: u64, command: Command, read_through: Option<MessageId> },
    /// Signs this connection in as `name`; answered by the leader with a
    /// session token. Failures are throttled per account and per address.
    SignIn { name: String, password: Password },
    /// Signs this connection in with a token from an earlier `SignIn`
    /// (on any replica), without the password.
    Resume { token: SessionToken },
    /// Linearizable list of account names matching a regular expression.
    List { pattern: Option<String> },
    /// Linearizable list of rooms (with member counts) whose names match a
    /// regular expression; `#all` included.
    Rooms { pattern: Option<String> },
    /// Linearizable page of `room`'s retained history: the newest `count`
    /// (at most `HISTORY_PAGE_MESSAGES_MAX`) messages with id < `before`
    /// (newest when `None`), read as `name`, a member signed in on this
    /// connection.
    History { name: String, room: String, before: Option<MessageId>, count: u32 },
    /// Starts delivery for `name` (the account this connection signed in
    /// as): queued direct messages and the messages of its rooms with id >
    /// `after` (and above its read position in each room), merged in id
    /// order, then live ones.
    Subscribe { name: String, after: MessageId },
    /// Stops delivery for `name` on this connection.
    Unsubscribe { name: String },
    /// Moves `name`'s replicated read position to `through` (`name` must
    /// be the account this connection signed in as).
    Ack { name: String, through: MessageId },
    /// This replica's view of itself (answered by any replica).
    Status,
    /// A digest of this replica's applied state, to compare replicas
    /// (answered by any replica; costs one pass over the whole state).
    Digest,
}

/// What a replica sends a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// Answer to the request with the same id.
    Reply { request_id: u64, result: Result<Response, RequestError> },
    /// Messages for a subscribed account, oldest first.
    Deliver { messages: Vec<Message> },
    /// Delivery for `name` on this connection ended.
    Ended { name: String, reason: String },
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Registered,
    /// Signed in; the token resumes the sign-in on any replica until it expires.
    SignedIn {
        token: SessionToken,
    },
    Outcome(Outcome),
    List(ListResult),
    Rooms(RoomsResult),
    History(HistoryPage),
    Subscribed,
    Unsubscribed,
    Acked,
    Status(StatusReport),
    Digest(StateDigest),
}

/// A replica's applied state, summarized: equal digests at equal slots
/// mean equal states (up to 64-bit hash collisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    pub applied_through: Slot,
    pub digest: u64,
}

/// A refused or failed request. None of these changed any state, except
/// that `Unavailable` after a command was proposed means "maybe".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestError {
    #[error("this replica is not the leader")]
    NotLeader { leader: Option<ReplicaId> },
    #[error("{0}")]
    Chat(#[from] ChatError),
    #[error("the replica is overloaded; retry later")]
    Busy,
    /// Wrong name or password, no sign-in, or a sign-in as someone else.
    #[error("not allowed: {0}")]
    Unauthorized(String),
    /// Too many failed sign-ins for this account or from this address.
    #[error("too many failed sign-ins; try again in {retry_after_millis} ms")]
    Throttled { retry_after_millis: u64 },
    #[error("the outcome is unknown: {0}")]
    Unavailable(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("protocol version mismatch (replica speaks {ours}, client {theirs})")]
    VersionMismatch { ours: u16, theirs: u16 },
}

/// One replica's view of itself, for `chorus status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub id: ReplicaId,
    pub pid: u32,
    pub role: Role,
    pub leader: Option<ReplicaId>,
    pub ballot: Ballot,
    pub chosen_through: Slot,
    pub applied_through: Slot,
    pub last_slot: Slot,
    pub accounts: u64,
    pub clients_connected: u64,
    /// Newest durable snapshot (0: none yet).
    pub snapshot_slot: Slot,
    /// The log holds no entry at or below this slot.
    pub compacted_through: Slot,
    /// Bytes on disk: the log store file and the snapshot files.
    pub log_disk_bytes: u64,
    pub snapshot_disk_bytes: u64,
    /// A snapshot being received from a peer, if any.
    pub snapshot_fetch: Option<FetchProgress>,
    /// How many times this replica rebuilt after losing its disk.
    pub incarnation: u64,
}

/// Progress of a snapshot transfer into a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchProgress {
    pub from: ReplicaId,
    /// Slot of the snapshot (0 until the sender has named it).
    pub slot: Slot,
    pub received_bytes: u64,
    pub total_bytes: u64,
}

/// What replicas send each other after the hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// Consensus.
    Paxos(Envelope),
    /// Snapshot transfer, outside consensus.
    Transfer { from: ReplicaId, to: ReplicaId, message: Transfer },
}

/// Snapshot transfer: the receiver pulls one chunk at a time, so at most
/// one chunk per transfer is in flight (flow control by the receiver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transfer {
    /// "Send `slot`'s snapshot from `offset`": `slot` 0 asks for the newest
    /// snapshot covering at least `covering`.
    Request { covering: Slot, slot: Slot, offset: u64 },
    /// Raw bytes of the snapshot file `slot` (of `total` bytes) at `offset`,
    /// with their CRC-32.
    Chunk { slot: Slot, total: u64, offset: u64, crc: u32, bytes: Vec<u8> },
    /// The sender has no such snapshot (none covering `covering`, or
    /// `slot` was replaced by a newer one).
    Unavailable { covering: Slot, slot: Slot },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_payload, encode_frame};

    #[test]
    fn hello_checks_magic_and_version() {
        assert_eq!(Hello::new(Peer::Client).check(), Ok(()));
        let old = Hello { version: 0, ..Hello::new(Peer::Client) };
        assert_eq!(old.check(), Err(RequestError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: 0 }));
        let alien = Hello { magic: 1, ..Hello::new(Peer::Replica(2)) };
        assert!(matches!(alien.check(), Err(RequestError::BadRequest(_))));
    }

    #[test]
    fn client_frames_round_trip() {
        let frame = ClientFrame {
            request_id: 9,
            request: Request::Command {
                client: 7,
                seq: 3,
                command: Command::Send { from: "a".into(), to: "b".into(), text: "hi".into() },
                read_through: Some(5),
            },
        };
        let bytes = encode_frame(&frame, chorus_limits::CLIENT_FRAME_BYTES_MAX).expect("fits");
        let back: ClientFrame = decode_payload(&bytes[4..]).expect("decodes");
        assert_eq!(back, frame);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_payload::<ClientFrame>(&bytes);
            let _ = decode_payload::<ServerFrame>(&bytes);
            let _ = decode_payload::<PeerFrame>(&bytes);
            let _ = decode_payload::<Hello>(&bytes);
        }
    }
}
