//! The cluster file (`cluster.toml`): which replicas exist and where.
//!
//! ```toml
//! [[replica]]
//! id = 0
//! client_addr = "127.0.0.1:7100"
//! peer_addr = "127.0.0.1:7103"
//! data_dir = "replica-0"   # relative paths are relative to this file
//! ```

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
}

/// The whole cluster file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
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
    /// Reads and checks a cluster file; relative data directories become
    /// relative to the file's own directory.
    pub fn load(path: &Path) -> Result<Self, ClusterFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read { path: path.to_owned(), source })?;
        let mut file: ClusterFile = toml::from_str(&text)
            .map_err(|e| ClusterFileError::Parse { path: path.to_owned(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for replica in &mut file.replicas {
            if replica.data_dir.is_relative() {
                replica.data_dir = base.join(&replica.data_dir);
            }
        }
        file.check().map_err(|reason| ClusterFileError::Invalid { path: path.to_owned(), reason })?;
        Ok(file)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a cluster file always serializes");
        format!("# Chorus cluster: one [[replica]] table per replica.\n\n{body}")
    }

    /// Ids must be 0..N, N odd and at most the limit; addresses distinct.
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
        Ok(())
    }

    /// The entry for replica `id`.
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaAddress> {
        self.replicas.iter().find(|r| r.id == id)
    }

    /// A local cluster of `n` replicas on 127.0.0.1: client ports
    /// `port..port+n`, peer ports `port+n..port+2n`, data in `replica-ID`.
    pub fn local(n: usize, port: u16) -> Self {
        let replicas = (0..n)
            .map(|i| ReplicaAddress {
                id: i as ReplicaId,
                client_addr: SocketAddr::from(([127, 0, 0, 1], port + i as u16)),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], port + (n + i) as u16)),
                data_dir: PathBuf::from(format!("replica-{i}")),
            })
            .collect();
        ClusterFile { replicas }
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
