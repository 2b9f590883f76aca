//! Every numeric bound in Chorus lives here, with its unit in its name.
//!
//! Limits are grouped by the layer that enforces them. Relations between
//! them are checked at compile time at the bottom of this file, so that a
//! change to one that breaks another fails the build rather than a replica.
//!
//! Each limit is enforced with a clear error at the boundary where input
//! arrives (the frame decoder, the command parser, the chat state machine);
//! none is merely advisory.

// ---- chat model ---------------------------------------------------------

/// Shortest account name, in characters.
pub const NAME_CHARS_MIN: usize = 1;
/// Longest account name, in characters (ASCII letters, digits, `_`, `-`, `.`).
pub const NAME_CHARS_MAX: usize = 32;
/// Longest message text, in bytes of UTF-8.
pub const MESSAGE_TEXT_BYTES_MAX: usize = 4096;
/// Most accounts the chat state holds at once.
pub const ACCOUNTS_MAX: usize = 100_000;
/// Most undelivered messages queued for one account.
pub const MAILBOX_MESSAGES_MAX: usize = 100_000;
/// Longest regular expression accepted by `list`, in bytes.
pub const LIST_PATTERN_BYTES_MAX: usize = 256;
/// Compiled-size bound handed to the regex engine for `list` patterns, in bytes.
pub const LIST_REGEX_COMPILED_BYTES_MAX: usize = 256 * 1024;
/// Most names one `list` reply carries; a longer result is cut and flagged.
pub const LIST_NAMES_MAX: usize = 1000;
/// Most client sessions (exactly-once tables) kept in the replicated state;
/// the least recently used is evicted beyond this.
pub const CLIENT_SESSIONS_MAX: usize = 10_000;
/// Most messages one delivery frame carries to a client.
pub const DELIVERY_MESSAGES_PER_FRAME_MAX: usize = 64;

// ---- rooms --------------------------------------------------------------

/// Longest room name, in characters: `#` then an account-style name.
pub const ROOM_NAME_CHARS_MAX: usize = 1 + NAME_CHARS_MAX;
/// Most rooms the chat state holds at once (the built-in `#all` aside).
pub const ROOMS_MAX: usize = 1_000;
/// Most members of one room.
pub const ROOM_MEMBERS_MAX: usize = 10_000;
/// Most rooms one account may be a member of at once (`#all` aside).
pub const ROOMS_PER_ACCOUNT_MAX: usize = 64;
/// Most messages a room's retained history may be set to hold (and the
/// default); older ones are dropped first. The setting is replicated
/// (`Configure` in the log), so every replica drops the same ones.
pub const ROOM_HISTORY_MESSAGES_MAX: usize = 1_000;
/// Fewest messages a room's history may be set to hold.
pub const ROOM_HISTORY_MESSAGES_MIN: usize = 1;
/// Most bytes (senders' names plus texts) a room's retained history may be
/// set to hold (and the default); older messages are dropped first.
pub const ROOM_HISTORY_BYTES_MAX: usize = 1024 * 1024;
/// Fewest bytes a room's history may be set to hold: one longest message.
pub const ROOM_HISTORY_BYTES_MIN: usize = MESSAGE_TEXT_BYTES_MAX + NAME_CHARS_MAX;
/// Most messages one `history` reply carries.
pub const HISTORY_PAGE_MESSAGES_MAX: usize = 64;
/// Most rooms one `rooms` reply carries; a longer result is cut and flagged.
pub const ROOMS_LISTED_MAX: usize = 1000;

// ---- identity -----------------------------------------------------------

/// Shortest password, in bytes.
pub const PASSWORD_BYTES_MIN: usize = 8;
/// Longest password, in bytes (hashing cost does not depend on it much,
/// but a frame carrying it must stay small).
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest stored password hash (an argon2id PHC string is ~100 bytes).
pub const PASSWORD_HASH_BYTES_MAX: usize = 192;
/// argon2id memory cost by default, in KiB (19 MiB, t = 2, p = 1: the
/// OWASP minimum for argon2id).
pub const PASSWORD_HASH_MEMORY_KIB_DEFAULT: u32 = 19_456;
/// Lowest memory cost a replica accepts for `--password-memory-kib` (for
/// test clusters; never for a deployment).
pub const PASSWORD_HASH_MEMORY_KIB_MIN: u32 = 64;
/// argon2id passes over memory.
pub const PASSWORD_HASH_ITERATIONS: u32 = 2;
/// Password hashes and checks queued or running on one replica at once;
/// past it, sign-ins and account creations are answered `Busy`.
pub const PASSWORD_JOBS_MAX: usize = 4;
/// How long a session token stays valid, in milliseconds (12 hours).
pub const SESSION_TOKEN_TTL_MILLIS: u64 = 12 * 60 * 60 * 1000;
/// Failed sign-ins an account or an address may make before each further
/// attempt must wait.
pub const SIGN_IN_FAILURES_FREE: u32 = 5;
/// Wait after the first failure past the free ones, in milliseconds; it
/// doubles with each further failure...
pub const SIGN_IN_BACKOFF_MIN_MILLIS: u64 = 1_000;
/// ...up to this, in milliseconds (5 minutes).
pub const SIGN_IN_BACKOFF_MAX_MILLIS: u64 = 5 * 60 * 1000;
/// A failure record is forgotten this long after its last failure, in
/// milliseconds (15 minutes).
pub const SIGN_IN_FAILURE_MEMORY_MILLIS: u64 = 15 * 60 * 1000;
/// Most accounts plus addresses one replica tracks failures for; past it,
/// the records of the oldest failures are dropped first.
pub const SIGN_IN_RECORDS_MAX: usize = 65_536;

// ---- wire ---------------------------------------------------------------

/// Largest frame a client may send or receive, in bytes (length prefix excluded).
pub const CLIENT_FRAME_BYTES_MAX: usize = 512 * 1024;
/// Largest frame exchanged between replicas, in bytes (length prefix excluded).
pub const PEER_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest hello frame, client or replica (a hello is about ten bytes).
pub const HELLO_BYTES_MAX: usize = 64;
/// Most inbound connections on a replica's peer port at once (its peers
/// need one each, plus some left over from reconnections).
pub const PEER_CONNECTIONS_MAX: usize = 8 * REPLICAS_MAX;
/// Most client connections one replica serves at once.
pub const CLIENT_CONNECTIONS_MAX: usize = 16_384;
/// Default for the most client connections one address may hold on a
/// replica (`--connections-per-address`).
pub const CLIENT_CONNECTIONS_PER_ADDRESS_DEFAULT: usize = 1_024;
/// Frames queued towards one client before the replica drops that slow client.
pub const CLIENT_OUTBOUND_FRAMES_MAX: usize = 1024;
/// Read buffer of one client connection on a replica: small, since a
/// replica holds many mostly idle connections.
pub const CLIENT_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Read buffer of one connection from a peer replica.
pub const PEER_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Requests one client connection may have in flight at once.
pub const CLIENT_REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// Requests per second one client connection may send, on average; past
/// it a replica answers `Busy` without doing the work.
pub const CLIENT_REQUESTS_PER_SECOND_MAX: u32 = 10_000;
/// Requests one client connection may send in a burst above that rate.
pub const CLIENT_REQUESTS_BURST_MAX: u32 = 1_000;
/// Once the first byte of a client frame has arrived, the rest must
/// arrive within this many milliseconds (an idle connection may wait
/// for ever; a half-sent frame may not).
pub const CLIENT_FRAME_DEADLINE_MILLIS: u64 = 10_000;
/// Messages queued towards one peer before newer ones are dropped
/// (Paxos tolerates loss; the queue must not grow without bound).
pub const PEER_OUTBOUND_MESSAGES_MAX: usize = 4096;
/// Events queued into a replica's core task before senders wait.
pub const CORE_INBOX_EVENTS_MAX: usize = 8192;
/// Most replicas in one cluster.
pub const REPLICAS_MAX: usize = 7;

// ---- consensus ----------------------------------------------------------

/// Most client commands packed into one slot.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Most bytes of encoded commands packed into one slot.
pub const BATCH_BYTES_MAX: usize = 256 * 1024;
/// Most bytes of values one Accept message carries (a leader splits larger
/// windows across several messages).
pub const ACCEPT_BYTES_MAX: usize = 1024 * 1024;
/// Most slots a leader has proposed but not yet seen chosen.
pub const SLOTS_IN_FLIGHT_MAX: u64 = 32;
/// Most commands waiting at the leader for a slot.
pub const PROPOSALS_QUEUED_MAX: usize = 65_536;
/// Most bytes of commands waiting at the leader for a slot.
pub const PROPOSALS_QUEUED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most linearizable reads waiting at the leader for confirmation.
pub const READS_PENDING_MAX: usize = 65_536;
/// Most accepted entries one Promise carries; a promiser with more is
/// ahead of the candidate, which then catches up before campaigning.
pub const PROMISE_ENTRIES_MAX: usize = 4096;
/// Most bytes of values one Promise carries (same rule as the count).
pub const PROMISE_BYTES_MAX: usize = 12 * 1024 * 1024;
/// Bytes added to a value's payload when estimating its encoded size.
pub const VALUE_OVERHEAD_BYTES: usize = 32;
/// Most chosen entries one catch-up message carries.
pub const CATCHUP_ENTRIES_MAX: usize = 256;
/// Most bytes of values one catch-up message carries.
pub const CATCHUP_BYTES_MAX: usize = 4 * 1024 * 1024;

// ---- snapshots ----------------------------------------------------------

/// Default: take a snapshot once this many slots were applied since the last.
pub const SNAPSHOT_EVERY_SLOTS_DEFAULT: u64 = 100_000;
/// Default: take a snapshot once this many bytes of commands were applied
/// since the last (whichever of the two comes first). The log held in
/// memory between snapshots is about this large.
pub const SNAPSHOT_EVERY_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;
/// Slots kept in the log below a snapshot, so a replica that is only a
/// little behind catches up from the log instead of fetching a snapshot.
pub const LOG_RETAINED_SLOTS: u64 = 1024;
/// Bytes of snapshot file in one transfer chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Ticks a snapshot fetch waits for a chunk before asking again.
pub const SNAPSHOT_FETCH_RETRY_TICKS: u64 = 100;
/// Unanswered requests after which a snapshot fetch gives up (the core
/// asks again, possibly from another peer).
pub const SNAPSHOT_FETCH_RETRIES_MAX: u32 = 5;

// ---- time (the core counts ticks; the server maps ticks to wall time) ----

/// Wall-clock length of one tick in the server, in milliseconds.
pub const TICK_MILLIS: u64 = 10;
/// Ticks between leader heartbeats.
pub const HEARTBEAT_TICKS: u64 = 3;
/// Shortest randomized election timeout, in ticks.
pub const ELECTION_TICKS_MIN: u64 = 10;
/// Longest randomized election timeout, in ticks.
pub const ELECTION_TICKS_MAX: u64 = 20;
/// Ticks a follower waits for a catch-up reply before asking again.
pub const CATCHUP_RETRY_TICKS: u64 = 10;

// ---- relations, checked when the crate compiles -------------------------

const _: () = assert!(NAME_CHARS_MIN >= 1 && NAME_CHARS_MIN <= NAME_CHARS_MAX);
const _: () = assert!(HEARTBEAT_TICKS * 3 <= ELECTION_TICKS_MIN);
const _: () = assert!(ELECTION_TICKS_MIN < ELECTION_TICKS_MAX);
const _: () = assert!(REPLICAS_MAX % 2 == 1);
// One command (name, text and framing overhead) must fit in one slot and one frame.
const _: () = assert!(MESSAGE_TEXT_BYTES_MAX + 2 * NAME_CHARS_MAX + 256 <= BATCH_BYTES_MAX);
const _: () = assert!(MESSAGE_TEXT_BYTES_MAX + 2 * NAME_CHARS_MAX + 256 <= CLIENT_FRAME_BYTES_MAX);
// A full delivery frame fits in a client frame.
const _: () = assert!(
    DELIVERY_MESSAGES_PER_FRAME_MAX * (MESSAGE_TEXT_BYTES_MAX + 2 * NAME_CHARS_MAX + ROOM_NAME_CHARS_MAX + 64)
        <= CLIENT_FRAME_BYTES_MAX
);
// Room limits relate to the account limits they sit on.
const _: () = assert!(ROOM_MEMBERS_MAX <= ACCOUNTS_MAX);
const _: () = assert!(ROOMS_PER_ACCOUNT_MAX <= ROOMS_MAX);
const _: () = assert!(ROOM_HISTORY_BYTES_MAX >= MESSAGE_TEXT_BYTES_MAX + NAME_CHARS_MAX);
const _: () = assert!(ROOM_HISTORY_MESSAGES_MAX >= HISTORY_PAGE_MESSAGES_MAX);
// A full history page and a full rooms listing fit in a client frame.
const _: () = assert!(
    HISTORY_PAGE_MESSAGES_MAX * (MESSAGE_TEXT_BYTES_MAX + 2 * NAME_CHARS_MAX + ROOM_NAME_CHARS_MAX + 64)
        <= CLIENT_FRAME_BYTES_MAX
);
const _: () = assert!(ROOMS_LISTED_MAX * (ROOM_NAME_CHARS_MAX + 16) <= CLIENT_FRAME_BYTES_MAX);
// A full list reply fits in a client frame.
const _: () = assert!(LIST_NAMES_MAX * (NAME_CHARS_MAX + 8) <= CLIENT_FRAME_BYTES_MAX);
// Every unchosen entry a replica can hold (one window of full batches) fits
// in one Promise, so a caught-up candidate always completes phase 1.
const _: () = assert!(
    (SLOTS_IN_FLIGHT_MAX as usize) * (BATCH_BYTES_MAX + BATCH_COMMANDS_MAX * VALUE_OVERHEAD_BYTES) <= PROMISE_BYTES_MAX
);
const _: () = assert!(PROMISE_BYTES_MAX + 1024 * 1024 <= PEER_FRAME_BYTES_MAX);
const _: () = assert!(ACCEPT_BYTES_MAX >= BATCH_BYTES_MAX + BATCH_COMMANDS_MAX * VALUE_OVERHEAD_BYTES);
const _: () = assert!(ACCEPT_BYTES_MAX + 1024 * 1024 <= PEER_FRAME_BYTES_MAX);
const _: () = assert!(CATCHUP_BYTES_MAX + ACCEPT_BYTES_MAX <= PEER_FRAME_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + 1024 <= PEER_FRAME_BYTES_MAX);
// A full window of full slots can always be cut from a full queue.
const _: () = assert!(PROPOSALS_QUEUED_BYTES_MAX >= (SLOTS_IN_FLIGHT_MAX as usize) * BATCH_BYTES_MAX);
const _: () = assert!(PASSWORD_BYTES_MIN >= 1 && PASSWORD_BYTES_MIN <= PASSWORD_BYTES_MAX);
const _: () = assert!(PASSWORD_BYTES_MAX + NAME_CHARS_MAX + 64 <= CLIENT_FRAME_BYTES_MAX);
const _: () = assert!(PASSWORD_HASH_BYTES_MAX + NAME_CHARS_MAX + 64 <= BATCH_BYTES_MAX);
const _: () = assert!(PASSWORD_HASH_MEMORY_KIB_MIN <= PASSWORD_HASH_MEMORY_KIB_DEFAULT);
const _: () = assert!(SIGN_IN_BACKOFF_MIN_MILLIS <= SIGN_IN_BACKOFF_MAX_MILLIS);
