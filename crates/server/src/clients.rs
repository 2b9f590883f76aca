//! Client connections: accept (bounded), the TLS handshake and the hello
//! under one deadline, then a reader feeding the core and a writer draining
//! a bounded per-connection queue.
//!
//! A connection holds its slot (the replica's and its address's counts)
//! from the accept; one that has not finished its handshake and hello
//! when the deadline passes is closed, so a stranger who opens TCP and
//! stays silent holds nothing past it.

use crate::machine::ConnId;
use crate::node::Input;
use chorus_limits as limits;
use chorus_proto::{
    encode_frame, encode_frame_into, read_frame, write_frame, ClientFrame, FrameError, Hello, Peer, RequestError,
    ServerFrame,
};
use chorus_tls::{ReplicaTls, Stream};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Time a new connection has to finish its TLS handshake and send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's reading side, buffered.
type Reader = BufReader<ReadHalf<Stream>>;
/// A connection's writing side.
type Writer = WriteHalf<Stream>;

/// Accepts clients until the core goes away: at most
/// `CLIENT_CONNECTIONS_MAX` in all and `per_address` from one address.
/// With `tls`, every connection is TLS; `None` is plaintext (`--insecure`).
pub async fn listen(listener: TcpListener, inbox: mpsc::Sender<Input>, per_address: usize, tls: Option<ReplicaTls>) {
    let permits = Arc::new(Semaphore::new(limits::CLIENT_CONNECTIONS_MAX));
    let addresses = Arc::new(Mutex::new(AddressCounts::default()));
    let mut next_conn: ConnId = 1;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "client accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, "too many connections to this replica; try another"));
            continue;
        };
        let Some(held) = AddressCounts::take(&addresses, addr.ip(), per_address) else {
            tokio::spawn(refuse(stream, "too many connections from your address"));
            continue;
        };
        let conn = next_conn;
        next_conn += 1;
        let (inbox, tls) = (inbox.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(error) = serve(stream, (conn, addr.ip()), inbox, tls).await {
                tracing::debug!(%addr, conn, %error, "client connection closed");
            }
            drop((permit, held));
        });
    }
}

/// Connections held per client address.
#[derive(Debug, Default)]
struct AddressCounts(HashMap<IpAddr, usize>);

/// One connection counted against its address until dropped.
struct AddressSlot {
    counts: Arc<Mutex<AddressCounts>>,
    ip: IpAddr,
}

impl AddressCounts {
    /// Counts one more connection from `ip`, unless it holds `max` already.
    fn take(counts: &Arc<Mutex<AddressCounts>>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut guard = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let held = guard.0.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(AddressSlot { counts: counts.clone(), ip })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut guard = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = guard.0.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                guard.0.remove(&self.ip);
            }
        }
    }
}

/// Tells a client why it is refused, then closes.
async fn refuse(mut stream: impl tokio::io::AsyncWrite + Unpin, reason: &str) {
    let error = RequestError::BadRequest(reason.to_string());
    let frame = ServerFrame::Reply { request_id: 0, result: Err(error) };
    if let Ok(bytes) = encode_frame(&frame, limits::CLIENT_FRAME_BYTES_MAX) {
        let _ = tokio::time::timeout(Duration::from_secs(1), write_frame(&mut stream, &bytes)).await;
    }
}

async fn serve(
    tcp: TcpStream,
    (conn, address): (ConnId, IpAddr),
    inbox: mpsc::Sender<Input>,
    tls: Option<ReplicaTls>,
) -> Result<(), FrameError> {
    tcp.set_nodelay(true)?;
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let stream = match tls {
        Some(tls) => secure(tcp, &tls, deadline).await?,
        None => Stream::Plain(tcp),
    };
    let (reader, mut writer) = tokio::io::split(stream);
    // Buffered: one read takes in every frame that has arrived, instead of
    // two reads (prefix, body) per frame.
    let mut reader = BufReader::with_capacity(limits::CLIENT_READ_BUFFER_BYTES, reader);
    let mut buf = Vec::new();
    let hello = read_hello(&mut reader, &mut writer, &mut buf, deadline).await?;
    let (tx, rx) = mpsc::channel(limits::CLIENT_OUTBOUND_FRAMES_MAX);
    let refusal = match (hello.check(), hello.peer) {
        (Err(error), _) => Some(error),
        (Ok(()), Peer::Replica(_)) => Some(RequestError::BadRequest("replicas use the peer port".into())),
        (Ok(()), Peer::Client) => None,
    };
    let writer_task = tokio::spawn(write_loop(writer, rx));
    if let Some(error) = refusal {
        let _ = tx.send(ServerFrame::Reply { request_id: 0, result: Err(error) }).await;
        drop(tx);
        let _ = writer_task.await;
        return Ok(());
    }
    let kick = Arc::new(Notify::new());
    if inbox.send(Input::Connected { conn, address, tx: tx.clone(), kick: kick.clone() }).await.is_err() {
        return Ok(());
    }
    let result = tokio::select! {
        result = read_loop(&mut reader, conn, &inbox, &tx, &mut buf) => result,
        () = kick.notified() => Err(FrameError::Malformed("client too slow; closed".into())),
    };
    let _ = inbox.send(Input::Disconnected { conn }).await;
    drop(tx);
    writer_task.abort();
    result
}

/// The server side of the TLS handshake, finished by `deadline`. A client
/// that speaks plaintext (its first byte does not start a TLS handshake)
/// is told, in plaintext, that this replica needs TLS.
async fn secure(tcp: TcpStream, tls: &ReplicaTls, deadline: tokio::time::Instant) -> Result<Stream, FrameError> {
    let late = || FrameError::Malformed("no TLS handshake in time".into());
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await.map_err(|_| late())??;
    if peeked == 0 {
        return Err(FrameError::Closed);
    }
    if first[0] != chorus_tls::TLS_HANDSHAKE_RECORD {
        let mut tcp = tcp;
        let reason = "this replica accepts TLS only: use a cluster file with the cluster's [tls] table";
        refuse(&mut tcp, reason).await;
        drain(&mut tcp).await;
        return Err(FrameError::Malformed("a plaintext client on the TLS port".into()));
    }
    let stream = tokio::time::timeout_at(deadline, tls.accept_client(tcp)).await.map_err(|_| late())??;
    Ok(stream)
}

/// After a refusal: half-closes, then reads (briefly, boundedly) what the
/// client still sends, so the close is a FIN that follows the refusal and
/// not a reset, which may discard it before the client reads it.
async fn drain(tcp: &mut TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let discard = async {
        for _ in 0..DRAIN_READS_MAX {
            if matches!(tcp.read(&mut sink).await, Ok(0) | Err(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), discard).await;
}

/// Reads [`drain`] makes before it gives up.
const DRAIN_READS_MAX: usize = 16;

/// Reads the connection's hello by `deadline`; a malformed, oversized or
/// late one is answered with the reason before the close.
async fn read_hello(
    reader: &mut Reader,
    writer: &mut Writer,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Result<Hello, FrameError> {
    match tokio::time::timeout_at(deadline, read_frame(reader, limits::HELLO_BYTES_MAX, buf)).await {
        Ok(Ok(hello)) => Ok(hello),
        Ok(Err(error @ (FrameError::TooLarge { .. } | FrameError::Malformed(_)))) => {
            refuse(writer, &format!("bad hello: {error}")).await;
            Err(error)
        }
        Ok(Err(error)) => Err(error),
        Err(_) => {
            refuse(writer, "no hello in time").await;
            Err(FrameError::Malformed("no hello in time".into()))
        }
    }
}

async fn read_loop(
    reader: &mut Reader,
    conn: ConnId,
    inbox: &mpsc::Sender<Input>,
    tx: &mpsc::Sender<ServerFrame>,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut rate = RateLimit::new(limits::CLIENT_REQUESTS_PER_SECOND_MAX, limits::CLIENT_REQUESTS_BURST_MAX);
    loop {
        let frame: ClientFrame = match read_request(reader, buf).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return Ok(()),
            Err(error @ (FrameError::TooLarge { .. } | FrameError::Malformed(_))) => {
                // Say why before closing: the stream cannot be resynchronised.
                let reply =
                    ServerFrame::Reply { request_id: 0, result: Err(RequestError::BadRequest(error.to_string())) };
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(reply)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        if !rate.allow(Instant::now()) {
            // Waiting for room in the queue slows the flood down to what the
            // client reads; one that stops reading is closed.
            let reply = ServerFrame::Reply { request_id: frame.request_id, result: Err(RequestError::Busy) };
            if !matches!(tokio::time::timeout(REFUSAL_WAIT, tx.send(reply)).await, Ok(Ok(()))) {
                return Err(FrameError::Malformed("too many requests, and their refusals are not read".into()));
            }
            continue;
        }
        if inbox.send(Input::Request { conn, frame }).await.is_err() {
            return Ok(());
        }
    }
}

/// Longest wait for room to queue a `Busy` refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Reads the next request. Waiting for it to start has no deadline (a
/// recipient may idle for days); once its first byte is here, the whole
/// frame must arrive within `CLIENT_FRAME_DEADLINE_MILLIS`.
async fn read_request(reader: &mut Reader, buf: &mut Vec<u8>) -> Result<ClientFrame, FrameError> {
    if reader.fill_buf().await?.is_empty() {
        return Err(FrameError::Closed);
    }
    let deadline = Duration::from_millis(limits::CLIENT_FRAME_DEADLINE_MILLIS);
    match tokio::time::timeout(deadline, read_frame(reader, limits::CLIENT_FRAME_BYTES_MAX, buf)).await {
        Ok(result) => result,
        Err(_) => Err(FrameError::Malformed(format!("a request took longer than {deadline:?} to arrive"))),
    }
}

/// A token bucket: `rate` requests a second on average, `burst` at once.
struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimit { tokens: f64::from(burst), rate: f64::from(rate), burst: f64::from(burst), last: Instant::now() }
    }

    /// Takes a token if one is left at `now`.
    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Bytes of frames gathered into one write.
const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// A connection's write buffer larger than this is released after use, so
/// a burst does not pin memory on a connection that then idles.
const WRITE_BUFFER_KEPT_BYTES: usize = 4 * 1024;

/// Writes every frame queued for the connection, as many as fit in one
/// chunk per write. An idle connection holds no buffer.
async fn write_loop(mut writer: Writer, mut rx: mpsc::Receiver<ServerFrame>) {
    let mut out = Vec::new();
    while let Some(frame) = rx.recv().await {
        out.clear();
        if encode_frame_into(&frame, limits::CLIENT_FRAME_BYTES_MAX, &mut out).is_err() {
            return;
        }
        while out.len() < WRITE_CHUNK_BYTES {
            let Ok(more) = rx.try_recv() else { break };
            if encode_frame_into(&more, limits::CLIENT_FRAME_BYTES_MAX, &mut out).is_err() {
                return;
            }
        }
        // Flushed: TLS may hold back the end of what it could not write at once.
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        if out.capacity() > WRITE_BUFFER_KEPT_BYTES {
            out = Vec::new();
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_address_until_dropped() {
        let counts = Arc::new(Mutex::new(AddressCounts::default()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = AddressCounts::take(&counts, a, 2).expect("first");
        let second = AddressCounts::take(&counts, a, 2).expect("second");
        assert!(AddressCounts::take(&counts, a, 2).is_none(), "a third from the same address");
        assert!(AddressCounts::take(&counts, b, 2).is_some(), "another address is not affected");
        drop(first);
        let third = AddressCounts::take(&counts, a, 2).expect("a slot was freed");
        drop((second, third));
        assert!(counts.lock().unwrap().0.is_empty(), "no entry left for idle addresses");
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut rate = RateLimit::new(100, 10);
        rate.last = start;
        assert_eq!((0..20).filter(|_| rate.allow(start)).count(), 10, "the burst, then nothing");
        let later = start + Duration::from_millis(50);
        assert_eq!((0..20).filter(|_| rate.allow(later)).count(), 5, "50 ms at 100/s");
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| rate.allow(much_later)).count(), 10, "never more than the burst");
    }
}
