//! `chorus up`: a local cluster, one child process per replica. A new
//! cluster gets its TLS credentials here (`chorus_tls::provision`): the CA
//! and one certificate per replica in `DIR/tls/`, outside every data
//! directory, and the CA certificate in `cluster.toml`.

use anyhow::Context;
use chorus_proto::ClusterFile;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long replicas get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One running replica.
struct Running {
    id: u8,
    child: Child,
    /// Set once the child has exited (it is not restarted).
    exited: bool,
}

/// Starts (or restarts, when `dir` already holds one) the cluster and
/// stays in the foreground until Ctrl-C or SIGTERM. A new cluster gets a
/// certificate authority and a certificate per replica in `dir/tls/`,
/// unless `insecure`. `server_args` are passed on to every replica.
pub async fn run(
    replicas: usize,
    dir: PathBuf,
    port: u16,
    insecure: bool,
    server_args: Vec<String>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let cluster_path = dir.join("cluster.toml");
    let cluster = prepare_cluster_file(&cluster_path, replicas, port, insecure)?;
    let mut running = Vec::new();
    for replica in &cluster.replicas {
        let child = spawn_replica(&cluster_path, &dir, replica.id, &server_args)?;
        println!(
            "replica {} pid {} clients {} peers {} data {}",
            replica.id,
            child.id().unwrap_or(0),
            replica.client_addr,
            replica.peer_addr,
            replica.data_dir.display()
        );
        running.push(Running { id: replica.id, child, exited: false });
    }
    match &cluster.tls {
        Some(_) => println!("TLS: certificates and keys in {}", dir.join(chorus_tls::TLS_DIR).display()),
        None => println!("no TLS (--insecure): clients and replicas talk in plaintext"),
    }
    println!("cluster file {}", cluster_path.display());
    println!("chat with: chorus chat --cluster {}", cluster_path.display());
    println!("Ctrl-C stops every replica");
    watch(&mut running).await;
    stop_all(&mut running).await;
    Ok(())
}

/// Reuses an existing cluster file, or writes a new local one (with TLS
/// credentials unless `insecure`).
fn prepare_cluster_file(path: &Path, replicas: usize, port: u16, insecure: bool) -> anyhow::Result<ClusterFile> {
    if path.exists() {
        let cluster = ClusterFile::load(path)?;
        anyhow::ensure!(
            cluster.tls.is_some() || insecure,
            "{} has no [tls] table: its replicas would run in plaintext. Pass --insecure to run it anyway",
            path.display()
        );
        if cluster.replicas.len() != replicas {
            eprintln!(
                "note: {} describes {} replicas; restarting that cluster (--replicas {} ignored)",
                path.display(),
                cluster.replicas.len(),
                replicas
            );
        }
        return Ok(cluster);
    }
    let mut cluster = ClusterFile::local(replicas, port);
    cluster.check().map_err(|reason| anyhow::anyhow!("cannot build this cluster: {reason}"))?;
    let highest = u32::from(port) + 2 * replicas as u32;
    anyhow::ensure!(highest <= u32::from(u16::MAX), "ports {port}..{highest} do not fit below 65536");
    // Stores first, then the file: once the file exists, an empty data
    // directory means a lost disk, never a new member.
    let mut resolved = cluster.clone();
    for replica in &mut resolved.replicas {
        replica.data_dir = path.parent().unwrap_or(Path::new(".")).join(&replica.data_dir);
    }
    for replica in &resolved.replicas {
        chorus_server::found(&resolved, replica.id)?;
    }
    if !insecure {
        let dir = path.parent().unwrap_or(Path::new("."));
        chorus_tls::provision(&mut cluster, dir).context("creating the cluster's TLS certificates")?;
    }
    std::fs::write(path, cluster.to_toml()).with_context(|| format!("writing {}", path.display()))?;
    ClusterFile::load(path).map_err(Into::into)
}

fn spawn_replica(cluster_path: &Path, dir: &Path, id: u8, server_args: &[String]) -> anyhow::Result<Child> {
    let log_path = dir.join(format!("replica-{id}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let exe = std::env::current_exe().context("locating the chorus binary")?;
    Command::new(exe)
        .arg("server")
        .arg("--cluster")
        .arg(cluster_path)
        .arg("--id")
        .arg(id.to_string())
        .args(server_args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting replica {id}"))
}

/// Waits for a stop signal, reporting replicas that die meanwhile.
async fn watch(running: &mut [Running]) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => return,
            _ = poll.tick() => report_exits(running),
        }
    }
}

fn report_exits(running: &mut [Running]) {
    for replica in running.iter_mut().filter(|r| !r.exited) {
        if let Ok(Some(status)) = replica.child.try_wait() {
            replica.exited = true;
            eprintln!("replica {} exited ({status}); it is not restarted", replica.id);
        }
    }
    if running.iter().all(|r| r.exited) {
        eprintln!("every replica has exited");
    }
}

/// SIGTERM to every replica, then SIGKILL to any still running after the grace period.
async fn stop_all(running: &mut [Running]) {
    println!("stopping every replica");
    for replica in running.iter_mut().filter(|r| !r.exited) {
        if let Some(pid) = replica.child.id() {
            // SAFETY: kill(2) on our own child's pid, with a valid signal number.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    for replica in running.iter_mut().filter(|r| !r.exited) {
        match tokio::time::timeout(STOP_GRACE, replica.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("replica {} did not stop in time; killing it", replica.id);
                let _ = replica.child.kill().await;
            }
        }
    }
}
