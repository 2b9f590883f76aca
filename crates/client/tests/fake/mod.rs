//! A fake replica for the client library's tests: a TCP listener that
//! speaks the client protocol, answers each request through a policy the
//! test chooses, records every request, and lets the test push frames to
//! (or close) its connections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_limits::CLIENT_FRAME_BYTES_MAX;
use chorus_paxos::ReplicaId;
use chorus_proto::{
    encode_frame, read_frame, write_frame, ClientFrame, Hello, ReplicaAddress, Request, RequestError, Response,
    ServerFrame,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// What the fake does with one request.
pub enum Action {
    /// Answers it.
    Reply(Result<Response, RequestError>),
    /// Closes the connection without answering.
    Drop,
    /// Never answers.
    Silent,
}

/// Chooses the action for a request; sees how many requests came before.
pub type Policy = Box<dyn FnMut(&Request, usize) -> Action + Send>;

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Which accepted connection (0, 1, ...) carried it.
    pub connection: usize,
    /// The request.
    pub request: Request,
}

/// Shared between the test and the fake's tasks.
struct State {
    policy: Policy,
    received: Vec<Received>,
    /// Control channel of each accepted connection: `Some` pushes a frame,
    /// `None` closes it.
    connections: Vec<mpsc::Sender<Option<ServerFrame>>>,
    /// Connections whose client closed its side, in the order seen.
    closed_by_client: Vec<usize>,
}

/// A fake replica listening on 127.0.0.1.
pub struct FakeReplica {
    pub id: ReplicaId,
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

/// How long a test waits for a condition before failing.
const WAIT: Duration = Duration::from_secs(10);

impl FakeReplica {
    /// Starts a fake replica with the given policy.
    pub async fn start(id: ReplicaId, policy: Policy) -> FakeReplica {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            policy,
            received: Vec::new(),
            connections: Vec::new(),
            closed_by_client: Vec::new(),
        }));
        let changed = Arc::new(Notify::new());
        tokio::spawn(accept_loop(listener, state.clone(), changed.clone()));
        FakeReplica { id, addr, state, changed }
    }

    /// The address entry a client is given for this fake.
    pub fn address(&self) -> ReplicaAddress {
        ReplicaAddress {
            id: self.id,
            client_addr: self.addr,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            data_dir: PathBuf::from("unused"),
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    /// Waits until `done` holds for the received requests; panics after `WAIT`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; received {received:#?}");
            }
        }
    }

    /// Waits until the client has closed its side of `connection`; panics
    /// after `WAIT`.
    pub async fn wait_closed_by_client(&self, connection: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if self.state.lock().expect("state").closed_by_client.contains(&connection) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the client kept connection {connection} to replica {} open", self.id);
            }
        }
    }

    /// Pushes `frame` on the most recent connection.
    pub async fn push(&self, frame: ServerFrame) {
        let control = self.latest_connection();
        control.send(Some(frame)).await.expect("connection alive");
    }

    /// Closes the most recent connection.
    pub async fn close_latest(&self) {
        let control = self.latest_connection();
        let _ = control.send(None).await;
    }

    fn latest_connection(&self) -> mpsc::Sender<Option<ServerFrame>> {
        let state = self.state.lock().expect("state");
        state.connections.last().expect("a connection").clone()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    while let Ok((stream, _)) = listener.accept().await {
        let (control_tx, control_rx) = mpsc::channel(64);
        let connection = {
            let mut state = state.lock().expect("state");
            state.connections.push(control_tx);
            state.connections.len() - 1
        };
        tokio::spawn(serve(stream, connection, control_rx, state.clone(), changed.clone()));
    }
}

/// Serves one connection until the policy or the test closes it.
async fn serve(
    stream: TcpStream,
    connection: usize,
    mut control: mpsc::Receiver<Option<ServerFrame>>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = Vec::new();
    let hello: Hello = match read_frame(&mut reader, CLIENT_FRAME_BYTES_MAX, &mut buffer).await {
        Ok(hello) => hello,
        Err(_) => return,
    };
    assert_eq!(hello.check(), Ok(()), "the client sends a good hello");
    let (frames_tx, mut frames) = mpsc::channel::<ClientFrame>(64);
    let (closing_state, closing_changed) = (state.clone(), changed.clone());
    let reading = tokio::spawn(async move {
        let mut buffer = Vec::new();
        while let Ok(frame) = read_frame(&mut reader, CLIENT_FRAME_BYTES_MAX, &mut buffer).await {
            if frames_tx.send(frame).await.is_err() {
                return;
            }
        }
        closing_state.lock().expect("state").closed_by_client.push(connection);
        closing_changed.notify_waiters();
    });
    loop {
        let outgoing = tokio::select! {
            frame = frames.recv() => {
                let Some(ClientFrame { request_id, request }) = frame else { break };
                let action = {
                    let mut state = state.lock().expect("state");
                    let before = state.received.len();
                    let action = (state.policy)(&request, before);
                    state.received.push(Received { connection, request });
                    action
                };
                changed.notify_waiters();
                match action {
                    Action::Reply(result) => ServerFrame::Reply { request_id, result },
                    Action::Drop => break,
                    Action::Silent => continue,
                }
            }
            pushed = control.recv() => match pushed {
                Some(Some(frame)) => frame,
                Some(None) | None => break,
            },
        };
        let bytes = encode_frame(&outgoing, CLIENT_FRAME_BYTES_MAX).expect("encodes");
        if write_frame(&mut writer, &bytes).await.is_err() {
            break;
        }
    }
    reading.abort();
}
