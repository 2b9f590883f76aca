//! The fault menu, and the mix one seed chooses from it ("swarm" testing:
//! each seed turns some faults on, at its own rates, so different seeds
//! stress different combinations).
//!
//! Disk wipes are drawn from a stream of their own (see
//! [`FaultPlan::choose`]), so a seed whose mix has them off runs exactly as
//! it did before they existed.

use chorus_server::machine::SnapshotPolicy;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Probabilities and bounds for one run's fault phase. Rates are per
/// message or per tick.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    pub replicas: usize,
    pub clients: usize,
    /// Chance a peer message is lost.
    pub loss: f64,
    /// Chance a peer message is delivered twice.
    pub duplicate: f64,
    /// Extra delay, in ticks, added to some peer messages (reordering them).
    pub delay_ticks_max: u64,
    /// Chance per tick that a replica crashes (losing unsynced writes).
    pub crash: f64,
    /// Ticks a crashed replica stays down, at most.
    pub down_ticks_max: u64,
    /// Chance per tick that a new partition starts.
    pub partition: f64,
    /// Ticks a partition lasts, at most.
    pub partition_ticks_max: u64,
    /// Chance per tick that a client is cut off from one replica.
    pub client_cut: f64,
    /// Chance per tick that a client process crashes and starts afresh.
    pub client_crash: f64,
    /// Fsync latency bounds in ticks (a slow disk has a high maximum).
    pub disk_ticks_max: u64,
    /// Relative tick rates of replicas differ by up to this fraction.
    pub skew: f64,
    /// When every replica takes snapshots and how much log it keeps below
    /// them: usually small, so snapshots, compaction and transfers happen
    /// often; sometimes the default (in effect never, in a run this short).
    pub snapshot: SnapshotPolicy,
    /// Ticks a snapshot write, or decoding a fetched one, takes, at most.
    pub snapshot_ticks_max: u64,
    /// Chance per tick that a replica busy writing, fetching or installing
    /// a snapshot crashes (on top of `crash`, which rarely hits that window).
    pub snapshot_crash: f64,
    /// Bytes per snapshot transfer chunk: small, so transfers take several.
    pub snapshot_chunk_bytes: usize,
    /// Chance that a crashed replica restarts on an empty disk (its disk
    /// lost: a non-founding member that must rebuild before it votes), as
    /// long as fewer than `replicas - quorum` other disks are lost.
    pub wipe: f64,
}

impl FaultPlan {
    /// The mix for one seed: `rng` chooses every fault but disk wipes,
    /// `wipe_rng` (the wipes' own stream) chooses those.
    pub fn choose(rng: &mut ChaCha8Rng, wipe_rng: &mut ChaCha8Rng) -> Self {
        let on = |rng: &mut ChaCha8Rng, chance: f64| rng.random_bool(chance);
        let replicas = if on(rng, 0.3) { 5 } else { 3 };
        FaultPlan {
            replicas,
            clients: rng.random_range(2..=5),
            loss: if on(rng, 0.5) { rng.random_range(0.0..0.2) } else { 0.0 },
            duplicate: if on(rng, 0.4) { rng.random_range(0.0..0.05) } else { 0.0 },
            delay_ticks_max: if on(rng, 0.5) { rng.random_range(1..30) } else { 1 },
            crash: if on(rng, 0.6) { rng.random_range(0.0..0.01) } else { 0.0 },
            down_ticks_max: rng.random_range(10..300),
            partition: if on(rng, 0.5) { rng.random_range(0.0..0.01) } else { 0.0 },
            partition_ticks_max: rng.random_range(20..400),
            client_cut: if on(rng, 0.3) { rng.random_range(0.0..0.005) } else { 0.0 },
            client_crash: if on(rng, 0.4) { rng.random_range(0.0..0.01) } else { 0.0 },
            disk_ticks_max: if on(rng, 0.3) { rng.random_range(2..20) } else { 1 },
            skew: if on(rng, 0.5) { rng.random_range(0.0..0.3) } else { 0.0 },
            snapshot: choose_snapshot_policy(rng),
            snapshot_ticks_max: rng.random_range(1..40),
            snapshot_crash: if on(rng, 0.4) { rng.random_range(0.0..0.01) } else { 0.0 },
            snapshot_chunk_bytes: rng.random_range(16..2048),
            wipe: if wipe_rng.random_bool(0.4) { wipe_rng.random_range(0.05..0.5) } else { 0.0 },
        }
    }

    /// The same cluster with every fault off (the liveness phase).
    pub fn healed(&self) -> Self {
        FaultPlan {
            loss: 0.0,
            duplicate: 0.0,
            delay_ticks_max: 1,
            crash: 0.0,
            partition: 0.0,
            client_cut: 0.0,
            client_crash: 0.0,
            disk_ticks_max: 1,
            snapshot_crash: 0.0,
            wipe: 0.0,
            ..self.clone()
        }
    }
}

/// The snapshot policy of one run: in 15% of runs the default, else a
/// snapshot every 3 to 60 slots (and, in some runs, every few kilobytes of
/// commands), keeping 0 to 30 slots of log below it.
fn choose_snapshot_policy(rng: &mut ChaCha8Rng) -> SnapshotPolicy {
    if rng.random_bool(0.15) {
        return SnapshotPolicy::default();
    }
    let every_bytes =
        if rng.random_bool(0.2) { rng.random_range(500..20_000) } else { chorus_limits::SNAPSHOT_EVERY_BYTES_DEFAULT };
    SnapshotPolicy { every_slots: rng.random_range(3..=60), every_bytes, retained_slots: rng.random_range(0..=30) }
}

/// A cut in the replica network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// One replica can neither send nor receive.
    Isolate(usize),
    /// The replicas in the set talk only among themselves.
    Split(Vec<usize>),
    /// Messages from `from` to `to` are lost (the other direction works).
    OneWay { from: usize, to: usize },
}

impl Partition {
    /// True when a message from `from` to `to` is cut.
    pub fn cuts(&self, from: usize, to: usize) -> bool {
        match self {
            Partition::Isolate(r) => from == *r || to == *r,
            Partition::Split(side) => side.contains(&from) != side.contains(&to),
            Partition::OneWay { from: f, to: t } => from == *f && to == *t,
        }
    }

    /// A random partition of `replicas`; `leader` (if known) is a favourite target.
    pub fn choose(rng: &mut ChaCha8Rng, replicas: usize, leader: Option<usize>) -> Self {
        let target = match leader {
            Some(l) if rng.random_bool(0.5) => l,
            _ => rng.random_range(0..replicas),
        };
        match rng.random_range(0..3) {
            0 => Partition::Isolate(target),
            1 => {
                let mut side: Vec<usize> = (0..replicas).filter(|_| rng.random_bool(0.5)).collect();
                if side.is_empty() {
                    side.push(target);
                }
                Partition::Split(side)
            }
            _ => {
                let mut to = rng.random_range(0..replicas);
                if to == target {
                    to = (to + 1) % replicas;
                }
                Partition::OneWay { from: target, to }
            }
        }
    }
}
