//! Deterministic simulation of a Chorus cluster.
//!
//! One seed decides everything. A [`world::World`] runs the real
//! [`chorus_server::machine::Machine`] (Paxos core, chat state machine,
//! request handling, deliveries) on 3 or 5 simulated replicas
//! ([`host::Host`]) with simulated disks ([`disk::Disk`]: writes durable
//! after a latency, lost on a crash; snapshot files that keep only synced
//! bytes), a simulated peer network ([`net::Network`]: loss, duplication,
//! delay/reordering, partitions, for Paxos and snapshot transfer messages)
//! and simulated client connections ([`links::Links`]). Hosts start, write
//! snapshots, fetch and install peers' snapshots through the runtime's own
//! code; a restart may find its disk wiped, and the replica must rebuild
//! from its peers before it votes. [`coverage::Coverage`] counts how often
//! each of those paths ran. Simulated clients
//! ([`client::SimClient`]) run a random workload with the client library's
//! retry rules and its own delivery filter and acknowledgement tracker.
//!
//! The seed also chooses the fault mix ([`faults::FaultPlan`]). A run has a
//! fault phase, then a liveness phase that heals everything and requires
//! convergence within a bound. Checkers ([`check`]) watch every step;
//! the first broken invariant ends the run with a [`world::Failure`] that
//! carries the seed and the last events.

pub mod check;
pub mod client;
pub mod coverage;
pub mod disk;
pub mod faults;
pub mod host;
pub mod links;
pub mod net;
pub mod trace;
pub mod world;

pub use coverage::Coverage;
pub use world::{Failure, Options, Report, World};

/// Bugs the simulator can plant to prove its checkers catch them
/// (debug builds only; see `chorus-plant`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// Replicas answer Prepare/Accept before persisting.
    ReplyBeforePersist,
    /// A new leader ignores values recovered from promises.
    SkipRecovery,
    /// Commands are de-duplicated in the replica's memory, not the log.
    DedupOutsideLog,
    /// Clients advance the read position before showing a message.
    AckBeforeShown,
    /// A replica restarting on a wiped disk votes at once, as a blank
    /// founding member, instead of rebuilding first.
    WipedVotesAtOnce,
    /// Room messages reach a member from the room's newest one on, not
    /// from its read position.
    RoomBacklogSkipped,
    /// The state machine ignores the read position a post carries.
    CarriedReadPositionIgnored,
}

/// Turns planted bugs on (or off) for this thread.
pub(crate) mod plant {
    use super::Plant;
    use chorus_plant::bugs;

    pub fn activate(plant: Option<Plant>) {
        let flags = match plant {
            Some(Plant::ReplyBeforePersist) => bugs::REPLY_BEFORE_PERSIST,
            Some(Plant::SkipRecovery) => bugs::SKIP_RECOVERY,
            Some(Plant::DedupOutsideLog) => bugs::DEDUP_OUTSIDE_LOG,
            Some(Plant::WipedVotesAtOnce) => bugs::WIPED_VOTES_AT_ONCE,
            Some(Plant::RoomBacklogSkipped) => bugs::ROOM_BACKLOG_SKIPPED,
            Some(Plant::CarriedReadPositionIgnored) => bugs::CARRIED_READ_POSITION_IGNORED,
            Some(Plant::AckBeforeShown) | None => 0,
        };
        chorus_plant::set(flags);
    }
}

/// Runs one seed.
pub fn run_seed(seed: u64, options: Options) -> Result<Report, Failure> {
    World::new(seed, options).run()
}
