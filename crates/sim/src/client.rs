//! A simulated chat client: a random workload, the client library's retry
//! rules (leader redirects, round robin on silence, one sequence number per
//! command), and the library's own [`DeliveryFilter`] and [`AckTracker`].

use crate::links::{ConnId, Links};
use chorus_chat::{ChatError, Command, Message, MessageId, Outcome, SessionToken};
use chorus_client::{AckTracker, DeliveryFilter};
use chorus_proto::{ClientFrame, Password, Request, RequestError, Response, ServerFrame};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// Ticks without a reply before an attempt is abandoned for another replica.
pub const ATTEMPT_TICKS: u64 = 40;
/// Ticks after which an operation is given up (its outcome unknown).
pub const OPERATION_TICKS: u64 = 600;
/// Ticks a shown message waits for a post to carry its read position
/// before a client with `waits_for_posts` acknowledges it alone (the
/// library's `ACK_INTERVAL`).
pub const ACK_WAIT_TICKS: u64 = 15;
/// Names the workload uses (few, so operations collide).
pub const NAMES: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];
/// Rooms the workload uses (few, so members overlap).
pub const ROOMS: [&str; 2] = ["#r0", "#r1"];
/// Every simulated account's password.
const PASSWORD: &str = "sim-password";

/// What one operation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Register,
    Create(String),
    Delete(String),
    Send { from: String, to: String, text: String },
    Connect(String),
    List(Option<String>),
    SignIn(String),
    Join { name: String, room: String },
    Leave { name: String, room: String },
    Say { from: String, room: String, text: String },
    Broadcast { from: String, text: String },
}

impl OpKind {
    /// True for operations the replica refuses unless the connection
    /// signed in as the account they act for.
    fn acts_as_account(&self) -> bool {
        matches!(self, OpKind::Delete(_) | OpKind::Send { .. } | OpKind::Connect(_)) || self.is_room_command()
    }

    /// True for the room commands (through the log, exactly once).
    fn is_room_command(&self) -> bool {
        matches!(self, OpKind::Join { .. } | OpKind::Leave { .. } | OpKind::Say { .. } | OpKind::Broadcast { .. })
    }

    /// The account a post (send, say, broadcast) comes from.
    fn poster(&self) -> Option<&str> {
        match self {
            OpKind::Send { from, .. } | OpKind::Say { from, .. } | OpKind::Broadcast { from, .. } => Some(from),
            _ => None,
        }
    }

    /// The chat command an exactly-once operation proposes.
    fn command(&self) -> Option<Command> {
        let command = match self.clone() {
            OpKind::Delete(name) => Command::Delete { name },
            OpKind::Send { from, to, text } => Command::Send { from, to, text },
            OpKind::Join { name, room } => Command::Join { name, room },
            OpKind::Leave { name, room } => Command::Leave { name, room },
            OpKind::Say { from, room, text } => Command::Say { from, room, text },
            OpKind::Broadcast { from, text } => Command::Broadcast { from, text },
            _ => return None,
        };
        Some(command)
    }
}

/// How an operation ended, for the checkers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpEnd {
    /// A reply arrived at this tick.
    Replied(u64, Result<Response, RequestError>),
    /// The client gave up: the outcome is unknown.
    GaveUp,
}

/// One finished operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub client: usize,
    pub client_id: u64,
    pub seq: u64,
    pub kind: OpKind,
    pub invoked_at: u64,
    pub end: OpEnd,
}

/// What a client observed that the checkers care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    Finished(Finished),
    /// A message was shown to the user of client incarnation `incarnation`;
    /// it arrived under a subscription requested at tick `subscribed_at`.
    Shown {
        client: usize,
        incarnation: u64,
        message: Message,
        at: u64,
        subscribed_at: u64,
    },
    /// The read position of `name` is confirmed at `through` (`carried`:
    /// by the reply to a post that carried it, not by an `Ack`).
    AckConfirmed {
        name: String,
        through: MessageId,
        at: u64,
        carried: bool,
    },
}

/// An operation in progress.
#[derive(Clone, Debug)]
struct Pending {
    kind: OpKind,
    request: Request,
    seq: u64,
    invoked_at: u64,
    /// The request id of the attempt in flight, and when it was sent.
    attempt: Option<(u64, u64)>,
    /// No attempt before this tick.
    retry_at: u64,
    /// The read position the request carries (a post's sender's).
    carries: Option<(String, MessageId)>,
}

/// One simulated client process.
pub struct SimClient {
    pub index: usize,
    /// Bumped each time the process crashes and starts afresh.
    pub incarnation: u64,
    client_id: u64,
    next_seq: u64,
    registered: bool,
    replicas: usize,
    /// The replica believed to lead.
    target: usize,
    conn: Option<ConnId>,
    /// A failed connect leaves the client waiting until this tick.
    connect_retry_at: u64,
    op: Option<Pending>,
    next_request_id: u64,
    /// Who the user acts as (signed in as).
    identity: Option<String>,
    /// The token of the last sign-in; a fresh connection resumes it first.
    token: Option<SessionToken>,
    /// The current connection carries the sign-in.
    conn_signed_in: bool,
    /// A resume sent on the current connection: its request id and tick.
    resume_in_flight: Option<(u64, u64)>,
    filter: DeliveryFilter,
    acks: AckTracker,
    ack_in_flight: Option<(u64, String, MessageId, u64)>,
    /// When the acknowledgement work now waiting appeared.
    ack_waiting_since: Option<u64>,
    resubscribe_in_flight: Option<(u64, u64)>,
    /// Admitted messages waiting to be shown, with the tick they will be
    /// and the tick their subscription was requested.
    to_show: VecDeque<(u64, Message, u64)>,
    /// The connection and tick of the last Subscribe sent.
    subscribe_sent: Option<(ConnId, u64)>,
    idle_until: u64,
    /// Whether the workload issues new operations.
    pub working: bool,
    /// Acknowledge on receipt instead of after showing (a planted bug).
    pub ack_before_shown: bool,
    pub observations: Vec<Observation>,
}

impl SimClient {
    pub fn new(index: usize, replicas: usize, rng: &mut ChaCha8Rng) -> Self {
        SimClient {
            index,
            incarnation: 0,
            client_id: rng.random(),
            next_seq: 1,
            registered: false,
            replicas,
            target: rng.random_range(0..replicas),
            conn: None,
            connect_retry_at: 0,
            op: None,
            next_request_id: 1,
            identity: None,
            token: None,
            conn_signed_in: false,
            resume_in_flight: None,
            filter: DeliveryFilter::default(),
            acks: AckTracker::default(),
            ack_in_flight: None,
            ack_waiting_since: None,
            resubscribe_in_flight: None,
            to_show: VecDeque::new(),
            subscribe_sent: None,
            idle_until: 0,
            working: true,
            ack_before_shown: false,
            observations: Vec::new(),
        }
    }

    /// The process died: everything in memory is gone; a fresh process
    /// (new session) takes its place.
    pub fn crash(&mut self, now: u64, rng: &mut ChaCha8Rng, links: &mut Links) {
        if let Some(conn) = self.conn.take() {
            links.close(conn);
        }
        if let Some(op) = self.op.take() {
            self.finish(op, now, OpEnd::GaveUp);
        }
        let mut fresh = SimClient::new(self.index, self.replicas, rng);
        fresh.incarnation = self.incarnation + 1;
        fresh.working = self.working;
        fresh.ack_before_shown = self.ack_before_shown;
        fresh.observations = std::mem::take(&mut self.observations);
        *self = fresh;
    }

    /// True when the client has nothing outstanding.
    pub fn quiet(&self) -> bool {
        self.op.is_none() && self.to_show.is_empty() && !self.acks.pending()
    }

    /// What the client is waiting on, for failure reports.
    pub fn describe(&self) -> String {
        format!(
            "client {}.{}: op {:?}, conn {:?}, target {}, to_show {}, acks pending {} (next {:?}, in flight {:?}), subscription {:?}",
            self.index,
            self.incarnation,
            self.op.as_ref().map(|o| (&o.kind, o.attempt, o.retry_at)),
            self.conn,
            self.target,
            self.to_show.len(),
            self.acks.pending(),
            self.acks.next(),
            self.ack_in_flight.as_ref().map(|a| (a.1.clone(), a.2, a.3)),
            self.filter.resume_point()
        )
    }

    /// Signs in and connects as `name` to drain its mailbox (the liveness phase).
    pub fn start_drain(&mut self, name: &str, now: u64, links: &mut Links) {
        if self.op.is_none() {
            let kind = match self.identity.as_deref() == Some(name) {
                true => OpKind::Connect(name.to_string()),
                false => OpKind::SignIn(name.to_string()),
            };
            self.begin(kind, now, links);
        }
    }

    /// The account whose messages this client receives, if any.
    pub fn subscription(&self) -> Option<String> {
        self.filter.resume_point().map(|(name, _)| name)
    }

    /// One tick of the client.
    pub fn step(&mut self, now: u64, rng: &mut ChaCha8Rng, links: &mut Links) {
        if let Some(conn) = self.conn {
            if !links.is_open(conn) {
                self.lost_connection(now);
            }
        }
        if self.op.is_none() && self.working && now >= self.idle_until {
            let kind = self.choose(rng);
            self.begin(kind, now, links);
            self.idle_until = now + rng.random_range(0..30);
        }
        self.show(now);
        self.drive_op(now, rng, links);
        // Like the library's supervisor: a subscription or unacknowledged
        // messages keep a connection open even when the user is idle.
        let background = self.acks.pending() || self.filter.resume_point().is_some();
        if self.conn.is_none() && background {
            self.ensure_connection(now, rng, links);
        }
        self.drive_acks(now, links);
    }

    fn choose(&mut self, rng: &mut ChaCha8Rng) -> OpKind {
        if !self.registered {
            return OpKind::Register;
        }
        let name = NAMES[rng.random_range(0..NAMES.len())].to_string();
        let roll = rng.random_range(0..100);
        match (roll, self.identity.clone()) {
            (0..20, _) => OpKind::Create(name),
            (20..24, Some(me)) => OpKind::Delete(me),
            (24..27, _) => OpKind::Delete(name), // not signed in as it: refused
            (27..50, Some(from)) => OpKind::Send { from, to: name, text: self.text() },
            (50..65, Some(me)) => self.choose_room_op(me, rng),
            (65..80, Some(me)) if me == name => OpKind::Connect(name),
            (20..24, None) | (27..65, None) | (65..80, _) if self.may_switch_account() => OpKind::SignIn(name),
            _ => {
                let patterns = [None, Some("^u[0-2]"), Some("[3-5]$")];
                OpKind::List(patterns[rng.random_range(0..patterns.len())].map(str::to_string))
            }
        }
    }

    /// A user switches accounts only once everything shown as the current
    /// one is acknowledged: afterwards this connection may no longer
    /// acknowledge for it (the library's `sign_in` flushes first).
    fn may_switch_account(&self) -> bool {
        self.to_show.is_empty() && !self.acks.pending()
    }

    /// A room operation as `me`: mostly posts, some joins and leaves, a
    /// few broadcasts.
    fn choose_room_op(&self, me: String, rng: &mut ChaCha8Rng) -> OpKind {
        let room = ROOMS[rng.random_range(0..ROOMS.len())].to_string();
        match rng.random_range(0..100) {
            0..50 => OpKind::Say { from: me, room, text: self.text() },
            50..75 => OpKind::Join { name: me, room },
            75..90 => OpKind::Leave { name: me, room },
            _ => OpKind::Broadcast { from: me, text: self.text() },
        }
    }

    /// A text unique to this operation.
    fn text(&self) -> String {
        format!("c{}.{}.{}", self.index, self.incarnation, self.next_seq)
    }

    fn begin(&mut self, kind: OpKind, now: u64, links: &mut Links) {
        if let (OpKind::SignIn(name), Some((current, _))) = (&kind, self.filter.resume_point()) {
            if current != *name {
                // Stop taking the old account's messages now: what arrives
                // from here on stays queued for its next subscription. The
                // replica must stop sending them too, even if the sign-in
                // fails: a stream the filter skipped parts of must not feed
                // a later subscription to the same account.
                self.filter.end(&current);
                self.unsubscribe(current, links);
            }
        }
        let client = self.client_id;
        let exactly_once =
            matches!(kind, OpKind::Create(_) | OpKind::Delete(_) | OpKind::Send { .. }) || kind.is_room_command();
        let seq = if exactly_once { self.next_seq } else { 0 };
        self.next_seq += u64::from(exactly_once);
        let carries = kind.poster().and_then(|from| Some((from.to_string(), self.acks.carry(from)?)));
        let read_through = carries.as_ref().map(|(_, through)| *through);
        let command = |command| Request::Command { client, seq, command, read_through };
        let password = || Password(PASSWORD.into());
        let request = match &kind {
            OpKind::Register => Request::Register { client },
            OpKind::Create(name) => Request::CreateAccount { client, seq, name: name.clone(), password: password() },
            OpKind::SignIn(name) => Request::SignIn { name: name.clone(), password: password() },
            OpKind::Delete(_)
            | OpKind::Send { .. }
            | OpKind::Join { .. }
            | OpKind::Leave { .. }
            | OpKind::Say { .. }
            | OpKind::Broadcast { .. } => command(kind.command().expect("an exactly-once command")),
            OpKind::Connect(name) => {
                let after = self.filter.begin(name);
                Request::Subscribe { name: name.clone(), after }
            }
            OpKind::List(pattern) => Request::List { pattern: pattern.clone() },
        };
        let op = Pending { kind, request, seq, invoked_at: now, attempt: None, retry_at: now, carries };
        self.op = Some(op);
    }

    fn drive_op(&mut self, now: u64, rng: &mut ChaCha8Rng, links: &mut Links) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        let gives_up = op.kind != OpKind::Register;
        if gives_up && now > op.invoked_at + OPERATION_TICKS {
            let op = self.op.take().expect("checked");
            if let OpKind::Connect(name) = &op.kind {
                self.filter.cancel(name);
                if op.attempt.is_some() {
                    self.unsubscribe(name.clone(), links); // the subscribe may still take effect
                }
            }
            return self.finish(op, now, OpEnd::GaveUp);
        }
        if let Some((_, sent_at)) = op.attempt {
            if now > sent_at + ATTEMPT_TICKS {
                op.attempt = None;
                self.move_on(None, links);
            }
            return;
        }
        if now < op.retry_at {
            return;
        }
        let Some(conn) = self.ensure_connection(now, rng, links) else {
            return;
        };
        let op = self.op.as_ref().expect("checked");
        if op.kind.acts_as_account() && self.token.is_some() && !self.conn_signed_in {
            return; // the resume on this connection goes first
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        let op = self.op.as_mut().expect("checked");
        op.attempt = Some((id, now));
        if matches!(op.request, Request::Subscribe { .. }) {
            self.subscribe_sent = Some((conn, now));
        }
        links.client_send(conn, ClientFrame { request_id: id, request: op.request.clone() });
    }

    /// Returns the open connection, opening one to the target if needed.
    fn ensure_connection(&mut self, now: u64, rng: &mut ChaCha8Rng, links: &mut Links) -> Option<ConnId> {
        if let Some(conn) = self.conn {
            return Some(conn);
        }
        if now < self.connect_retry_at {
            return None;
        }
        match links.connect(self.index, self.target) {
            Some(conn) => {
                self.conn = Some(conn);
                self.conn_signed_in = false;
                match self.token.clone() {
                    Some(token) => self.resume(conn, token, now, links),
                    None => self.resubscribe(now, links),
                }
                Some(conn)
            }
            None => {
                // Refused or unreachable: try the next replica a little later.
                self.target = (self.target + 1) % self.replicas;
                self.connect_retry_at = now + rng.random_range(1..10);
                None
            }
        }
    }

    /// Ends whatever subscription the current connection has or is setting
    /// up (like the library's `unsubscribe_quietly`); the reply is ignored.
    fn unsubscribe(&mut self, name: String, links: &mut Links) {
        let Some(conn) = self.conn else { return };
        let id = self.next_request_id;
        self.next_request_id += 1;
        links.client_send(conn, ClientFrame { request_id: id, request: Request::Unsubscribe { name } });
    }

    /// On a fresh connection, resumes the sign-in (like the library).
    fn resume(&mut self, conn: ConnId, token: SessionToken, now: u64, links: &mut Links) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.resume_in_flight = Some((id, now));
        links.client_send(conn, ClientFrame { request_id: id, request: Request::Resume { token } });
    }

    fn on_resume_reply(&mut self, result: Result<Response, RequestError>, now: u64, links: &mut Links) {
        match result {
            Ok(Response::SignedIn { .. }) => {
                self.conn_signed_in = true;
                self.resubscribe(now, links);
            }
            Err(RequestError::NotLeader { leader }) => self.move_on(leader.map(usize::from), links),
            Err(RequestError::Unauthorized(_)) => {
                // The account was deleted: the sign-in and its delivery end.
                self.signed_out();
            }
            _ => self.move_on(None, links),
        }
    }

    /// The sign-in is gone (account deleted, token refused).
    fn signed_out(&mut self) {
        self.identity = None;
        self.token = None;
        self.conn_signed_in = false;
        if let Some((name, _)) = self.filter.resume_point() {
            self.filter.end(&name);
        }
    }

    /// On a fresh connection, resumes the current subscription.
    fn resubscribe(&mut self, now: u64, links: &mut Links) {
        let Some(conn) = self.conn else { return };
        let Some((name, after)) = self.filter.resume_point() else { return };
        if matches!(self.op.as_ref().map(|o| &o.kind), Some(OpKind::Connect(_))) {
            return; // the connect in progress subscribes
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.resubscribe_in_flight = Some((id, now));
        self.subscribe_sent = Some((conn, now));
        links.client_send(conn, ClientFrame { request_id: id, request: Request::Subscribe { name, after } });
    }

    /// Drops the connection and aims at `leader`, or the next replica.
    /// Everything in flight on the connection is abandoned and sent again
    /// on the next one (as the library does when it drops a connection).
    fn move_on(&mut self, leader: Option<usize>, links: &mut Links) {
        if let Some(conn) = self.conn.take() {
            links.close(conn);
        }
        self.ack_in_flight = None;
        self.resubscribe_in_flight = None;
        self.resume_in_flight = None;
        self.conn_signed_in = false;
        if let Some(op) = self.op.as_mut() {
            op.attempt = None;
        }
        self.target = leader.unwrap_or((self.target + 1) % self.replicas);
    }

    fn lost_connection(&mut self, _now: u64) {
        self.conn = None;
        self.ack_in_flight = None;
        self.resubscribe_in_flight = None;
        self.resume_in_flight = None;
        self.conn_signed_in = false;
        if let Some(op) = self.op.as_mut() {
            op.attempt = None;
        }
        self.target = (self.target + 1) % self.replicas;
    }

    /// A frame from the replica on `conn`.
    pub fn receive(&mut self, conn: ConnId, frame: ServerFrame, now: u64, rng: &mut ChaCha8Rng, links: &mut Links) {
        if self.conn != Some(conn) {
            return; // from a connection already abandoned
        }
        match frame {
            ServerFrame::Reply { request_id, result } => self.on_reply(request_id, result, now, rng, links),
            ServerFrame::Deliver { messages } => {
                let subscribed_at = match self.subscribe_sent {
                    Some((on, at)) if on == conn => at,
                    _ => 0,
                };
                for message in messages {
                    if self.filter.admit(&message) {
                        if self.ack_before_shown {
                            self.acks.shown(&message.to, message.id);
                        }
                        self.to_show.push_back((now + rng.random_range(0..16), message, subscribed_at));
                    }
                }
            }
            ServerFrame::Ended { name, .. } => {
                self.filter.end(&name);
            }
        }
    }

    fn on_reply(
        &mut self,
        id: u64,
        result: Result<Response, RequestError>,
        now: u64,
        rng: &mut ChaCha8Rng,
        links: &mut Links,
    ) {
        if self.op.as_ref().and_then(|o| o.attempt).is_some_and(|(a, _)| a == id) {
            return self.on_op_reply(result, now, rng, links);
        }
        if self.resume_in_flight.is_some_and(|(a, _)| a == id) {
            self.resume_in_flight = None;
            return self.on_resume_reply(result, now, links);
        }
        if self.ack_in_flight.as_ref().is_some_and(|(a, ..)| *a == id) {
            let (_, name, through, _) = self.ack_in_flight.take().expect("checked");
            match result {
                Ok(Response::Acked) => {
                    self.acks.acked(&name, through);
                    self.observations.push(Observation::AckConfirmed { name, through, at: now, carried: false });
                }
                Err(RequestError::NotLeader { leader }) => self.move_on(leader.map(usize::from), links),
                // Deleted, or no longer signed in as it: refused for good
                // (the library forgets such acknowledgements too).
                Err(RequestError::Chat(ChatError::NoSuchAccount { .. }) | RequestError::Unauthorized(_)) => {
                    self.acks.forget(&name)
                }
                _ => {}
            }
            return;
        }
        if self.resubscribe_in_flight.is_some_and(|(a, _)| a == id) {
            self.resubscribe_in_flight = None;
            match result {
                Ok(Response::Subscribed) => {}
                Err(RequestError::NotLeader { leader }) => self.move_on(leader.map(usize::from), links),
                Err(RequestError::Chat(ChatError::NoSuchAccount { name })) => {
                    self.filter.end(&name);
                }
                Err(RequestError::Unauthorized(_)) => self.signed_out(),
                _ => self.move_on(None, links),
            }
        }
    }

    fn on_op_reply(
        &mut self,
        result: Result<Response, RequestError>,
        now: u64,
        rng: &mut ChaCha8Rng,
        links: &mut Links,
    ) {
        let op = self.op.as_mut().expect("an operation is in flight");
        op.attempt = None;
        match result {
            Err(RequestError::NotLeader { leader }) => {
                op.retry_at = now + if leader.is_some() { 0 } else { rng.random_range(1..10) };
                let leader = leader.map(usize::from);
                if leader != Some(self.target) || self.conn.is_none() {
                    self.move_on(leader, links);
                }
            }
            Err(RequestError::Busy | RequestError::Unavailable(_)) => {
                op.retry_at = now + rng.random_range(1..10);
            }
            result => {
                let op = self.op.take().expect("checked");
                self.complete(op, result, now);
            }
        }
    }

    fn complete(&mut self, op: Pending, result: Result<Response, RequestError>, now: u64) {
        match (&op.kind, &result) {
            (OpKind::Register, Ok(Response::Registered)) => self.registered = true,
            (OpKind::SignIn(name), Ok(Response::SignedIn { token })) => {
                self.identity = Some(name.clone());
                self.token = Some(token.clone());
                self.conn_signed_in = true;
            }
            (OpKind::Delete(name), Ok(Response::Outcome(Outcome::Deleted))) if self.identity.as_ref() == Some(name) => {
                self.signed_out()
            }
            (OpKind::Connect(name), Ok(Response::Subscribed)) => {
                self.filter.confirm(name);
            }
            (OpKind::Connect(name), _) => self.filter.cancel(name),
            _ => {}
        }
        self.finish(op, now, OpEnd::Replied(now, result));
    }

    fn finish(&mut self, op: Pending, now: u64, end: OpEnd) {
        if let Some((name, through)) = &op.carries {
            // Like the library's `Inner::post`: only a reply from the state
            // machine confirms the position the post carried.
            let applied = matches!(end, OpEnd::Replied(_, Ok(Response::Outcome(_))));
            self.acks.post_ended(name, *through, applied);
            if applied {
                let confirmed =
                    Observation::AckConfirmed { name: name.clone(), through: *through, at: now, carried: true };
                self.observations.push(confirmed);
            }
        }
        self.observations.push(Observation::Finished(Finished {
            client: self.index,
            client_id: self.client_id,
            seq: op.seq,
            kind: op.kind,
            invoked_at: op.invoked_at,
            end,
        }));
    }

    /// Shows admitted messages whose time has come, then reports them shown.
    fn show(&mut self, now: u64) {
        while self.to_show.front().is_some_and(|(at, ..)| *at <= now) {
            let (_, message, subscribed_at) = self.to_show.pop_front().expect("checked");
            if !self.ack_before_shown {
                self.acks.shown(&message.to, message.id);
            }
            let (client, incarnation) = (self.index, self.incarnation);
            self.observations.push(Observation::Shown { client, incarnation, message, at: now, subscribed_at });
        }
    }

    /// Half the clients acknowledge at once, the others wait for a post to
    /// carry the read position first (as the library does), so both paths
    /// run in every simulation. Fixed by index: no random draw.
    fn waits_for_posts(&self) -> bool {
        self.index % 2 == 1
    }

    fn drive_acks(&mut self, now: u64, links: &mut Links) {
        if let Some((_, _, _, sent_at)) = self.ack_in_flight {
            if now > sent_at + ATTEMPT_TICKS {
                self.ack_in_flight = None;
            }
            return;
        }
        if let Some((_, sent_at)) = self.resume_in_flight {
            if now > sent_at + ATTEMPT_TICKS {
                self.move_on(None, links);
            }
            return;
        }
        if self.token.is_some() && !self.conn_signed_in {
            return;
        }
        let Some((name, through)) = self.acks.next() else {
            self.ack_waiting_since = None;
            return;
        };
        let since = *self.ack_waiting_since.get_or_insert(now);
        if self.waits_for_posts() && now < since + ACK_WAIT_TICKS {
            return; // a post may carry it
        }
        let Some(conn) = self.conn else {
            return;
        };
        self.ack_waiting_since = None;
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.ack_in_flight = Some((id, name.clone(), through, now));
        links.client_send(conn, ClientFrame { request_id: id, request: Request::Ack { name, through } });
    }
}
