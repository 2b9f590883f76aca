//! The Chorus replica runtime.
//!
//! One replica is a handful of tokio tasks around one owner:
//!
//! - [`machine::Machine`] is the replica's logic with no I/O: the Paxos
//!   [`chorus_paxos::Replica`], the [`chorus_chat::ChatState`], the client
//!   subscriptions and the requests waiting for an answer. It writes client
//!   frames into an [`machine::Outbox`] and returns [`machine::Effects`]
//!   (a write to persist, peer messages to send). The deterministic
//!   simulator drives this same code.
//! - [`node`] (the core task) owns the machine; everything reaches it as an
//!   [`node::Input`] over one bounded channel, plus a 10 ms tick.
//! - [`storage`] runs the [`chorus_store::WalStore`] on its own thread and
//!   appends every write batch that queued during the previous fsync as one
//!   record with one fdatasync (group commit), then reports `Persisted` to
//!   the core. A
//!   failed commit stops the replica.
//! - [`peers`] keeps one outbound connection to every other replica
//!   (reconnecting with backoff) and accepts theirs; with TLS both sides
//!   present certificates signed by the cluster CA, and an inbound peer's
//!   hello must claim the replica its certificate names.
//! - [`clients`] accepts client connections (bounded in number), runs the
//!   TLS handshake and reads the hello under one deadline, reads request
//!   frames into the core and writes replies and deliveries from a bounded
//!   per-connection queue; a client too slow to drain it is dropped and
//!   resumes from its replicated read position when it reconnects.
//! - [`passwords`] hashes and checks passwords (argon2id) on blocking
//!   threads, as [`passwords::PasswordJob`]s the machine hands out;
//!   [`throttle::SignInThrottle`] slows down failed sign-ins.
//!
//! Transport security comes from `chorus_tls` ([`node::transport_security`]):
//! TLS when the cluster file has a `[tls]` table, plaintext only with
//! [`Options::insecure`].

pub mod clients;
pub mod machine;
pub mod node;
pub mod passwords;
pub mod peers;
pub mod snapshotting;
pub mod storage;
mod subscriptions;
pub mod throttle;
pub mod transfer;

pub use node::Options;

use anyhow::Context;
use chorus_paxos::ReplicaId;
use chorus_proto::ClusterFile;
use std::path::Path;

/// Creates the data directory of replica `id` as a founding member of a new
/// cluster: its empty store votes from the start. Only for a cluster being
/// created; an existing store is left as it is. A replica started on an
/// empty directory that was not founded this way rebuilds from its peers
/// before it votes (it may have lost a disk that promised and accepted).
pub fn found(cluster: &ClusterFile, id: ReplicaId) -> anyhow::Result<()> {
    let me = cluster.replica(id).context("replica not in cluster file")?;
    chorus_store::WalStore::open_founding(&me.data_dir, id)
        .with_context(|| format!("creating the store in {}", me.data_dir.display()))?;
    Ok(())
}

/// Runs replica `id` of the cluster described by the file at `path` until
/// it fails or the process receives Ctrl-C / SIGTERM.
pub async fn run_from_file(path: &Path, id: ReplicaId, options: Options) -> anyhow::Result<()> {
    let cluster = ClusterFile::load(path)?;
    cluster.replica(id).with_context(|| format!("replica {id} is not in {}", path.display()))?;
    let shutdown = shutdown_signal();
    tokio::select! {
        result = node::run_with(cluster, id, options) => result,
        () = shutdown => {
            tracing::info!(replica = id, "stopping on signal");
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
