//! The deterministic chat state machine every Chorus replica applies.
//!
//! Consensus orders [`Proposal`]s (a [`Command`] from one client, with the
//! client's sequence number and the leader's timestamp); each replica feeds
//! them, in order, to [`ChatState::apply`], which returns an [`Applied`]: the
//! reply for the proposing client (an [`Outcome`] or a [`ChatError`]) and an
//! optional [`StateEvent`] (a [`Message`] was queued, an account was deleted)
//! for connections on any replica. Reads ([`ChatState::list`],
//! [`ChatState::mailbox`], [`ChatState::rooms`], [`ChatState::history`],
//! [`ChatState::stream`]) change nothing.
//!
//! Rooms ([`Command::Join`], [`Command::Say`], ...) are shared
//! conversations: room messages take ids from the same global counter as
//! direct messages, so a room's order is the log's; each member has a
//! replicated read position per room, moved by [`Command::Ack`]; history is
//! retained per room up to cluster-wide bounds. [`Command::Broadcast`]
//! posts to the built-in room [`BROADCAST_ROOM`] every account is in.
//!
//! The crate is pure: no IO, no clock, no threads, no randomness and no
//! hash-ordered maps, so replicas that apply the same proposals end with
//! byte-identical states. [`ChatState::digest`] compares them cheaply and
//! [`ChatState::to_snapshot`] / [`ChatState::from_snapshot`] move them;
//! [`ChatState::write_snapshot`] / [`ChatState::read_snapshot`] stream them
//! to and from a file. The state's collections are persistent (`imbl`), so
//! `clone()` is O(1): the core clones, a background thread writes the clone.
//!
//! Exactly-once delivery of commands lives in the state too: a client opens a
//! session with [`Command::RegisterClient`]; afterwards a retried sequence
//! number gets the cached reply instead of running again. Every bound comes
//! from `chorus-limits`. Accounts hold an argon2id password hash, which
//! also keys the [`SessionToken`]s any replica can check
//! ([`ChatState::issue_token`], [`ChatState::check_token`]). [`validate`] lets a replica refuse bad input before
//! proposing it; `apply` checks again.
//!
//! ```
//! use chorus_chat::{ChatState, Command, Outcome, Proposal, StateEvent};
//!
//! let mut state = ChatState::new();
//! let step = |seq, command| Proposal::new(7, seq, 1_000, command);
//! // The proposing replica hashed the password (argon2id) before proposing.
//! let hash = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";
//! let create = |name: &str| Command::Create { name: name.into(), password_hash: hash.into() };
//! state.apply(&step(0, Command::RegisterClient));
//! state.apply(&step(1, create("alice")));
//! state.apply(&step(2, create("bob")));
//! let send = step(3, Command::Send { from: "alice".into(), to: "bob".into(), text: "hi".into() });
//! let applied = state.apply(&send);
//! assert_eq!(applied.reply, Ok(Outcome::Sent { id: 1 }));
//! assert!(matches!(applied.event, Some(StateEvent::Queued(_))));
//!
//! // A retry of the same sequence number does not send twice.
//! let retried = state.apply(&send);
//! assert_eq!(retried.reply, Ok(Outcome::Sent { id: 1 }));
//! assert_eq!(retried.event, None);
//! assert_eq!(state.mailbox("bob", 0, 10).unwrap().len(), 1);
//! ```

#![deny(missing_docs)]

mod bounded;
mod error;
mod read;
mod rooms;
mod session;
mod snapshot;
mod state;
mod token;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{ChatError, DecodeError, SnapshotError};
pub use rooms::BROADCAST_ROOM;
pub use state::ChatState;
pub use token::{SessionToken, TokenError};
pub use types::{
    decode_proposal, encode_proposal, Applied, ClientId, Command, HistoryBounds, HistoryPage, ListResult, Message,
    MessageId, Millis, Outcome, Proposal, RoomSummary, RoomsResult, StateEvent,
};
pub use validate::{validate, validate_name, validate_password_hash, validate_room};
