//! One simulated run: replicas, clients, network, disks and checkers,
//! all driven by one seed. A fault phase, then a liveness phase that heals
//! everything and requires the cluster to converge and every message to be
//! delivered within a bound.

use crate::check::{Checks, Violation};
use crate::client::SimClient;
use crate::coverage::Coverage;
use crate::faults::{FaultPlan, Partition};
use crate::host::Host;
use crate::links::Links;
use crate::net::{Network, Packet};
use crate::trace::Trace;
use crate::Plant;
use chorus_paxos::{Envelope, Event, ReplicaId, Role, SnapshotWanted};
use chorus_proto::Transfer;
use chorus_server::machine::{Machine, SnapshotJob};
use chorus_server::transfer::{serve, FetchStep};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long each phase runs, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub fault_ticks: u64,
    /// The bound within which a healed cluster must converge.
    pub liveness_ticks: u64,
    pub plant: Option<Plant>,
    /// Replaces the seed's chance, in percent, that a restart finds its
    /// disk wiped (tests of the wipe paths raise it; `None`: the seed's).
    pub wipe_percent: Option<u8>,
}

impl Default for Options {
    fn default() -> Self {
        Options { fault_ticks: 3_000, liveness_ticks: 4_000, plant: None, wipe_percent: None }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub plan: FaultPlan,
    pub ticks: u64,
    /// Messages, client frames, disk completions and core ticks processed.
    pub events: u64,
    pub operations: usize,
    pub slots: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// How often each snapshot path was taken.
    pub coverage: Coverage,
}

/// A failing run: the broken invariant and the events that led to it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    /// The fault mix and snapshot policy the seed chose.
    pub plan: Box<FaultPlan>,
    pub tick: u64,
    pub violation: Violation,
    pub trace: String,
}

pub struct World {
    seed: u64,
    rng: ChaCha8Rng,
    /// Disk wipe decisions, apart from `rng` (see [`crate::faults`]).
    wipe_rng: ChaCha8Rng,
    plan: FaultPlan,
    options: Options,
    now: u64,
    hosts: Vec<Host>,
    net: Network,
    links: Links,
    clients: Vec<SimClient>,
    /// Client cuts and the tick each ends.
    client_cuts: Vec<((usize, usize), u64)>,
    checks: Checks,
    trace: Trace,
    roles: Vec<Option<Role>>,
    report: Report,
    /// The tick the liveness phase began.
    healed_at: Option<u64>,
}

/// Ticks after healing within which an operation may still give up (it
/// may have been invoked long before).
const LIVENESS_GRACE_TICKS: u64 = crate::client::OPERATION_TICKS;

/// The ChaCha stream that decides disk wipes (the main one is stream 0).
const WIPE_STREAM: u64 = 1;

impl World {
    pub fn new(seed: u64, options: Options) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut wipe_rng = ChaCha8Rng::seed_from_u64(seed);
        wipe_rng.set_stream(WIPE_STREAM);
        let mut plan = FaultPlan::choose(&mut rng, &mut wipe_rng);
        if let Some(percent) = options.wipe_percent {
            plan.wipe = f64::from(percent.min(100)) / 100.0;
        }
        let hosts = (0..plan.replicas)
            .map(|id| {
                let rate = 1.0 + rng.random_range(-plan.skew..=plan.skew);
                Host::new(id as u8, plan.replicas, seed, rate, plan.snapshot, &mut rng)
            })
            .collect();
        let mut clients: Vec<SimClient> =
            (0..plan.clients).map(|i| SimClient::new(i, plan.replicas, &mut rng)).collect();
        if options.plant == Some(Plant::AckBeforeShown) {
            clients.iter_mut().for_each(|c| c.ack_before_shown = true);
        }
        let links = Links::new(plan.replicas);
        let report = Report {
            seed,
            plan: plan.clone(),
            ticks: 0,
            events: 0,
            operations: 0,
            slots: 0,
            crashes: 0,
            partitions: 0,
            coverage: Coverage::default(),
        };
        World {
            seed,
            rng,
            wipe_rng,
            roles: vec![None; plan.replicas],
            plan,
            options,
            now: 0,
            hosts,
            net: Network::default(),
            links,
            clients,
            client_cuts: Vec::new(),
            checks: Checks::default(),
            trace: Trace::default(),
            report,
            healed_at: None,
        }
    }

    /// Runs both phases and the final checks.
    pub fn run(mut self) -> Result<Report, Failure> {
        self.trace.note(0, format!("seed {} plan {:?}", self.seed, self.plan));
        let result = self.phases();
        match result {
            Ok(()) => {
                if std::env::var_os("CHORUS_SIM_TRACE").is_some() {
                    eprint!("{}", self.trace.render());
                }
                self.report.ticks = self.now;
                self.report.operations = self.checks.operations();
                Ok(self.report)
            }
            Err(violation) => Err(Failure {
                seed: self.seed,
                plan: Box::new(self.report.plan),
                tick: self.now,
                violation,
                trace: self.trace.render(),
            }),
        }
    }

    fn phases(&mut self) -> Result<(), Violation> {
        crate::plant::activate(self.options.plant);
        let result = self.fault_phase().and_then(|()| self.liveness_phase());
        crate::plant::activate(None);
        result?;
        self.checks.finish()
    }

    fn fault_phase(&mut self) -> Result<(), Violation> {
        while self.now < self.options.fault_ticks {
            self.inject_faults();
            self.step()?;
        }
        Ok(())
    }

    /// Heals everything, stops new work, then requires convergence and a
    /// drained mailbox for every account within the bound.
    fn liveness_phase(&mut self) -> Result<(), Violation> {
        self.heal()?;
        let deadline = self.now + self.options.liveness_ticks;
        while self.now < deadline {
            self.step()?;
            self.drain_mailboxes();
            if self.converged() {
                self.trace.note(self.now, "converged");
                return Ok(());
            }
        }
        Err(Violation::new("liveness", self.liveness_report()))
    }

    fn heal(&mut self) -> Result<(), Violation> {
        self.trace.note(self.now, "heal: faults off, every replica up, workload stops");
        self.plan = self.plan.healed();
        self.healed_at = Some(self.now);
        self.net.partitions.clear();
        self.client_cuts.clear();
        self.links.cuts.clear();
        for id in 0..self.hosts.len() {
            if !self.hosts[id].is_up() {
                self.restart(id)?;
            }
        }
        self.clients.iter_mut().for_each(|c| c.working = false);
        Ok(())
    }

    fn inject_faults(&mut self) {
        for id in 0..self.hosts.len() {
            let crashes = self.hosts[id].is_up() && self.rng.random_bool(self.plan.crash);
            let busy = self.hosts[id].snapshot_busy();
            if crashes || (busy && self.rng.random_bool(self.plan.snapshot_crash)) {
                self.crash(id);
            }
        }
        if self.rng.random_bool(self.plan.partition) {
            let leader = self.leader();
            let partition = Partition::choose(&mut self.rng, self.hosts.len(), leader);
            let until = self.now + self.rng.random_range(1..=self.plan.partition_ticks_max);
            self.trace.note(self.now, format!("partition {partition:?} until t={until}"));
            self.net.partitions.push((partition, until));
            self.report.partitions += 1;
        }
        for c in 0..self.clients.len() {
            if self.rng.random_bool(self.plan.client_cut) {
                let r = self.rng.random_range(0..self.hosts.len());
                let until = self.now + self.rng.random_range(1..=self.plan.partition_ticks_max);
                self.trace.note(self.now, format!("client {c} cut from replica {r} until t={until}"));
                self.client_cuts.push(((c, r), until));
                self.links.cuts.insert((c, r));
                self.links.close_where(|client, replica| (client, replica) == (c, r));
            }
            if self.rng.random_bool(self.plan.client_crash) {
                self.trace.note(self.now, format!("client {c} crashes"));
                self.clients[c].crash(self.now, &mut self.rng, &mut self.links);
            }
        }
    }

    fn crash(&mut self, id: usize) {
        let down = self.rng.random_range(1..=self.plan.down_ticks_max);
        self.trace.note(self.now, format!("replica {id} crashes (kill -9) for {down} ticks"));
        let pending = self.hosts[id].disk.pending();
        let survivors = if self.rng.random_bool(0.5) { self.rng.random_range(0..=pending) } else { 0 };
        self.count_snapshot_crash(id);
        let lost = self.hosts[id].disk.lost();
        self.hosts[id].crash(survivors, &mut self.rng);
        self.count_rebuild(id, lost);
        self.hosts[id].down_until = self.now + down;
        self.links.up[id] = false;
        self.links.close_where(|_, replica| replica == id);
        self.roles[id] = None;
        self.report.crashes += 1;
    }

    /// Counts a crash that cut snapshot work short.
    fn count_snapshot_crash(&mut self, id: usize) {
        let host = &self.hosts[id];
        let coverage = &mut self.report.coverage;
        coverage.crashes_during_snapshot_write += u64::from(host.snapshot_write.is_some());
        coverage.crashes_during_fetch += u64::from(host.fetch.is_some());
        coverage.crashes_during_install += u64::from(host.install.is_some());
        if host.snapshot_busy() {
            let busy = (host.snapshot_write.is_some(), host.fetch.is_some(), host.install.is_some());
            self.trace.note(self.now, format!("replica {id} crashes busy with (write, fetch, install) = {busy:?}"));
        }
    }

    /// Counts a rebuild that became durable: replica `id`'s disk was lost
    /// (`was_lost`) and is no longer.
    fn count_rebuild(&mut self, id: usize, was_lost: bool) {
        if was_lost && !self.hosts[id].disk.lost() {
            self.report.coverage.rebuilds_finished += 1;
            self.trace.note(self.now, format!("replica {id}'s rebuild is durable"));
        }
    }

    /// With the plan's chance, replica `id` (about to restart) lost its
    /// disk. Spared when `replicas - quorum` other disks are lost already:
    /// a majority of lost disks loses chosen values, which no protocol
    /// survives and the system does not promise to.
    fn maybe_wipe(&mut self, id: usize) {
        if !self.wipe_rng.random_bool(self.plan.wipe) {
            return;
        }
        let replicas = self.hosts.len();
        let lost_max = replicas - (replicas / 2 + 1);
        let lost_others = self.hosts.iter().enumerate().filter(|(other, h)| *other != id && h.disk.lost()).count();
        assert!(lost_others <= lost_max, "more disks lost than the bound allows");
        if lost_others == lost_max {
            self.trace.note(self.now, format!("replica {id}'s disk spared: {lost_others} other(s) lost"));
            return;
        }
        self.hosts[id].disk.wipe();
        self.checks.wiped(id);
        self.report.coverage.disks_wiped += 1;
        self.trace.note(self.now, format!("replica {id}'s disk is wiped: it restarts empty and must rebuild"));
    }

    /// Restarts a replica from its disk (which may first be wiped); the
    /// snapshot it loads must hold the state every replica had at its slot.
    fn restart(&mut self, id: usize) -> Result<(), Violation> {
        self.maybe_wipe(id);
        let started = self.hosts[id]
            .start(&mut self.rng)
            .map_err(|error| Violation::new("restart", format!("replica {id} cannot start from its disk: {error}")))?;
        self.trace.note(self.now, format!("replica {id} restarts (snapshot {})", started.snapshot_slot));
        self.links.up[id] = true;
        self.report.coverage.half_written_removed += started.half_written as u64;
        if started.snapshot_slot > 0 {
            self.report.coverage.restarts_from_snapshot += 1;
            self.report.coverage.restarts_past_log += u64::from(started.past_log);
            self.checks.installed(id, started.snapshot_slot, started.digest)?;
        }
        Ok(())
    }

    fn leader(&self) -> Option<usize> {
        self.hosts.iter().position(|h| h.machine.as_ref().is_some_and(|m| m.replica().role() == Role::Leader))
    }

    /// One tick of the whole world.
    fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        self.links.now = self.now;
        self.expire_faults()?;
        self.register_connections();
        self.deliver_peer_messages()?;
        self.deliver_client_frames();
        self.complete_writes();
        self.complete_snapshot_work()?;
        self.complete_password_jobs();
        self.tick_replicas()?;
        self.process_replicas()?;
        self.deliver_server_frames();
        self.step_clients()?;
        self.register_connections();
        self.links.sweep();
        self.watch_roles();
        Ok(())
    }

    fn expire_faults(&mut self) -> Result<(), Violation> {
        let now = self.now;
        self.net.expire_partitions(now);
        let (expired, active): (Vec<_>, Vec<_>) = self.client_cuts.drain(..).partition(|(_, until)| *until <= now);
        self.client_cuts = active;
        for (pair, _) in expired {
            if !self.client_cuts.iter().any(|(p, _)| *p == pair) {
                self.links.cuts.remove(&pair);
            }
        }
        for id in 0..self.hosts.len() {
            if !self.hosts[id].is_up() && self.hosts[id].down_until <= now {
                self.restart(id)?;
            }
        }
        Ok(())
    }

    fn register_connections(&mut self) {
        for (replica, conn) in std::mem::take(&mut self.links.opened) {
            if let Some(machine) = self.hosts[replica].machine.as_mut() {
                machine.connected(conn, std::net::IpAddr::from([10, 0, 0, conn as u8]));
            }
        }
        for (replica, conn) in std::mem::take(&mut self.links.closed) {
            if let Some(machine) = self.hosts[replica].machine.as_mut() {
                machine.disconnected(conn);
            }
        }
    }

    fn deliver_peer_messages(&mut self) -> Result<(), Violation> {
        for packet in self.net.due(self.now) {
            match packet {
                Packet::Paxos(envelope) => {
                    if let Some(machine) = self.hosts[envelope.to as usize].machine.as_mut() {
                        machine.step(Event::Receive(envelope), &mut self.links);
                        self.report.events += 1;
                    }
                }
                Packet::Transfer { from, to, message } => self.deliver_transfer(from, to, message)?,
            }
        }
        Ok(())
    }

    /// A transfer message reaches a running replica: a request is served
    /// from its snapshots, an answer feeds its fetch.
    fn deliver_transfer(&mut self, from: ReplicaId, to: ReplicaId, message: Transfer) -> Result<(), Violation> {
        let host = &mut self.hosts[to as usize];
        if !host.is_up() {
            return Ok(());
        }
        self.report.events += 1;
        if let Some(answer) = serve(&message, &host.disk.snapshots, self.plan.snapshot_chunk_bytes) {
            let packet = Packet::Transfer { from: to, to: from, message: answer };
            self.net.send(&mut self.rng, &self.plan, self.now, packet);
            return Ok(());
        }
        match host.fetch_answer(from, message) {
            Some(step) => self.fetch_step(to as usize, step),
            None => Ok(()),
        }
    }

    /// Carries out what replica `id`'s fetch asked for.
    fn fetch_step(&mut self, id: usize, step: FetchStep) -> Result<(), Violation> {
        let host = &mut self.hosts[id];
        match step {
            FetchStep::Wait => {}
            FetchStep::Send(message) => {
                let to = host.fetching_from().expect("a running fetch sends");
                let packet = Packet::Transfer { from: id as ReplicaId, to, message };
                self.net.send(&mut self.rng, &self.plan, self.now, packet);
            }
            FetchStep::Done(info) => {
                let at = self.now + self.rng.random_range(0..=self.plan.snapshot_ticks_max);
                host.fetched(info.slot, at).map_err(|error| {
                    let detail = format!("replica {id} cannot decode snapshot {} it fetched: {error}", info.slot);
                    Violation::new("snapshot-decode", detail)
                })?;
                self.report.coverage.transfers_completed += 1;
                self.trace
                    .note(self.now, format!("replica {id} fetched snapshot {} ({} bytes)", info.slot, info.bytes));
            }
            FetchStep::Failed(reason) => {
                self.trace.note(self.now, format!("replica {id}'s snapshot fetch failed: {reason}"));
                host.fetch_failed(reason, &mut self.links);
                self.report.coverage.fetches_failed += 1;
            }
        }
        Ok(())
    }

    /// The replicas' clock: ten milliseconds a tick from a fixed epoch.
    fn now_millis(&self) -> u64 {
        1_700_000_000_000 + self.now * 10
    }

    fn complete_password_jobs(&mut self) {
        let now_millis = self.now_millis();
        for host in &mut self.hosts {
            let ran = host.finish_password_jobs(self.now, now_millis, &mut self.rng, &mut self.links);
            self.report.events += ran as u64;
        }
    }

    fn deliver_client_frames(&mut self) {
        for (replica, conn, frame) in self.links.due_at_replicas() {
            let now_millis = self.now_millis();
            if let Some(machine) = self.hosts[replica].machine.as_mut() {
                machine.request(conn, frame, now_millis, &mut self.links);
                self.report.events += 1;
            }
        }
    }

    fn complete_writes(&mut self) {
        for id in 0..self.hosts.len() {
            let host = &mut self.hosts[id];
            let lost = host.disk.lost();
            if let (Some(write), Some(machine)) = (host.disk.complete(self.now), host.machine.as_mut()) {
                machine.step(Event::Persisted(write), &mut self.links);
                self.report.events += 1;
            }
            self.count_rebuild(id, lost);
        }
    }

    /// Snapshot writes and hand-overs of fetched snapshots that are due.
    fn complete_snapshot_work(&mut self) -> Result<(), Violation> {
        for id in 0..self.hosts.len() {
            let host = &mut self.hosts[id];
            match host.finish_snapshot_write(self.now) {
                Some(Ok(slot)) => {
                    self.report.coverage.snapshots_written += 1;
                    self.trace.note(self.now, format!("replica {id} wrote snapshot {slot}"));
                }
                Some(Err(error)) => self.trace.note(self.now, format!("replica {id}: {error}")),
                None => {}
            }
            let Some((slot, installed)) = host.finish_install(self.now, &mut self.links) else { continue };
            self.trace.note(self.now, format!("replica {id} fetched snapshot {slot}: installed {installed}"));
            if installed {
                self.report.coverage.installs += 1;
                let digest = host.machine.as_ref().expect("an installing host runs").chat().digest();
                self.checks.installed(id, slot, digest)?;
            }
        }
        Ok(())
    }

    fn tick_replicas(&mut self) -> Result<(), Violation> {
        for id in 0..self.hosts.len() {
            for _ in 0..self.hosts[id].ticks_due() {
                let host = &mut self.hosts[id];
                if let Some(machine) = host.machine.as_mut() {
                    machine.step(Event::Tick, &mut self.links);
                    self.report.events += 1;
                }
                if let Some(step) = host.fetch_tick() {
                    self.fetch_step(id, step)?;
                }
            }
        }
        Ok(())
    }

    fn process_replicas(&mut self) -> Result<(), Violation> {
        for id in 0..self.hosts.len() {
            let host = &mut self.hosts[id];
            let Some(machine) = host.machine.as_mut() else { continue };
            let rebuilding = machine.replica().role() == Role::Recovering;
            let effects = machine.process(&mut self.links);
            let applied = machine.take_applied();
            let promised = machine.replica().status().promised;
            if let Some(write) = effects.write {
                let latency = self.rng.random_range(0..=self.plan.disk_ticks_max);
                host.disk.write(write, self.now + latency);
            }
            self.send_paxos(id, rebuilding, effects.messages)?;
            self.snapshot_effects(id, effects.snapshot, effects.fetch);
            for job in effects.passwords {
                let at = self.now + self.rng.random_range(1..=5);
                self.hosts[id].password_jobs.push((at, job));
            }
            self.report.slots = self.report.slots.max(applied.last().map_or(0, |s| s.slot));
            let incarnation = self.hosts[id].incarnation;
            self.checks.applied(id, incarnation, &applied)?;
            self.checks.promised(id, incarnation, promised)?;
        }
        Ok(())
    }

    /// Sends replica `id`'s Paxos messages, showing each to the checkers;
    /// `rebuilding`: the replica was rebuilding when it produced them.
    fn send_paxos(&mut self, id: usize, rebuilding: bool, messages: Vec<Envelope>) -> Result<(), Violation> {
        for envelope in messages {
            self.checks.sent(id, rebuilding, &envelope)?;
            self.net.send(&mut self.rng, &self.plan, self.now, Packet::Paxos(envelope));
        }
        Ok(())
    }

    /// Starts the snapshot write and the fetch replica `id`'s machine asked
    /// for: the write completes after a random latency, the fetch sends its
    /// first request.
    fn snapshot_effects(&mut self, id: usize, job: Option<SnapshotJob>, wanted: Option<SnapshotWanted>) {
        if let Some(job) = job {
            let at = self.now + self.rng.random_range(1..=self.plan.snapshot_ticks_max);
            self.hosts[id].begin_snapshot_write(job, at);
        }
        let Some(wanted) = wanted else { return };
        self.report.coverage.fetches_started += 1;
        let note = format!("replica {id} fetches a snapshot covering {} from {}", wanted.covering, wanted.from);
        self.trace.note(self.now, note);
        match self.hosts[id].start_fetch(wanted) {
            Ok(first) => {
                let packet = Packet::Transfer { from: id as ReplicaId, to: wanted.from, message: first };
                self.net.send(&mut self.rng, &self.plan, self.now, packet);
            }
            Err(reason) => self.hosts[id].fetch_failed(reason, &mut self.links),
        }
    }

    fn deliver_server_frames(&mut self) {
        for (client, conn, frame) in self.links.due_at_clients() {
            self.clients[client].receive(conn, frame, self.now, &mut self.rng, &mut self.links);
        }
    }

    fn step_clients(&mut self) -> Result<(), Violation> {
        for client in &mut self.clients {
            client.step(self.now, &mut self.rng, &mut self.links);
            for observation in std::mem::take(&mut client.observations) {
                if let crate::client::Observation::Finished(f) = &observation {
                    self.trace.note(self.now, format!("client {} {:?} -> {:?}", f.client, f.kind, f.end));
                    let late = self.healed_at.is_some_and(|at| self.now > at + LIVENESS_GRACE_TICKS);
                    if late && f.end == crate::client::OpEnd::GaveUp {
                        let detail = format!("client {} gave up on {:?} after healing", f.client, f.kind);
                        return Err(Violation::new("liveness", detail));
                    }
                }
                if let crate::client::Observation::Shown { message, .. } = &observation {
                    self.report.coverage.room_gap_notices_shown += u64::from(message.is_gap_notice());
                }
                if let crate::client::Observation::AckConfirmed { carried: true, .. } = &observation {
                    self.report.coverage.read_positions_carried += 1;
                }
                self.checks.observed(observation)?;
            }
        }
        Ok(())
    }

    fn watch_roles(&mut self) {
        for (id, host) in self.hosts.iter().enumerate() {
            let role = host.machine.as_ref().map(|m| m.replica().role());
            if role != self.roles[id] {
                if let Some(machine) = host.machine.as_ref() {
                    self.trace.note(self.now, format!("replica {id} is {:?}", machine.replica().status()));
                }
                self.roles[id] = role;
            }
        }
    }

    /// Points quiet clients at accounts that still have unread messages
    /// (direct, or in their rooms).
    fn drain_mailboxes(&mut self) {
        let Some(machine) = self.most_advanced() else { return };
        let listed = machine.chat().list(None).map(|l| l.names).unwrap_or_default();
        let waiting: Vec<String> =
            listed.into_iter().filter(|name| machine.chat().stream(name, 0, 1).is_ok_and(|m| !m.is_empty())).collect();
        for (client, name) in self.clients.iter_mut().filter(|c| c.quiet()).zip(waiting.iter().cycle()) {
            if client.subscription().as_deref() != Some(name.as_str()) {
                client.start_drain(name, self.now, &mut self.links);
            }
        }
    }

    fn most_advanced(&self) -> Option<&Machine> {
        self.hosts.iter().filter_map(|h| h.machine.as_ref()).max_by_key(|m| m.replica().status().applied_through)
    }

    /// Every replica up and done rebuilding with the same applied state,
    /// one leader, every account's messages (direct and room) read and every
    /// client quiet.
    fn converged(&self) -> bool {
        let machines: Vec<&Machine> = self.hosts.iter().filter_map(|h| h.machine.as_ref()).collect();
        if machines.len() != self.hosts.len() || !self.clients.iter().all(|c| c.quiet()) {
            return false;
        }
        let first = machines[0];
        let same = machines.iter().all(|m| {
            m.replica().status().applied_through == first.replica().status().applied_through
                && m.chat().digest() == first.chat().digest()
        });
        let leaders = machines.iter().filter(|m| m.replica().role() == Role::Leader).count();
        let rebuilt = machines.iter().all(|m| m.replica().role() != Role::Recovering);
        let names = first.chat().list(None).map(|l| l.names).unwrap_or_default();
        let drained = names.iter().all(|n| first.chat().stream(n, 0, 1).is_ok_and(|m| m.is_empty()));
        same && leaders == 1 && drained && rebuilt
    }

    fn liveness_report(&self) -> String {
        let statuses: Vec<String> = self
            .hosts
            .iter()
            .map(|h| match &h.machine {
                Some(m) => format!("{:?}", m.replica().status()),
                None => format!("replica {} down", h.id),
            })
            .collect();
        let quiet: Vec<String> = self.clients.iter().filter(|c| !c.quiet()).map(|c| c.describe()).collect();
        format!(
            "no convergence {} ticks after healing; replicas: {}; busy clients: {}",
            self.options.liveness_ticks,
            statuses.join("; "),
            quiet.join("; ")
        )
    }
}
