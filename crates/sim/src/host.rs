//! One simulated replica process: the real [`Machine`] over a simulated
//! disk, with its own tick rate (clock skew) and crash/restart.

use crate::disk::Disk;
use chorus_paxos::{Config, Replica};
use chorus_server::machine::Machine;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A replica process, running or crashed.
pub struct Host {
    pub id: u8,
    /// `None` while crashed.
    pub machine: Option<Machine>,
    pub disk: Disk,
    /// Core ticks per simulated tick (skew).
    rate: f64,
    /// Fractional ticks owed.
    owed: f64,
    /// Bumped on every crash.
    pub incarnation: u64,
    /// A crashed replica restarts at this tick.
    pub down_until: u64,
    replicas: usize,
    seed: u64,
}

impl Host {
    pub fn new(id: u8, replicas: usize, seed: u64, rate: f64, rng: &mut ChaCha8Rng) -> Self {
        let mut host = Host {
            id,
            machine: None,
            disk: Disk::default(),
            rate,
            owed: 0.0,
            incarnation: 0,
            down_until: 0,
            replicas,
            seed,
        };
        host.start(rng);
        host
    }

    /// Boots from the disk's durable state, with an empty state machine
    /// that replays the chosen log.
    pub fn start(&mut self, rng: &mut ChaCha8Rng) {
        assert!(self.machine.is_none(), "starting a running replica");
        let durable = self.disk.load();
        let ids = (0..self.replicas as u8).collect();
        let seed = self.seed ^ (self.incarnation << 32) ^ u64::from(self.id);
        let replica = Replica::new(Config::new(self.id, ids, seed), durable, 0);
        let mut machine = Machine::new(replica, rng.random());
        machine.record_applied();
        self.machine = Some(machine);
    }

    /// kill -9: memory is lost, and every pending write after the first
    /// `survivors`.
    pub fn crash(&mut self, survivors: usize) {
        self.machine = None;
        self.disk.crash(survivors);
        self.incarnation += 1;
    }

    pub fn is_up(&self) -> bool {
        self.machine.is_some()
    }

    /// Core ticks due this simulated tick.
    pub fn ticks_due(&mut self) -> u32 {
        self.owed += self.rate;
        let due = self.owed.floor();
        self.owed -= due;
        due as u32
    }
}
