//! rustls configurations: [`ClientTls`] for clients, [`ReplicaTls`] for a
//! replica (client port, peer port, outbound peer links). TLS 1.3 only, on
//! the ring provider.

use crate::stream::Stream;
use crate::{replica_name, TlsError};
use chorus_paxos::ReplicaId;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The one crypto provider Chorus uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(error: impl std::fmt::Display) -> TlsError {
    TlsError::Config(error.to_string())
}

/// The cluster CA as a trust store; the PEM must hold at least one
/// certificate, and every one must parse.
pub(crate) fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| TlsError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Ca("it holds no PEM certificate".into()));
    }
    Ok(Arc::new(roots))
}

/// True when `cert` is a certificate for serving that `roots` signed.
#[cfg(test)]
pub(crate) fn chains_to(roots: &RootCertStore, cert: &CertificateDer<'_>) -> bool {
    let Ok(parsed) = rustls::server::ParsedCertificate::try_from(cert) else { return false };
    let algorithms = provider().signature_verification_algorithms.all;
    let now = rustls_pki_types::UnixTime::now();
    rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, roots, &[], now, algorithms).is_ok()
}

/// A replica's certificate chain and key, read from PEM files.
fn load_credentials(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let load_error = |what, path: &Path, reason: String| TlsError::Load { what, path: path.to_owned(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| load_error("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_error("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(load_error("certificate", cert, "no PEM certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| load_error("private key", key, e.to_string()))?;
    Ok((chain, key_der))
}

/// The server name a replica's certificate must carry.
fn server_name(id: ReplicaId) -> ServerName<'static> {
    ServerName::try_from(replica_name(id)).expect("replica names are valid DNS names")
}

/// What a client needs to reach replicas over TLS: the cluster CA. Cheap
/// to clone; clones share the configuration (and its session cache).
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA certificate(s) in `ca_pem` (the cluster file's `[tls]`
    /// table), and nothing else.
    pub fn new(ca_pem: &str) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(roots(ca_pem)?)
            .with_no_client_auth();
        Ok(ClientTls { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// The rustls configuration (for a blocking client, as in tests).
    pub fn config(&self) -> Arc<ClientConfig> {
        self.connector.config().clone()
    }

    /// The TLS handshake on `tcp`, which must reach replica `id`: its
    /// certificate must be signed by the cluster CA and name it.
    pub async fn connect(&self, id: ReplicaId, tcp: TcpStream) -> std::io::Result<Stream> {
        let stream = self.connector.connect(server_name(id), tcp).await?;
        Ok(Stream::Tls(Box::new(stream.into())))
    }
}

/// A replica's TLS settings: its certificate for clients and peers, and
/// the cluster CA for verifying peers. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaTls {
    /// The client port: the replica's certificate, no client certificate.
    clients: TlsAcceptor,
    /// The peer port: a client certificate signed by the cluster CA is required.
    peers: TlsAcceptor,
    /// Outbound peer links: presents the replica's certificate.
    peer_connector: TlsConnector,
}

impl std::fmt::Debug for ReplicaTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaTls")
    }
}

impl ReplicaTls {
    /// Reads the replica's certificate and key from their PEM files.
    pub fn load(ca_pem: &str, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (chain, key) = load_credentials(cert, key)?;
        ReplicaTls::new(ca_pem, chain, key)
    }

    /// From a certificate chain and key already in memory.
    pub fn new(
        ca_pem: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let roots = roots(ca_pem)?;
        let clients = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(config_error)?;
        let mut peers = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;
        // Every peer link is a full handshake: its identity always comes
        // from a certificate verified now, never from a resumed session.
        peers.session_storage = Arc::new(NoServerSessionStorage {});
        peers.send_tls13_tickets = 0;
        let connector = ReplicaTls::peer_client_config(roots, chain, key)?;
        Ok(ReplicaTls {
            clients: TlsAcceptor::from(Arc::new(clients)),
            peers: TlsAcceptor::from(Arc::new(peers)),
            peer_connector: TlsConnector::from(Arc::new(connector)),
        })
    }

    /// The configuration of an outbound peer link: trusts the cluster CA,
    /// presents `chain`, resumes nothing.
    fn peer_client_config(
        roots: Arc<RootCertStore>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?;
        config.resumption = Resumption::disabled();
        Ok(config)
    }

    /// The rustls configuration a peer uses to connect to a replica: trusts
    /// the CA in `ca_pem`, presents `chain` (for tests that pose as peers).
    pub fn peer_config(
        ca_pem: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        Ok(Arc::new(ReplicaTls::peer_client_config(roots(ca_pem)?, chain, key)?))
    }

    /// The server side of a client's handshake.
    pub async fn accept_client(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let stream = self.clients.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(stream.into())))
    }

    /// The server side of a peer's handshake: it succeeds only if the peer
    /// presented a certificate signed by the cluster CA (see
    /// [`Stream::certifies`] for the name).
    pub async fn accept_peer(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let stream = self.peers.accept(tcp).await?;
        Ok(Stream::Tls(Box::new(stream.into())))
    }

    /// The client side of a link to peer `id`, which must present a
    /// certificate for `replica-{id}.chorus` signed by the cluster CA.
    pub async fn connect_peer(&self, id: ReplicaId, tcp: TcpStream) -> std::io::Result<Stream> {
        let stream = self.peer_connector.connect(server_name(id), tcp).await?;
        Ok(Stream::Tls(Box::new(stream.into())))
    }
}
