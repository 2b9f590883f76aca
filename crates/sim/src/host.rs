//! One simulated replica process: the real [`Machine`] over a simulated
//! disk, with its own tick rate (clock skew) and crash/restart, and the
//! snapshot work the runtime does on its own threads: writing the
//! machine's snapshots, fetching a peer's ([`Fetch`]), handing a
//! fetched one to the machine, and hashing or checking passwords.

use crate::disk::Disk;
use chorus_chat::ChatState;
use chorus_paxos::{Config, Replica, ReplicaId, Slot, SnapshotWanted};
use chorus_proto::Transfer;
use chorus_server::machine::{Machine, Outbox, SnapshotJob, SnapshotPolicy};
use chorus_server::passwords::{self, HashCost, PasswordJob};
use chorus_server::snapshotting::{load_newest, read_state};
use chorus_server::transfer::{Fetch, FetchStep};
use chorus_store::{MemBlobs, Snapshots};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::io::Write;

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
    /// When the machine takes snapshots.
    policy: SnapshotPolicy,
    /// The snapshot being written, with the tick the write completes.
    pub snapshot_write: Option<(u64, SnapshotJob)>,
    /// The snapshot transfer into this replica, while one runs.
    pub fetch: Option<Fetch>,
    /// A fetched snapshot, decoded, with the tick it reaches the machine.
    pub install: Option<(u64, Slot, ChatState)>,
    /// Password jobs on the runtime's threads, with the tick each ends.
    pub password_jobs: Vec<(u64, PasswordJob)>,
}

/// Password hashes in the simulator are argon2id at the smallest cost a
/// replica accepts: the same code, cheap enough for thousands of runs.
const SIM_HASH_COST: HashCost = HashCost { memory_kib: chorus_limits::PASSWORD_HASH_MEMORY_KIB_MIN };

/// What a host loaded when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// Slot of the snapshot it loaded (0: none).
    pub snapshot_slot: Slot,
    /// Digest of the state it starts with.
    pub digest: u64,
    /// The snapshot is past the log's durable chosen prefix, so the core
    /// installed it at start (a crash came before the log caught up).
    pub past_log: bool,
    /// Half-written snapshot files (left by a crash) removed on opening.
    pub half_written: usize,
}

impl Host {
    pub fn new(id: u8, replicas: usize, seed: u64, rate: f64, policy: SnapshotPolicy, rng: &mut ChaCha8Rng) -> Self {
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
            policy,
            snapshot_write: None,
            fetch: None,
            install: None,
            password_jobs: Vec::new(),
        };
        host.start(rng).expect("an empty disk starts");
        host
    }

    /// Boots as the runtime does: the disk's durable log, the newest
    /// intact snapshot that covers it, and the chosen log after it. An
    /// error means the disk cannot be started from.
    pub fn start(&mut self, rng: &mut ChaCha8Rng) -> Result<Started, String> {
        assert!(self.machine.is_none(), "starting a running replica");
        let half_written = self.disk.reopen_snapshots().map_err(|error| error.to_string())?;
        let durable = self.disk.load();
        let chosen_through = durable.chosen_through;
        let (slot, chat) =
            load_newest(&mut self.disk.snapshots, durable.compacted_through).map_err(|error| format!("{error:#}"))?;
        let started =
            Started { snapshot_slot: slot, digest: chat.digest(), past_log: slot > chosen_through, half_written };
        let ids = (0..self.replicas as u8).collect();
        let seed = self.seed ^ (self.incarnation << 32) ^ u64::from(self.id);
        let replica = Replica::new(Config::new(self.id, ids, seed), durable, slot);
        let mut machine = Machine::new(replica, rng.random())
            .with_snapshot(slot, chat)
            .with_snapshot_policy(self.policy)
            .with_room_history(room_history(self.seed));
        machine.record_applied();
        self.machine = Some(machine);
        Ok(started)
    }

    /// kill -9: memory is lost, and every pending write after the first
    /// `survivors`. A snapshot write in progress is cut short, a fetch
    /// stops, and a fetched snapshot not yet handed over stays on disk.
    pub fn crash(&mut self, survivors: usize, rng: &mut ChaCha8Rng) {
        self.machine = None;
        if let Some((_, job)) = self.snapshot_write.take() {
            self.interrupt_snapshot_write(&job, rng);
        }
        self.fetch = None;
        self.install = None;
        self.password_jobs.clear();
        self.disk.crash(survivors);
        self.incarnation += 1;
    }

    /// Runs the password jobs due at `now` and reports them to the machine
    /// (with the replica clock `now_millis`); returns how many ran.
    pub fn finish_password_jobs(
        &mut self,
        now: u64,
        now_millis: u64,
        rng: &mut ChaCha8Rng,
        out: &mut impl Outbox,
    ) -> usize {
        let (due, later): (Vec<_>, Vec<_>) = self.password_jobs.drain(..).partition(|(at, _)| *at <= now);
        self.password_jobs = later;
        let Some(machine) = self.machine.as_mut() else { return 0 };
        for (_, job) in &due {
            let outcome = passwords::run(&job.work, SIM_HASH_COST, rng.random());
            machine.password_done(job.id, outcome, now_millis, out);
        }
        due.len()
    }

    /// A crash during a snapshot write. Usually it leaves a partial `.tmp`
    /// file (a random prefix of the encoding, never finished), which the
    /// next start removes; sometimes the write had finished and only the
    /// report to the machine was lost. The machine never hears either way.
    fn interrupt_snapshot_write(&mut self, job: &SnapshotJob, rng: &mut ChaCha8Rng) {
        if rng.random_bool(0.25) {
            let _ = write_snapshot(&mut self.disk.snapshots, job);
            return;
        }
        let encoded = job.state.to_snapshot();
        let prefix = rng.random_range(0..=encoded.len());
        if let Ok(mut writer) = self.disk.snapshots.writer(job.slot) {
            let _ = writer.write_all(&encoded[..prefix]);
        } // dropped without `finish`
    }

    pub fn is_up(&self) -> bool {
        self.machine.is_some()
    }

    /// True while a snapshot write, fetch or hand-over is in progress.
    pub fn snapshot_busy(&self) -> bool {
        self.snapshot_write.is_some() || self.fetch.is_some() || self.install.is_some()
    }

    /// Core ticks due this simulated tick.
    pub fn ticks_due(&mut self) -> u32 {
        self.owed += self.rate;
        let due = self.owed.floor();
        self.owed -= due;
        due as u32
    }

    /// Queues the machine's snapshot job, to be written at tick `done_at`.
    pub fn begin_snapshot_write(&mut self, job: SnapshotJob, done_at: u64) {
        assert!(self.snapshot_write.is_none(), "the machine runs one snapshot write at a time");
        self.snapshot_write = Some((done_at, job));
    }

    /// Writes the pending snapshot if it is due at `now` and reports it to
    /// the machine (which compacts its log); returns the result.
    pub fn finish_snapshot_write(&mut self, now: u64) -> Option<Result<Slot, String>> {
        if self.snapshot_write.as_ref().is_none_or(|(at, _)| *at > now) {
            return None;
        }
        let (_, job) = self.snapshot_write.take()?;
        let result = write_snapshot(&mut self.disk.snapshots, &job).map(|()| job.slot);
        self.machine.as_mut()?.snapshot_written(result.clone());
        Some(result)
    }

    /// Starts the fetch the machine asked for; returns the first request,
    /// for the peer the fetch pulls from.
    pub fn start_fetch(&mut self, wanted: SnapshotWanted) -> Result<Transfer, String> {
        assert!(self.fetch.is_none(), "the machine runs one fetch at a time");
        let (fetch, first) = Fetch::start(wanted, &mut self.disk.snapshots).map_err(|error| error.to_string())?;
        self.fetch = Some(fetch);
        Ok(first)
    }

    /// The peer the running fetch pulls from.
    pub fn fetching_from(&self) -> Option<ReplicaId> {
        self.fetch.as_ref().map(Fetch::from)
    }

    /// Feeds an answer from peer `from` to the running fetch; answers from
    /// any other peer are dropped, as the runtime drops them.
    pub fn fetch_answer(&mut self, from: ReplicaId, message: Transfer) -> Option<FetchStep> {
        let fetch = self.fetch.as_mut().filter(|fetch| fetch.from() == from)?;
        Some(fetch.on_message(message, &mut self.disk.snapshots))
    }

    /// One core tick for the running fetch.
    pub fn fetch_tick(&mut self) -> Option<FetchStep> {
        Some(self.fetch.as_mut()?.on_tick())
    }

    /// The fetch is done: snapshot `slot` is complete and verified on disk.
    /// Decodes it, as the runtime's fetch thread does, to hand it to the
    /// machine at tick `install_at`.
    pub fn fetched(&mut self, slot: Slot, install_at: u64) -> Result<(), String> {
        self.fetch = None;
        let chat = read_state(&self.disk.snapshots, slot).map_err(|error| format!("{error:#}"))?;
        self.install = Some((install_at, slot, chat));
        Ok(())
    }

    /// The fetch gave up: tells the machine, which asks again later.
    pub fn fetch_failed(&mut self, reason: String, out: &mut impl Outbox) {
        self.fetch = None;
        if let Some(machine) = self.machine.as_mut() {
            machine.snapshot_fetched(Err(reason), out);
        }
    }

    /// Hands the fetched snapshot to the machine if it is due at `now`.
    /// Returns its slot and whether the machine installed it (it does not
    /// when its log caught up meanwhile).
    pub fn finish_install(&mut self, now: u64, out: &mut impl Outbox) -> Option<(Slot, bool)> {
        if self.install.as_ref().is_none_or(|(at, _, _)| *at > now) {
            return None;
        }
        let (_, slot, chat) = self.install.take()?;
        let machine = self.machine.as_mut()?;
        let before = machine.replica().status().applied_through;
        machine.snapshot_fetched(Ok((slot, chat)), out);
        let installed = machine.replica().status().applied_through != before;
        assert!(!installed || machine.replica().status().applied_through == slot, "an install lands on its slot");
        Some((slot, installed))
    }
}

/// Writes `job` durably and removes snapshots older than the previous
/// one, as the runtime's snapshot thread does.
pub fn write_snapshot(snapshots: &mut Snapshots<MemBlobs>, job: &SnapshotJob) -> Result<(), String> {
    let text = |error: &dyn std::fmt::Display| format!("snapshot {}: {error}", job.slot);
    let previous = snapshots.newest().map_err(|e| text(&e))?.map_or(0, |info| info.slot);
    let mut writer = snapshots.writer(job.slot).map_err(|e| text(&e))?;
    job.state.write_snapshot(&mut writer).map_err(|e| text(&e))?;
    writer.finish().map_err(|e| text(&e))?;
    snapshots.prune(previous.min(job.slot)).map_err(|e| text(&e))
}

/// The room history bounds of a run: in every third seed (by number, so
/// other seeds replay as before) so small that rooms drop messages and
/// members behind get gap notices; the defaults otherwise.
fn room_history(seed: u64) -> Option<chorus_chat::HistoryBounds> {
    let bytes = chorus_limits::ROOM_HISTORY_BYTES_MIN as u32;
    seed.is_multiple_of(3).then_some(chorus_chat::HistoryBounds { messages: 4, bytes })
}
