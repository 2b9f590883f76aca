//! [`Endpoints`]: where the replicas are and how to reach them (TLS with
//! the cluster CA, or plaintext), and the one function that opens a byte
//! stream to a replica.

use chorus_paxos::ReplicaId;
use chorus_proto::{ClusterFile, ReplicaAddress};
use chorus_tls::{ClientTls, Stream};
use tokio::net::TcpStream;

use crate::error::ClientError;

/// The replicas a client may talk to and the TLS settings it reaches them
/// with. Cheap to clone (the TLS configuration is shared).
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Every replica's id and client address, in id order.
    pub replicas: Vec<ReplicaAddress>,
    /// The cluster CA to verify replicas against; `None`: plaintext.
    pub tls: Option<ClientTls>,
}

impl Endpoints {
    /// The replicas of a cluster file, over TLS when it has a `[tls]`
    /// table and in plaintext when it has none.
    pub fn from_cluster(file: &ClusterFile) -> Result<Endpoints, ClientError> {
        let tls = match &file.tls {
            Some(tls) => Some(ClientTls::new(&tls.ca_cert).map_err(|e| ClientError::Tls(e.to_string()))?),
            None => None,
        };
        Ok(Endpoints { replicas: file.replicas.clone(), tls })
    }

    /// Replicas reached in plaintext.
    pub fn plaintext(replicas: Vec<ReplicaAddress>) -> Endpoints {
        Endpoints { replicas, tls: None }
    }

    /// Replica `id`'s entry.
    pub fn replica(&self, id: ReplicaId) -> Result<&ReplicaAddress, ClientError> {
        self.replicas.iter().find(|r| r.id == id).ok_or(ClientError::UnknownReplica(id))
    }
}

/// Connects to `replica`'s client port and, with `tls`, runs the handshake:
/// the replica must present a certificate signed by the cluster CA for
/// `replica-{id}.chorus`. The error says which replica and what failed.
pub(crate) async fn open_stream(replica: &ReplicaAddress, tls: Option<&ClientTls>) -> Result<Stream, String> {
    let (id, addr) = (replica.id, replica.client_addr);
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to replica {id} at {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else { return Ok(Stream::Plain(tcp)) };
    tls.connect(id, tcp).await.map_err(|error| {
        let hint = if is_certificate_error(&error) {
            "; the replica's certificate is not one the cluster file's [tls] CA signed for it \
             (is this the cluster's own cluster file?)"
        } else {
            ""
        };
        format!("TLS handshake with replica {id} at {addr} failed: {error}{hint}")
    })
}

/// True when the handshake failed on the replica's certificate.
fn is_certificate_error(error: &std::io::Error) -> bool {
    let inner = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(inner, Some(rustls::Error::InvalidCertificate(_)))
}
