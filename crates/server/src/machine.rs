//! The replica's logic without any I/O: the Paxos replica, the chat state,
//! subscriptions and the requests waiting for an answer. The tokio runtime
//! (`node`) and the deterministic simulator both drive this same code.

use crate::passwords::{self, JobId, PasswordJob, PasswordOutcome, PasswordWork};
use crate::subscriptions::Subscriptions;
use crate::throttle::SignInThrottle;
use chorus_chat::{
    encode_proposal, validate, validate_name, ChatError, ChatState, ClientId, Command, HistoryBounds, Millis, Outcome,
    Proposal, SessionToken, StateEvent,
};
use chorus_limits as limits;
use chorus_paxos::{
    Envelope, Event, NotLeader, ProposeError, ReadId, Replica, Role, Slot, SnapshotWanted, Value, WriteBatch,
};
use chorus_proto::{
    ClientFrame, FetchProgress, Password, Request, RequestError, Response, ServerFrame, StateDigest, StatusReport,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Names one client connection on this replica.
pub type ConnId = u64;

/// Why a frame could not be queued towards a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// The connection's bounded queue is full.
    Full,
    /// The connection is gone.
    Closed,
}

/// Where frames for clients go: one bounded queue per connection.
pub trait Outbox {
    /// Frames `conn`'s queue can still take (0 when full or gone).
    fn room(&self, conn: ConnId) -> usize;
    /// Queues `frame` for `conn`.
    fn push(&mut self, conn: ConnId, frame: ServerFrame) -> Result<(), PushError>;
    /// Closes `conn`: it cannot keep up.
    fn kick(&mut self, conn: ConnId);
}

/// What the runtime must do after [`Machine::process`]: persist `write`
/// (then report `Event::Persisted`), send `messages` to peers, write
/// `snapshot` in the background (then call [`Machine::snapshot_written`]),
/// start fetching a snapshot from a peer when `fetch` asks (then call
/// [`Machine::snapshot_fetched`]), and run each password job off the core
/// (then call [`Machine::password_done`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub write: Option<WriteBatch>,
    pub messages: Vec<Envelope>,
    pub snapshot: Option<SnapshotJob>,
    pub fetch: Option<SnapshotWanted>,
    pub passwords: Vec<PasswordJob>,
}

/// A snapshot for the runtime to write: the chat state as of `slot`. The
/// state is a structurally shared copy, so taking it costs no copying.
#[derive(Debug, PartialEq, Eq)]
pub struct SnapshotJob {
    pub slot: Slot,
    pub state: ChatState,
}

/// When to take snapshots and how much log to keep below them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot once this many slots were applied since the last one...
    pub every_slots: u64,
    /// ...or this many bytes of commands, whichever comes first.
    pub every_bytes: u64,
    /// Slots kept in the log below the newest snapshot, for peers that are
    /// only a little behind.
    pub retained_slots: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            every_slots: limits::SNAPSHOT_EVERY_SLOTS_DEFAULT,
            every_bytes: limits::SNAPSHOT_EVERY_BYTES_DEFAULT,
            retained_slots: limits::LOG_RETAINED_SLOTS,
        }
    }
}

/// Snapshot bookkeeping of one machine.
#[derive(Debug, Default)]
struct SnapshotState {
    policy: SnapshotPolicy,
    /// Newest durable snapshot.
    slot: Slot,
    /// Bytes of commands applied since the newest snapshot was taken.
    applied_bytes: u64,
    /// A snapshot is being written.
    writing: bool,
    /// A snapshot is being fetched, and how far it got.
    fetching: bool,
    progress: Option<FetchProgress>,
    /// Bytes on disk (log file, snapshot files), as the runtime last saw.
    disk: (u64, u64),
}

/// A linearizable read waiting for the core's confirmation.
#[derive(Debug)]
enum ReadKind {
    List {
        pattern: Option<String>,
    },
    Rooms {
        pattern: Option<String>,
    },
    History {
        name: String,
        room: String,
        before: Option<u64>,
        count: u32,
    },
    /// `unsubscribes`: the connection's count when the request arrived.
    Subscribe {
        name: String,
        after: u64,
        unsubscribes: u64,
    },
}

/// Who waits for the reply of one request.
type Waiter = (ConnId, u64);

/// One client connection, as the core knows it.
#[derive(Debug)]
struct Conn {
    /// The client's address: failed sign-ins are counted against it.
    address: IpAddr,
    /// The account this connection signed in as, if any.
    signed_in: Option<String>,
    /// Unsubscribes received so far: a subscription whose read was still
    /// pending when one arrived must not start (requests take effect in
    /// the order a connection sent them).
    unsubscribes: u64,
}

/// A password job out with the runtime, and what to do with its outcome.
#[derive(Debug)]
enum PendingJob {
    /// Hashing the password of a new account.
    Create { waiter: Waiter, client: ClientId, seq: u64, name: String },
    /// Checking a sign-in against the hash of the account created at `created`.
    SignIn { waiter: Waiter, name: String, created: u64, address: IpAddr },
}

/// Sign-ins: the failure throttle and the password jobs in flight.
#[derive(Debug, Default)]
struct Identity {
    throttle: SignInThrottle,
    pending: BTreeMap<JobId, PendingJob>,
    /// Jobs decided since the last `process`, for the runtime.
    outgoing: Vec<PasswordJob>,
    next_job: JobId,
}

const WRONG_PASSWORD: &str = "wrong name or password";

/// One applied slot, as the simulator's checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedSlot {
    pub slot: Slot,
    /// Each command of the slot (none for a no-op) with the reply it produced.
    pub commands: Vec<(Proposal, Result<Outcome, ChatError>)>,
    /// The chat state's digest after the slot.
    pub digest: u64,
}

/// What a machine applied, slot by slot (recorded for the simulator only).
pub type ApplyLog = Vec<AppliedSlot>;

/// One replica's state and logic.
pub struct Machine {
    replica: Replica,
    chat: ChatState,
    connections: BTreeMap<ConnId, Conn>,
    subscriptions: Subscriptions,
    identity: Identity,
    /// Commands proposed here, by (client, seq), until applied or abandoned.
    pending_commands: BTreeMap<(ClientId, u64), Vec<Waiter>>,
    /// Reads started here, until the core completes or fails them.
    pending_reads: BTreeMap<ReadId, (Waiter, ReadKind)>,
    next_read: ReadId,
    /// Session-less acks are tagged with this id and a counter, so their
    /// replies can be routed like commands.
    ack_client: ClientId,
    next_ack_seq: u64,
    was_leader: bool,
    /// The core was rebuilding after a disk loss at the last `process`.
    was_rebuilding: bool,
    /// When set, every applied proposal is recorded here (simulator only).
    applied_log: Option<ApplyLog>,
    /// Reported in status (0 in the simulator).
    pid: u32,
    /// Replies remembered in this replica's memory: used only when the
    /// planted bug `DEDUP_OUTSIDE_LOG` replaces the replicated table.
    planted_dedup: BTreeMap<(ClientId, u64), Result<Response, RequestError>>,
    snapshots: SnapshotState,
    /// The cluster file's room history bounds: as leader, this replica
    /// proposes them whenever the replicated ones differ.
    room_history: Option<HistoryBounds>,
    /// A `Configure` proposed and not yet applied (or abandoned with the
    /// leadership).
    configuring: bool,
}

impl Machine {
    /// Wraps a replica whose state machine starts empty; `ack_client` must
    /// be unique to this incarnation (a random id).
    pub fn new(replica: Replica, ack_client: ClientId) -> Self {
        let was_rebuilding = replica.role() == Role::Recovering;
        Machine {
            replica,
            chat: ChatState::new(),
            connections: BTreeMap::new(),
            subscriptions: Subscriptions::default(),
            identity: Identity::default(),
            pending_commands: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            next_read: 1,
            ack_client,
            next_ack_seq: 1,
            was_leader: false,
            was_rebuilding,
            applied_log: None,
            pid: 0,
            planted_dedup: BTreeMap::new(),
            snapshots: SnapshotState::default(),
            room_history: None,
            configuring: false,
        }
    }

    /// The room history bounds of the cluster file (`None`: the defaults).
    pub fn with_room_history(mut self, bounds: Option<HistoryBounds>) -> Self {
        self.room_history = Some(bounds.unwrap_or_default());
        self
    }

    /// As leader, proposes the configured room history bounds when the
    /// replicated ones differ (once at a time; no client waits for it;
    /// `now` is stamped on the proposal, which does not use it).
    fn configure_rooms(&mut self, now: Millis) {
        let Some(wanted) = self.room_history else { return };
        if self.configuring || self.replica.role() != Role::Leader || self.chat.room_history() == wanted {
            return;
        }
        let (client, seq) = (self.ack_client, self.next_ack_seq);
        self.next_ack_seq += 1;
        let proposal = Proposal::new(client, seq, now, Command::Configure { room_history: wanted });
        if self.replica.propose(encode_proposal(&proposal)).is_ok() {
            tracing::info!(?wanted, "proposing the cluster file's room history bounds");
            self.configuring = true;
        }
    }

    /// Starts from a snapshot taken at `slot` (the replica must have been
    /// built with `applied_through == slot`).
    pub fn with_snapshot(mut self, slot: Slot, chat: ChatState) -> Self {
        assert_eq!(self.replica.status().applied_through, slot, "the replica starts where the snapshot ends");
        self.chat = chat;
        self.snapshots.slot = slot;
        self
    }

    /// Sets when snapshots are taken.
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots.policy = policy;
        self
    }

    /// The runtime finished writing the snapshot of `slot` (durably), or
    /// failed to; on success the log below it is compacted.
    pub fn snapshot_written(&mut self, result: Result<Slot, String>) {
        self.snapshots.writing = false;
        match result {
            Ok(slot) => {
                self.snapshots.slot = self.snapshots.slot.max(slot);
                let through = self.snapshots.slot.saturating_sub(self.snapshots.policy.retained_slots);
                self.replica.compact(through);
            }
            Err(error) => {
                tracing::error!(%error, "writing a snapshot failed; the log keeps growing until one succeeds")
            }
        }
    }

    /// The runtime finished fetching a peer's snapshot (durable on disk and
    /// decoded), or gave up. A snapshot ahead of the applied state replaces it.
    pub fn snapshot_fetched(&mut self, result: Result<(Slot, ChatState), String>, out: &mut impl Outbox) {
        self.snapshots.fetching = false;
        self.snapshots.progress = None;
        let (slot, chat) = match result {
            Ok(fetched) => fetched,
            Err(error) => return tracing::warn!(%error, "fetching a snapshot failed; will ask again"),
        };
        if !self.replica.install_snapshot(slot) {
            return; // caught up from the log meanwhile
        }
        tracing::info!(slot, "installed a snapshot from a peer");
        self.chat = chat;
        self.snapshots.slot = self.snapshots.slot.max(slot);
        self.snapshots.applied_bytes = 0;
        for conn in self.subscriptions.subscribed() {
            self.pump(conn, out);
        }
    }

    /// Records how far a snapshot fetch got, for status.
    pub fn set_fetch_progress(&mut self, progress: FetchProgress) {
        self.snapshots.progress = Some(progress);
    }

    /// Records the bytes on disk of the log store and of the snapshots.
    pub fn set_disk_usage(&mut self, log_bytes: u64, snapshot_bytes: u64) {
        self.snapshots.disk = (log_bytes, snapshot_bytes);
    }

    /// A snapshot job when the policy says one is due and none is running.
    fn snapshot_due(&mut self) -> Option<SnapshotJob> {
        let applied = self.replica.status().applied_through;
        let state = &mut self.snapshots;
        let due = applied.saturating_sub(state.slot) >= state.policy.every_slots
            || state.applied_bytes >= state.policy.every_bytes;
        if state.writing || !due || applied <= state.slot {
            return None;
        }
        state.writing = true;
        state.applied_bytes = 0;
        Some(SnapshotJob { slot: applied, state: self.chat.clone() })
    }

    /// A fetch for the runtime to start, unless one is running.
    fn fetch_due(&mut self, wanted: Option<SnapshotWanted>) -> Option<SnapshotWanted> {
        let wanted = wanted.filter(|_| !self.snapshots.fetching)?;
        self.snapshots.fetching = true;
        Some(wanted)
    }

    /// Sets the process id reported in status.
    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    /// The consensus core (read only).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The applied chat state (read only).
    pub fn chat(&self) -> &ChatState {
        &self.chat
    }

    /// Starts recording applied proposals (for the simulator's checkers).
    pub fn record_applied(&mut self) {
        self.applied_log = Some(Vec::new());
    }

    /// Takes what was applied since the last call.
    pub fn take_applied(&mut self) -> ApplyLog {
        self.applied_log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Feeds a tick, a peer message or a persisted write to the core.
    pub fn step(&mut self, event: Event, out: &mut impl Outbox) {
        let tick = event == Event::Tick;
        self.replica.step(event);
        if tick {
            for conn in self.subscriptions.backlogged() {
                self.pump(conn, out);
            }
            self.drop_stale_subscriptions(out);
        }
    }

    /// A replica that has not heard from a leader for two election timeouts
    /// may be cut off and no longer learning new messages: it closes its
    /// subscribed connections, so their clients resume on another replica
    /// from their read position instead of waiting in silence.
    fn drop_stale_subscriptions(&mut self, out: &mut impl Outbox) {
        let limit = 2 * self.replica.config().election_ticks_max;
        if self.replica.leader_silence_ticks() <= limit {
            return;
        }
        for conn in self.subscriptions.subscribed() {
            out.kick(conn);
            self.disconnected(conn);
        }
    }

    /// A client connected from `address`.
    pub fn connected(&mut self, conn: ConnId, address: IpAddr) {
        self.connections.insert(conn, Conn { address, signed_in: None, unsubscribes: 0 });
    }

    pub fn disconnected(&mut self, conn: ConnId) {
        self.connections.remove(&conn);
        self.subscriptions.unsubscribe(conn);
    }

    /// Carries out the core's `Ready`: applies chosen commands, answers
    /// clients and pushes deliveries; returns what the runtime must persist
    /// and send.
    pub fn process(&mut self, out: &mut impl Outbox) -> Effects {
        let ready = self.replica.ready();
        for (slot, value) in ready.committed {
            self.snapshots.applied_bytes += value.size_bytes() as u64;
            self.apply(slot, value, out);
        }
        for (read, result) in ready.reads {
            self.finish_read(read, result, out);
        }
        self.notice_role_change(out);
        self.configure_rooms(0);
        let fetch = self.fetch_due(ready.snapshot_wanted);
        let passwords = std::mem::take(&mut self.identity.outgoing);
        Effects { write: ready.write, messages: ready.messages, snapshot: self.snapshot_due(), fetch, passwords }
    }

    fn notice_role_change(&mut self, out: &mut impl Outbox) {
        let leader = self.replica.role() == Role::Leader;
        if self.was_leader && !leader {
            self.configuring = false;
            let waiting = std::mem::take(&mut self.pending_commands);
            let reason = "the leader changed before the outcome was known; retry";
            for waiter in waiting.into_values().flatten() {
                self.reply(waiter, Err(RequestError::Unavailable(reason.into())), out);
            }
        }
        self.was_leader = leader;
        let rebuilding = self.replica.role() == Role::Recovering;
        if self.was_rebuilding && !rebuilding {
            let status = self.replica.status();
            tracing::info!(
                incarnation = status.incarnation,
                chosen = status.chosen_through,
                promised = %status.promised,
                "finished rebuilding after a disk loss; voting from now on"
            );
        }
        self.was_rebuilding = rebuilding;
    }

    /// Handles one client request; `now` is this replica's clock, stamped
    /// on what it proposes.
    pub fn request(&mut self, conn: ConnId, frame: ClientFrame, now: Millis, out: &mut impl Outbox) {
        let waiter = (conn, frame.request_id);
        match frame.request {
            Request::Status => {
                let status = self.status_report();
                self.reply(waiter, Ok(Response::Status(status)), out);
            }
            Request::Digest => {
                let applied_through = self.replica.status().applied_through;
                let digest = StateDigest { applied_through, digest: self.chat.digest() };
                self.reply(waiter, Ok(Response::Digest(digest)), out);
            }
            Request::Register { client } => {
                let proposal = Proposal::new(client, 0, now, Command::RegisterClient);
                self.propose(waiter, proposal, out)
            }
            Request::CreateAccount { client, seq, name, password } => {
                self.create_account(waiter, (client, seq), name, password, out)
            }
            Request::SignIn { name, password } => self.sign_in(waiter, name, password, now, out),
            Request::Resume { token } => self.resume(waiter, token, now, out),
            Request::Command { client, seq, command, read_through } => {
                let proposal = Proposal { client, seq, at_millis: now, command, read_through };
                self.command(waiter, proposal, out)
            }
            Request::List { pattern } => self.start_read(waiter, ReadKind::List { pattern }, out),
            Request::Rooms { pattern } => self.start_read(waiter, ReadKind::Rooms { pattern }, out),
            Request::History { name, room, before, count } => match self.authorize(conn, &name) {
                Ok(()) => self.start_read(waiter, ReadKind::History { name, room, before, count }, out),
                Err(error) => self.reply(waiter, Err(error), out),
            },
            Request::Subscribe { name, after } => match self.authorize(conn, &name) {
                Ok(()) => {
                    let unsubscribes = self.connections.get(&conn).map_or(0, |c| c.unsubscribes);
                    self.start_read(waiter, ReadKind::Subscribe { name, after, unsubscribes }, out)
                }
                Err(error) => self.reply(waiter, Err(error), out),
            },
            Request::Unsubscribe { .. } => {
                self.subscriptions.unsubscribe(conn);
                if let Some(conn) = self.connections.get_mut(&conn) {
                    conn.unsubscribes += 1;
                }
                self.reply(waiter, Ok(Response::Unsubscribed), out);
            }
            Request::Ack { name, through } => {
                if let Err(error) = self.authorize(conn, &name) {
                    return self.reply(waiter, Err(error), out);
                }
                let (client, seq) = (self.ack_client, self.next_ack_seq);
                self.next_ack_seq += 1;
                let command = Command::Ack { name, through };
                self.validated(waiter, Proposal::new(client, seq, now, command), out);
            }
        }
    }

    /// A session command from a client (its `read_through` as the client
    /// sent it, checked here).
    fn command(&mut self, waiter: Waiter, proposal: Proposal, out: &mut impl Outbox) {
        let (client, seq) = (proposal.client, proposal.seq);
        let account = match &proposal.command {
            Command::Delete { name } | Command::Join { name, .. } | Command::Leave { name, .. } => {
                if proposal.read_through.is_some() {
                    let error = RequestError::BadRequest("only send, say and broadcast carry a read position".into());
                    return self.reply(waiter, Err(error), out);
                }
                name
            }
            Command::Send { from, .. } | Command::Say { from, .. } | Command::Broadcast { from, .. } => from,
            _ => {
                let error = RequestError::BadRequest(
                    "only delete, send, join, leave, say and broadcast travel as commands".into(),
                );
                return self.reply(waiter, Err(error), out);
            }
        };
        if let Err(error) = self.authorize(waiter.0, account) {
            return self.reply(waiter, Err(error), out);
        }
        if seq == 0 {
            let error = RequestError::BadRequest("command sequence numbers start at 1".into());
            return self.reply(waiter, Err(error), out);
        }
        if chorus_plant::active(chorus_plant::bugs::DEDUP_OUTSIDE_LOG) {
            if let Some(reply) = self.planted_dedup.get(&(client, seq)).cloned() {
                return self.reply(waiter, reply, out);
            }
        }
        self.validated(waiter, proposal, out);
    }

    /// Whether `conn` signed in as `name`.
    fn authorize(&self, conn: ConnId, name: &str) -> Result<(), RequestError> {
        match self.connections.get(&conn).and_then(|c| c.signed_in.as_deref()) {
            Some(me) if me == name => Ok(()),
            Some(me) => Err(RequestError::Unauthorized(format!("signed in as {me}, not as {name}"))),
            None => Err(RequestError::Unauthorized(format!("sign in as {name} first"))),
        }
    }

    /// Only the leader creates accounts and checks passwords: a refusal
    /// naming the leader, if this replica is not it.
    fn leader_only(&self) -> Result<(), RequestError> {
        let status = self.replica.status();
        match status.role {
            Role::Leader => Ok(()),
            _ => Err(RequestError::NotLeader { leader: status.leader }),
        }
    }

    /// Hands a password job to the runtime, unless too many are out.
    fn start_job(&mut self, pending: PendingJob, work: PasswordWork) -> Result<(), RequestError> {
        if self.identity.pending.len() >= limits::PASSWORD_JOBS_MAX {
            return Err(RequestError::Busy);
        }
        let id = self.identity.next_job;
        self.identity.next_job += 1;
        self.identity.pending.insert(id, pending);
        self.identity.outgoing.push(PasswordJob { id, work });
        Ok(())
    }

    /// `CreateAccount`: checks, then hashes the password off the core; the
    /// proposal follows in [`Machine::password_done`].
    fn create_account(
        &mut self,
        waiter: Waiter,
        (client, seq): (ClientId, u64),
        name: String,
        password: Password,
        out: &mut impl Outbox,
    ) {
        let checked = check_credentials(&name, &password)
            .and_then(|()| match seq {
                0 => Err(RequestError::BadRequest("command sequence numbers start at 1".into())),
                _ => self.leader_only(),
            })
            .and_then(|()| {
                let pending = PendingJob::Create { waiter, client, seq, name };
                self.start_job(pending, PasswordWork::Hash { password: password.0 })
            });
        if let Err(error) = checked {
            self.reply(waiter, Err(error), out);
        }
    }

    /// `SignIn`: the throttle, then the account's hash, then the check off
    /// the core; the answer follows in [`Machine::password_done`].
    fn sign_in(&mut self, waiter: Waiter, name: String, password: Password, now: Millis, out: &mut impl Outbox) {
        let Some(address) = self.connections.get(&waiter.0).map(|c| c.address) else {
            return;
        };
        let checked = check_credentials(&name, &password)
            .and_then(|()| self.leader_only())
            .and_then(|()| {
                let throttled = self.identity.throttle.check(&name, address, now);
                throttled.map_err(|retry_after_millis| RequestError::Throttled { retry_after_millis })
            })
            .and_then(|()| match self.chat.credentials(&name) {
                Some((hash, created)) => {
                    let work = PasswordWork::Verify { password: password.0, hash: hash.to_string() };
                    self.start_job(PendingJob::SignIn { waiter, name: name.clone(), created, address }, work)
                }
                // No account, no password to guess (and `list` shows the
                // names anyway): refused alike, but not counted, so mistyped
                // names cannot lock an address out.
                None => Err(RequestError::Unauthorized(WRONG_PASSWORD.into())),
            });
        if let Err(error) = checked {
            self.reply(waiter, Err(error), out);
        }
    }

    /// `Resume`: a token from an earlier sign-in, checked against the
    /// applied state (no password work).
    fn resume(&mut self, waiter: Waiter, token: SessionToken, now: Millis, out: &mut impl Outbox) {
        let checked = self
            .leader_only()
            .and_then(|()| self.chat.check_token(&token, now).map_err(|e| RequestError::Unauthorized(e.to_string())));
        match checked {
            Ok(()) => self.signed_in(waiter, token, out),
            Err(error) => self.reply(waiter, Err(error), out),
        }
    }

    /// Binds `waiter`'s connection to the token's account and answers.
    /// Signing in as another account ends the connection's subscription.
    fn signed_in(&mut self, waiter: Waiter, token: SessionToken, out: &mut impl Outbox) {
        if let Some(conn) = self.connections.get_mut(&waiter.0) {
            let previous = conn.signed_in.replace(token.name.clone());
            if previous.is_some_and(|previous| previous != token.name) {
                self.subscriptions.unsubscribe(waiter.0);
            }
        }
        self.reply(waiter, Ok(Response::SignedIn { token }), out);
    }

    /// The runtime finished password job `id`; `now` is this replica's clock.
    pub fn password_done(&mut self, id: JobId, outcome: PasswordOutcome, now: Millis, out: &mut impl Outbox) {
        let Some(pending) = self.identity.pending.remove(&id) else {
            return;
        };
        match (pending, outcome) {
            (PendingJob::Create { waiter, client, seq, name }, PasswordOutcome::Hashed(Ok(password_hash))) => {
                let command = Command::Create { name, password_hash };
                self.validated(waiter, Proposal::new(client, seq, now, command), out);
            }
            (PendingJob::Create { waiter, .. }, PasswordOutcome::Hashed(Err(error))) => {
                let error = RequestError::Unavailable(format!("hashing the password failed: {error}"));
                self.reply(waiter, Err(error), out);
            }
            (PendingJob::SignIn { waiter, name, created, address }, PasswordOutcome::Verified(matched)) => {
                let same_account = self.chat.credentials(&name).map(|(_, c)| c) == Some(created);
                let token = self.chat.issue_token(&name, now.saturating_add(limits::SESSION_TOKEN_TTL_MILLIS));
                match token.filter(|_| matched && same_account) {
                    Some(token) => {
                        self.identity.throttle.succeeded(&name);
                        self.signed_in(waiter, token, out);
                    }
                    None => {
                        self.identity.throttle.failed(&name, address, now);
                        self.reply(waiter, Err(RequestError::Unauthorized(WRONG_PASSWORD.into())), out);
                    }
                }
            }
            (pending, outcome) => {
                tracing::error!(?pending, ?outcome, "a password job came back with the wrong kind of outcome")
            }
        }
    }

    fn validated(&mut self, waiter: Waiter, proposal: Proposal, out: &mut impl Outbox) {
        match validate(&proposal.command) {
            Ok(()) => self.propose(waiter, proposal, out),
            Err(error) => self.reply(waiter, Err(error.into()), out),
        }
    }

    fn propose(&mut self, waiter: Waiter, proposal: Proposal, out: &mut impl Outbox) {
        let key = (proposal.client, proposal.seq);
        match self.replica.propose(encode_proposal(&proposal)) {
            Ok(()) => self.pending_commands.entry(key).or_default().push(waiter),
            Err(error) => self.reply(waiter, Err(refusal(error)), out),
        }
    }

    fn start_read(&mut self, waiter: Waiter, kind: ReadKind, out: &mut impl Outbox) {
        let id = self.next_read;
        self.next_read += 1;
        match self.replica.read(id) {
            Ok(()) => {
                self.pending_reads.insert(id, (waiter, kind));
            }
            Err(error) => self.reply(waiter, Err(refusal(error)), out),
        }
    }

    fn finish_read(&mut self, id: ReadId, result: Result<(), NotLeader>, out: &mut impl Outbox) {
        let Some((waiter, kind)) = self.pending_reads.remove(&id) else {
            return;
        };
        if let Err(not_leader) = result {
            return self.reply(waiter, Err(RequestError::NotLeader { leader: not_leader.leader }), out);
        }
        match kind {
            ReadKind::List { pattern } => {
                let listed = self.chat.list(pattern.as_deref());
                self.reply(waiter, listed.map(Response::List).map_err(RequestError::from), out);
            }
            ReadKind::Rooms { pattern } => {
                let listed = self.chat.rooms(pattern.as_deref());
                self.reply(waiter, listed.map(Response::Rooms).map_err(RequestError::from), out);
            }
            ReadKind::History { name, room, before, count } => {
                let page = self.chat.history(&name, &room, before, count as usize);
                self.reply(waiter, page.map(Response::History).map_err(RequestError::from), out);
            }
            ReadKind::Subscribe { name, after, unsubscribes } => {
                self.finish_subscribe(waiter, (name, after), unsubscribes, out)
            }
        }
    }

    /// The subscription starts once its read is confirmed; the connection
    /// must still be signed in as `name` then (a sign-in as another account
    /// may have overtaken the read, and must not leave it subscribed). An
    /// `Unsubscribe` sent after it ends it at once: it answers
    /// `Subscribed` (it did take effect, in the connection's order) but
    /// delivers nothing.
    fn finish_subscribe(&mut self, waiter: Waiter, request: (String, u64), unsubscribes: u64, out: &mut impl Outbox) {
        let (name, after) = request;
        if !self.chat.account_exists(&name) {
            return self.reply(waiter, Err(ChatError::NoSuchAccount { name }.into()), out);
        }
        let conn = waiter.0;
        if let Err(error) = self.authorize(conn, &name) {
            return self.reply(waiter, Err(error), out);
        }
        if self.connections.get(&conn).is_some_and(|c| c.unsubscribes != unsubscribes) {
            return self.reply(waiter, Ok(Response::Subscribed), out);
        }
        self.subscriptions.subscribe(conn, name, after);
        self.reply(waiter, Ok(Response::Subscribed), out);
        self.pump(conn, out);
    }

    /// Applies one chosen slot to the chat state, answering whoever waits
    /// here and pushing deliveries to subscribed connections.
    fn apply(&mut self, slot: Slot, value: Value, out: &mut impl Outbox) {
        let mut recorded = self.applied_log.is_some().then(Vec::new);
        let commands: &[Vec<u8>] = match &value {
            Value::Batch(commands) => commands,
            Value::Noop => &[],
        };
        for bytes in commands {
            let proposal = match chorus_chat::decode_proposal(bytes) {
                Ok(proposal) => proposal,
                Err(error) => {
                    // Every replica skips the same bytes, so states stay equal.
                    tracing::error!(slot, %error, "skipping an undecodable command in the log");
                    continue;
                }
            };
            let applied = self.chat.apply(&proposal);
            if matches!(proposal.command, Command::Configure { .. }) {
                self.configuring = false;
            }
            if let Some(recorded) = recorded.as_mut() {
                recorded.push((proposal, applied.reply.clone()));
            }
            if let Some(waiters) = self.pending_commands.remove(&(applied.client, applied.seq)) {
                let result = applied.reply.map(response_for).map_err(RequestError::from);
                if chorus_plant::active(chorus_plant::bugs::DEDUP_OUTSIDE_LOG) {
                    self.planted_dedup.insert((applied.client, applied.seq), result.clone());
                }
                for waiter in waiters {
                    self.reply(waiter, result.clone(), out);
                }
            }
            self.announce(applied.event, out);
        }
        if let (Some(commands), Some(log)) = (recorded, self.applied_log.as_mut()) {
            log.push(AppliedSlot { slot, commands, digest: self.chat.digest() });
        }
    }

    fn announce(&mut self, event: Option<StateEvent>, out: &mut impl Outbox) {
        match event {
            Some(StateEvent::Queued(message)) => {
                for conn in self.subscriptions.conns_for(&message.to) {
                    self.pump(conn, out);
                }
            }
            Some(StateEvent::Posted { room }) => {
                for conn in self.subscriptions.conns_for_room(&self.chat, &room) {
                    self.pump(conn, out);
                }
            }
            Some(StateEvent::AccountDeleted { name }) => {
                for conn in self.connections.values_mut().filter(|c| c.signed_in.as_ref() == Some(&name)) {
                    conn.signed_in = None;
                }
                for conn in self.subscriptions.conns_for(&name) {
                    self.subscriptions.unsubscribe(conn);
                    let reason = "the account was deleted".to_string();
                    self.send_frame(conn, ServerFrame::Ended { name: name.clone(), reason }, out);
                }
            }
            None => {}
        }
    }

    fn pump(&mut self, conn: ConnId, out: &mut impl Outbox) {
        if !self.connections.contains_key(&conn) {
            self.subscriptions.unsubscribe(conn);
            return;
        }
        self.subscriptions.pump(conn, &self.chat, out);
    }

    fn reply(&mut self, (conn, request_id): Waiter, result: Result<Response, RequestError>, out: &mut impl Outbox) {
        self.send_frame(conn, ServerFrame::Reply { request_id, result }, out);
    }

    /// Queues a frame; a connection whose queue is full is too slow and is
    /// closed (it resumes from its replicated read position elsewhere).
    fn send_frame(&mut self, conn: ConnId, frame: ServerFrame, out: &mut impl Outbox) {
        if !self.connections.contains_key(&conn) {
            return;
        }
        if out.push(conn, frame).is_err() {
            tracing::warn!(conn, "closing a client that does not keep up");
            out.kick(conn);
            self.disconnected(conn);
        }
    }

    /// This replica's view of itself.
    pub fn status_report(&self) -> StatusReport {
        let status = self.replica.status();
        StatusReport {
            id: status.id,
            pid: self.pid,
            role: status.role,
            leader: status.leader,
            ballot: status.promised,
            chosen_through: status.chosen_through,
            applied_through: status.applied_through,
            last_slot: status.last_slot,
            accounts: self.chat.accounts_len() as u64,
            clients_connected: self.connections.len() as u64,
            snapshot_slot: self.snapshots.slot,
            compacted_through: status.compacted_through,
            log_disk_bytes: self.snapshots.disk.0,
            snapshot_disk_bytes: self.snapshots.disk.1,
            snapshot_fetch: self.snapshots.progress,
            incarnation: status.incarnation,
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

/// The checks a name and password pass before any password work: a valid
/// name, and a password within the length bounds.
fn check_credentials(name: &str, password: &Password) -> Result<(), RequestError> {
    validate_name(name)?;
    passwords::check_length(&password.0).map_err(RequestError::BadRequest)
}

fn refusal(error: ProposeError) -> RequestError {
    match error {
        ProposeError::NotLeader(NotLeader { leader }) => RequestError::NotLeader { leader },
        ProposeError::Busy => RequestError::Busy,
        ProposeError::TooLarge => RequestError::BadRequest("request too large".into()),
    }
}
