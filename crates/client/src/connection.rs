//! One connection (TCP, TLS unless the cluster file says plaintext) to one
//! replica: a [`Connection`] handle, a writer task fed by a bounded
//! channel, and a reader task that routes replies to their waiters by
//! request id and pushed deliveries to [`Deliveries`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chorus_limits::{CLIENT_FRAME_BYTES_MAX, CLIENT_REQUESTS_IN_FLIGHT_MAX};
use chorus_proto::{
    encode_frame, read_frame, write_frame, ClientFrame, Hello, Peer, ReplicaAddress, Request, RequestError, Response,
    ServerFrame,
};
use chorus_tls::{ClientTls, Stream};
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};

use crate::delivery::Deliveries;
use crate::transport::open_stream;

/// Bytes read from the socket at once: every frame that has arrived, in
/// one read (larger frames are read straight into their own buffer).
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// A replica's answer to one request.
pub(crate) type ReplyResult = Result<Response, RequestError>;

/// Why one attempt on one connection produced no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttemptError {
    /// The connection closed or failed before the reply came.
    Closed(String),
    /// No reply within the attempt's timeout.
    TimedOut,
    /// The replica refused our hello (e.g. another protocol version).
    HelloRefused(RequestError),
    /// The request does not fit in a frame.
    Encode(String),
}

/// Waiters for replies, shared by the handle and the reader.
#[derive(Debug, Default)]
struct Waiters {
    /// Reply slots by request id; at most `CLIENT_REQUESTS_IN_FLIGHT_MAX`.
    by_request: HashMap<u64, oneshot::Sender<ReplyResult>>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
    /// The replica's refusal of our hello, if it sent one.
    hello_refused: Option<RequestError>,
}

/// State the handle, the reader and the writer share.
#[derive(Debug, Default)]
struct Shared {
    waiters: Mutex<Waiters>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection closed; every waiter learns it at once.
    fn close(&self, reason: String) {
        let mut waiters = self.lock();
        if waiters.closed.is_none() {
            waiters.closed = Some(reason);
        }
        waiters.by_request.clear();
    }

    /// Hands a reply to its waiter (gone if the attempt timed out).
    fn complete(&self, request_id: u64, result: ReplyResult) {
        let mut waiters = self.lock();
        if request_id == 0 {
            if let Err(refusal) = result {
                waiters.hello_refused = Some(refusal);
            }
            return;
        }
        if let Some(waiter) = waiters.by_request.remove(&request_id) {
            let _ = waiter.send(result);
        }
    }

    /// Why an attempt on a closed connection failed.
    fn failure(&self) -> AttemptError {
        let waiters = self.lock();
        if let Some(refusal) = &waiters.hello_refused {
            return AttemptError::HelloRefused(refusal.clone());
        }
        let reason = waiters.closed.clone();
        AttemptError::Closed(reason.unwrap_or_else(|| "connection closed".into()))
    }
}

/// Removes a waiter when its attempt ends, answered or not.
struct WaiterGuard<'a> {
    shared: &'a Shared,
    request_id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().by_request.remove(&self.request_id);
    }
}

/// Handle to one live connection. Dropping the last handle ends the writer,
/// which shuts our side down; the reader ends when the replica closes its
/// side in turn.
#[derive(Debug)]
pub(crate) struct Connection {
    /// Index of the replica in the client's replica list.
    pub(crate) replica_index: usize,
    /// Encoded frames for the writer task.
    frames: mpsc::Sender<Vec<u8>>,
    /// Waiters and closing state, shared with the tasks.
    shared: Arc<Shared>,
    /// Next request id; ids are unique per connection and 0 is the hello's.
    next_request_id: AtomicU64,
    /// Caps requests in flight at `CLIENT_REQUESTS_IN_FLIGHT_MAX`.
    in_flight: Semaphore,
    /// The account this connection signed in as (by sign-in or resume).
    pub(crate) signed_in: std::sync::Mutex<Option<String>>,
}

/// What the connection's tasks report to, besides their waiters.
#[derive(Clone, Debug)]
pub(crate) struct Wiring {
    /// Where pushed deliveries go.
    pub(crate) deliveries: Arc<Deliveries>,
    /// Notified when the connection is lost.
    pub(crate) connection_lost: Arc<Notify>,
    /// Changes (closes) when the client is dropped: the tasks stop.
    pub(crate) closing: watch::Receiver<()>,
}

impl Connection {
    /// Connects to `replica` (TLS with `tls`), sends the hello and starts
    /// the reader and writer.
    pub(crate) async fn open(
        replica_index: usize,
        replica: &ReplicaAddress,
        tls: Option<&ClientTls>,
        wiring: Wiring,
    ) -> Result<Connection, String> {
        let stream = open_stream(replica, tls).await?;
        let (reader, mut writer) = tokio::io::split(stream);
        let hello = encode_frame(&Hello::new(Peer::Client), CLIENT_FRAME_BYTES_MAX)
            .map_err(|e| format!("cannot encode hello: {e}"))?;
        let addr = replica.client_addr;
        write_frame(&mut writer, &hello).await.map_err(|e| format!("cannot greet {addr}: {e}"))?;
        let shared = Arc::new(Shared::default());
        let (frames, frames_rx) = mpsc::channel(CLIENT_REQUESTS_IN_FLIGHT_MAX);
        tokio::spawn(write_loop(writer, frames_rx, shared.clone(), wiring.clone()));
        tokio::spawn(read_loop(reader, shared.clone(), wiring));
        Ok(Connection {
            replica_index,
            frames,
            shared,
            next_request_id: AtomicU64::new(1),
            in_flight: Semaphore::new(CLIENT_REQUESTS_IN_FLIGHT_MAX),
            signed_in: std::sync::Mutex::new(None),
        })
    }

    /// False once the connection has closed or failed.
    pub(crate) fn is_open(&self) -> bool {
        self.shared.lock().closed.is_none()
    }

    /// Sends `request` and waits up to `timeout` for its reply.
    pub(crate) async fn request(&self, request: Request, timeout: Duration) -> Result<ReplyResult, AttemptError> {
        tokio::time::timeout(timeout, self.exchange(request)).await.unwrap_or(Err(AttemptError::TimedOut))
    }

    /// One request and its reply, without a timeout.
    async fn exchange(&self, request: Request) -> Result<ReplyResult, AttemptError> {
        let _permit = self.in_flight.acquire().await.map_err(|_| AttemptError::Closed("connection closed".into()))?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        assert!(request_id > 0, "request id 0 belongs to the hello");
        let frame = ClientFrame { request_id, request };
        let bytes = encode_frame(&frame, CLIENT_FRAME_BYTES_MAX).map_err(|e| AttemptError::Encode(e.to_string()))?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let _guard = {
            let mut waiters = self.shared.lock();
            if waiters.closed.is_some() {
                drop(waiters);
                return Err(self.shared.failure());
            }
            waiters.by_request.insert(request_id, reply_tx);
            assert!(waiters.by_request.len() <= CLIENT_REQUESTS_IN_FLIGHT_MAX);
            WaiterGuard { shared: &self.shared, request_id }
        };
        if self.frames.send(bytes).await.is_err() {
            return Err(self.shared.failure());
        }
        match reply_rx.await {
            Ok(reply) => Ok(reply),
            Err(_) => Err(self.shared.failure()),
        }
    }
}

/// Writes queued frames until the handle is dropped or the socket fails;
/// frames queued together go out in one write.
async fn write_loop(
    mut writer: WriteHalf<Stream>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    wiring: Wiring,
) {
    while let Some(mut frame) = frames.recv().await {
        while let Ok(more) = frames.try_recv() {
            frame.extend_from_slice(&more);
        }
        if let Err(error) = write_frame(&mut writer, &frame).await {
            tracing::debug!(%error, "connection write failed");
            shared.close(format!("write failed: {error}"));
            wiring.connection_lost.notify_one();
            return;
        }
    }
    // Every handle is gone (a redirect or an abandoned attempt moved on):
    // close our side, so the replica ends the connection rather than keep
    // an idle one open for as long as the reader lives.
    let _ = writer.shutdown().await;
}

/// Reads frames until the replica closes, the socket fails or the client
/// is dropped, then closes the connection and reports the loss.
async fn read_loop(reader: ReadHalf<Stream>, shared: Arc<Shared>, mut wiring: Wiring) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let mut buffer = Vec::new();
    let reason = loop {
        let frame = tokio::select! {
            frame = read_frame::<_, ServerFrame>(&mut reader, CLIENT_FRAME_BYTES_MAX, &mut buffer) => frame,
            _ = wiring.closing.changed() => break "client dropped".to_string(),
        };
        match frame {
            Ok(ServerFrame::Reply { request_id, result }) => shared.complete(request_id, result),
            Ok(ServerFrame::Deliver { messages }) => wiring.deliveries.deliver(messages).await,
            Ok(ServerFrame::Ended { name, reason }) => wiring.deliveries.end(name, reason).await,
            Err(error) => break error.to_string(),
        }
    };
    tracing::debug!(%reason, "connection closed");
    shared.close(reason);
    wiring.connection_lost.notify_one();
}
