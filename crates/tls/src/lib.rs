//! Chorus transport security: TLS 1.3 (rustls, ring provider) between
//! clients and replicas and, mutually authenticated, between replicas.
//!
//! - [`CertificateAuthority`] makes a cluster's credentials (rcgen): a
//!   self-signed CA, and for each replica a key and a certificate for the
//!   DNS name [`replica_name`] (`replica-{id}.chorus`), usable both to
//!   serve and to authenticate as a client. [`provision`] writes them under
//!   `DIR/tls/` and records them in a [`chorus_proto::ClusterFile`]; `chorus
//!   up` and the chaos harness both call it.
//! - [`ClientTls`] is what a client needs: it trusts the cluster CA (the
//!   PEM text in the cluster file's `[tls]` table) and checks that replica
//!   `i` presents a certificate for `replica-{i}.chorus`. Addresses play no
//!   part in it, so proxies that forward bytes do not disturb it.
//! - [`ReplicaTls`] is what a replica needs: it serves clients with its
//!   certificate, requires peers to present a certificate signed by the
//!   cluster CA, and presents its own when it connects to a peer.
//!   [`Stream::certifies`] then tells whether the peer's certificate names
//!   the replica id that its hello claims.
//! - [`Stream`] is the byte stream under the frames: plaintext TCP (only
//!   with `--insecure`) or TLS. The frames are the same either way.

mod authority;
mod config;
mod stream;

pub use authority::{provision, CertificateAuthority, Issued, CA_CERT_FILE, CA_KEY_FILE, TLS_DIR};
pub use config::{ClientTls, ReplicaTls};
pub use stream::Stream;

use chorus_paxos::ReplicaId;

/// The DNS name in replica `id`'s certificate; clients and peers verify it.
pub fn replica_name(id: ReplicaId) -> String {
    format!("replica-{id}.chorus")
}

/// The first byte of every TLS connection (a handshake record): anything
/// else on a TLS port is a plaintext client.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why credentials could not be made, written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot read the {what} in {path}: {reason}")]
    Load { what: &'static str, path: std::path::PathBuf, reason: String },
    #[error("the cluster file's CA certificate ([tls] ca_cert) is unusable: {0}")]
    Ca(String),
    #[error("the TLS configuration is refused: {0}")]
    Config(String),
}
