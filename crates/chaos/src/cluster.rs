//! The cluster under test: real `chorus server` processes, each behind
//! fault-injecting proxies ([`ChaosCluster`]).
//!
//! # Wiring
//!
//! Replica `i` reads its own cluster file, `cluster-i.toml`. Its own entry
//! holds its real addresses; every other replica `j`'s peer address in it
//! is the proxy for the directed link `i → j`, so everything `i` sends `j`
//! (consensus and snapshot transfer alike: a replica sends on the
//! connection it opened) crosses that proxy. Clients use `clients.toml`,
//! whose client addresses are one proxy per replica. The harness itself
//! reads status and digests on the real client addresses, around the
//! proxies.
//!
//! # TLS
//!
//! Like `chorus up`, the harness gives its cluster a certificate authority
//! and a certificate per replica (`chorus_tls::provision`, in `tls/`), so
//! every link and client connection is TLS; the proxies forward the
//! encrypted bytes unchanged, and names are checked by replica id, not by
//! address. [`ChaosCluster::start_direct`] can run it in plaintext instead
//! (for the benchmark's comparison).
//!
//! # Processes
//!
//! Each replica is a child process with its output in `replica-i.log`. It
//! dies with the harness (`PR_SET_PDEATHSIG`). `kill -9` waits until the
//! process is reaped, `SIGSTOP`/`SIGCONT` pause it, and a full disk is a
//! soft `RLIMIT_FSIZE` set on the running process: no file may grow past
//! its current size, so a write that needs space fails as on a full device.

use crate::proxy::{Faults, Flow, Proxy};
use anyhow::Context;
use chorus_client::Endpoints;
use chorus_paxos::{ReplicaId, Role};
use chorus_proto::{ClusterFile, ReplicaAddress, StateDigest, StatusReport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Longest wait for one status or digest answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// One replica process and what the harness did to it.
#[derive(Debug)]
struct Process {
    child: Option<Child>,
    paused: bool,
}

/// A cluster of real replicas behind proxies, in a directory of its own.
pub struct ChaosCluster {
    exe: PathBuf,
    dir: PathBuf,
    real: ClusterFile,
    /// The real client addresses with the cluster's TLS settings, for the
    /// harness's own status and digest probes.
    probes: Endpoints,
    /// Directed replica links, `(from, to)`.
    links: BTreeMap<(ReplicaId, ReplicaId), Proxy>,
    /// In front of each replica's client port, by id.
    client_proxies: Vec<Proxy>,
    processes: Vec<Process>,
    /// Extra flags for every `chorus server`.
    server_args: Vec<String>,
}

impl ChaosCluster {
    /// Writes the cluster files and TLS credentials, starts the proxies and
    /// every replica (as founders of a new cluster).
    pub async fn start(exe: &Path, dir: &Path, replicas: usize, server_args: Vec<String>) -> anyhow::Result<Self> {
        ChaosCluster::start_wired(exe, dir, replicas, server_args, Wiring { proxied: true, tls: true }).await
    }

    /// The same cluster without proxies: every replica and client talks to
    /// the real addresses (for benchmarks); in plaintext (`--insecure`)
    /// unless `tls`. The link faults are not available on it; kills and
    /// pauses are.
    pub async fn start_direct(
        exe: &Path,
        dir: &Path,
        replicas: usize,
        server_args: Vec<String>,
        tls: bool,
    ) -> anyhow::Result<Self> {
        ChaosCluster::start_wired(exe, dir, replicas, server_args, Wiring { proxied: false, tls }).await
    }

    async fn start_wired(
        exe: &Path,
        dir: &Path,
        replicas: usize,
        mut server_args: Vec<String>,
        wiring: Wiring,
    ) -> anyhow::Result<Self> {
        let mut real = ClusterFile::local(replicas, crate::ports::free_ports(u16::try_from(2 * replicas)?)?);
        if wiring.tls {
            chorus_tls::provision(&mut real, dir).context("creating the cluster's TLS certificates")?;
        } else {
            server_args.push("--insecure".into());
        }
        let probes = Endpoints::from_cluster(&real)?;
        let proxied = wiring.proxied;
        let mut links = BTreeMap::new();
        let mut client_proxies = Vec::new();
        if proxied {
            for from in ids(replicas) {
                for to in ids(replicas).filter(|&to| to != from) {
                    links.insert((from, to), Proxy::start(real.replicas[usize::from(to)].peer_addr).await?);
                }
            }
            for replica in &real.replicas {
                client_proxies.push(Proxy::start(replica.client_addr).await?);
            }
        }
        let processes = (0..replicas).map(|_| Process { child: None, paused: false }).collect();
        let mut cluster = ChaosCluster {
            exe: exe.to_owned(),
            dir: dir.to_owned(),
            real,
            probes,
            links,
            client_proxies,
            processes,
            server_args,
        };
        cluster.write_files()?;
        for id in ids(replicas) {
            cluster.spawn(id, true)?;
        }
        Ok(cluster)
    }

    pub fn size(&self) -> usize {
        self.real.replicas.len()
    }

    pub fn quorum(&self) -> usize {
        self.size() / 2 + 1
    }

    /// The addresses clients use: every client port behind its proxy
    /// (the real ones on a direct cluster). Clients need no key paths.
    pub fn client_addresses(&self) -> Vec<ReplicaAddress> {
        let mut replicas = self.real.replicas.clone();
        for replica in &mut replicas {
            (replica.tls_cert, replica.tls_key) = (None, None);
        }
        for (replica, proxy) in replicas.iter_mut().zip(&self.client_proxies) {
            replica.client_addr = proxy.addr();
        }
        replicas
    }

    /// What clients connect with: [`ChaosCluster::client_addresses`] and
    /// the cluster's TLS settings.
    pub fn client_endpoints(&self) -> Endpoints {
        Endpoints { replicas: self.client_addresses(), tls: self.probes.tls.clone() }
    }

    fn write_files(&self) -> anyhow::Result<()> {
        for id in ids(self.size()) {
            let mut file = self.real.clone();
            for peer in file.replicas.iter_mut().filter(|r| r.id != id) {
                if let Some(link) = self.links.get(&(id, peer.id)) {
                    peer.peer_addr = link.addr();
                }
            }
            write(&self.dir.join(format!("cluster-{id}.toml")), &file.to_toml())?;
        }
        let clients = ClusterFile { tls: self.real.tls.clone(), rooms: None, replicas: self.client_addresses() };
        write(&self.dir.join("clients.toml"), &clients.to_toml())?;
        write(&self.dir.join("cluster.toml"), &self.real.to_toml())
    }

    /// Starts replica `id` (it must not be running).
    pub fn spawn(&mut self, id: ReplicaId, founding: bool) -> anyhow::Result<()> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("replica-{id}.log")))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("server")
            .arg("--cluster")
            .arg(self.dir.join(format!("cluster-{id}.toml")))
            .args(["--id", &id.to_string()])
            .args(&self.server_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if founding {
            command.arg("--new-cluster");
        }
        die_with_parent(&mut command);
        let child = command.spawn().with_context(|| format!("starting replica {id}"))?;
        self.processes[usize::from(id)] = Process { child: Some(child), paused: false };
        Ok(())
    }

    /// True while replica `id`'s process runs (paused counts as running).
    pub fn is_running(&mut self, id: ReplicaId) -> bool {
        match self.processes[usize::from(id)].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id of replica `id`, while it runs.
    pub fn pid(&self, id: ReplicaId) -> Option<u32> {
        self.processes[usize::from(id)].child.as_ref().and_then(Child::id)
    }

    /// `kill -9`, then waits until the process is gone.
    pub async fn kill(&mut self, id: ReplicaId) {
        let process = &mut self.processes[usize::from(id)];
        if let Some(mut child) = process.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        process.paused = false;
    }

    /// Restarts replica `id` if its process is not running.
    pub fn restart(&mut self, id: ReplicaId) -> anyhow::Result<bool> {
        if self.is_running(id) {
            return Ok(false);
        }
        self.processes[usize::from(id)].child = None;
        self.spawn(id, false)?;
        Ok(true)
    }

    /// Kills replica `id` and deletes its data directory: a lost disk.
    pub async fn wipe(&mut self, id: ReplicaId) -> anyhow::Result<()> {
        self.kill(id).await;
        let data = self.data_dir(id);
        std::fs::remove_dir_all(&data).with_context(|| format!("deleting {}", data.display()))
    }

    /// Where replica `id` keeps its durable state.
    pub fn data_dir(&self, id: ReplicaId) -> PathBuf {
        self.dir.join(&self.real.replicas[usize::from(id)].data_dir)
    }

    /// `SIGSTOP` (`pause == true`) or `SIGCONT`.
    pub fn pause(&mut self, id: ReplicaId, pause: bool) {
        let process = &mut self.processes[usize::from(id)];
        if let Some(pid) = process.child.as_ref().and_then(Child::id) {
            signal(pid, if pause { libc::SIGSTOP } else { libc::SIGCONT });
            process.paused = pause;
        }
    }

    /// Limits (or, with `None`, frees) how large replica `id` may make any
    /// file: the end of its live log segment's records, so the log may not
    /// grow, not even into the zeros preallocated after them (and no other
    /// file past that size).
    pub fn limit_disk(&mut self, id: ReplicaId, full: bool) -> anyhow::Result<()> {
        let Some(pid) = self.processes[usize::from(id)].child.as_ref().and_then(Child::id) else {
            return Ok(());
        };
        let segment = chorus_store::WalStore::segment_files(&self.data_dir(id))?.pop();
        let size = segment.and_then(|path| records_end(&path).ok()).unwrap_or(0);
        let limit = if full { size } else { libc::RLIM_INFINITY };
        set_file_size_limit(pid, limit)
    }

    /// The proxy carrying what `from` sends `to`.
    pub fn link(&self, from: ReplicaId, to: ReplicaId) -> &Proxy {
        &self.links[&(from, to)]
    }

    /// The proxy in front of replica `id`'s client port.
    pub fn client_proxy(&self, id: ReplicaId) -> &Proxy {
        &self.client_proxies[usize::from(id)]
    }

    /// Sets `faults` on every link between `a` and `b`, both directions.
    pub fn cut(&self, a: &[ReplicaId], b: &[ReplicaId], faults: Faults) {
        for &x in a {
            for &y in b.iter().filter(|&&y| y != x) {
                self.link(x, y).set(faults);
                self.link(y, x).set(faults);
            }
        }
    }

    /// Every proxy back to normal and every paused replica resumed.
    pub fn heal_network(&mut self) {
        for proxy in self.links.values().chain(&self.client_proxies) {
            proxy.heal();
        }
        for id in ids(self.size()) {
            if self.processes[usize::from(id)].paused {
                self.pause(id, false);
            }
        }
    }

    /// Every replica's status, `None` where it did not answer.
    pub async fn statuses(&self) -> Vec<Option<StatusReport>> {
        let probes = ids(self.size()).map(|id| {
            let endpoints = self.probes.clone();
            async move { chorus_client::fetch_status(&endpoints, id, PROBE_TIMEOUT).await }
        });
        join_all(probes).await.into_iter().map(Result::ok).collect()
    }

    /// Every replica's state digest, `None` where it did not answer.
    pub async fn digests(&self) -> Vec<Option<StateDigest>> {
        let probes = ids(self.size()).map(|id| {
            let endpoints = self.probes.clone();
            async move { chorus_client::fetch_digest(&endpoints, id, PROBE_TIMEOUT).await }
        });
        join_all(probes).await.into_iter().map(Result::ok).collect()
    }

    /// The replica that says it leads, if exactly one answers so.
    pub async fn leader(&self) -> Option<ReplicaId> {
        let leaders: Vec<ReplicaId> =
            self.statuses().await.into_iter().flatten().filter(|s| s.role == Role::Leader).map(|s| s.id).collect();
        match leaders.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Kills every replica (the end of a run).
    pub async fn stop(&mut self) {
        for id in ids(self.size()) {
            self.kill(id).await;
        }
        for proxy in self.links.values().chain(&self.client_proxies) {
            proxy.stop();
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How a cluster is wired.
#[derive(Clone, Copy, Debug)]
struct Wiring {
    /// Every link and client port behind a fault-injecting proxy.
    proxied: bool,
    /// TLS credentials; without them the replicas run with `--insecure`.
    tls: bool,
}

/// A flow that moves nothing, both ways.
pub const STALLED: Faults = Faults { to_target: Flow::Stalled, from_target: Flow::Stalled, refuse: false };

/// Resets every connection and refuses new ones.
pub const REFUSED: Faults = Faults { to_target: Flow::Open, from_target: Flow::Open, refuse: true };

/// Replica ids `0..n`.
pub fn ids(n: usize) -> impl Iterator<Item = ReplicaId> + Clone {
    (0..n).map(|i| ReplicaId::try_from(i).expect("at most REPLICAS_MAX replicas"))
}

/// Runs the futures concurrently, keeping their order.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("a probe task does not panic"));
    }
    out
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The child gets SIGKILL when the harness dies, so no replica outlives a
/// crashed or killed harness.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child's own
    // process attributes; nothing else runs between fork and exec here.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid of our own child; a stale pid only
        // yields ESRCH, which is ignored (the process is gone).
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Sets the soft `RLIMIT_FSIZE` of a running process (the hard limit stays).
/// Where the records of the log segment at `path` end, or a little before
/// (a record may end in zero bytes): just after its last byte that is not
/// zero. What follows it is the preallocated zeros, less than
/// [`chorus_store::PREALLOCATE_BYTES`] of them.
fn records_end(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(chorus_store::PREALLOCATE_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(length - start).read_to_end(&mut tail)?;
    let last = tail.iter().rposition(|&byte| byte != 0);
    Ok(start + last.map_or(0, |at| at as u64 + 1))
}

fn set_file_size_limit(pid: u32, bytes: u64) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(pid)?;
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit(2) reads `old` and writes the limits of our own child;
    // the pointers are to live locals.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    anyhow::ensure!(read == 0, "reading the file size limit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: bytes.min(old.rlim_max), rlim_max: old.rlim_max };
    // SAFETY: as above.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    anyhow::ensure!(set == 0, "setting the file size limit: {}", std::io::Error::last_os_error());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_paxos::{Ballot, Entry, Value, WriteBatch};
    use chorus_store::{LogStore, WalStore};

    /// The limit a disk-full fault sets is where the log's records end (or
    /// a few bytes before), inside the preallocated zeros, not the file's
    /// length: so the next persist hits it.
    #[test]
    fn records_end_is_where_the_next_persist_would_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = WalStore::open_founding(dir.path(), 0).unwrap();
        for slot in 1..=3 {
            let entry = Entry { ballot: Ballot::new(1, 0), value: Value::batch(vec![vec![9; 700]]), chosen: false };
            store.persist(&[WriteBatch { id: slot, entries: vec![(slot, entry)], ..WriteBatch::default() }]).unwrap();
        }
        let path = store.segment_path();
        let end = records_end(&path).unwrap();
        assert!(end <= store.segment_bytes() && end + 8 > store.segment_bytes(), "{end} for {}", store.segment_bytes());
        assert!(std::fs::metadata(&path).unwrap().len() > end + 1024, "zeros follow the records");
    }
}
