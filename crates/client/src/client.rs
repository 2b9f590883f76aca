//! [`Client`]: the public API, the call loop (leader discovery, retries,
//! deadlines), and the two background tasks: the supervisor that
//! re-establishes a lost subscription and the acknowledger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chorus_chat::{ChatError, Command, HistoryPage, ListResult, MessageId, Outcome, RoomsResult, SessionToken};
use chorus_paxos::ReplicaId;
use chorus_proto::{Password, ReplicaAddress, Request, RequestError, Response};
use chorus_tls::ClientTls;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use crate::acks::AckTracker;
use crate::backoff::Backoff;
use crate::connection::{AttemptError, Connection, ReplyResult, Wiring};
use crate::delivery::{Deliveries, Delivery};
use crate::error::ClientError;
use crate::limits::{ACK_INTERVAL, ACK_RETRY_DELAY, BACKOFF_MAX, DELIVERY_QUEUE_MAX};
use crate::transport::Endpoints;

/// Timing knobs; the defaults suit a cluster on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Replica to try first; `None` picks one at random, which spreads
    /// clients over the replicas until they learn the leader.
    pub first_replica: Option<ReplicaId>,
    /// Longest time one call (command, list, subscribe, ack) may take over
    /// all its attempts, before it fails with [`ClientError::Unavailable`].
    pub call_timeout: Duration,
    /// Longest wait for one reply on one connection (connecting included).
    pub attempt_timeout: Duration,
    /// Longest time [`Client::flush`] waits for acknowledgements.
    pub flush_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            first_replica: None,
            call_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(3),
        }
    }
}

/// A connection to a Chorus cluster with an exactly-once session. Cloning
/// is cheap and shares everything; the background tasks stop when the
/// last clone is dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// The exactly-once session.
#[derive(Clone, Copy, Debug)]
struct Session {
    /// Random id naming the session in the replicated state.
    client_id: u64,
    /// Sequence number of the next command (0 is the registration).
    next_seq: u64,
}

/// Which connection is live and where the next one goes.
#[derive(Debug)]
struct Slot {
    /// The live connection, if any.
    current: Option<Arc<Connection>>,
    /// Index (in `Inner::replicas`) of the replica believed to lead.
    target: usize,
}

/// Why a call failed, before it is phrased for the application.
#[derive(Debug)]
enum CallError {
    /// The deadline passed; the string is the last problem seen.
    Unavailable(String),
    /// A replica refused the request for good.
    Refused(RequestError),
    /// The request cannot be encoded.
    Encode(String),
}

/// Progress of one call over its attempts.
struct Attempts {
    /// Pause before the next attempt.
    backoff: Backoff,
    /// Redirects followed so far; only the first is followed without a pause.
    redirects: u32,
    /// The last thing that went wrong, for the error message.
    last_problem: String,
}

impl Attempts {
    fn new() -> Self {
        Attempts {
            backoff: Backoff::new(),
            redirects: 0,
            last_problem: "no replica was tried before the deadline".into(),
        }
    }

    /// The pause after a redirect: none the first time (the hint is fresh),
    /// a backoff after that (replicas may disagree during an election).
    fn redirect_pause(&mut self) -> Option<Duration> {
        self.redirects += 1;
        (self.redirects > 1).then(|| self.backoff.next_delay())
    }
}

/// Everything the client and its tasks share.
#[derive(Debug)]
struct Inner {
    /// The cluster, as configured; never empty.
    replicas: Vec<ReplicaAddress>,
    /// The cluster CA to verify replicas against; `None`: plaintext.
    tls: Option<ClientTls>,
    /// Timing knobs.
    options: ClientOptions,
    /// The live connection; locked while one is being established, so
    /// concurrent callers share it.
    slot: tokio::sync::Mutex<Slot>,
    /// The exactly-once session.
    session: Mutex<Session>,
    /// The token of the last sign-in: every new connection resumes it.
    token: Mutex<Option<SessionToken>>,
    /// Held by a command from taking its sequence number until its reply,
    /// so sequence numbers reach the cluster in order.
    command_turn: tokio::sync::Mutex<()>,
    /// The de-duplicating delivery path.
    deliveries: Arc<Deliveries>,
    /// The application's end of the delivery stream, until taken.
    delivery_stream: Mutex<Option<mpsc::Receiver<Delivery>>>,
    /// Shown-but-unacknowledged messages.
    acks: Mutex<AckTracker>,
    /// Wakes the acknowledger.
    ack_wanted: Arc<Notify>,
    /// Set by `flush`: acknowledge now, without waiting out `ACK_INTERVAL`.
    ack_urgent: AtomicBool,
    /// Bumped whenever an acknowledgement is confirmed (or given up on).
    ack_progress: watch::Sender<u64>,
    /// Wakes the supervisor when a connection is lost.
    connection_lost: Arc<Notify>,
    /// Never sent on; dropping it (with `Inner`) stops the background tasks.
    closing: watch::Sender<()>,
}

/// Locks a std mutex; a panic elsewhere does not make the state unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sleeps for `delay`, but not past `deadline`.
async fn pause(delay: Duration, deadline: Instant) {
    tokio::time::sleep_until((Instant::now() + delay).min(deadline)).await;
}

impl Client {
    /// Connects to some replica of `endpoints` (random start), registers a
    /// fresh session and returns once the cluster has recorded it.
    pub async fn connect(endpoints: Endpoints) -> Result<Client, ClientError> {
        Client::connect_with(endpoints, ClientOptions::default()).await
    }

    /// [`Client::connect`] with explicit options.
    pub async fn connect_with(endpoints: Endpoints, options: ClientOptions) -> Result<Client, ClientError> {
        let Endpoints { replicas, tls } = endpoints;
        if replicas.is_empty() {
            return Err(ClientError::NoReplicas);
        }
        let first = options
            .first_replica
            .and_then(|id| replicas.iter().position(|r| r.id == id))
            .unwrap_or_else(|| rand::random_range(0..replicas.len()));
        let (delivery_tx, delivery_rx) = mpsc::channel(DELIVERY_QUEUE_MAX);
        let inner = Arc::new(Inner {
            replicas,
            tls,
            options,
            slot: tokio::sync::Mutex::new(Slot { current: None, target: first }),
            session: Mutex::new(Session { client_id: 0, next_seq: 1 }),
            token: Mutex::new(None),
            command_turn: tokio::sync::Mutex::new(()),
            deliveries: Arc::new(Deliveries::new(delivery_tx)),
            delivery_stream: Mutex::new(Some(delivery_rx)),
            acks: Mutex::new(AckTracker::default()),
            ack_wanted: Arc::new(Notify::new()),
            ack_urgent: AtomicBool::new(false),
            ack_progress: watch::channel(0).0,
            connection_lost: Arc::new(Notify::new()),
            closing: watch::channel(()).0,
        });
        tokio::spawn(supervise(Arc::downgrade(&inner), inner.connection_lost.clone(), inner.closing.subscribe()));
        tokio::spawn(acknowledge(Arc::downgrade(&inner), inner.ack_wanted.clone(), inner.closing.subscribe()));
        inner.register(rand::random()).await?;
        Ok(Client { inner })
    }

    /// Creates account `name` with `password` (the leader stores only its
    /// argon2id hash). Does not sign in.
    pub async fn create(&self, name: &str, password: &str) -> Result<(), ClientError> {
        chorus_chat::validate_name(name)?;
        let (name, password) = (name.to_string(), Password(password.to_string()));
        let request = move |client, seq| Request::CreateAccount { client, seq, name, password };
        match self.inner.execute_request(request).await? {
            Outcome::Created => Ok(()),
            other => Err(unexpected("create", &other)),
        }
    }

    /// Signs in as `name`: from now on this client acts as `name` (send,
    /// delete, subscribe), and resumes the sign-in with a session token on
    /// any replica it reconnects to, until the token expires.
    ///
    /// Switching from another account first acknowledges what was shown
    /// as that one (a best-effort [`Client::flush`]: afterwards this client
    /// may no longer acknowledge for it) and ends its delivery.
    pub async fn sign_in(&self, name: &str, password: &str) -> Result<(), ClientError> {
        chorus_chat::validate_name(name)?;
        if let Some(previous) = self.signed_in_as().filter(|previous| previous != name) {
            if let Err(error) = self.flush().await {
                tracing::debug!(%error, account = %previous, "acknowledgements before switching accounts");
            }
            if self.inner.deliveries.filter().resume_point().is_some_and(|(current, _)| current == previous) {
                self.inner.deliveries.end(previous.clone(), "signed in as another account".into()).await;
            }
            // The replica stops too, even if this sign-in fails (and so does
            // a resubscription still in flight): a stream the filter skipped
            // parts of must not feed a later subscription to `previous`.
            self.inner.unsubscribe_quietly(previous).await;
        }
        let request = Request::SignIn { name: name.into(), password: Password(password.into()) };
        match self.inner.call(&request).await {
            Ok(Response::SignedIn { token }) => {
                *lock(&self.inner.token) = Some(token);
                Ok(())
            }
            Ok(other) => Err(unexpected("sign in", &other)),
            Err(error) => Err(error.for_read()),
        }
    }

    /// The account this client signed in as, if any.
    pub fn signed_in_as(&self) -> Option<String> {
        lock(&self.inner.token).as_ref().map(|token| token.name.clone())
    }

    /// Deletes account `name` and its queued messages.
    pub async fn delete(&self, name: &str) -> Result<(), ClientError> {
        let command = Command::Delete { name: name.into() };
        match self.inner.execute(command).await? {
            Outcome::Deleted => Ok(()),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Sends `text` from `from` to `to`; returns the message's id.
    pub async fn send(&self, from: &str, to: &str, text: &str) -> Result<MessageId, ClientError> {
        let command = Command::Send { from: from.into(), to: to.into(), text: text.into() };
        match self.inner.post(command, from).await? {
            Outcome::Sent { id } => Ok(id),
            other => Err(unexpected("send", &other)),
        }
    }

    /// Account names matching the regular expression `pattern` anywhere
    /// (all when `None`), sorted; linearizable.
    pub async fn list(&self, pattern: Option<&str>) -> Result<ListResult, ClientError> {
        let request = Request::List { pattern: pattern.map(str::to_string) };
        match self.inner.call(&request).await {
            Ok(Response::List(result)) => Ok(result),
            Ok(other) => Err(unexpected("list", &other)),
            Err(error) => Err(error.for_read()),
        }
    }

    /// Makes `name` a member of `room` (created if new): from now on its
    /// subscription also delivers the room's messages.
    pub async fn join(&self, name: &str, room: &str) -> Result<(), ClientError> {
        chorus_chat::validate_room(room)?;
        let command = Command::Join { name: name.into(), room: room.into() };
        match self.inner.execute(command).await? {
            Outcome::Joined => Ok(()),
            other => Err(unexpected("join", &other)),
        }
    }

    /// Ends `name`'s membership of `room`.
    pub async fn leave(&self, name: &str, room: &str) -> Result<(), ClientError> {
        chorus_chat::validate_room(room)?;
        let command = Command::Leave { name: name.into(), room: room.into() };
        match self.inner.execute(command).await? {
            Outcome::Left => Ok(()),
            other => Err(unexpected("leave", &other)),
        }
    }

    /// Posts `text` from member `from` to `room`; returns the message's
    /// (global) id, which orders it among all the room's messages.
    pub async fn say(&self, from: &str, room: &str, text: &str) -> Result<MessageId, ClientError> {
        chorus_chat::validate_room(room)?;
        let command = Command::Say { from: from.into(), room: room.into(), text: text.into() };
        match self.inner.post(command, from).await? {
            Outcome::Sent { id } => Ok(id),
            other => Err(unexpected("say", &other)),
        }
    }

    /// Posts `text` from `from` to the built-in room `#all`, which every
    /// account is in; returns the message's id.
    pub async fn broadcast(&self, from: &str, text: &str) -> Result<MessageId, ClientError> {
        let command = Command::Broadcast { from: from.into(), text: text.into() };
        match self.inner.post(command, from).await? {
            Outcome::Sent { id } => Ok(id),
            other => Err(unexpected("broadcast", &other)),
        }
    }

    /// Rooms whose names match the regular expression `pattern` anywhere
    /// (all when `None`), sorted, with member counts; linearizable.
    pub async fn rooms(&self, pattern: Option<&str>) -> Result<RoomsResult, ClientError> {
        let request = Request::Rooms { pattern: pattern.map(str::to_string) };
        match self.inner.call(&request).await {
            Ok(Response::Rooms(result)) => Ok(result),
            Ok(other) => Err(unexpected("rooms", &other)),
            Err(error) => Err(error.for_read()),
        }
    }

    /// The newest `count` retained messages of `room` with id < `before`
    /// (the newest of all when `None`), oldest first, read as member
    /// `name`; pass the first id of a page as `before` to page further
    /// back. Linearizable.
    pub async fn history(
        &self,
        name: &str,
        room: &str,
        before: Option<MessageId>,
        count: u32,
    ) -> Result<HistoryPage, ClientError> {
        chorus_chat::validate_room(room)?;
        let request = Request::History { name: name.into(), room: room.into(), before, count };
        match self.inner.call(&request).await {
            Ok(Response::History(page)) => Ok(page),
            Ok(other) => Err(unexpected("history", &other)),
            Err(error) => Err(error.for_read()),
        }
    }

    /// Starts delivery for `name` (replaces any earlier subscription of
    /// this client once a replica accepts it; on failure the earlier one
    /// stays): queued messages oldest first, then live ones.
    pub async fn subscribe(&self, name: &str) -> Result<(), ClientError> {
        chorus_chat::validate_name(name)?;
        let after = self.inner.deliveries.filter().begin(name);
        let request = Request::Subscribe { name: name.into(), after };
        let result = match self.inner.call(&request).await {
            Ok(Response::Subscribed) => Ok(()),
            Ok(other) => Err(unexpected("subscribe", &other)),
            Err(error) => Err(error.for_read()),
        };
        let replaced = match &result {
            Ok(()) => self.inner.deliveries.filter().confirm(name),
            Err(_) => {
                self.inner.deliveries.filter().cancel(name);
                None
            }
        };
        if let Some(replaced) = replaced {
            self.inner.unsubscribe_quietly(replaced).await;
        }
        // If the connection died while we were subscribing, the supervisor
        // must look again now that the subscription is current.
        self.inner.connection_lost.notify_one();
        result
    }

    /// Takes the delivery stream (once): de-duplicated, in order, for the
    /// current subscription. Take it before subscribing: until it is read,
    /// a full stream holds up the connection.
    pub fn deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        lock(&self.inner.delivery_stream).take()
    }

    /// The application has shown message `id` of account `name`: the
    /// library may now move the replicated read position up to it (in the
    /// background, batched). It never moves past an id not passed here.
    pub fn shown(&self, name: &str, id: MessageId) {
        if lock(&self.inner.acks).shown(name, id) {
            self.inner.ack_wanted.notify_one();
        }
    }

    /// Waits (at most [`ClientOptions::flush_timeout`]) until every shown
    /// message is acknowledged; call before quitting.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.inner.options.flush_timeout;
        let mut progress = self.inner.ack_progress.subscribe();
        loop {
            if !lock(&self.inner.acks).pending() {
                return Ok(());
            }
            self.inner.ack_urgent.store(true, Ordering::Relaxed);
            self.inner.ack_wanted.notify_one();
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    return Err(ClientError::Unavailable(format!(
                        "shown messages were not all acknowledged within {} ms; \
                         they may be delivered again",
                        self.inner.options.flush_timeout.as_millis()
                    )))
                }
            }
        }
    }

    /// The id of the current exactly-once session.
    pub fn client_id(&self) -> u64 {
        lock(&self.inner.session).client_id
    }
}

/// A read position a post in flight carries. Dropped when the post ends,
/// even if the caller gave up on it: unless the reply confirmed the
/// position, the acknowledger takes it over.
struct Carrying<'a> {
    inner: &'a Inner,
    name: &'a str,
    through: MessageId,
    applied: bool,
}

impl Drop for Carrying<'_> {
    fn drop(&mut self) {
        lock(&self.inner.acks).post_ended(self.name, self.through, self.applied);
        if self.applied {
            self.inner.ack_progress.send_modify(|count| *count += 1);
        } else {
            self.inner.ack_wanted.notify_one();
        }
    }
}

/// True for requests a replica serves only on a connection signed in as
/// the account they act for.
fn acts_for_an_account(request: &Request) -> bool {
    matches!(request, Request::Command { .. } | Request::Subscribe { .. } | Request::Ack { .. })
}

/// The error for a reply of the wrong kind.
fn unexpected(what: &str, reply: &dyn std::fmt::Debug) -> ClientError {
    ClientError::Protocol(format!("unexpected reply to {what}: {reply:?}"))
}

impl CallError {
    /// Phrased for a read or a subscription (nothing to be unsure about).
    fn for_read(self) -> ClientError {
        match self {
            CallError::Unavailable(problem) => ClientError::Unavailable(problem),
            CallError::Refused(refusal) => ClientError::from_refusal(refusal),
            CallError::Encode(reason) => ClientError::BadRequest(reason),
        }
    }
}

impl Inner {
    /// Opens the session `client_id` (sequence 0); commands restart at 1.
    async fn register(&self, client_id: u64) -> Result<(), ClientError> {
        match self.call(&Request::Register { client: client_id }).await {
            Ok(Response::Registered) => {
                *lock(&self.session) = Session { client_id, next_seq: 1 };
                Ok(())
            }
            Ok(other) => Err(unexpected("register", &other)),
            Err(error) => Err(error.for_read()),
        }
    }

    /// Runs one state-changing command exactly once: it takes the next
    /// sequence number once, and every retry reuses it.
    async fn execute(&self, command: Command) -> Result<Outcome, ClientError> {
        chorus_chat::validate(&command)?;
        self.execute_request(move |client, seq| Request::Command { client, seq, command, read_through: None }).await
    }

    /// [`Inner::execute`] for a post (send, say, broadcast) from `from`: it
    /// carries `from`'s unconfirmed read position, which its reply then
    /// confirms, so a client that keeps posting sends no separate `Ack`.
    async fn post(&self, command: Command, from: &str) -> Result<Outcome, ClientError> {
        chorus_chat::validate(&command)?;
        let read_through = lock(&self.acks).carry(from);
        let mut carrying = read_through.map(|through| Carrying { inner: self, name: from, through, applied: false });
        let make = move |client, seq| Request::Command { client, seq, command, read_through };
        let outcome = self.execute_request(make).await;
        if let Some(carrying) = carrying.as_mut() {
            // Only a reply from the state machine says the proposal was applied.
            carrying.applied = outcome.is_ok();
        }
        outcome
    }

    /// [`Inner::execute`] for any request `make(client, seq)` builds.
    async fn execute_request(&self, make: impl FnOnce(u64, u64) -> Request) -> Result<Outcome, ClientError> {
        let _turn = self.command_turn.lock().await;
        let (client, seq) = {
            let mut session = lock(&self.session);
            let seq = session.next_seq;
            session.next_seq += 1;
            (session.client_id, seq)
        };
        assert!(seq >= 1, "sequence 0 is the registration");
        let request = make(client, seq);
        match self.call(&request).await {
            Ok(Response::Outcome(outcome)) => Ok(outcome),
            Ok(other) => Err(unexpected("a command", &other)),
            Err(CallError::Refused(RequestError::Chat(ChatError::SessionUnknown))) => {
                match self.register(rand::random()).await {
                    Ok(()) => Err(ClientError::SessionExpired),
                    Err(error) => Err(ClientError::Unavailable(format!(
                        "the cluster had forgotten this client's session and opening a new one \
                         failed ({error}); the outcome of the command is unknown"
                    ))),
                }
            }
            Err(CallError::Unavailable(problem)) => Err(ClientError::Unavailable(format!(
                "{problem}; the outcome of the command is unknown \
                 (it may or may not have taken effect)"
            ))),
            Err(other) => Err(other.for_read()),
        }
    }

    /// Sends `request` to the replica believed to lead until one answers
    /// for good or the call's deadline passes.
    async fn call(&self, request: &Request) -> Result<Response, CallError> {
        let deadline = Instant::now() + self.options.call_timeout;
        let mut attempts = Attempts::new();
        let mut sent = false;
        loop {
            let connection = self.live_connection(deadline, &mut attempts).await.map_err(CallError::Unavailable)?;
            let timeout = self.attempt_timeout(deadline);
            let id = self.replicas[connection.replica_index].id;
            let resumed = match acts_for_an_account(request) {
                true => self.resume_on(&connection, timeout).await,
                false => None,
            };
            if let (true, Some(Ok(Err(RequestError::Unauthorized(reason))))) = (sent, &resumed) {
                // An earlier attempt may have run (a delete of this very
                // account ends its sign-in): the outcome is not known.
                return Err(CallError::Unavailable(format!("the sign-in ended while retrying ({reason})")));
            }
            let answer = match resumed {
                Some(refused) => refused,
                None => {
                    sent = true;
                    connection.request(request.clone(), timeout).await
                }
            };
            if let Ok(Ok(Response::SignedIn { token })) = &answer {
                *lock(&connection.signed_in) = Some(token.name.clone());
            }
            let pause_for = match answer {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(RequestError::NotLeader { leader })) => {
                    attempts.last_problem = format!("replica {id} is not the leader");
                    self.redirect(&connection, leader, &mut attempts).await
                }
                Ok(Err(RequestError::Busy)) => {
                    attempts.last_problem = format!("replica {id} is busy");
                    Some(attempts.backoff.next_delay())
                }
                Ok(Err(RequestError::Unavailable(reason))) => {
                    attempts.last_problem = format!("replica {id}: {reason}");
                    Some(attempts.backoff.next_delay())
                }
                Ok(Err(refusal)) => return Err(CallError::Refused(refusal)),
                Err(AttemptError::HelloRefused(refusal)) => return Err(CallError::Refused(refusal)),
                Err(AttemptError::Encode(reason)) => return Err(CallError::Encode(reason)),
                Err(AttemptError::TimedOut) => {
                    attempts.last_problem = format!("no reply from replica {id} within {} ms", timeout.as_millis());
                    self.abandon(&connection).await;
                    Some(attempts.backoff.next_delay())
                }
                Err(AttemptError::Closed(reason)) => {
                    attempts.last_problem = format!("connection to replica {id} lost: {reason}");
                    self.abandon(&connection).await;
                    Some(attempts.backoff.next_delay())
                }
            };
            if Instant::now() >= deadline {
                return Err(CallError::Unavailable(attempts.last_problem));
            }
            if let Some(delay) = pause_for {
                pause(delay, deadline).await;
            }
        }
    }

    /// Resumes the sign-in on `connection` if there is one and the
    /// connection does not carry it yet. `None` when the connection is
    /// ready; otherwise the failed attempt, for the call loop to handle
    /// like any other answer.
    async fn resume_on(&self, connection: &Connection, timeout: Duration) -> Option<Result<ReplyResult, AttemptError>> {
        let token = lock(&self.token).clone()?;
        if lock(&connection.signed_in).as_deref() == Some(token.name.as_str()) {
            return None;
        }
        let name = token.name.clone();
        match connection.request(Request::Resume { token: token.clone() }, timeout).await {
            Ok(Ok(Response::SignedIn { .. })) => {
                *lock(&connection.signed_in) = Some(name);
                None
            }
            Ok(Err(RequestError::Unauthorized(reason))) => {
                // Expired, or the account is gone: the sign-in is over.
                let mut held = lock(&self.token);
                if held.as_ref() == Some(&token) {
                    *held = None;
                }
                Some(Ok(Err(RequestError::Unauthorized(reason))))
            }
            Ok(Ok(other)) => Some(Ok(Err(RequestError::BadRequest(format!("a resume was answered with {other:?}"))))),
            failed => Some(failed),
        }
    }

    /// The time one attempt may take: the configured bound, cut by the deadline.
    fn attempt_timeout(&self, deadline: Instant) -> Duration {
        let left = deadline.saturating_duration_since(Instant::now());
        self.options.attempt_timeout.min(left).max(Duration::from_millis(1))
    }

    /// The live connection, or a new one to the replica believed to lead
    /// (resubscribed if a subscription is confirmed). Fails with the last
    /// problem once `deadline` passes.
    async fn live_connection(&self, deadline: Instant, attempts: &mut Attempts) -> Result<Arc<Connection>, String> {
        let mut slot = self.slot.lock().await;
        loop {
            if let Some(current) = &slot.current {
                if current.is_open() {
                    return Ok(current.clone());
                }
                let index = current.replica_index;
                attempts.last_problem = format!("connection to replica {} lost", self.replicas[index].id);
                slot.current = None;
                if slot.target == index {
                    slot.target = self.next_index(index);
                }
            }
            if Instant::now() >= deadline {
                return Err(attempts.last_problem.clone());
            }
            let index = slot.target;
            let timeout = self.attempt_timeout(deadline);
            let pause_for = match tokio::time::timeout(timeout, self.establish(index)).await {
                Ok(Ok(connection)) => {
                    let connection = Arc::new(connection);
                    slot.current = Some(connection.clone());
                    return Ok(connection);
                }
                Ok(Err(Established::Redirect(to))) => {
                    attempts.last_problem = format!("replica {} is not the leader", self.replicas[index].id);
                    slot.target = to;
                    attempts.redirect_pause()
                }
                Ok(Err(Established::Failed(problem))) => {
                    attempts.last_problem = problem;
                    slot.target = self.next_index(index);
                    Some(attempts.backoff.next_delay())
                }
                Err(_) => {
                    attempts.last_problem = format!(
                        "replica {} did not accept a connection within {} ms",
                        self.replicas[index].id,
                        timeout.as_millis()
                    );
                    slot.target = self.next_index(index);
                    Some(attempts.backoff.next_delay())
                }
            };
            if let Some(delay) = pause_for {
                pause(delay, deadline).await;
            }
        }
    }

    /// Opens a connection to replica `index` and re-establishes the
    /// confirmed subscription on it, if there is one.
    async fn establish(&self, index: usize) -> Result<Connection, Established> {
        let wiring = Wiring {
            deliveries: self.deliveries.clone(),
            connection_lost: self.connection_lost.clone(),
            closing: self.closing.subscribe(),
        };
        let replica = &self.replicas[index];
        let connection =
            Connection::open(index, replica, self.tls.as_ref(), wiring).await.map_err(Established::Failed)?;
        let Some((name, after)) = self.deliveries.filter().resume_point() else {
            return Ok(connection);
        };
        let request = Request::Subscribe { name: name.clone(), after };
        let id = self.replicas[index].id;
        let answer = match self.resume_on(&connection, self.options.attempt_timeout).await {
            Some(refused) => refused,
            None => connection.request(request, self.options.attempt_timeout).await,
        };
        match answer {
            Ok(Ok(Response::Subscribed)) => {
                tracing::debug!(replica = id, account = %name, after, "resubscribed");
                Ok(connection)
            }
            Ok(Err(RequestError::NotLeader { leader: Some(leader) })) => match self.index_of(leader) {
                Some(to) if to != index => Err(Established::Redirect(to)),
                _ => Err(Established::Failed(format!("replica {id} is not the leader"))),
            },
            Ok(Err(RequestError::Chat(refusal))) => {
                // The account is gone: delivery ends, the connection is fine.
                self.deliveries.end(name, refusal.to_string()).await;
                Ok(connection)
            }
            Ok(Err(RequestError::Unauthorized(reason))) => {
                // The session expired or the account was deleted: delivery
                // ends until the application signs in again.
                self.deliveries.end(name, reason).await;
                Ok(connection)
            }
            Ok(Err(other)) => Err(Established::Failed(format!("replica {id}: {other}"))),
            Ok(Ok(other)) => Err(Established::Failed(format!("replica {id} answered a subscription with {other:?}"))),
            Err(AttemptError::TimedOut) => {
                Err(Established::Failed(format!("replica {id} did not answer a subscription")))
            }
            Err(other) => Err(Established::Failed(format!("replica {id}: {other:?}"))),
        }
    }

    /// Follows `NotLeader { leader }` from `connection`'s replica. Returns
    /// the pause before the next attempt, if any.
    async fn redirect(
        &self,
        connection: &Arc<Connection>,
        leader: Option<ReplicaId>,
        attempts: &mut Attempts,
    ) -> Option<Duration> {
        let mut slot = self.slot.lock().await;
        let here = connection.replica_index;
        let is_current = slot.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection));
        if is_current {
            slot.current = None;
        }
        match leader.and_then(|id| self.index_of(id)) {
            Some(to) if to != here => {
                slot.target = to;
                attempts.redirect_pause()
            }
            _ => {
                slot.target = self.next_index(here);
                Some(attempts.backoff.next_delay())
            }
        }
    }

    /// Gives up on `connection` (timed out or failed): the next attempt
    /// goes to the next replica.
    async fn abandon(&self, connection: &Arc<Connection>) {
        let mut slot = self.slot.lock().await;
        if slot.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            slot.current = None;
        }
        if slot.target == connection.replica_index {
            slot.target = self.next_index(connection.replica_index);
        }
    }

    /// Stops delivery of `name` on the live connection, if there is one;
    /// failures do not matter (the filter drops that account's messages).
    async fn unsubscribe_quietly(&self, name: String) {
        let current = self.slot.lock().await.current.clone();
        if let Some(connection) = current.filter(|c| c.is_open()) {
            let request = Request::Unsubscribe { name };
            let _ = connection.request(request, self.options.attempt_timeout).await;
        }
    }

    /// Index of replica `id` in the replica list.
    fn index_of(&self, id: ReplicaId) -> Option<usize> {
        self.replicas.iter().position(|r| r.id == id)
    }

    /// The replica after `index`, round robin.
    fn next_index(&self, index: usize) -> usize {
        assert!(!self.replicas.is_empty());
        (index + 1) % self.replicas.len()
    }
}

/// Why [`Inner::establish`] did not produce a connection.
enum Established {
    /// The replica named another as leader (index given).
    Redirect(usize),
    /// Anything else, for the error message.
    Failed(String),
}

/// Background: whenever a connection is lost while a subscription is
/// confirmed, reconnects (round robin, following redirects, with backoff)
/// and resubscribes after the last delivered message.
async fn supervise(inner: Weak<Inner>, lost: Arc<Notify>, mut closing: watch::Receiver<()>) {
    loop {
        tokio::select! {
            _ = lost.notified() => {}
            _ = closing.changed() => return,
        }
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if strong.deliveries.filter().resume_point().is_none() {
                break;
            }
            let deadline = Instant::now() + strong.options.call_timeout;
            match strong.live_connection(deadline, &mut Attempts::new()).await {
                Ok(_) => break,
                Err(problem) => tracing::warn!(%problem, "cannot re-establish delivery; retrying"),
            }
            drop(strong);
            tokio::select! {
                _ = tokio::time::sleep(BACKOFF_MAX) => {}
                _ = closing.changed() => return,
            }
        }
    }
}

/// Background: acknowledges the highest shown id of each account, one
/// acknowledgement in flight at a time; failures are retried later.
async fn acknowledge(inner: Weak<Inner>, wanted: Arc<Notify>, mut closing: watch::Receiver<()>) {
    let mut last_sent: Option<Instant> = None;
    // When the work now waiting appeared (None while there is none).
    let mut waiting_since: Option<Instant> = None;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let next = lock(&strong.acks).next();
        let Some((name, through)) = next else {
            waiting_since = None;
            drop(strong);
            tokio::select! {
                _ = wanted.notified() => continue,
                _ = closing.changed() => return,
            }
        };
        let since = *waiting_since.get_or_insert_with(Instant::now);
        let urgent = strong.ack_urgent.swap(false, Ordering::Relaxed);
        let due = last_sent.map_or(since, |sent| sent.max(since)) + ACK_INTERVAL;
        if !urgent && Instant::now() < due {
            // Wait out the interval: the next post may carry the position
            // (see `Inner::post`), and while messages keep coming one
            // acknowledgement covers them all (a flush does not wait).
            drop(strong);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = wanted.notified() => {}
                _ = closing.changed() => return,
            }
            continue;
        }
        last_sent = Some(Instant::now());
        waiting_since = None;
        let request = Request::Ack { name: name.clone(), through };
        let acknowledged = match strong.call(&request).await {
            Ok(Response::Acked) | Ok(Response::Outcome(Outcome::Acked)) => {
                lock(&strong.acks).acked(&name, through);
                true
            }
            Err(CallError::Refused(refusal)) => {
                // No such account (deleted) or refused for good: nothing to retry.
                tracing::debug!(%refusal, account = %name, "acknowledgement refused");
                lock(&strong.acks).forget(&name);
                true
            }
            Ok(other) => {
                tracing::warn!(reply = ?other, "unexpected reply to an acknowledgement");
                false
            }
            Err(error) => {
                tracing::debug!(?error, account = %name, "acknowledgement failed; will retry");
                false
            }
        };
        if acknowledged {
            strong.ack_progress.send_modify(|count| *count += 1);
            continue;
        }
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(ACK_RETRY_DELAY) => {}
            _ = closing.changed() => return,
        }
    }
}
