//! Replica-to-replica transport: one outbound connection per peer for what
//! this replica sends, and a listener for what peers send it.

use crate::node::Input;
use chorus_limits as limits;
use chorus_paxos::ReplicaId;
use chorus_proto::{encode_frame, read_frame, FrameError, Hello, Peer, PeerFrame};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// Time allowed for a connect or a hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Starts the sender for one peer; returns the bounded queue feeding it.
/// Messages that find the queue full are dropped (the core resends).
pub fn spawn_sender(me: ReplicaId, peer: ReplicaId, addr: SocketAddr) -> mpsc::Sender<PeerFrame> {
    let (tx, rx) = mpsc::channel(limits::PEER_OUTBOUND_MESSAGES_MAX);
    tokio::spawn(sender_loop(me, peer, addr, rx));
    tx
}

async fn sender_loop(me: ReplicaId, peer: ReplicaId, addr: SocketAddr, mut rx: mpsc::Receiver<PeerFrame>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        match connect(me, addr).await {
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

async fn connect(me: ReplicaId, addr: SocketAddr) -> Result<TcpStream, FrameError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))??;
    stream.set_nodelay(true)?;
    let mut stream = stream;
    let hello = encode_frame(&Hello::new(Peer::Replica(me)), limits::PEER_FRAME_BYTES_MAX)?;
    stream.write_all(&hello).await?;
    Ok(stream)
}

/// Writes queued messages until the queue closes (Ok) or the link fails.
async fn pump(stream: TcpStream, rx: &mut mpsc::Receiver<PeerFrame>) -> Result<(), FrameError> {
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

async fn write_peer_frame(writer: &mut BufWriter<TcpStream>, frame: PeerFrame) -> Result<(), FrameError> {
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
pub async fn listen(listener: TcpListener, me: ReplicaId, replicas: usize, inbox: mpsc::Sender<Input>) {
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
        let inbox = inbox.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_peer(stream, me, replicas, inbox).await {
                tracing::debug!(%addr, %error, "peer connection closed");
            }
            drop(permit);
        });
    }
}

async fn serve_peer(
    stream: TcpStream,
    me: ReplicaId,
    replicas: usize,
    inbox: mpsc::Sender<Input>,
) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let mut stream = BufReader::with_capacity(limits::PEER_READ_BUFFER_BYTES, stream);
    let mut buf = Vec::new();
    let hello: Hello =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut stream, limits::HELLO_BYTES_MAX, &mut buf))
            .await
            .map_err(|_| FrameError::Malformed("no hello in time".into()))??;
    let from = match (hello.check(), hello.peer) {
        (Ok(()), Peer::Replica(id)) if usize::from(id) < replicas && id != me => id,
        _ => return Err(FrameError::Malformed("not a replica of this cluster".into())),
    };
    let max = limits::PEER_FRAME_BYTES_MAX;
    loop {
        let input = match read_frame(&mut stream, max, &mut buf).await? {
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
