//! The core task: owns the Paxos replica, the chat state, subscriptions
//! and waiting requests; everything else talks to it over one channel.

use crate::subscriptions::Subscriptions;
use crate::{clients, peers, storage};
use anyhow::Context;
use chorus_chat::{
    encode_proposal, validate, validate_name, ChatState, ClientId, Command, Outcome, Proposal,
    StateEvent,
};
use chorus_limits as limits;
use chorus_paxos::{
    Config, Envelope, Event, NotLeader, ProposeError, ReadId, Replica, ReplicaId, Role, Slot,
    Value, WriteBatch, WriteId,
};
use chorus_proto::{
    ClientFrame, ClusterFile, Request, RequestError, Response, ServerFrame, StatusReport,
};
use chorus_store::{LogStore, RedbStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// Names one client connection on this replica.
pub type ConnId = u64;

/// Everything that reaches the core task.
#[derive(Debug)]
pub enum Input {
    /// A message from another replica.
    Peer(Envelope),
    /// A client finished its hello; `tx` feeds its writer.
    Connected {
        conn: ConnId,
        tx: mpsc::Sender<ServerFrame>,
        kick: Arc<Notify>,
    },
    /// A client connection ended.
    Disconnected { conn: ConnId },
    /// A client request.
    Request { conn: ConnId, frame: ClientFrame },
    /// Every write batch through this id is durable.
    Persisted(WriteId),
    /// The store failed: the replica must stop.
    StorageFailed(String),
}

/// A client connection as the core sees it.
#[derive(Debug)]
struct Connection {
    /// Feeds the connection's writer (bounded).
    tx: mpsc::Sender<ServerFrame>,
    /// Closes the connection when it cannot keep up.
    kick: Arc<Notify>,
}

/// A linearizable read waiting for the core's confirmation.
#[derive(Debug)]
enum ReadKind {
    List { pattern: Option<String> },
    Subscribe { name: String, after: u64 },
}

/// Who waits for the reply of one request.
type Waiter = (ConnId, u64);

/// The core task's state.
pub struct Node {
    replica: Replica,
    chat: ChatState,
    connections: BTreeMap<ConnId, Connection>,
    subscriptions: Subscriptions,
    /// Commands proposed here, by (client, seq), until applied or abandoned.
    pending_commands: BTreeMap<(ClientId, u64), Vec<Waiter>>,
    /// Reads started here, until the core completes or fails them.
    pending_reads: BTreeMap<ReadId, (Waiter, ReadKind)>,
    next_read: ReadId,
    /// Session-less acks are tagged with this id and a counter, so their
    /// replies can be routed like commands.
    ack_client: ClientId,
    next_ack_seq: u64,
    peers: BTreeMap<ReplicaId, mpsc::Sender<Envelope>>,
    writes: mpsc::Sender<WriteBatch>,
    was_leader: bool,
}

/// Opens the store, binds the ports and runs the replica until it fails.
pub async fn run(cluster: ClusterFile, id: ReplicaId) -> anyhow::Result<()> {
    let me = cluster
        .replica(id)
        .context("replica not in cluster file")?
        .clone();
    let mut store = RedbStore::open(&me.data_dir, id)
        .with_context(|| format!("opening the store in {}", me.data_dir.display()))?;
    let durable = store.load().context("loading the store")?;
    let client_listener = TcpListener::bind(me.client_addr)
        .await
        .with_context(|| format!("binding the client port {}", me.client_addr))?;
    let peer_listener = TcpListener::bind(me.peer_addr)
        .await
        .with_context(|| format!("binding the peer port {}", me.peer_addr))?;
    let (inbox_tx, inbox) = mpsc::channel(limits::CORE_INBOX_EVENTS_MAX);
    let (writes, write_rx) = mpsc::channel(limits::CORE_INBOX_EVENTS_MAX);
    let storage = storage::spawn(store, write_rx, inbox_tx.clone());
    let peers = cluster
        .replicas
        .iter()
        .filter(|r| r.id != id)
        .map(|r| (r.id, peers::spawn_sender(id, r.id, r.peer_addr)))
        .collect();
    tokio::spawn(peers::listen(
        peer_listener,
        id,
        cluster.replicas.len(),
        inbox_tx.clone(),
    ));
    tokio::spawn(clients::listen(client_listener, inbox_tx));
    let ids = cluster.replicas.iter().map(|r| r.id).collect();
    let config = Config::new(id, ids, rand::random());
    let chosen = durable.chosen_through;
    let replica = Replica::new(config, durable, 0);
    tracing::info!(replica = id, client = %me.client_addr, peer = %me.peer_addr, chosen, "replica started");
    let node = Node::new(replica, peers, writes);
    let result = node.serve(inbox).await;
    drop(storage);
    result
}

impl Node {
    fn new(
        replica: Replica,
        peers: BTreeMap<ReplicaId, mpsc::Sender<Envelope>>,
        writes: mpsc::Sender<WriteBatch>,
    ) -> Self {
        Node {
            replica,
            chat: ChatState::new(),
            connections: BTreeMap::new(),
            subscriptions: Subscriptions::default(),
            pending_commands: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            next_read: 1,
            ack_client: rand::random(),
            next_ack_seq: 1,
            peers,
            writes,
            was_leader: false,
        }
    }

    /// The event loop: take inputs (many at a time) or a tick, then carry
    /// out what the core decided.
    async fn serve(mut self, mut inbox: mpsc::Receiver<Input>) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(Duration::from_millis(limits::TICK_MILLIS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.process_ready().await?;
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
                _ = ticker.tick() => {
                    self.replica.step(Event::Tick);
                    self.pump_backlogged();
                }
            }
            self.process_ready().await?;
        }
    }

    fn handle(&mut self, input: Input) -> anyhow::Result<()> {
        match input {
            Input::Peer(envelope) => self.replica.step(Event::Receive(envelope)),
            Input::Persisted(id) => self.replica.step(Event::Persisted(id)),
            Input::StorageFailed(error) => {
                anyhow::bail!("storage failed, stopping the replica: {error}")
            }
            Input::Connected { conn, tx, kick } => {
                self.connections.insert(conn, Connection { tx, kick });
            }
            Input::Disconnected { conn } => {
                self.connections.remove(&conn);
                self.subscriptions.unsubscribe(conn);
            }
            Input::Request { conn, frame } => self.handle_request(conn, frame),
        }
        Ok(())
    }

    /// Carries out one `Ready`: persist, send, apply, answer reads.
    async fn process_ready(&mut self) -> anyhow::Result<()> {
        let ready = self.replica.ready();
        if let Some(write) = ready.write {
            self.writes
                .send(write)
                .await
                .context("the storage thread stopped")?;
        }
        for envelope in ready.messages {
            if let Some(peer) = self.peers.get(&envelope.to) {
                let _ = peer.try_send(envelope); // full: dropped, the core resends
            }
        }
        for (slot, value) in ready.committed {
            self.apply(slot, value);
        }
        for (read, result) in ready.reads {
            self.finish_read(read, result);
        }
        self.notice_role_change();
        Ok(())
    }

    fn notice_role_change(&mut self) {
        let leader = self.replica.role() == Role::Leader;
        if self.was_leader && !leader {
            let waiting = std::mem::take(&mut self.pending_commands);
            let reason = "the leader changed before the outcome was known; retry";
            for waiter in waiting.into_values().flatten() {
                self.reply(waiter, Err(RequestError::Unavailable(reason.into())));
            }
        }
        if leader != self.was_leader {
            tracing::info!(leader, status = ?self.replica.status(), "role changed");
        }
        self.was_leader = leader;
    }

    fn handle_request(&mut self, conn: ConnId, frame: ClientFrame) {
        let waiter = (conn, frame.request_id);
        match frame.request {
            Request::Status => {
                let status = self.status_report();
                self.reply(waiter, Ok(Response::Status(status)));
            }
            Request::Register { client } => self.propose(
                waiter,
                Proposal {
                    client,
                    seq: 0,
                    at_millis: now_millis(),
                    command: Command::RegisterClient,
                },
            ),
            Request::Command {
                client,
                seq,
                command,
            } => self.handle_command(waiter, client, seq, command),
            Request::List { pattern } => self.start_read(waiter, ReadKind::List { pattern }),
            Request::Subscribe { name, after } => match validate_name(&name) {
                Ok(()) => self.start_read(waiter, ReadKind::Subscribe { name, after }),
                Err(error) => self.reply(waiter, Err(error.into())),
            },
            Request::Unsubscribe { .. } => {
                self.subscriptions.unsubscribe(conn);
                self.reply(waiter, Ok(Response::Unsubscribed));
            }
            Request::Ack { name, through } => {
                let (client, seq) = (self.ack_client, self.next_ack_seq);
                self.next_ack_seq += 1;
                let command = Command::Ack { name, through };
                self.handle_command_checked(
                    waiter,
                    Proposal {
                        client,
                        seq,
                        at_millis: now_millis(),
                        command,
                    },
                );
            }
        }
    }

    fn handle_command(&mut self, waiter: Waiter, client: ClientId, seq: u64, command: Command) {
        if !matches!(
            command,
            Command::Create { .. } | Command::Delete { .. } | Command::Send { .. }
        ) {
            let error =
                RequestError::BadRequest("only create, delete and send travel as commands".into());
            return self.reply(waiter, Err(error));
        }
        if seq == 0 {
            return self.reply(
                waiter,
                Err(RequestError::BadRequest(
                    "command sequence numbers start at 1".into(),
                )),
            );
        }
        self.handle_command_checked(
            waiter,
            Proposal {
                client,
                seq,
                at_millis: now_millis(),
                command,
            },
        );
    }

    fn handle_command_checked(&mut self, waiter: Waiter, proposal: Proposal) {
        match validate(&proposal.command) {
            Ok(()) => self.propose(waiter, proposal),
            Err(error) => self.reply(waiter, Err(error.into())),
        }
    }

    fn propose(&mut self, waiter: Waiter, proposal: Proposal) {
        let key = (proposal.client, proposal.seq);
        match self.replica.propose(encode_proposal(&proposal)) {
            Ok(()) => self.pending_commands.entry(key).or_default().push(waiter),
            Err(error) => self.reply(waiter, Err(refusal(error))),
        }
    }

    fn start_read(&mut self, waiter: Waiter, kind: ReadKind) {
        let id = self.next_read;
        self.next_read += 1;
        match self.replica.read(id) {
            Ok(()) => {
                self.pending_reads.insert(id, (waiter, kind));
            }
            Err(error) => self.reply(waiter, Err(refusal(error))),
        }
    }

    fn finish_read(&mut self, id: ReadId, result: Result<(), NotLeader>) {
        let Some((waiter, kind)) = self.pending_reads.remove(&id) else {
            return;
        };
        if let Err(not_leader) = result {
            return self.reply(
                waiter,
                Err(RequestError::NotLeader {
                    leader: not_leader.leader,
                }),
            );
        }
        match kind {
            ReadKind::List { pattern } => {
                let listed = self.chat.list(pattern.as_deref());
                self.reply(
                    waiter,
                    listed.map(Response::List).map_err(RequestError::from),
                );
            }
            ReadKind::Subscribe { name, after } => self.finish_subscribe(waiter, name, after),
        }
    }

    fn finish_subscribe(&mut self, waiter: Waiter, name: String, after: u64) {
        if !self.chat.account_exists(&name) {
            let error = chorus_chat::ChatError::NoSuchAccount { name };
            return self.reply(waiter, Err(error.into()));
        }
        let conn = waiter.0;
        self.subscriptions.subscribe(conn, name, after);
        self.reply(waiter, Ok(Response::Subscribed));
        self.pump(conn);
    }

    /// Applies one chosen slot to the chat state, answering whoever waits
    /// here and pushing deliveries to subscribed connections.
    fn apply(&mut self, slot: Slot, value: Value) {
        let Value::Batch(commands) = value else {
            return;
        };
        for bytes in commands {
            let proposal = match chorus_chat::decode_proposal(&bytes) {
                Ok(proposal) => proposal,
                Err(error) => {
                    // Every replica skips the same bytes, so states stay equal.
                    tracing::error!(slot, %error, "skipping an undecodable command in the log");
                    continue;
                }
            };
            let applied = self.chat.apply(&proposal);
            if let Some(waiters) = self.pending_commands.remove(&(applied.client, applied.seq)) {
                let result = applied.reply.map(response_for).map_err(RequestError::from);
                for waiter in waiters {
                    self.reply(waiter, result.clone());
                }
            }
            match applied.event {
                Some(StateEvent::Queued(message)) => {
                    for conn in self.subscriptions.conns_for(&message.to) {
                        self.pump(conn);
                    }
                }
                Some(StateEvent::AccountDeleted { name }) => self.end_subscriptions(&name),
                None => {}
            }
        }
    }

    fn end_subscriptions(&mut self, name: &str) {
        for conn in self.subscriptions.conns_for(name) {
            self.subscriptions.unsubscribe(conn);
            let frame = ServerFrame::Ended {
                name: name.to_string(),
                reason: "the account was deleted".into(),
            };
            self.send_frame(conn, frame);
        }
    }

    fn pump(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get(&conn) else {
            self.subscriptions.unsubscribe(conn);
            return;
        };
        self.subscriptions.pump(conn, &self.chat, &connection.tx);
    }

    fn pump_backlogged(&mut self) {
        for conn in self.subscriptions.backlogged() {
            self.pump(conn);
        }
    }

    fn reply(&mut self, (conn, request_id): Waiter, result: Result<Response, RequestError>) {
        self.send_frame(conn, ServerFrame::Reply { request_id, result });
    }

    /// Queues a frame; a connection whose queue is full is too slow and is
    /// closed (it resumes from its replicated read position elsewhere).
    fn send_frame(&mut self, conn: ConnId, frame: ServerFrame) {
        let Some(connection) = self.connections.get(&conn) else {
            return;
        };
        if connection.tx.try_send(frame).is_err() {
            tracing::warn!(conn, "closing a client that does not keep up");
            connection.kick.notify_one();
            self.connections.remove(&conn);
            self.subscriptions.unsubscribe(conn);
        }
    }

    fn status_report(&self) -> StatusReport {
        let status = self.replica.status();
        StatusReport {
            id: status.id,
            pid: std::process::id(),
            role: status.role,
            leader: status.leader,
            ballot: status.promised,
            chosen_through: status.chosen_through,
            applied_through: status.applied_through,
            last_slot: status.last_slot,
            accounts: self.chat.accounts_len() as u64,
            clients_connected: self.connections.len() as u64,
        }
    }
}

fn response_for(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Registered => Response::Registered,
        Outcome::Acked => Response::Acked,
        other => Response::Outcome(other),
    }
}

fn refusal(error: ProposeError) -> RequestError {
    match error {
        ProposeError::NotLeader(NotLeader { leader }) => RequestError::NotLeader { leader },
        ProposeError::Busy => RequestError::Busy,
        ProposeError::TooLarge => RequestError::BadRequest("request too large".into()),
    }
}

/// The leader's clock, stamped on every proposal it makes.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
