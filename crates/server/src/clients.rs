//! Client connections: accept (bounded), hello, then a reader feeding the
//! core and a writer draining a bounded per-connection queue.

use crate::machine::ConnId;
use crate::node::Input;
use chorus_limits as limits;
use chorus_proto::{
    encode_frame, encode_frame_into, read_frame, ClientFrame, FrameError, Hello, Peer, RequestError, ServerFrame,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Time a new connection has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts clients until the core goes away: at most
/// `CLIENT_CONNECTIONS_MAX` in all and `per_address` from one address.
pub async fn listen(listener: TcpListener, inbox: mpsc::Sender<Input>, per_address: usize) {
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
        let inbox = inbox.clone();
        tokio::spawn(async move {
            if let Err(error) = serve(stream, (conn, addr.ip()), inbox).await {
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
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&bytes)).await;
    }
}

async fn serve(
    stream: TcpStream,
    (conn, address): (ConnId, IpAddr),
    inbox: mpsc::Sender<Input>,
) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    // Buffered: one read takes in every frame that has arrived, instead of
    // two reads (prefix, body) per frame.
    let mut reader = BufReader::with_capacity(limits::CLIENT_READ_BUFFER_BYTES, reader);
    let mut buf = Vec::new();
    let hello = read_hello(&mut reader, &mut writer, &mut buf).await?;
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

/// Reads the connection's hello within `HELLO_TIMEOUT`; a malformed,
/// oversized or late one is answered with the reason before the close.
async fn read_hello(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
    buf: &mut Vec<u8>,
) -> Result<Hello, FrameError> {
    match tokio::time::timeout(HELLO_TIMEOUT, read_frame(reader, limits::HELLO_BYTES_MAX, buf)).await {
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
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
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
async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> Result<ClientFrame, FrameError> {
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
async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<ServerFrame>) {
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
        if writer.write_all(&out).await.is_err() {
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
