//! Sans-IO Multi-Paxos.
//!
//! [`Replica`] is one member of a cluster. It never touches a socket, a
//! file, a clock or a thread: the caller feeds it [`Event`]s (ticks,
//! messages from peers, completed writes) and client work ([`Replica::propose`],
//! [`Replica::read`]), then drains a [`Ready`] and carries it out:
//!
//! 1. make `Ready::write` durable ([`WriteBatch`]; may run in the
//!    background) and report it with `Event::Persisted(id)`;
//! 2. send `Ready::messages` (they only report state already durable:
//!    promises and accepts wait inside the core until their write is);
//! 3. apply `Ready::committed` to the state machine, in slot order;
//! 4. serve `Ready::reads` from the state machine.
//!
//! The protocol: a replica whose election timer fires asks for pre-votes
//! (no state changes, so a cut-off replica cannot disrupt a live leader),
//! then runs phase 1 with a [`Ballot`] above every one it has seen for all
//! slots past its chosen prefix. The new leader adopts, per slot, the
//! value accepted under the highest ballot (filling holes with
//! [`Value::Noop`]) and re-proposes it. In steady state it batches queued
//! commands into slots, keeps up to `SLOTS_IN_FLIGHT_MAX` slots in flight,
//! writes its own log in parallel with sending `Accept`s, and counts a slot
//! chosen on a majority of durable accepts (its own included). Heartbeats
//! carry the chosen prefix; a follower whose log has a gap asks for the
//! chosen values ([`Message::CatchupRequest`]). Linearizable reads use a
//! read index confirmed by a heartbeat round.
//!
//! A new chosen prefix (`WriteBatch::chosen_through`) is never written on
//! its own: it rides with the next write. Nothing waits for it to be
//! durable, and after a restart a replica learns again what was chosen
//! above its durable mark, so a lagging mark costs catch-up, not safety.
//!
//! Randomness (election timeouts) comes from a generator seeded by
//! [`Config::seed`]; the same seed and the same events give the same output.

mod config;
mod durability;
mod election;
mod reads;
mod ready;
mod recovery;
mod replica;
mod replication;
mod types;

pub use config::{Config, ConfigError};
pub use ready::{NotLeader, ProposeError, ReadId, Ready, Role, SnapshotWanted, Status};
pub use replica::{Event, Replica};
pub use types::*;
