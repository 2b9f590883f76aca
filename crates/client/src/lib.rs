//! The Chorus client library.
//!
//! A [`Client`] talks to a cluster of replicas over one live connection at
//! a time and hides the cluster's shape from the application. It is given
//! [`Endpoints`]: the replicas' addresses and, from the cluster file's
//! `[tls]` table, the cluster CA; every connection is then TLS, and replica
//! `i` must present a certificate the CA signed for `replica-{i}.chorus`
//! (a cluster file without `[tls]` means plaintext).
//!
//! - **Leader discovery.** Requests go to the replica believed to lead. A
//!   `NotLeader { leader: Some(id) }` answer is followed at once; no answer,
//!   a dead connection or `NotLeader { leader: None }` moves on to the next
//!   replica, round robin, with a bounded backoff. Every call has an overall
//!   deadline ([`ClientOptions::call_timeout`]); past it the call fails with
//!   [`ClientError::Unavailable`].
//! - **Exactly-once commands.** [`Client::connect`] opens a session with a
//!   random client id (sequence number 0). Each command ([`Client::create`],
//!   [`Client::delete`], [`Client::send`]) takes the next sequence number
//!   once and reuses it on every retry, so the cluster applies it once.
//! - **Delivery.** [`Client::subscribe`] starts delivery for one account;
//!   [`Client::deliveries`] hands out the stream of [`Delivery`] values,
//!   de-duplicated by message id and in order. If the connection is lost
//!   a background supervisor reconnects and resubscribes after the last
//!   delivered message, so the application sees no gap and no repeat.
//! - **Read position.** [`Client::shown`] tells the library a message was
//!   shown. The next send, say or broadcast from that account carries the
//!   highest shown id (never more) as its read position; if none comes
//!   within [`limits::ACK_INTERVAL`], a background task acknowledges it
//!   alone (at most once per interval while messages keep coming), and
//!   [`Client::flush`] acknowledges at once and waits.
//!
//! [`DeliveryFilter`] and [`AckTracker`] are pure (no I/O, no clock): the
//! deterministic simulator drives these same types.
//!
//! [`fetch_status`] asks one replica of some [`Endpoints`] for its
//! [`chorus_proto::StatusReport`], without a session. [`command::parse`] reads one line of the chat
//! client's command language into a [`command::Parsed`].
//!
//! Modules: `client` (the API and the call loop), `connection` (one
//! connection: a reader task routing replies and deliveries, a writer task),
//! `transport` (`Endpoints`, opening a TCP or TLS stream), `delivery` (the
//! de-duplicating filter), `acks` (read-position tracking), `backoff`,
//! `status`, `command`.

mod acks;
mod backoff;
mod client;
pub mod command;
mod connection;
mod delivery;
mod error;
mod status;
mod transport;

pub use acks::AckTracker;
pub use client::{Client, ClientOptions};
pub use delivery::{Delivery, DeliveryFilter};
pub use error::ClientError;
pub use status::{fetch_digest, fetch_status};
pub use transport::Endpoints;

/// Bounds that belong to the client library alone (the wire bounds come
/// from `chorus-limits`).
pub mod limits {
    use std::time::Duration;

    /// Deliveries buffered for the application before the connection's
    /// reader waits for it to catch up.
    pub const DELIVERY_QUEUE_MAX: usize = 1024;
    /// Accounts whose last delivered message id is remembered (for
    /// de-duplication after switching subscriptions back and forth).
    pub const DELIVERY_CURSORS_MAX: usize = 1024;
    /// Accounts with shown-but-unacknowledged messages tracked at once.
    pub const ACK_ACCOUNTS_MAX: usize = 1024;
    /// First pause after a failed attempt.
    pub const BACKOFF_FIRST: Duration = Duration::from_millis(20);
    /// Longest pause between attempts.
    pub const BACKOFF_MAX: Duration = Duration::from_millis(500);
    /// How long a shown message waits for a post to carry its read
    /// position before it is acknowledged alone, and the shortest time
    /// between two acknowledgements while shown messages keep coming: one
    /// acknowledgement then covers every message shown in the interval,
    /// instead of one consensus command per message. Longer than a post's
    /// round trip under heavy load (about 35 ms with 1,024 benchmark
    /// clients), so that a client that keeps posting rarely sends an `Ack`
    /// (docs/BENCHMARKS.md measures 20 ms against 50 ms).
    /// [`crate::Client::flush`] does not wait for it. A client that dies
    /// without flushing may see up to this much of its last shown messages
    /// again in its next session.
    pub const ACK_INTERVAL: Duration = Duration::from_millis(50);
    /// Pause before retrying a failed acknowledgement.
    pub const ACK_RETRY_DELAY: Duration = Duration::from_millis(200);
    /// Frames one `fetch_status` exchange reads before giving up on a reply.
    pub const STATUS_FRAMES_MAX: usize = 16;

    const _: () = assert!(BACKOFF_FIRST.as_millis() > 0);
    const _: () = assert!(BACKOFF_FIRST.as_millis() <= BACKOFF_MAX.as_millis());
    const _: () = assert!(DELIVERY_QUEUE_MAX >= chorus_limits::DELIVERY_MESSAGES_PER_FRAME_MAX);
}
