//! Replica-to-replica transport: one outbound connection per peer for what
//! this replica sends, and a listener for what peers send it.
//!
//! With TLS (the cluster file's `[tls]`), both directions are mutually
//! authenticated: the listener requires a client certificate signed by the
//! cluster CA and closes a link whose hello claims a replica id other than
//! the one the certificate names; the sender presents this replica's
//! certificate and accepts only a peer certified as `replica-{peer}.chorus`.
//! The TLS handshake and the hello share one deadline.

use crate::node::Input;
use chorus_limits as limits;
use chorus_paxos::ReplicaId;
use chorus_proto::{encode_frame, read_frame, FrameError, Hello, Peer, PeerFrame};
use chorus_tls::{ReplicaTls, Stream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Time allowed for a connect, and for the TLS handshake and the hello
/// together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Starts the sender for one peer; returns the bounded queue feeding it.
/// Messages that find the queue full are dropped (the core resends).
pub fn spawn_sender(
    me: ReplicaId,
    peer: ReplicaId,
    addr: SocketAddr,
    tls: Option<ReplicaTls>,
) -> mpsc::Sender<PeerFrame> {
    let (tx, rx) = mpsc::channel(limits::PEER_OUTBOUND_MESSAGES_MAX);
    tokio::spawn(sender_loop(Link { me, peer, addr, tls }, rx));
    tx
}

/// One outbound link: who we are, whom and where we reach, and how.
struct Link {
    me: ReplicaId,
    peer: ReplicaId,
    addr: SocketAddr,
    /// `None`: plaintext (`--insecure`).
    tls: Option<ReplicaTls>,
}

async fn sender_loop(link: Link, mut rx: mpsc::Receiver<PeerFrame>) {
    let (peer, addr) = (link.peer, link.addr);
    let mut backoff = BACKOFF_MIN;
    loop {
        match link.connect().await {
            Ok(stream) => {
                backoff = BACKOFF_MIN;
                tracing::debug!(peer, %addr, "connected to peer");
                match pump(stream, &mut rx).await {
                    Ok(()) => return, // the core is gone
                    Err(error) => tracing::debug!(peer, %error, "peer connection lost"),
                }
            }
            Err(error) => tracing::trace!(peer, %error, "cannot reach peer"),
        }
        // Drop what queued while the link was down: it is stale, and the
        // core resends whatever still matters.
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

impl Link {
    /// Connects, secures the link (if TLS) and says hello, within
    /// `HANDSHAKE_TIMEOUT` for the connect and again for the rest.
    async fn connect(&self) -> Result<Stream, FrameError> {
        let timed_out = |_| FrameError::Io(std::io::ErrorKind::TimedOut.into());
        let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(self.addr)).await.map_err(timed_out)??;
        tcp.set_nodelay(true)?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.greet(tcp)).await.map_err(timed_out)?
    }

    async fn greet(&self, tcp: TcpStream) -> Result<Stream, FrameError> {
        let mut stream = match &self.tls {
            Some(tls) => tls.connect_peer(self.peer, tcp).await?,
            None => Stream::Plain(tcp),
        };
        let hello = encode_frame(&Hello::new(Peer::Replica(self.me)), limits::PEER_FRAME_BYTES_MAX)?;
        stream.write_all(&hello).await?;
        Ok(stream)
    }
}

/// Writes queued messages until the queue closes (Ok) or the link fails.
async fn pump(stream: Stream, rx: &mut mpsc::Receiver<PeerFrame>) -> Result<(), FrameError> {
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    while let Some(frame) = rx.recv().await {
        write_peer_frame(&mut writer, frame).await?;
        while let Ok(more) = rx.try_recv() {
            write_peer_frame(&mut writer, more).await?;
        }
        writer.flush().await?;
    }
    Ok(())
}

async fn write_peer_frame(writer: &mut BufWriter<Stream>, frame: PeerFrame) -> Result<(), FrameError> {
    match encode_frame(&frame, limits::PEER_FRAME_BYTES_MAX) {
        Ok(frame) => Ok(writer.write_all(&frame).await?),
        Err(FrameError::TooLarge { bytes, max }) => {
            // The core bounds its messages; this is a bug, but not one worth
            // killing the link for.
            tracing::error!(bytes, max, "dropping an oversized peer message");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Accepts peer connections (at most `PEER_CONNECTIONS_MAX` at once) and
/// feeds their messages into the core.
pub async fn listen(
    listener: TcpListener,
    me: ReplicaId,
    replicas: usize,
    inbox: mpsc::Sender<Input>,
    tls: Option<ReplicaTls>,
) {
    let permits = Arc::new(Semaphore::new(limits::PEER_CONNECTIONS_MAX));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "peer accept failed");
                tokio::time::sleep(BACKOFF_MIN).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many connections on the peer port; closing this one");
            continue;
        };
        let (inbox, tls) = (inbox.clone(), tls.clone());
        tokio::spawn(async move {
            let inbound = Inbound { me, replicas, addr, tls };
            if let Err(error) = inbound.serve(stream, inbox).await {
                tracing::debug!(%addr, %error, "peer connection closed");
            }
            drop(permit);
        });
    }
}

/// One inbound peer connection, before we know who it is.
struct Inbound {
    me: ReplicaId,
    replicas: usize,
    addr: SocketAddr,
    /// `None`: plaintext (`--insecure`).
    tls: Option<ReplicaTls>,
}

impl Inbound {
    /// Greets the peer, then feeds its frames to the core until it closes.
    async fn serve(self, tcp: TcpStream, inbox: mpsc::Sender<Input>) -> Result<(), FrameError> {
        tcp.set_nodelay(true)?;
        let mut buf = Vec::new();
        let (stream, from) = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.greet(tcp, &mut buf))
            .await
            .map_err(|_| FrameError::Malformed("no TLS handshake and hello in time".into()))??;
        receive(stream, self.me, from, inbox, &mut buf).await
    }

    /// The TLS handshake (a certificate signed by the cluster CA is
    /// required) and the hello, which must name a replica of this cluster,
    /// not this one, and, with TLS, the one the certificate names.
    async fn greet(&self, tcp: TcpStream, buf: &mut Vec<u8>) -> Result<(BufReader<Stream>, ReplicaId), FrameError> {
        let stream = match &self.tls {
            Some(tls) => tls.accept_peer(tcp).await.inspect_err(|error| {
                tracing::warn!(addr = %self.addr, %error, "a peer's TLS handshake failed; closing");
            })?,
            None => Stream::Plain(tcp),
        };
        let mut stream = BufReader::with_capacity(limits::PEER_READ_BUFFER_BYTES, stream);
        let hello: Hello = read_frame(&mut stream, limits::HELLO_BYTES_MAX, buf).await?;
        let from = match (hello.check(), hello.peer) {
            (Ok(()), Peer::Replica(id)) if usize::from(id) < self.replicas && id != self.me => id,
            _ => return Err(FrameError::Malformed("not a replica of this cluster".into())),
        };
        if self.tls.is_some() && !stream.get_ref().certifies(from) {
            tracing::warn!(
                addr = %self.addr,
                claimed = from,
                "a peer's hello claims replica {from}, but its certificate is not for {}; closing",
                chorus_tls::replica_name(from)
            );
            return Err(FrameError::Malformed("the hello's replica id does not match the certificate".into()));
        }
        Ok((stream, from))
    }
}

/// Reads peer `from`'s frames into the core until the link closes.
async fn receive(
    mut stream: BufReader<Stream>,
    me: ReplicaId,
    from: ReplicaId,
    inbox: mpsc::Sender<Input>,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let max = limits::PEER_FRAME_BYTES_MAX;
    loop {
        let input = match read_frame(&mut stream, max, buf).await? {
            PeerFrame::Paxos(envelope) if envelope.from == from && envelope.to == me => Input::Peer(envelope),
            PeerFrame::Transfer { from: sender, to, message } if sender == from && to == me => {
                Input::Transfer { from, message }
            }
            _ => return Err(FrameError::Malformed("misaddressed peer frame".into())),
        };
        if inbox.send(input).await.is_err() {
            return Ok(());
        }
    }
}
