//! Randomized whole-cluster runs of the real core on a toy network:
//! messages are delayed, reordered, dropped and duplicated; replicas crash
//! and lose unsynced writes; replicas take snapshots of what they applied
//! at random points, compact their logs, and install peers' snapshots when
//! they fall behind a compacted prefix; a restarting replica sometimes
//! comes back with an empty disk and must rebuild before it votes. Checks that no two replicas ever
//! choose different values for a slot and that the cluster makes progress
//! once healed. (The full simulator with the chat layer is the `sim` crate.)

use chorus_paxos::{Config, DurableState, Envelope, Event, Ready, Replica, Slot, Value, WriteBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

struct Node {
    replica: Option<Replica>,
    durable: DurableState,
    /// Handed out but not yet durable.
    unsynced: Vec<WriteBatch>,
    applied: Vec<(Slot, Value)>,
    /// The durable snapshot: everything applied through its last slot.
    snapshot: Vec<(Slot, Value)>,
}

struct World {
    rng: ChaCha8Rng,
    nodes: Vec<Node>,
    network: Vec<(u64, Envelope)>,
    now: u64,
    chosen: BTreeMap<Slot, Value>,
    loss: f64,
    proposed: u64,
    seed: u64,
    /// Snapshots installed from peers during the run.
    installs: u64,
    /// Disks wiped during the run.
    wipes: u64,
    /// Whether a wiped replica comes back marked as rebuilding (the rule)
    /// or as a blank founding member (the unsafe behaviour the rule fixes).
    wipe_safely: bool,
}

impl World {
    fn new(seed: u64, n: u8) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let loss = if rng.random_bool(0.5) { rng.random_range(0.0..0.3) } else { 0.0 };
        let nodes = (0..n)
            .map(|id| Node {
                replica: Some(Replica::new(Self::config(seed, n, id), DurableState::default(), 0)),
                durable: DurableState::default(),
                unsynced: Vec::new(),
                applied: Vec::new(),
                snapshot: Vec::new(),
            })
            .collect();
        let chosen = BTreeMap::new();
        World {
            rng,
            nodes,
            network: Vec::new(),
            now: 0,
            chosen,
            loss,
            proposed: 0,
            seed,
            installs: 0,
            wipes: 0,
            wipe_safely: true,
        }
    }

    fn config(seed: u64, n: u8, id: u8) -> Config {
        Config::new(id, (0..n).collect(), seed)
    }

    fn drain(&mut self, id: usize) {
        let Some(replica) = self.nodes[id].replica.as_mut() else {
            return;
        };
        let ready: Ready = replica.ready();
        let node = &mut self.nodes[id];
        if let Some(write) = ready.write {
            node.unsynced.push(write);
        }
        for (slot, value) in ready.committed {
            let expected = node.applied.len() as u64 + 1;
            assert_eq!(slot, expected, "seed {}: replica {id} applied out of order", self.seed);
            match self.chosen.get(&slot) {
                Some(v) => assert_eq!(v, &value, "seed {}: slot {slot} chose two values", self.seed),
                None => {
                    self.chosen.insert(slot, value.clone());
                }
            }
            node.applied.push((slot, value));
        }
        if let Some(wanted) = ready.snapshot_wanted {
            self.install_from(id, wanted.from as usize, wanted.covering);
        }
        for message in ready.messages {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let copies = if self.rng.random_bool(0.02) { 2 } else { 1 };
            for _ in 0..copies {
                let at = self.now + self.rng.random_range(1..6);
                self.network.push((at, message.clone()));
            }
        }
    }

    /// Copies `from`'s snapshot to `id` when it covers `covering`.
    fn install_from(&mut self, id: usize, from: usize, covering: Slot) {
        let snapshot = self.nodes[from].snapshot.clone();
        if (snapshot.len() as u64) < covering {
            return; // the next catch-up request asks again
        }
        for (slot, value) in &snapshot {
            assert_eq!(self.chosen.get(slot), Some(value), "seed {}: snapshot disagrees at {slot}", self.seed);
        }
        let node = &mut self.nodes[id];
        let replica = node.replica.as_mut().expect("only a live replica wants a snapshot");
        if replica.install_snapshot(snapshot.len() as u64) {
            self.installs += 1;
            node.applied = snapshot.clone();
            node.snapshot = snapshot;
        }
    }

    /// Snapshots what `id` applied and compacts its log, keeping a random tail.
    fn snapshot(&mut self, id: usize) {
        let keep = self.rng.random_range(0..20);
        let node = &mut self.nodes[id];
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        node.snapshot = node.applied.clone();
        replica.compact((node.snapshot.len() as u64).saturating_sub(keep));
    }

    fn sync(&mut self, id: usize) {
        let node = &mut self.nodes[id];
        let Some(replica) = node.replica.as_mut() else {
            return;
        };
        let Some(last) = node.unsynced.last().map(|w| w.id) else {
            return;
        };
        for batch in node.unsynced.drain(..) {
            node.durable.apply(&batch);
        }
        replica.step(Event::Persisted(last));
    }

    fn crash(&mut self, id: usize) {
        let node = &mut self.nodes[id];
        node.replica = None;
        node.unsynced.clear();
    }

    /// Replicas that lost their disk and have not finished rebuilding.
    fn rebuilding(&self) -> usize {
        self.nodes.iter().filter(|node| node.durable.recovering).count()
    }

    /// The disk is replaced by an empty one: log, promise, snapshot, all gone.
    fn wipe(&mut self, id: usize) {
        let node = &mut self.nodes[id];
        node.durable = DurableState { recovering: self.wipe_safely, ..DurableState::default() };
        node.snapshot.clear();
        self.wipes += 1;
    }

    fn restart(&mut self, id: usize) {
        let n = self.nodes.len() as u8;
        let minority = self.nodes.len() / 2;
        if n > 1 && self.rebuilding() < minority && self.rng.random_bool(0.15) {
            self.wipe(id);
        }
        let node = &mut self.nodes[id];
        node.applied = node.snapshot.clone();
        let config = Self::config(self.seed ^ self.now, n, id as u8);
        let applied = node.applied.len() as u64;
        node.replica = Some(Replica::new(config, node.durable.clone(), applied));
    }

    fn step(&mut self, faults: bool) {
        self.now += 1;
        let n = self.nodes.len();
        for id in 0..n {
            if let Some(r) = self.nodes[id].replica.as_mut() {
                r.step(Event::Tick);
                if self.rng.random_bool(0.3) {
                    let command = self.proposed.to_le_bytes().to_vec();
                    if r.propose(command).is_ok() {
                        self.proposed += 1;
                    }
                }
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = self.network.drain(..).partition(|(at, _)| *at <= self.now);
        self.network = later;
        let mut due = due;
        // reorder deliveries
        for i in (1..due.len()).rev() {
            let j = self.rng.random_range(0..=i);
            due.swap(i, j);
        }
        for (_, envelope) in due {
            if let Some(r) = self.nodes[envelope.to as usize].replica.as_mut() {
                r.step(Event::Receive(envelope));
            }
        }
        for id in 0..n {
            self.drain(id);
            if self.rng.random_bool(0.25) {
                self.sync(id);
            }
            if self.rng.random_bool(0.01) {
                self.snapshot(id);
            }
        }
        if faults && self.rng.random_bool(0.03) {
            let id = self.rng.random_range(0..n);
            if self.nodes[id].replica.is_some() {
                self.crash(id);
            } else {
                self.restart(id);
            }
        }
    }

    fn heal(&mut self) {
        self.loss = 0.0;
        for id in 0..self.nodes.len() {
            if self.nodes[id].replica.is_none() {
                self.restart(id);
            }
        }
    }
}

/// Runs one seed; returns how many snapshots were installed from peers
/// and how many disks were wiped.
fn run(seed: u64, n: u8) -> (u64, u64) {
    run_with(seed, n, true)
}

fn run_with(seed: u64, n: u8, wipe_safely: bool) -> (u64, u64) {
    let mut world = World::new(seed, n);
    world.wipe_safely = wipe_safely;
    for _ in 0..3000 {
        world.step(true);
    }
    world.heal();
    let chosen_before = world.chosen.len();
    for _ in 0..2000 {
        world.step(false);
    }
    assert!(
        world.chosen.len() > chosen_before,
        "seed {seed}: no progress after healing ({} chosen)",
        world.chosen.len()
    );
    eprintln!(
        "seed {seed}: chosen {} proposed {} installs {} wipes {}",
        world.chosen.len(),
        world.proposed,
        world.installs,
        world.wipes
    );
    for (id, node) in world.nodes.iter().enumerate() {
        let role = node.replica.as_ref().map(|r| r.role());
        assert_ne!(role, Some(chorus_paxos::Role::Recovering), "seed {seed}: replica {id} never finished rebuilding");
    }
    // Every live replica applied the same prefix.
    let longest = world.nodes.iter().map(|n| n.applied.len()).max().unwrap_or(0);
    for (id, node) in world.nodes.iter().enumerate() {
        assert!(
            node.applied.len() + 64 >= longest,
            "seed {seed}: replica {id} stuck at {} of {longest}",
            node.applied.len()
        );
    }
    (world.installs, world.wipes)
}

#[test]
fn three_replicas_agree_under_faults() {
    let runs: Vec<(u64, u64)> = (0..40).map(|seed| run(seed, 3)).collect();
    assert!(runs.iter().any(|r| r.0 > 0), "no run installed a snapshot: the compaction path went untested");
    assert!(runs.iter().any(|r| r.1 > 0), "no run wiped a disk: the rebuilding path went untested");
}

/// The check can fail: a wiped replica that comes back as a blank voter
/// (what Chorus did before the rule) makes two values chosen for one slot
/// in some seed. Seeds found by running this test; each panics.
#[test]
fn a_wiped_replica_voting_at_once_breaks_agreement() {
    let mut broken = 0;
    for seed in 0..40 {
        let outcome = std::panic::catch_unwind(|| run_with(seed, 3, false));
        if outcome.is_err() {
            broken += 1;
        }
    }
    assert!(broken > 0, "40 seeds never caught a blank voter choosing a second value");
}

#[test]
fn five_replicas_agree_under_faults() {
    for seed in 100..120 {
        run(seed, 5);
    }
}

#[test]
fn single_replica_chooses_alone() {
    run(7, 1);
}

#[test]
#[ignore]
fn debug_seed() {
    let seed: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(25);
    let mut world = World::new(seed, 3);
    for _ in 0..3000 {
        world.step(true);
    }
    world.heal();
    for i in 0..2000 {
        world.step(false);
        if i % 400 == 0 {
            for node in &world.nodes {
                eprintln!("t{} {:?}", world.now, node.replica.as_ref().map(|r| r.status()));
            }
        }
    }
}

/// A longer sweep: `SEEDS=2000 cargo test -p chorus-paxos --release --test cluster sweep -- --ignored`.
#[test]
#[ignore]
fn sweep() {
    let count: u64 = std::env::var("SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    for seed in 1000..1000 + count {
        run(seed, if seed % 3 == 0 { 5 } else { 3 });
    }
}
