//! The seeded fault schedule ([`Plan`]) and how each [`Fault`] is injected
//! into and healed from a [`ChaosCluster`].
//!
//! Faults come one at a time: inject, hold, heal, a quiet gap, the next.
//! Which replica a fault hits is decided when it is injected (the leader
//! is whoever leads then), from a number the seed fixed in advance, so one
//! seed always gives the same sequence of fault kinds, holds and choices.
//! Timing against the real processes is not reproducible; the schedule is.

use crate::cluster::{ids, ChaosCluster, REFUSED, STALLED};
use crate::proxy::{Faults, Flow};
use chorus_paxos::{ReplicaId, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Longest wait for a leader when a fault aims at it.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for every replica to be up and done rebuilding before a wipe.
const REBUILT_WAIT: Duration = Duration::from_secs(20);

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `kill -9` of the leader, restarted after the hold.
    KillLeader,
    /// `kill -9` of any replica, restarted after the hold.
    KillAny,
    /// `kill -9` of a majority (the leader among them), all restarted.
    KillMajority,
    /// `SIGSTOP` of the leader for longer than an election timeout.
    PauseLeader,
    /// `SIGSTOP` of any replica.
    PauseAny,
    /// The leader cut off from every peer, both ways.
    IsolateLeader,
    /// A minority cut off from the majority, both ways.
    Split,
    /// One replica can hear its peers but not reach them, or the reverse.
    OneWay,
    /// Every byte on some replica links delayed.
    Delay,
    /// Connections on replica links reset again and again.
    Flaky,
    /// Clients cut off from one replica (the leader, half the time).
    ClientCut,
    /// No file of one replica may grow: writes that need space fail.
    DiskFull,
    /// `kill -9`, data directory deleted, restarted empty: it must rebuild.
    Wipe,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 13] = [
        Kind::KillLeader,
        Kind::KillAny,
        Kind::KillMajority,
        Kind::PauseLeader,
        Kind::PauseAny,
        Kind::IsolateLeader,
        Kind::Split,
        Kind::OneWay,
        Kind::Delay,
        Kind::Flaky,
        Kind::ClientCut,
        Kind::DiskFull,
        Kind::Wipe,
    ];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::KillLeader => "kill-leader",
            Kind::KillAny => "kill-any",
            Kind::KillMajority => "kill-majority",
            Kind::PauseLeader => "pause-leader",
            Kind::PauseAny => "pause-any",
            Kind::IsolateLeader => "isolate-leader",
            Kind::Split => "split",
            Kind::OneWay => "one-way",
            Kind::Delay => "delay",
            Kind::Flaky => "flaky",
            Kind::ClientCut => "client-cut",
            Kind::DiskFull => "disk-full",
            Kind::Wipe => "wipe",
        }
    }

    /// The kind called `name` in reports.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Shortest and longest hold.
    fn hold_millis(self) -> (u64, u64) {
        match self {
            Kind::KillLeader | Kind::KillAny => (300, 4_000),
            Kind::KillMajority => (500, 3_000),
            Kind::PauseLeader | Kind::PauseAny => (500, 3_000),
            Kind::IsolateLeader | Kind::Split | Kind::OneWay | Kind::ClientCut => (1_000, 5_000),
            Kind::Delay | Kind::Flaky | Kind::DiskFull => (2_000, 6_000),
            Kind::Wipe => (0, 0),
        }
    }
}

/// One planned fault: its kind, how long it holds, the quiet gap after it,
/// and seeded numbers for every choice it makes when injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: Kind,
    pub hold: Duration,
    pub quiet: Duration,
    /// Picks victims and variants.
    pub choice: u64,
}

/// The whole schedule of one run, from its seed.
#[derive(Clone, Debug)]
pub struct Plan {
    pub faults: Vec<Fault>,
}

impl Plan {
    /// Faults of the given kinds (every kind when `kinds` is empty), more
    /// than enough to fill `seconds`; a plan is a prefix of any longer
    /// plan of the same seed. With every kind, the first three are always a
    /// leader kill, a partition isolating the leader and a leader pause, so
    /// even the shortest run has each of them.
    pub fn new(seed: u64, seconds: u64, kinds: &[Kind]) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (kinds, opening): (&[Kind], &[Kind]) = match kinds {
            [] => (&Kind::ALL, &[Kind::KillLeader, Kind::IsolateLeader, Kind::PauseLeader]),
            some => (some, &[]),
        };
        let mut faults: Vec<Fault> = opening.iter().map(|&kind| Fault::random(kind, &mut rng)).collect();
        // Twice the time the holds and gaps add up to: injecting and healing
        // take time too, and the run stops the plan when its time is up.
        let mut planned: u64 = faults.iter().map(|f| (f.hold + f.quiet).as_secs()).sum();
        while planned < 2 * seconds {
            let kind = kinds[rng.random_range(0..kinds.len())];
            let fault = Fault::random(kind, &mut rng);
            planned += (fault.hold + fault.quiet).as_secs();
            faults.push(fault);
        }
        Plan { faults }
    }
}

impl Fault {
    fn random(kind: Kind, rng: &mut ChaCha8Rng) -> Fault {
        let (low, high) = kind.hold_millis();
        Fault {
            kind,
            hold: Duration::from_millis(rng.random_range(low..=high)),
            quiet: Duration::from_millis(rng.random_range(1_000..=3_000)),
            choice: rng.random(),
        }
    }
}

/// What an injected fault did, for healing it and for the report.
#[derive(Clone, Debug)]
pub struct Injected {
    pub fault: Fault,
    /// The replicas it hit.
    pub victims: Vec<ReplicaId>,
    /// A fault aimed at the leader found none and hit `victims` instead.
    pub no_leader: bool,
    /// A human line: what was done.
    pub summary: String,
}

/// Applies `fault` to the cluster.
pub async fn inject(cluster: &mut ChaosCluster, fault: Fault) -> anyhow::Result<Injected> {
    let mut rng = ChaCha8Rng::seed_from_u64(fault.choice);
    let n = cluster.size();
    let leader = if aims_at_leader(fault.kind) { wait_for_leader(cluster).await } else { None };
    let any: ReplicaId = rng.random_range(0..n).try_into().expect("few replicas");
    let target = leader.unwrap_or(any);
    let no_leader = aims_at_leader(fault.kind) && leader.is_none();
    let (victims, summary) = match fault.kind {
        Kind::KillLeader | Kind::KillAny => {
            cluster.kill(target).await;
            (vec![target], format!("kill -9 replica {target}"))
        }
        Kind::KillMajority => kill_majority(cluster, target, &mut rng).await,
        Kind::PauseLeader | Kind::PauseAny => {
            cluster.pause(target, true);
            (vec![target], format!("SIGSTOP replica {target}"))
        }
        Kind::IsolateLeader => isolate(cluster, target, &mut rng),
        Kind::Split => split(cluster, target, &mut rng),
        Kind::OneWay => one_way(cluster, target, &mut rng),
        Kind::Delay => delay(cluster, &mut rng),
        Kind::Flaky => (Vec::new(), "resetting replica links at random".to_string()),
        Kind::ClientCut => client_cut(cluster, target, &mut rng),
        Kind::DiskFull => {
            cluster.limit_disk(target, true)?;
            (vec![target], format!("replica {target}'s files may not grow"))
        }
        Kind::Wipe => wipe(cluster, target).await?,
    };
    Ok(Injected { fault, victims, no_leader, summary })
}

/// Holds the fault for its duration (resetting links meanwhile if flaky).
pub async fn hold(cluster: &ChaosCluster, injected: &Injected) {
    let deadline = tokio::time::Instant::now() + injected.fault.hold;
    if injected.fault.kind != Kind::Flaky {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(injected.fault.choice ^ 0x5eed);
    let n = cluster.size();
    while tokio::time::Instant::now() < deadline {
        let from: ReplicaId = rng.random_range(0..n).try_into().expect("few replicas");
        let to: ReplicaId = ((usize::from(from) + rng.random_range(1..n)) % n).try_into().expect("few replicas");
        cluster.link(from, to).reset_connections();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
    }
}

/// Undoes the fault: heals the network, resumes paused replicas, lifts the
/// disk limit and restarts every replica whose process is not running.
/// Returns the replicas restarted.
pub async fn heal(cluster: &mut ChaosCluster, injected: &Injected) -> anyhow::Result<Vec<ReplicaId>> {
    cluster.heal_network();
    if injected.fault.kind == Kind::DiskFull {
        for &id in &injected.victims {
            cluster.limit_disk(id, false)?;
        }
    }
    let mut restarted = Vec::new();
    for id in ids(cluster.size()) {
        if cluster.restart(id)? {
            restarted.push(id);
        }
    }
    Ok(restarted)
}

/// Loses one replica's disk, but only when every replica answers and none
/// is still rebuilding: more lost disks at once than `n - quorum` is
/// outside what any replicated system survives (and the rule that makes
/// a wiped replica safe waits for that many intact peers).
async fn wipe(cluster: &mut ChaosCluster, target: ReplicaId) -> anyhow::Result<(Vec<ReplicaId>, String)> {
    let deadline = tokio::time::Instant::now() + REBUILT_WAIT;
    while !all_intact(cluster).await {
        if tokio::time::Instant::now() >= deadline {
            return Ok((Vec::new(), "no wipe: a replica is down or still rebuilding".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wipe(target).await?;
    cluster.restart(target)?;
    Ok((vec![target], format!("replica {target}'s disk lost (kill -9, data deleted, restarted empty)")))
}

/// Every replica answers and none is rebuilding.
async fn all_intact(cluster: &ChaosCluster) -> bool {
    cluster.statuses().await.iter().all(|s| s.as_ref().is_some_and(|s| s.role != Role::Recovering))
}

fn aims_at_leader(kind: Kind) -> bool {
    matches!(kind, Kind::KillLeader | Kind::PauseLeader | Kind::IsolateLeader | Kind::KillMajority)
}

async fn wait_for_leader(cluster: &ChaosCluster) -> Option<ReplicaId> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        if let Some(leader) = cluster.leader().await {
            return Some(leader);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` distinct replicas, `first` among them.
fn pick(n: usize, first: ReplicaId, count: usize, rng: &mut ChaCha8Rng) -> Vec<ReplicaId> {
    let mut others: Vec<ReplicaId> = ids(n).filter(|&id| id != first).collect();
    let mut chosen = vec![first];
    while chosen.len() < count && !others.is_empty() {
        chosen.push(others.swap_remove(rng.random_range(0..others.len())));
    }
    chosen
}

async fn kill_majority(
    cluster: &mut ChaosCluster,
    leader: ReplicaId,
    rng: &mut ChaCha8Rng,
) -> (Vec<ReplicaId>, String) {
    let victims = pick(cluster.size(), leader, cluster.quorum(), rng);
    for &id in &victims {
        cluster.kill(id).await;
    }
    let summary = format!("kill -9 replicas {victims:?}");
    (victims, summary)
}

/// A black hole half the time, reset connections the other half.
fn cut_style(rng: &mut ChaCha8Rng) -> (Faults, &'static str) {
    if rng.random_bool(0.5) {
        (STALLED, "black hole")
    } else {
        (REFUSED, "connections reset")
    }
}

fn isolate(cluster: &ChaosCluster, target: ReplicaId, rng: &mut ChaCha8Rng) -> (Vec<ReplicaId>, String) {
    let (faults, style) = cut_style(rng);
    let others: Vec<ReplicaId> = ids(cluster.size()).filter(|&id| id != target).collect();
    cluster.cut(&[target], &others, faults);
    (vec![target], format!("replica {target} cut from its peers ({style})"))
}

fn split(cluster: &ChaosCluster, target: ReplicaId, rng: &mut ChaCha8Rng) -> (Vec<ReplicaId>, String) {
    let n = cluster.size();
    let minority = pick(n, target, rng.random_range(1..=n - cluster.quorum()), rng);
    let majority: Vec<ReplicaId> = ids(n).filter(|id| !minority.contains(id)).collect();
    let (faults, style) = cut_style(rng);
    cluster.cut(&minority, &majority, faults);
    let summary = format!("split {minority:?} | {majority:?} ({style})");
    (minority, summary)
}

fn one_way(cluster: &ChaosCluster, target: ReplicaId, rng: &mut ChaCha8Rng) -> (Vec<ReplicaId>, String) {
    let mute = rng.random_bool(0.5);
    for other in ids(cluster.size()).filter(|&id| id != target) {
        let (from, to) = if mute { (target, other) } else { (other, target) };
        cluster.link(from, to).set(STALLED);
    }
    let what = if mute { "hears its peers but cannot reach them" } else { "reaches its peers but cannot hear them" };
    (vec![target], format!("replica {target} {what}"))
}

fn delay(cluster: &ChaosCluster, rng: &mut ChaCha8Rng) -> (Vec<ReplicaId>, String) {
    let mut delayed = 0;
    for from in ids(cluster.size()) {
        for to in ids(cluster.size()).filter(|&to| to != from) {
            if rng.random_bool(0.5) {
                let flow = Flow::Delay(Duration::from_millis(rng.random_range(5..150)));
                cluster.link(from, to).set(Faults { to_target: flow, from_target: flow, refuse: false });
                delayed += 1;
            }
        }
    }
    (Vec::new(), format!("{delayed} replica links delayed by 5-150 ms"))
}

fn client_cut(cluster: &ChaosCluster, target: ReplicaId, rng: &mut ChaCha8Rng) -> (Vec<ReplicaId>, String) {
    let (faults, style) = cut_style(rng);
    cluster.client_proxy(target).set(faults);
    (vec![target], format!("clients cut from replica {target} ({style})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_plan_and_every_plan_opens_with_kill_partition_pause() {
        let a = Plan::new(42, 60, &[]);
        assert_eq!(a.faults, Plan::new(42, 60, &[]).faults);
        assert_ne!(a.faults, Plan::new(43, 60, &[]).faults);
        let opening: Vec<Kind> = a.faults.iter().take(3).map(|f| f.kind).collect();
        assert_eq!(opening, [Kind::KillLeader, Kind::IsolateLeader, Kind::PauseLeader]);
    }

    #[test]
    fn a_plan_can_be_limited_to_some_kinds() {
        let plan = Plan::new(3, 120, &[Kind::Wipe, Kind::DiskFull]);
        assert!(plan.faults.iter().all(|f| matches!(f.kind, Kind::Wipe | Kind::DiskFull)));
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn a_long_plan_has_every_kind() {
        let plan = Plan::new(7, 1_800, &[]);
        for kind in Kind::ALL {
            assert!(plan.faults.iter().any(|f| f.kind == kind), "{kind:?} missing");
        }
    }

    #[test]
    fn picks_are_distinct_and_start_with_the_first() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..100 {
            let chosen = pick(5, 3, 3, &mut rng);
            assert_eq!(chosen[0], 3);
            let mut sorted = chosen.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 3);
        }
    }
}
