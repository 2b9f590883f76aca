//! A fault-injecting TCP proxy: the harness's only way to break a network path.
//!
//! A [`Proxy`] listens on `127.0.0.1` (port chosen by the OS) and forwards every accepted
//! connection to one fixed target. The harness puts one proxy on each directed replica-to-replica
//! link and one in front of each replica's client port, then changes its [`Faults`] at any moment
//! from any task.
//!
//! # Fault model
//!
//! Each direction of a connection has a [`Flow`]: `Open` (bytes pass at once), `Delay` (each chunk
//! is written no earlier than its read instant plus the delay) or `Stalled` (the proxy reads
//! nothing from the source, so TCP back-pressure builds up as on a black-holed network). Bytes
//! inside a live connection are never dropped: lifting a stall or a delay releases what is held,
//! in order. `refuse` resets every open connection (SO_LINGER 0, so the peer sees `ECONNRESET`,
//! not a clean EOF) and every new one; [`Proxy::reset_connections`] resets only those open now.
//!
//! # How it works
//!
//! The faults live in a `watch` channel. One acceptor task owns the listener; each accepted
//! connection gets a task that dials the target and then runs two [`Pump`]s (one per direction)
//! concurrently. A pump is a small event loop that `select!`s over "the control changed", "the
//! front chunk is due and was written" and "a chunk was read", so a fault change takes effect even
//! while the pump waits in a read, a write or a delay. Every queue is bounded: at most
//! [`CONNECTIONS_MAX`] connections per proxy and [`HELD_BYTES_MAX`] bytes held per direction.
//!
//! The limits live here rather than in `chorus-limits` because they bound the test harness, not
//! the service.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::debug;

/// Connections open at once through one proxy; beyond it new ones are reset and counted as refused.
pub const CONNECTIONS_MAX: usize = 256;
/// Bytes read from a source in one call (one chunk).
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Bytes held per direction (delayed or stalled); when full the pump stops reading.
pub const HELD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long a connection waits for the target to accept before it is reset.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (for example out of file descriptors), so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

const _: () = assert!(CHUNK_BYTES_MAX > 0 && CHUNK_BYTES_MAX <= HELD_BYTES_MAX);
const _: () = assert!(CONNECTIONS_MAX > 0 && CONNECTIONS_MAX <= Semaphore::MAX_PERMITS);

/// What one direction of a proxied connection does with bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Bytes pass at once.
    Open,
    /// Each chunk read is written no earlier than this long after it was read, in order.
    Delay(Duration),
    /// Nothing moves: the proxy stops reading from the source (so TCP back-pressure builds up,
    /// like a black-holed network). No byte is ever dropped from inside a live connection; when
    /// the flow opens again the held bytes go on, in order.
    Stalled,
}

/// The faults of one proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Bytes from the connecting side towards the target.
    pub to_target: Flow,
    /// Bytes from the target back to the connecting side.
    pub from_target: Flow,
    /// Every open connection is closed at once (with a reset: SO_LINGER 0, so the peer sees
    /// `ECONNRESET`, not a clean EOF) and every new one is accepted and reset at once.
    pub refuse: bool,
}

impl Faults {
    /// No fault: both directions open, connections accepted.
    pub const NONE: Faults = Faults { to_target: Flow::Open, from_target: Flow::Open, refuse: false };
}

/// Counters of one proxy since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections the listener accepted, whatever became of them.
    pub accepted: u64,
    /// Accepted connections reset without being forwarded: `refuse` was set, [`CONNECTIONS_MAX`]
    /// was reached, or the target could not be reached.
    pub refused: u64,
    /// Forwarded connections reset by `refuse`, [`Proxy::reset_connections`] or [`Proxy::stop`].
    pub resets: u64,
    /// Bytes written to the target.
    pub bytes_to_target: u64,
    /// Bytes written back to the connecting side.
    pub bytes_from_target: u64,
    /// Connections open now (including those still dialing the target).
    pub open: u64,
}

/// A running proxy; cheap to clone (`Arc` inside). The listener and all its connections stop when
/// [`Proxy::stop`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct Proxy {
    /// Shared by every clone; its drop closes the control channel, which stops every task.
    inner: Arc<Inner>,
}

/// The state behind every [`Proxy`] handle.
struct Inner {
    /// Where the listener is bound.
    addr: SocketAddr,
    /// Where every connection is forwarded.
    target: SocketAddr,
    /// The only sender of the control channel: dropping it stops the proxy.
    control: watch::Sender<Control>,
    /// Counters shared with the tasks.
    counters: Arc<Counters>,
    /// One permit per open connection, so at most [`CONNECTIONS_MAX`].
    slots: Arc<Semaphore>,
}

/// What every task of a proxy watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    /// The faults in force.
    faults: Faults,
    /// Bumped by [`Proxy::reset_connections`]; a connection dies when it differs from its own.
    reset_epoch: u64,
    /// Set by [`Proxy::stop`]; never cleared.
    stopped: bool,
}

impl Control {
    /// A proxy that has just started.
    const INITIAL: Control = Control { faults: Faults::NONE, reset_epoch: 0, stopped: false };

    /// Whether a connection opened during `epoch` must be reset now.
    fn must_reset(&self, epoch: u64) -> bool {
        self.stopped || self.faults.refuse || self.reset_epoch != epoch
    }
}

/// Counters updated by the tasks; [`ProxyStats`] is their snapshot.
#[derive(Debug, Default)]
struct Counters {
    /// See [`ProxyStats::accepted`].
    accepted: AtomicU64,
    /// See [`ProxyStats::refused`].
    refused: AtomicU64,
    /// See [`ProxyStats::resets`].
    resets: AtomicU64,
    /// See [`ProxyStats::bytes_to_target`].
    bytes_to_target: AtomicU64,
    /// See [`ProxyStats::bytes_from_target`].
    bytes_from_target: AtomicU64,
}

/// Adds one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Proxy {
    /// Binds 127.0.0.1:0 and starts forwarding to `target`. Must be called inside a tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (control, control_receiver) = watch::channel(Control::INITIAL);
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        let acceptor = Acceptor {
            listener,
            target,
            control: control_receiver,
            counters: Arc::clone(&counters),
            slots: Arc::clone(&slots),
        };
        tokio::spawn(acceptor.run());
        debug!(%addr, %target, "proxy started");
        Ok(Proxy { inner: Arc::new(Inner { addr, target, control, counters, slots }) })
    }

    /// Where connectors should connect.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Where every connection is forwarded.
    pub fn target(&self) -> SocketAddr {
        self.inner.target
    }

    /// Replaces the faults; applies to open connections at once.
    pub fn set(&self, faults: Faults) {
        self.inner.control.send_if_modified(|control| {
            let modified = control.faults != faults;
            control.faults = faults;
            modified
        });
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.inner.control.borrow().faults
    }

    /// Back to [`Faults::NONE`].
    pub fn heal(&self) {
        self.set(Faults::NONE)
    }

    /// One-shot: resets every connection open now (new ones are accepted as usual unless `refuse`).
    pub fn reset_connections(&self) {
        self.inner.control.send_modify(|control| control.reset_epoch = control.reset_epoch.wrapping_add(1));
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let counters = &self.inner.counters;
        let open = CONNECTIONS_MAX - self.inner.slots.available_permits();
        ProxyStats {
            accepted: counters.accepted.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            resets: counters.resets.load(Ordering::Relaxed),
            bytes_to_target: counters.bytes_to_target.load(Ordering::Relaxed),
            bytes_from_target: counters.bytes_from_target.load(Ordering::Relaxed),
            open: open as u64,
        }
    }

    /// Stops the listener and closes (resets) every connection. Cannot be undone.
    pub fn stop(&self) {
        self.inner.control.send_modify(|control| control.stopped = true);
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Proxy")
            .field("addr", &self.inner.addr)
            .field("target", &self.inner.target)
            .field("control", &*self.inner.control.borrow())
            .finish()
    }
}

/// The task that owns the listener.
struct Acceptor {
    /// Bound on 127.0.0.1.
    listener: TcpListener,
    /// Where connections are forwarded.
    target: SocketAddr,
    /// Closed or `stopped` means: stop accepting.
    control: watch::Receiver<Control>,
    /// Shared with the handle.
    counters: Arc<Counters>,
    /// Caps open connections.
    slots: Arc<Semaphore>,
}

impl Acceptor {
    /// Accepts until the proxy stops; each admitted connection gets its own task.
    async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = self.control.wait_for(|control| control.stopped) => None,
                accepted = self.listener.accept() => Some(accepted),
            };
            match accepted {
                None => break,
                Some(Ok((stream, peer))) => self.admit(stream, peer),
                Some(Err(error)) => {
                    debug!(%error, "proxy accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
        debug!(addr = ?self.listener.local_addr().ok(), "proxy listener stopped");
    }

    /// Forwards a new connection, or resets it if the proxy refuses or is full.
    fn admit(&self, client: TcpStream, peer: SocketAddr) {
        bump(&self.counters.accepted);
        let control = *self.control.borrow();
        if control.faults.refuse {
            return self.refuse(client, peer, "refusing");
        }
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            return self.refuse(client, peer, "connection limit reached");
        };
        let connection = Connection {
            client,
            peer,
            target: self.target,
            epoch: control.reset_epoch,
            control: self.control.clone(),
            counters: Arc::clone(&self.counters),
            _slot: permit,
        };
        tokio::spawn(connection.run());
    }

    /// Resets a connection that will not be forwarded.
    fn refuse(&self, client: TcpStream, peer: SocketAddr, reason: &str) {
        debug!(%peer, reason, "proxy resets new connection");
        reset(&client);
        bump(&self.counters.refused);
    }
}

/// Makes the close of `stream` send a reset (SO_LINGER 0) instead of a clean FIN.
fn reset(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        debug!(%error, "proxy could not set SO_LINGER 0");
    }
}

/// Turns Nagle off, so the proxy adds no latency of its own.
fn set_nodelay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "proxy could not set TCP_NODELAY");
    }
}

/// Why a pump (and so its connection) ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The proxy asked for a reset (`refuse`, `reset_connections`, `stop`, last handle dropped).
    Reset,
    /// A socket failed; both sides are closed.
    Failed,
}

/// One accepted connection, before and while it is forwarded.
struct Connection {
    /// The connecting side.
    client: TcpStream,
    /// The connecting side's address, for logs.
    peer: SocketAddr,
    /// Where to dial.
    target: SocketAddr,
    /// The reset epoch at accept time.
    epoch: u64,
    /// Fault changes.
    control: watch::Receiver<Control>,
    /// Shared with the handle.
    counters: Arc<Counters>,
    /// Held for the connection's life so it counts against [`CONNECTIONS_MAX`].
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Dials the target, relays until both directions end, and closes as the outcome requires.
    async fn run(mut self) {
        let Some(mut target) = self.connect_target().await else {
            reset(&self.client);
            bump(&self.counters.refused);
            return;
        };
        set_nodelay(&self.client);
        set_nodelay(&target);
        match self.relay(&mut target).await {
            Ok(()) => debug!(peer = %self.peer, "proxied connection closed"),
            Err(End::Failed) => debug!(peer = %self.peer, "proxied connection failed; closing both sides"),
            Err(End::Reset) => {
                debug!(peer = %self.peer, "proxied connection reset");
                reset(&self.client);
                reset(&target);
                bump(&self.counters.resets);
            }
        }
    }

    /// Connects to the target, unless the proxy resets this connection or the dial fails first.
    async fn connect_target(&mut self) -> Option<TcpStream> {
        let epoch = self.epoch;
        let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.target));
        let connected = tokio::select! {
            biased;
            _ = self.control.wait_for(|control| control.must_reset(epoch)) => {
                debug!(peer = %self.peer, "proxy reset while dialing the target");
                return None;
            }
            connected = connecting => connected,
        };
        match connected {
            Ok(Ok(target)) => Some(target),
            Ok(Err(error)) => {
                debug!(peer = %self.peer, target = %self.target, %error, "proxy could not reach the target");
                None
            }
            Err(_elapsed) => {
                debug!(peer = %self.peer, target = %self.target, "proxy timed out dialing the target");
                None
            }
        }
    }

    /// Runs both directions at once; the first early end stops the other.
    async fn relay(&mut self, target: &mut TcpStream) -> Result<(), End> {
        let (client_read, client_write) = self.client.split();
        let (target_read, target_write) = target.split();
        let counters = &*self.counters;
        let to_target = Pump::new(client_read, target_write, Direction::ToTarget, self.epoch, &self.control, counters);
        let from_target =
            Pump::new(target_read, client_write, Direction::FromTarget, self.epoch, &self.control, counters);
        tokio::try_join!(to_target.run(), from_target.run()).map(|((), ())| ())
    }
}

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// From the connecting side to the target.
    ToTarget,
    /// From the target back to the connecting side.
    FromTarget,
}

impl Direction {
    /// The flow the faults give this direction.
    fn flow(self, faults: &Faults) -> Flow {
        match self {
            Direction::ToTarget => faults.to_target,
            Direction::FromTarget => faults.from_target,
        }
    }

    /// The byte counter of this direction.
    fn bytes_counter(self, counters: &Counters) -> &AtomicU64 {
        match self {
            Direction::ToTarget => &counters.bytes_to_target,
            Direction::FromTarget => &counters.bytes_from_target,
        }
    }
}

/// A chunk read from the source and not yet fully written.
#[derive(Debug)]
struct Chunk {
    /// When it was read; a delay counts from here.
    read_at: Instant,
    /// The bytes, never empty.
    bytes: Vec<u8>,
    /// How many of `bytes` are already written.
    written: usize,
}

/// The bytes one direction holds, in order, at most [`HELD_BYTES_MAX`].
#[derive(Debug, Default)]
struct Held {
    /// Oldest first.
    chunks: VecDeque<Chunk>,
    /// Unwritten bytes over all chunks.
    bytes: usize,
}

impl Held {
    /// Whether nothing is held.
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// How many more bytes may be held.
    fn room(&self) -> usize {
        HELD_BYTES_MAX - self.bytes
    }

    /// Queues a chunk just read.
    fn push(&mut self, read_at: Instant, bytes: &[u8]) {
        assert!(!bytes.is_empty(), "an empty read is an EOF, not a chunk");
        assert!(bytes.len() <= self.room(), "a read never exceeds the room left");
        self.bytes += bytes.len();
        self.chunks.push_back(Chunk { read_at, bytes: bytes.to_vec(), written: 0 });
    }

    /// The unwritten bytes of the oldest chunk (empty if nothing is held).
    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |chunk| &chunk.bytes[chunk.written..])
    }

    /// When the oldest chunk may be written under `flow`; `None` if it may not (or none is held).
    fn due(&self, flow: Flow) -> Option<Instant> {
        let read_at = self.chunks.front()?.read_at;
        match flow {
            Flow::Open => Some(read_at),
            Flow::Delay(delay) => Some(read_at + delay),
            Flow::Stalled => None,
        }
    }

    /// Records that `count` bytes of the oldest chunk were written.
    fn consume(&mut self, count: usize) {
        let chunk = self.chunks.front_mut().expect("a write needs a held chunk");
        assert!(count > 0 && count <= chunk.bytes.len() - chunk.written, "wrote more than the front chunk");
        chunk.written += count;
        self.bytes -= count;
        if chunk.written == chunk.bytes.len() {
            self.chunks.pop_front();
        }
        assert_eq!(self.bytes == 0, self.chunks.is_empty(), "held byte count out of step with the chunks");
    }
}

/// What woke a pump.
#[derive(Debug)]
enum Step {
    /// The control changed (`true`) or every proxy handle is gone (`false`).
    Control(bool),
    /// A read from the source finished.
    Read(io::Result<usize>),
    /// A write of the front chunk to the sink finished.
    Written(io::Result<usize>),
}

/// Moves one direction's bytes from `source` to `sink`, obeying the faults as they change.
struct Pump<'a, R, W> {
    /// Where bytes come from.
    source: R,
    /// Where bytes go.
    sink: W,
    /// Which flow of the faults applies.
    direction: Direction,
    /// The connection's reset epoch.
    epoch: u64,
    /// Fault changes.
    control: watch::Receiver<Control>,
    /// Bytes written to the sink.
    bytes_counter: &'a AtomicU64,
    /// Read but not yet written.
    held: Held,
    /// The source reached EOF.
    source_ended: bool,
}

impl<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Pump<'a, R, W> {
    /// A pump with nothing held.
    fn new(
        source: R,
        sink: W,
        direction: Direction,
        epoch: u64,
        control: &watch::Receiver<Control>,
        counters: &'a Counters,
    ) -> Self {
        let bytes_counter = direction.bytes_counter(counters);
        let held = Held::default();
        Pump { source, sink, direction, epoch, control: control.clone(), bytes_counter, held, source_ended: false }
    }

    /// Pumps until the source ends and everything held is written (then shuts the sink's write
    /// half), or until a reset or an error.
    async fn run(mut self) -> Result<(), End> {
        let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            let control = *self.control.borrow_and_update();
            if control.must_reset(self.epoch) {
                return Err(End::Reset);
            }
            let flow = self.direction.flow(&control.faults);
            if self.source_ended && self.held.is_empty() && flow != Flow::Stalled {
                return self.finish().await;
            }
            let step = self.next_step(flow, &mut buffer).await;
            self.apply(step, &buffer)?;
        }
    }

    /// Waits for whichever comes first: a control change, the front chunk written, a chunk read.
    async fn next_step(&mut self, flow: Flow, buffer: &mut [u8]) -> Step {
        let read_bytes = self.held.room().min(buffer.len());
        let readable = !self.source_ended && flow != Flow::Stalled && read_bytes > 0;
        let due = self.held.due(flow);
        let pending = self.held.front();
        tokio::select! {
            biased;
            changed = self.control.changed() => Step::Control(changed.is_ok()),
            written = write_when_due(&mut self.sink, pending, due), if due.is_some() => Step::Written(written),
            read = self.source.read(&mut buffer[..read_bytes]), if readable => Step::Read(read),
        }
    }

    /// Folds one step into the pump's state.
    fn apply(&mut self, step: Step, buffer: &[u8]) -> Result<(), End> {
        match step {
            Step::Control(true) => Ok(()),
            Step::Control(false) => Err(End::Reset),
            Step::Read(Ok(0)) => {
                self.source_ended = true;
                Ok(())
            }
            Step::Read(Ok(count)) => {
                self.held.push(Instant::now(), &buffer[..count]);
                Ok(())
            }
            Step::Written(Ok(0)) => self.fail("write", &io::Error::from(io::ErrorKind::WriteZero)),
            Step::Written(Ok(count)) => {
                self.held.consume(count);
                self.bytes_counter.fetch_add(count as u64, Ordering::Relaxed);
                Ok(())
            }
            Step::Read(Err(error)) => self.fail("read", &error),
            Step::Written(Err(error)) => self.fail("write", &error),
        }
    }

    /// Passes the source's EOF on: shuts down the sink's write half.
    async fn finish(&mut self) -> Result<(), End> {
        assert!(self.source_ended && self.held.is_empty(), "finish only after everything is written");
        match self.sink.shutdown().await {
            Ok(()) => Ok(()),
            Err(error) => self.fail("shutdown", &error),
        }
    }

    /// Logs a socket error; the connection closes both sides.
    fn fail(&self, operation: &str, error: &io::Error) -> Result<(), End> {
        debug!(direction = ?self.direction, operation, %error, "proxied connection error");
        Err(End::Failed)
    }
}

/// Writes (part of) `bytes` once `due` has passed. Cancel-safe: dropped before the write
/// completes, it has written nothing.
async fn write_when_due<W: AsyncWrite + Unpin>(sink: &mut W, bytes: &[u8], due: Option<Instant>) -> io::Result<usize> {
    debug_assert!(!bytes.is_empty(), "only a held chunk is written");
    if let Some(due) = due {
        if Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
    }
    sink.write(bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    /// How long a test waits for something that must happen.
    const PATIENCE: Duration = Duration::from_millis(1500);
    /// How long a test watches for something that must not happen.
    const QUIET: Duration = Duration::from_millis(200);

    /// An echo server that counts the bytes it received.
    struct Echo {
        addr: SocketAddr,
        received: Arc<AtomicU64>,
    }

    impl Echo {
        async fn start() -> Echo {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind echo");
            let addr = listener.local_addr().expect("echo addr");
            let received = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&received);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(echo_one(stream, Arc::clone(&counter)));
                }
            });
            Echo { addr, received }
        }

        fn received(&self) -> u64 {
            self.received.load(Ordering::Relaxed)
        }
    }

    async fn echo_one(mut stream: TcpStream, received: Arc<AtomicU64>) {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let count = match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => count,
            };
            received.fetch_add(count as u64, Ordering::Relaxed);
            if stream.write_all(&buffer[..count]).await.is_err() {
                return;
            }
        }
        let _ = stream.shutdown().await;
    }

    /// `length` bytes whose order matters.
    fn pattern(length: usize) -> Vec<u8> {
        (0..length).map(|index| (index % 251) as u8).collect()
    }

    /// Connects through the proxy and splits the stream.
    async fn connect(proxy: &Proxy) -> (OwnedReadHalf, OwnedWriteHalf) {
        TcpStream::connect(proxy.addr()).await.expect("connect to proxy").into_split()
    }

    /// Writes `data` from another task, so a blocked write cannot block the test.
    fn send(mut writer: OwnedWriteHalf, data: Vec<u8>) -> tokio::task::JoinHandle<OwnedWriteHalf> {
        tokio::spawn(async move {
            writer.write_all(&data).await.expect("client write");
            writer
        })
    }

    /// Reads exactly `length` bytes, failing the test if they do not come in time.
    async fn receive(reader: &mut OwnedReadHalf, length: usize) -> Vec<u8> {
        let mut data = vec![0u8; length];
        let read = tokio::time::timeout(PATIENCE, reader.read_exact(&mut data)).await;
        read.expect("bytes in time").expect("client read");
        data
    }

    /// Sends `data` and expects it echoed back unchanged.
    async fn round_trip(proxy: &Proxy, data: Vec<u8>) -> (OwnedReadHalf, OwnedWriteHalf) {
        let (mut reader, writer) = connect(proxy).await;
        let sending = send(writer, data.clone());
        assert_eq!(receive(&mut reader, data.len()).await, data);
        (reader, sending.await.expect("writer task"))
    }

    /// Expects the connection to be reset promptly.
    async fn expect_reset(reader: &mut OwnedReadHalf) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, reader.read(&mut byte)).await.expect("reset in time");
        let error = read.expect_err("a reset, not a clean EOF or data");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    /// Expects nothing to arrive for a while.
    async fn expect_silence(reader: &mut OwnedReadHalf) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(QUIET, reader.read(&mut byte)).await;
        assert!(read.is_err(), "nothing may arrive, got {read:?}");
    }

    /// Polls `condition` until it holds, failing after a while.
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn setup() -> (Echo, Proxy) {
        let echo = Echo::start().await;
        let proxy = Proxy::start(echo.addr).await.expect("start proxy");
        assert_eq!(proxy.target(), echo.addr);
        (echo, proxy)
    }

    #[tokio::test]
    async fn open_round_trips_a_mebibyte_unchanged() {
        let (echo, proxy) = setup().await;
        round_trip(&proxy, pattern(1024 * 1024)).await;
        assert_eq!(echo.received(), 1024 * 1024);
    }

    #[tokio::test]
    async fn stalled_to_target_holds_bytes_until_heal() {
        let (echo, proxy) = setup().await;
        proxy.set(Faults { to_target: Flow::Stalled, ..Faults::NONE });
        let (mut reader, writer) = connect(&proxy).await;
        let data = pattern(256 * 1024);
        let _sending = send(writer, data.clone());
        expect_silence(&mut reader).await;
        assert_eq!(echo.received(), 0);
        proxy.heal();
        assert_eq!(receive(&mut reader, data.len()).await, data);
        assert_eq!(echo.received(), data.len() as u64);
    }

    #[tokio::test]
    async fn stalled_from_target_is_one_way() {
        let (echo, proxy) = setup().await;
        proxy.set(Faults { from_target: Flow::Stalled, ..Faults::NONE });
        let (mut reader, writer) = connect(&proxy).await;
        let data = pattern(64 * 1024);
        let _sending = send(writer, data.clone());
        eventually("echo receives everything", || echo.received() == data.len() as u64).await;
        expect_silence(&mut reader).await;
        proxy.heal();
        assert_eq!(receive(&mut reader, data.len()).await, data);
    }

    #[tokio::test]
    async fn delay_both_ways_slows_the_round_trip() {
        let (_echo, proxy) = setup().await;
        let delay = Flow::Delay(Duration::from_millis(150));
        proxy.set(Faults { to_target: delay, from_target: delay, refuse: false });
        let started = std::time::Instant::now();
        round_trip(&proxy, b"ping".to_vec()).await;
        assert!(started.elapsed() >= Duration::from_millis(295), "took only {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn heal_releases_delayed_bytes_at_once() {
        let (echo, proxy) = setup().await;
        proxy.set(Faults { to_target: Flow::Delay(Duration::from_secs(60)), ..Faults::NONE });
        let (mut reader, writer) = connect(&proxy).await;
        let _sending = send(writer, pattern(1000));
        expect_silence(&mut reader).await;
        assert_eq!(echo.received(), 0);
        proxy.heal();
        assert_eq!(receive(&mut reader, 1000).await, pattern(1000));
    }

    #[tokio::test]
    async fn refuse_resets_open_and_new_connections_until_heal() {
        let (_echo, proxy) = setup().await;
        let (mut open, _writer) = round_trip(&proxy, b"hello".to_vec()).await;
        proxy.set(Faults { refuse: true, ..Faults::NONE });
        expect_reset(&mut open).await;
        let (mut refused, _refused_writer) = connect(&proxy).await;
        expect_reset(&mut refused).await;
        proxy.heal();
        round_trip(&proxy, b"again".to_vec()).await;
        let stats = proxy.stats();
        assert_eq!((stats.accepted, stats.refused, stats.resets), (3, 1, 1));
    }

    #[tokio::test]
    async fn reset_connections_kills_open_ones_only() {
        let (_echo, proxy) = setup().await;
        let (mut open, _writer) = round_trip(&proxy, b"hello".to_vec()).await;
        proxy.reset_connections();
        expect_reset(&mut open).await;
        round_trip(&proxy, b"again".to_vec()).await;
        assert_eq!(proxy.faults(), Faults::NONE);
        assert_eq!(proxy.stats().resets, 1);
    }

    #[tokio::test]
    async fn fault_change_applies_to_an_open_connection() {
        let (echo, proxy) = setup().await;
        let (mut reader, writer) = round_trip(&proxy, b"one".to_vec()).await;
        proxy.set(Faults { to_target: Flow::Stalled, ..Faults::NONE });
        let _sending = send(writer, b"two".to_vec());
        expect_silence(&mut reader).await;
        assert_eq!(echo.received(), 3);
        proxy.heal();
        assert_eq!(receive(&mut reader, 3).await, b"two");
    }

    #[tokio::test]
    async fn stats_count_connections_and_bytes() {
        let (_echo, proxy) = setup().await;
        let first = round_trip(&proxy, pattern(1000)).await;
        let second = round_trip(&proxy, pattern(1000)).await;
        let expected =
            ProxyStats { accepted: 2, bytes_to_target: 2000, bytes_from_target: 2000, open: 2, ..Default::default() };
        eventually("stats of two open connections", || proxy.stats() == expected).await;
        drop((first, second));
        eventually("both connections closed", || proxy.stats().open == 0).await;
        assert_eq!(proxy.stats(), ProxyStats { open: 0, ..expected });
    }

    #[tokio::test]
    async fn unreachable_target_resets_the_connection() {
        let unused = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        let target = unused.local_addr().expect("addr");
        drop(unused);
        let proxy = Proxy::start(target).await.expect("start proxy");
        let (mut reader, _writer) = connect(&proxy).await;
        expect_reset(&mut reader).await;
        eventually("refusal counted", || proxy.stats().refused == 1).await;
    }

    #[tokio::test]
    async fn stop_and_last_drop_reset_open_connections() {
        let (_echo, proxy) = setup().await;
        let (mut stopped, _writer) = round_trip(&proxy, b"hello".to_vec()).await;
        proxy.stop();
        expect_reset(&mut stopped).await;
        let (_echo, proxy) = setup().await;
        let (mut dropped, _writer) = round_trip(&proxy, b"hello".to_vec()).await;
        drop(proxy);
        expect_reset(&mut dropped).await;
    }
}
