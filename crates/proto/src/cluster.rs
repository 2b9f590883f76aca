//! The cluster file (`cluster.toml`): which replicas exist, where, and
//! how they secure their connections.
//!
//! ```toml
//! [tls]                    # absent: plaintext, allowed only with --insecure
//! ca_cert = """
//! -----BEGIN CERTIFICATE-----
//! ...
//! -----END CERTIFICATE-----
//! """                      # the cluster CA: all a client needs to trust
//!
//! [[replica]]
//! id = 0
//! client_addr = "127.0.0.1:7100"
//! peer_addr = "127.0.0.1:7103"
//! data_dir = "replica-0"   # relative paths are relative to this file
//! tls_cert = "tls/replica-0.pem"   # certificate for replica-0.chorus
//! tls_key = "tls/replica-0.key"    # its private key (only replica 0 reads it)
//!
//! [rooms]                  # optional; these are the defaults and the maxima
//! history_messages = 1000  # messages each room's history retains
//! history_bytes = 1048576  # bytes (senders' names plus texts) it retains
//! ```
//!
//! With a `[tls]` table, every connection is TLS: a replica serves
//! clients with its certificate (for the DNS name `replica-{id}.chorus`,
//! signed by the CA), and replicas authenticate each other with the same
//! certificates. A client's copy of the file needs only `[tls]` and the
//! addresses; a replica needs its own `tls_cert` and `tls_key`.

use chorus_paxos::ReplicaId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One replica's entry in the cluster file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaAddress {
    /// Dense id, 0..N.
    pub id: ReplicaId,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where other replicas connect.
    pub peer_addr: SocketAddr,
    /// Where this replica keeps its durable state.
    pub data_dir: PathBuf,
    /// This replica's certificate chain (PEM), with a `[tls]` table. It
    /// lives outside `data_dir`, so a wiped disk does not take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// This replica's private key (PEM), beside `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// The cluster file's `[tls]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTls {
    /// The cluster CA certificate, PEM text: clients and replicas trust
    /// exactly the certificates it signed.
    pub ca_cert: String,
}

/// The cluster file's `[rooms]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRooms {
    /// Most messages each room's history retains.
    pub history_messages: u32,
    /// Most bytes (senders' names plus texts) each room's history retains.
    pub history_bytes: u32,
}

impl ClusterRooms {
    /// As the replicated setting the leader proposes.
    pub fn history_bounds(&self) -> chorus_chat::HistoryBounds {
        chorus_chat::HistoryBounds { messages: self.history_messages, bytes: self.history_bytes }
    }
}

/// The whole cluster file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// TLS settings; `None` means plaintext (only with `--insecure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,
    /// Room settings; `None` keeps the defaults. The leader proposes them
    /// through the log when they differ from the replicated ones, so keep
    /// them the same in every replica's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<ClusterRooms>,
    /// Every replica, in id order.
    #[serde(rename = "replica")]
    pub replicas: Vec<ReplicaAddress>,
}

/// Why a cluster file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid cluster file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl ClusterFile {
    /// Reads and checks a cluster file; relative data directories and TLS
    /// paths become relative to the file's own directory.
    pub fn load(path: &Path) -> Result<Self, ClusterFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read { path: path.to_owned(), source })?;
        let mut file: ClusterFile = toml::from_str(&text)
            .map_err(|e| ClusterFileError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for replica in &mut file.replicas {
            replica.data_dir = base.join(&replica.data_dir);
            for path in [&mut replica.tls_cert, &mut replica.tls_key].into_iter().flatten() {
                *path = base.join(&*path);
            }
        }
        file.check().map_err(|reason| ClusterFileError::Invalid { path: path.to_owned(), reason })?;
        Ok(file)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a cluster file always serializes");
        let tls = match self.tls {
            Some(_) => "[tls] holds the CA certificate that clients trust",
            None => "no [tls] table: plaintext, for replicas run with --insecure",
        };
        format!("# Chorus cluster: one [[replica]] table per replica; {tls}.\n\n{body}")
    }

    /// Ids must be 0..N, N odd and at most the limit; addresses distinct;
    /// TLS paths come in pairs, and only with a `[tls]` table.
    pub fn check(&self) -> Result<(), String> {
        let n = self.replicas.len();
        if n == 0 || n.is_multiple_of(2) || n > chorus_limits::REPLICAS_MAX {
            return Err(format!("{n} replicas; use 1, 3, 5 or 7"));
        }
        for (index, replica) in self.replicas.iter().enumerate() {
            if usize::from(replica.id) != index {
                return Err(format!("replica ids must be 0..{n} in order; found {} at position {index}", replica.id));
            }
        }
        let mut addrs: Vec<SocketAddr> = self.replicas.iter().flat_map(|r| [r.client_addr, r.peer_addr]).collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.len() != 2 * n {
            return Err("every client and peer address must be distinct".into());
        }
        if let Some(rooms) = &self.rooms {
            rooms.history_bounds().check().map_err(|error| format!("[rooms]: {error}"))?;
        }
        self.check_tls()
    }

    fn check_tls(&self) -> Result<(), String> {
        if let Some(tls) = &self.tls {
            if !tls.ca_cert.contains("-----BEGIN CERTIFICATE-----") {
                return Err("[tls] ca_cert must hold the CA certificate in PEM".into());
            }
        }
        for replica in &self.replicas {
            match (&replica.tls_cert, &replica.tls_key, &self.tls) {
                (None, None, _) | (Some(_), Some(_), Some(_)) => {}
                (Some(_), Some(_), None) => {
                    return Err(format!("replica {} has a TLS certificate but the file has no [tls] table", replica.id))
                }
                _ => return Err(format!("replica {} needs both tls_cert and tls_key, or neither", replica.id)),
            }
        }
        Ok(())
    }

    /// The entry for replica `id`.
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaAddress> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// A local cluster of `n` replicas on 127.0.0.1: client ports
    /// `port..port+n`, peer ports `port+n..port+2n`, data in `replica-ID`;
    /// no TLS (`chorus_tls::provision` adds it).
    pub fn local(n: usize, port: u16) -> Self {
        let replicas = (0..n)
            .map(|i| ReplicaAddress {
                id: i as ReplicaId,
                client_addr: SocketAddr::from(([127, 0, 0, 1], port + i as u16)),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], port + (n + i) as u16)),
                data_dir: PathBuf::from(format!("replica-{i}")),
                tls_cert: None,
                tls_key: None,
            })
            .collect();
        ClusterFile { tls: None, rooms: None, replicas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cluster_round_trips_through_toml() {
        let dir = std::env::temp_dir().join(format!("chorus-cluster-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("cluster.toml");
        let file = ClusterFile::local(3, 7100);
        std::fs::write(&path, file.to_toml()).expect("write");
        let loaded = ClusterFile::load(&path).expect("loads");
        assert_eq!(loaded.replicas.len(), 3);
        assert_eq!(loaded.replicas[2].peer_addr, "127.0.0.1:7105".parse().unwrap());
        assert_eq!(loaded.replicas[1].data_dir, dir.join("replica-1"));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn with_tls(mut file: ClusterFile) -> ClusterFile {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        file.tls = Some(ClusterTls { ca_cert: pem.into() });
        for replica in &mut file.replicas {
            replica.tls_cert = Some(PathBuf::from(format!("tls/replica-{}.pem", replica.id)));
            replica.tls_key = Some(PathBuf::from(format!("/keys/replica-{}.key", replica.id)));
        }
        file
    }

    #[test]
    fn a_tls_cluster_round_trips_through_toml() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.toml");
        let file = with_tls(ClusterFile::local(3, 7100));
        std::fs::write(&path, file.to_toml()).expect("write");
        let loaded = ClusterFile::load(&path).expect("loads");
        assert_eq!(loaded.tls, file.tls, "the CA text survives");
        let two = &loaded.replicas[2];
        assert_eq!(
            two.tls_cert.as_deref(),
            Some(dir.path().join("tls/replica-2.pem").as_path()),
            "relative to the file"
        );
        assert_eq!(two.tls_key.as_deref(), Some(Path::new("/keys/replica-2.key")), "absolute stays");
        // Without TLS the file has no [tls] table and no TLS keys at all.
        let plain = ClusterFile::local(3, 7100).to_toml();
        assert!(!plain.contains("\n[tls]") && !plain.contains("tls_"), "{plain}");
        std::fs::write(&path, &plain).expect("write");
        assert_eq!(ClusterFile::load(&path).expect("loads").tls, None);
    }

    #[test]
    fn room_settings_round_trip_and_out_of_range_ones_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.toml");
        let mut file = ClusterFile::local(3, 7100);
        file.rooms = Some(ClusterRooms { history_messages: 50, history_bytes: 65_536 });
        std::fs::write(&path, file.to_toml()).expect("write");
        assert_eq!(ClusterFile::load(&path).expect("loads").rooms, file.rooms);
        file.rooms = Some(ClusterRooms { history_messages: 5_000, history_bytes: 65_536 });
        assert!(file.check().unwrap_err().starts_with("[rooms]"), "over the message limit");
        file.rooms = Some(ClusterRooms { history_messages: 50, history_bytes: 10 });
        assert!(file.check().is_err(), "too few bytes for one message");
    }

    #[test]
    fn bad_tls_settings_are_refused() {
        let mut file = with_tls(ClusterFile::local(3, 7100));
        file.replicas[1].tls_key = None;
        assert!(file.check().unwrap_err().contains("both"), "a certificate without its key");
        let mut file = with_tls(ClusterFile::local(3, 7100));
        file.tls = None;
        assert!(file.check().unwrap_err().contains("no [tls]"), "keys without a [tls] table");
        let mut file = with_tls(ClusterFile::local(3, 7100));
        file.tls = Some(ClusterTls { ca_cert: "garbage".into() });
        assert!(file.check().is_err(), "a CA that is not PEM");
    }

    #[test]
    fn bad_cluster_files_are_refused() {
        let mut file = ClusterFile::local(3, 7100);
        file.replicas.pop();
        assert!(file.check().is_err(), "even size");
        let mut file = ClusterFile::local(3, 7100);
        file.replicas[1].client_addr = file.replicas[0].client_addr;
        assert!(file.check().is_err(), "shared address");
    }
}
