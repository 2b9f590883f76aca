//! [`Stream`]: plaintext TCP or TLS over TCP, one type for the code above.

use crate::replica_name;
use chorus_paxos::ReplicaId;
use rustls::server::ParsedCertificate;
use rustls_pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection's byte stream. The frames above it are the same either way.
#[derive(Debug)]
pub enum Stream {
    /// Plaintext (a cluster without `[tls]`, run with `--insecure`).
    Plain(TcpStream),
    /// TLS, either side of the handshake (boxed: the session state is large).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// True when the other side presented a certificate (already verified
    /// against the cluster CA by the handshake) that names replica `id`:
    /// `replica-{id}.chorus`. False on a plaintext stream or without one.
    pub fn certifies(&self, id: ReplicaId) -> bool {
        let Stream::Tls(tls) = self else { return false };
        let Some(end_entity) = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()) else {
            return false;
        };
        let Ok(parsed) = ParsedCertificate::try_from(end_entity) else { return false };
        let Ok(name) = ServerName::try_from(replica_name(id)) else { return false };
        rustls::client::verify_server_name(&parsed, &name).is_ok()
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, ClientTls, ReplicaTls};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn replica_tls(authority: &CertificateAuthority, id: ReplicaId) -> ReplicaTls {
        let issued = authority.issue(id).expect("issued");
        let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
        ReplicaTls::new(authority.cert_pem(), chain, key).expect("config")
    }

    #[tokio::test]
    async fn peers_authenticate_each_other_and_clients_check_the_replica_name() {
        let authority = CertificateAuthority::generate().expect("a CA");
        let (zero, one) = (replica_tls(&authority, 0), replica_tls(&authority, 1));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("peer");
            let mut peer = zero.accept_peer(tcp).await.expect("peer handshake");
            let certified = (peer.certifies(1), peer.certifies(2));
            let mut got = [0; 5];
            peer.read_exact(&mut got).await.expect("read");
            let (tcp, _) = listener.accept().await.expect("client");
            let mut client = zero.accept_client(tcp).await.expect("client handshake");
            client.write_all(b"hello").await.expect("write");
            client.flush().await.expect("flush");
            (certified, got)
        });
        let mut link = one.connect_peer(0, TcpStream::connect(addr).await.expect("tcp")).await.expect("link");
        link.write_all(b"paxos").await.expect("write");
        link.flush().await.expect("flush");
        let client = ClientTls::new(authority.cert_pem()).expect("client config");
        let mut stream = client.connect(0, TcpStream::connect(addr).await.expect("tcp")).await.expect("handshake");
        let mut got = [0; 5];
        stream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        let (certified, sent) = server.await.expect("server");
        assert_eq!(certified, (true, false), "the certificate names replica 1 and no other");
        assert_eq!(&sent, b"paxos");
    }

    #[tokio::test]
    async fn a_client_refuses_a_replica_under_another_name_or_another_ca() {
        let authority = CertificateAuthority::generate().expect("a CA");
        let zero = replica_tls(&authority, 0);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = zero.accept_client(tcp).await;
            }
        });
        let client = ClientTls::new(authority.cert_pem()).expect("client config");
        let wrong_name = client.connect(1, TcpStream::connect(addr).await.expect("tcp")).await;
        assert!(wrong_name.is_err(), "replica 0's certificate does not name replica 1");
        let stranger = CertificateAuthority::generate().expect("another CA");
        let other = ClientTls::new(stranger.cert_pem()).expect("client config");
        let error = other.connect(0, TcpStream::connect(addr).await.expect("tcp")).await.expect_err("unknown CA");
        assert!(error.to_string().contains("UnknownIssuer"), "{error}");
        assert!(ClientTls::new("not a certificate").is_err());
    }
}
