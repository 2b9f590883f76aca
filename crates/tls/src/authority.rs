//! Making a cluster's credentials: the CA and one certificate per replica,
//! written to `DIR/tls/` (keys readable by the owner only) and recorded in
//! the cluster file.

use crate::{replica_name, TlsError};
use chorus_paxos::ReplicaId;
use chorus_proto::{ClusterFile, ClusterTls};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The directory, beside the cluster file, that holds the credentials. It
/// is outside every replica's data directory: a replica whose disk is
/// wiped still has its key.
pub const TLS_DIR: &str = "tls";
/// The CA certificate (also in the cluster file's `[tls]` table).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key: only needed to issue more certificates.
pub const CA_KEY_FILE: &str = "ca.key";

/// Owner read and write only, for private keys.
const KEY_FILE_MODE: u32 = 0o600;
/// Certificates are public.
const CERT_FILE_MODE: u32 = 0o644;
/// Owner only: the directory holds the keys.
const TLS_DIR_MODE: u32 = 0o700;

/// A cluster certificate authority: a self-signed CA certificate and its
/// key, which signs the replicas' certificates.
pub struct CertificateAuthority {
    /// The CA certificate, PEM.
    cert_pem: String,
    /// Signs certificates as this CA (holds the CA's key).
    issuer: Issuer<'static, KeyPair>,
}

/// One replica's certificate and private key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn generate_error(error: rcgen::Error) -> TlsError {
    TlsError::Generate(error.to_string())
}

impl CertificateAuthority {
    /// A new CA with a fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // A name of its own, so a certificate from another cluster's CA is
        // reported as from an unknown issuer, not as a bad signature.
        let tag: String = key.public_key_raw().iter().skip(1).take(8).map(|b| format!("{b:02x}")).collect();
        params.distinguished_name.push(DnType::CommonName, format!("Chorus cluster CA {tag}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(generate_error)?;
        Ok(CertificateAuthority { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The CA certificate, PEM: what clients and replicas trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A fresh key and a certificate for [`replica_name`]`(id)`, valid for
    /// serving (serverAuth) and for authenticating to peers (clientAuth).
    pub fn issue(&self, id: ReplicaId) -> Result<Issued, TlsError> {
        let name = replica_name(id);
        let key = KeyPair::generate().map_err(generate_error)?;
        let mut params = CertificateParams::new(vec![name.clone()]).map_err(generate_error)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate_error)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Creates a CA and a certificate for every replica of `cluster`, writes
/// them to `cluster_dir/tls/` (`ca.pem`, `ca.key`, `replica-{id}.pem`,
/// `replica-{id}.key`; keys mode 0600), and records them in `cluster`: the
/// CA certificate's text in `[tls]`, each replica's paths relative to
/// `cluster_dir` (where the cluster file goes). Files already there are
/// replaced.
pub fn provision(cluster: &mut ClusterFile, cluster_dir: &Path) -> Result<(), TlsError> {
    let dir = cluster_dir.join(TLS_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(TLS_DIR_MODE)
        .create(&dir)
        .map_err(|source| TlsError::Write { path: dir.clone(), source })?;
    let authority = CertificateAuthority::generate()?;
    write_file(&dir.join(CA_CERT_FILE), authority.cert_pem(), CERT_FILE_MODE)?;
    write_file(&dir.join(CA_KEY_FILE), &authority.key_pem(), KEY_FILE_MODE)?;
    for replica in &mut cluster.replicas {
        let issued = authority.issue(replica.id)?;
        let (cert, key) = (format!("replica-{}.pem", replica.id), format!("replica-{}.key", replica.id));
        write_file(&dir.join(&cert), &issued.cert_pem, CERT_FILE_MODE)?;
        write_file(&dir.join(&key), &issued.key_pem, KEY_FILE_MODE)?;
        replica.tls_cert = Some(Path::new(TLS_DIR).join(cert));
        replica.tls_key = Some(Path::new(TLS_DIR).join(key));
    }
    sync_dir(&dir)?;
    cluster.tls = Some(ClusterTls { ca_cert: authority.cert_pem().to_string() });
    Ok(())
}

/// Writes `text` to a new file created with `mode` (an old file is removed
/// first, so its mode does not carry over) and makes it durable.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write { path: path.to_owned(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write { path: PathBuf::from(dir), source };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ParsedCertificate;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::os::unix::fs::PermissionsExt;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
    }

    fn names(cert: &CertificateDer<'_>, name: &str) -> bool {
        let parsed = ParsedCertificate::try_from(cert).expect("parses");
        let name = ServerName::try_from(name).expect("a DNS name");
        rustls::client::verify_server_name(&parsed, &name).is_ok()
    }

    #[test]
    fn issued_certificates_name_their_replica_and_chain_to_the_ca() {
        let authority = CertificateAuthority::generate().expect("a CA");
        let issued = authority.issue(2).expect("a certificate");
        let cert = der(&issued.cert_pem);
        assert!(names(&cert, "replica-2.chorus"));
        assert!(!names(&cert, "replica-1.chorus"), "only its own name");
        let roots = crate::config::roots(authority.cert_pem()).expect("the CA parses");
        assert!(crate::config::chains_to(&roots, &cert), "signed by the CA");
        let stranger = CertificateAuthority::generate().expect("another CA");
        let foreign = der(&stranger.issue(2).expect("a certificate").cert_pem);
        assert!(!crate::config::chains_to(&roots, &foreign), "not signed by the CA");
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        assert_ne!(authority.key_pem(), stranger.key_pem());
    }

    #[test]
    fn provisioning_writes_private_keys_and_records_relative_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = ClusterFile::local(3, 7100);
        provision(&mut cluster, dir.path()).expect("provisioned");
        let tls = cluster.tls.as_ref().expect("a [tls] table");
        let ca_file = std::fs::read_to_string(dir.path().join("tls/ca.pem")).expect("ca.pem");
        assert_eq!(tls.ca_cert, ca_file);
        for replica in &cluster.replicas {
            let key = replica.tls_key.as_ref().expect("a key path");
            assert_eq!(key, &PathBuf::from(format!("tls/replica-{}.key", replica.id)));
            let mode = std::fs::metadata(dir.path().join(key)).expect("key written").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "replica {}'s key is private", replica.id);
            let cert = std::fs::read_to_string(dir.path().join(replica.tls_cert.as_ref().expect("a cert path")))
                .expect("cert written");
            assert!(names(&der(&cert), &replica_name(replica.id)));
        }
        let ca_key = std::fs::metadata(dir.path().join("tls/ca.key")).expect("ca.key").permissions().mode();
        assert_eq!(ca_key & 0o777, 0o600);
        cluster.check().expect("a provisioned cluster file is valid");
        // A second run replaces the files (a new CA) and keeps the modes.
        provision(&mut cluster, dir.path()).expect("provisioned again");
        assert_ne!(cluster.tls.as_ref().map(|t| &t.ca_cert), Some(&ca_file));
    }
}
