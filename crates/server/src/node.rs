//! The tokio shell around [`Machine`]: one task that owns it, fed by one
//! bounded inbox, with a 10 ms ticker.

use crate::machine::{ConnId, Machine, Outbox, PushError, SnapshotPolicy};
use crate::passwords::{self, HashCost, JobId, PasswordJob, PasswordOutcome};
use crate::snapshotting::{self, SnapshotThreads};
use crate::{clients, peers, storage};
use anyhow::Context;
use chorus_chat::ChatState;
use chorus_limits as limits;
use chorus_paxos::{Config, Envelope, Event, Replica, ReplicaId, Slot, WriteBatch, WriteId};
use chorus_proto::{ClientFrame, ClusterFile, FetchProgress, PeerFrame, ServerFrame, Transfer};
use chorus_tls::ReplicaTls;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// Everything that reaches the core task.
#[derive(Debug)]
pub enum Input {
    /// A message from another replica.
    Peer(Envelope),
    /// A client at `address` finished its hello; `tx` feeds its writer.
    Connected { conn: ConnId, address: IpAddr, tx: mpsc::Sender<ServerFrame>, kick: Arc<Notify> },
    /// A client connection ended.
    Disconnected { conn: ConnId },
    /// A client request.
    Request { conn: ConnId, frame: ClientFrame },
    /// Every write batch through this id is durable.
    Persisted(WriteId),
    /// The store failed: the replica must stop.
    StorageFailed(String),
    /// A snapshot transfer message from a peer.
    Transfer { from: ReplicaId, message: Transfer },
    /// The snapshot writer finished (the slot) or failed.
    SnapshotWritten(Result<Slot, String>),
    /// A snapshot fetch finished (durable and decoded) or gave up.
    SnapshotFetched(Result<(Slot, Box<ChatState>), String>),
    /// A snapshot fetch made progress.
    FetchProgress(FetchProgress),
    /// A password job finished.
    PasswordDone { id: JobId, outcome: PasswordOutcome },
}

/// Ticks between two looks at the bytes the replica holds on disk.
const DISK_USAGE_TICKS: u64 = 100;

/// A client connection as the core task sees it.
#[derive(Debug)]
struct Connection {
    /// Feeds the connection's writer (bounded).
    tx: mpsc::Sender<ServerFrame>,
    /// Closes the connection when it cannot keep up.
    kick: Arc<Notify>,
}

/// The connections' queues, as the machine's [`Outbox`].
struct Connections(BTreeMap<ConnId, Connection>);

impl Outbox for Connections {
    fn room(&self, conn: ConnId) -> usize {
        self.0.get(&conn).map_or(0, |c| c.tx.capacity())
    }

    fn push(&mut self, conn: ConnId, frame: ServerFrame) -> Result<(), PushError> {
        let connection = self.0.get(&conn).ok_or(PushError::Closed)?;
        connection.tx.try_send(frame).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => PushError::Full,
            mpsc::error::TrySendError::Closed(_) => PushError::Closed,
        })
    }

    fn kick(&mut self, conn: ConnId) {
        if let Some(connection) = self.0.remove(&conn) {
            connection.kick.notify_one();
        }
    }
}

/// The core task's state.
struct Node {
    machine: Machine,
    connections: Connections,
    peers: BTreeMap<ReplicaId, mpsc::Sender<PeerFrame>>,
    writes: mpsc::Sender<WriteBatch>,
    snapshots: SnapshotThreads,
    data_dir: PathBuf,
    ticks: u64,
    /// Where finished password jobs report.
    inbox: mpsc::Sender<Input>,
    hash_cost: HashCost,
}

/// A replica's settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// When to take snapshots.
    pub snapshots: SnapshotPolicy,
    /// Most client connections one address may hold.
    pub connections_per_address: usize,
    /// The cost of new password hashes.
    pub hash_cost: HashCost,
    /// May serve in plaintext when the cluster file has no `[tls]` table
    /// (`--insecure`); without it such a replica refuses to start.
    pub insecure: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshots: SnapshotPolicy::default(),
            connections_per_address: limits::CLIENT_CONNECTIONS_PER_ADDRESS_DEFAULT,
            hash_cost: HashCost::default(),
            insecure: false,
        }
    }
}

/// The replica's TLS settings from the cluster file, or `None` for
/// plaintext, which only `--insecure` allows.
pub fn transport_security(cluster: &ClusterFile, id: ReplicaId, insecure: bool) -> anyhow::Result<Option<ReplicaTls>> {
    let me = cluster.replica(id).context("replica not in cluster file")?;
    let Some(tls) = &cluster.tls else {
        anyhow::ensure!(
            insecure,
            "the cluster file has no [tls] table, so replica {id} would serve clients and peers in plaintext, \
             where anyone who can reach its ports could read traffic and inject consensus messages. \
             Pass --insecure to run without TLS anyway, or create the cluster with `chorus up` (without --insecure)"
        );
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&me.tls_cert, &me.tls_key) else {
        anyhow::bail!("the cluster file has a [tls] table but no tls_cert and tls_key for replica {id}");
    };
    Ok(Some(ReplicaTls::load(&tls.ca_cert, cert, key)?))
}

/// Opens the store, binds the ports and runs the replica until it fails,
/// with the default settings.
pub async fn run(cluster: ClusterFile, id: ReplicaId) -> anyhow::Result<()> {
    run_with(cluster, id, Options::default()).await
}

/// Opens the store, loads the newest snapshot, binds the ports and runs the
/// replica until it fails.
pub async fn run_with(cluster: ClusterFile, id: ReplicaId, options: Options) -> anyhow::Result<()> {
    let me = cluster.replica(id).context("replica not in cluster file")?.clone();
    let tls = transport_security(&cluster, id, options.insecure)?;
    if tls.is_none() {
        tracing::warn!(replica = id, "no [tls] in the cluster file and --insecure given: serving in plaintext");
    }
    let snapshot_dir = snapshotting::snapshot_dir(&me.data_dir);
    let (store, durable, snapshot_slot, chat) = storage::open_local_state(&me.data_dir, &snapshot_dir, id)?;
    let client_listener = TcpListener::bind(me.client_addr)
        .await
        .with_context(|| format!("binding the client port {}", me.client_addr))?;
    let peer_listener =
        TcpListener::bind(me.peer_addr).await.with_context(|| format!("binding the peer port {}", me.peer_addr))?;
    let (inbox_tx, inbox) = mpsc::channel(limits::CORE_INBOX_EVENTS_MAX);
    let (writes, write_rx) = mpsc::channel(limits::CORE_INBOX_EVENTS_MAX);
    let storage = storage::spawn(store, write_rx, inbox_tx.clone());
    let peers: BTreeMap<ReplicaId, mpsc::Sender<PeerFrame>> = cluster
        .replicas
        .iter()
        .filter(|r| r.id != id)
        .map(|r| (r.id, peers::spawn_sender(id, r.id, r.peer_addr, tls.clone())))
        .collect();
    let snapshots = SnapshotThreads::start(snapshot_dir, id, peers.clone(), inbox_tx.clone())?;
    tokio::spawn(peers::listen(peer_listener, id, cluster.replicas.len(), inbox_tx.clone(), tls.clone()));
    tokio::spawn(clients::listen(client_listener, inbox_tx.clone(), options.connections_per_address, tls.clone()));
    let ids = cluster.replicas.iter().map(|r| r.id).collect();
    let config = Config::new(id, ids, rand::random());
    let chosen = durable.chosen_through;
    anyhow::ensure!(
        !(durable.recovering && cluster.replicas.len() == 1),
        "the data directory {} is empty (or was damaged) and this cluster has no other replica to rebuild it from: \
         its data is lost. To start a new one-replica cluster here, pass --new-cluster",
        me.data_dir.display()
    );
    if durable.recovering {
        tracing::warn!(
            replica = id,
            "this data directory is empty (or a rebuild was cut short) and was not created as a founding \
             member: rebuilding from the peers before voting"
        );
    }
    let replica = Replica::new(config, durable, snapshot_slot);
    let mut machine = Machine::new(replica, rand::random())
        .with_snapshot(snapshot_slot, chat)
        .with_snapshot_policy(options.snapshots)
        .with_room_history(cluster.rooms.map(|rooms| rooms.history_bounds()));
    machine.set_pid(std::process::id());
    let tls = tls.is_some();
    tracing::info!(replica = id, client = %me.client_addr, peer = %me.peer_addr, chosen, snapshot_slot, tls, "replica started");
    let connections = Connections(BTreeMap::new());
    let data_dir = me.data_dir.clone();
    let hash_cost = options.hash_cost;
    let node = Node { machine, connections, peers, writes, snapshots, data_dir, ticks: 0, inbox: inbox_tx, hash_cost };
    let result = node.serve(inbox).await;
    drop(storage);
    result
}

impl Node {
    /// The event loop: take inputs (many at a time) or a tick, then carry
    /// out what the machine decided.
    async fn serve(mut self, mut inbox: mpsc::Receiver<Input>) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(Duration::from_millis(limits::TICK_MILLIS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.process().await?;
        loop {
            tokio::select! {
                input = inbox.recv() => {
                    let Some(input) = input else { return Ok(()) };
                    self.handle(input)?;
                    for _ in 0..limits::CORE_INBOX_EVENTS_MAX {
                        match inbox.try_recv() {
                            Ok(input) => self.handle(input)?,
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => self.tick(),
            }
            self.process().await?;
        }
    }

    fn tick(&mut self) {
        self.machine.step(Event::Tick, &mut self.connections);
        if self.ticks.is_multiple_of(DISK_USAGE_TICKS) {
            let (log, snapshots) = snapshotting::disk_usage(&self.data_dir);
            self.machine.set_disk_usage(log, snapshots);
        }
        self.ticks += 1;
    }

    fn handle(&mut self, input: Input) -> anyhow::Result<()> {
        let out = &mut self.connections;
        match input {
            Input::Peer(envelope) => self.machine.step(Event::Receive(envelope), out),
            Input::Persisted(id) => self.machine.step(Event::Persisted(id), out),
            Input::StorageFailed(error) => {
                anyhow::bail!("storage failed, stopping the replica: {error}")
            }
            Input::Connected { conn, address, tx, kick } => {
                out.0.insert(conn, Connection { tx, kick });
                self.machine.connected(conn, address);
            }
            Input::Disconnected { conn } => {
                out.0.remove(&conn);
                self.machine.disconnected(conn);
            }
            Input::Request { conn, frame } => self.machine.request(conn, frame, now_millis(), out),
            Input::Transfer { from, message } => self.snapshots.received(from, message),
            Input::SnapshotWritten(result) => self.machine.snapshot_written(result),
            Input::SnapshotFetched(result) => self.machine.snapshot_fetched(result.map(|(s, chat)| (s, *chat)), out),
            Input::FetchProgress(progress) => self.machine.set_fetch_progress(progress),
            Input::PasswordDone { id, outcome } => self.machine.password_done(id, outcome, now_millis(), out),
        }
        Ok(())
    }

    /// Hands the write to storage and the messages to the peer senders.
    async fn process(&mut self) -> anyhow::Result<()> {
        let was_leader = self.machine.replica().role();
        let effects = self.machine.process(&mut self.connections);
        if let Some(write) = effects.write {
            self.writes.send(write).await.context("the storage thread stopped")?;
        }
        for envelope in effects.messages {
            if let Some(peer) = self.peers.get(&envelope.to) {
                let _ = peer.try_send(PeerFrame::Paxos(envelope)); // full: dropped, the core resends
            }
        }
        if let Some(job) = effects.snapshot {
            self.snapshots.write(job);
        }
        if let Some(wanted) = effects.fetch {
            self.snapshots.fetch(wanted);
        }
        for job in effects.passwords {
            self.run_password_job(job);
        }
        if self.machine.replica().role() != was_leader {
            tracing::info!(status = ?self.machine.replica().status(), "role changed");
        }
        Ok(())
    }
}

impl Node {
    /// Hashes or checks a password on a blocking thread (argon2id takes
    /// tens of milliseconds and ~19 MiB), then reports to the core. The
    /// machine keeps at most `PASSWORD_JOBS_MAX` out at once.
    fn run_password_job(&self, job: PasswordJob) {
        let (inbox, cost) = (self.inbox.clone(), self.hash_cost);
        tokio::task::spawn_blocking(move || {
            let outcome = passwords::run(&job.work, cost, rand::random());
            let _ = inbox.blocking_send(Input::PasswordDone { id: job.id, outcome });
        });
    }
}

/// The leader's clock, stamped on every proposal it makes.
fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
