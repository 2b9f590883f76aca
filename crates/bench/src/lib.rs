//! `chorus-bench`: the closed-loop benchmark behind `chorus bench`.
//!
//! [`bench`] runs one measurement per client count of [`Options::clients`]
//! against a cluster: its own local 3-replica cluster in a temporary
//! directory (the chaos harness's `ChaosCluster`, without proxies; TLS
//! unless [`Options::insecure`], so the cost of TLS is the ratio of two
//! runs), or one described by a cluster file. Each measurement ([`load`]) is C clients in
//! a closed loop, and yields [`stats::Figures`]: acknowledged sends per
//! second, acknowledgement latency and delivery latency (HDR histograms),
//! and optionally the failover gap after a leader kill; [`usage`] adds
//! what the replicas spent (CPU per acknowledged send, resident memory)
//! when they run on this machine. [`plot`] draws a sweep as SVG.

pub mod load;
pub mod plot;
pub mod stats;
pub mod usage;

use chorus_chaos::cluster::ChaosCluster;
use chorus_client::Endpoints;
use chorus_proto::ClusterFile;
use load::{ClientFigures, Run};
use stats::{Figures, Latencies};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// Load before measuring starts.
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for a leader on the benchmark's own cluster.
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `chorus` binary (for the benchmark's own cluster).
    pub exe: PathBuf,
    /// An existing cluster; `None` starts a local 3-replica one.
    pub cluster: Option<PathBuf>,
    /// One measurement per entry.
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub payload: usize,
    /// Recipients connected for delivery; false leaves every message queued.
    pub online: bool,
    /// Own cluster only: SIGKILL the leader this long into the measurement.
    pub kill_leader_at: Option<Duration>,
    /// Extra clients, each signed in as its own user and connected for
    /// delivery, that stay idle through every measurement.
    pub idle_clients: usize,
    /// Own cluster only: the replicas' password hash memory cost, in KiB.
    pub password_memory_kib: u32,
    /// Own cluster only: run it in plaintext (`--insecure`) instead of TLS.
    pub insecure: bool,
    /// Room mode when above 0: this many members join one room and stay
    /// connected; the first `clients` of them post to it (`say`) in the
    /// closed loop, and every member's deliveries are timed.
    pub room_members: usize,
}

/// Every benchmark user's password.
pub(crate) const PASSWORD: &str = "bench-password";

/// Idle clients connecting at once.
const IDLE_CONNECTS_AT_ONCE: usize = 64;

/// Where the load goes.
enum Target {
    Own { cluster: Box<ChaosCluster>, _dir: tempfile::TempDir },
    External(Endpoints),
}

impl Target {
    async fn new(options: &Options) -> anyhow::Result<Target> {
        match &options.cluster {
            Some(path) => Ok(Target::External(Endpoints::from_cluster(&ClusterFile::load(path)?)?)),
            None => {
                let dir = tempfile::Builder::new().prefix("chorus-bench-").tempdir()?;
                // Every simulated client connects from this machine's address.
                let per_address = format!("--connections-per-address={}", chorus_limits::CLIENT_CONNECTIONS_MAX);
                let cost = format!("--password-memory-kib={}", options.password_memory_kib);
                let tls = !options.insecure;
                let cluster =
                    ChaosCluster::start_direct(&options.exe, dir.path(), 3, vec![per_address, cost], tls).await?;
                wait_for_leader(&cluster).await?;
                Ok(Target::Own { cluster: Box::new(cluster), _dir: dir })
            }
        }
    }

    fn endpoints(&self) -> Endpoints {
        match self {
            Target::Own { cluster, .. } => cluster.client_endpoints(),
            Target::External(endpoints) => endpoints.clone(),
        }
    }
}

/// Runs every measurement, calling `each` with its figures as it finishes.
pub async fn bench(options: &Options, mut each: impl FnMut(&Figures)) -> anyhow::Result<Vec<Figures>> {
    anyhow::ensure!(
        options.kill_leader_at.is_none() || options.cluster.is_none(),
        "--kill-leader-at needs the benchmark's own cluster (no --cluster)"
    );
    anyhow::ensure!(
        options.clients.iter().all(|&clients| clients <= options.room_members) || options.room_members == 0,
        "the senders are members of the room: give --room-members at least --clients"
    );
    anyhow::ensure!(
        !options.insecure || options.cluster.is_none(),
        "--insecure applies to the benchmark's own cluster; a cluster file says itself whether it uses TLS"
    );
    let mut target = Target::new(options).await?;
    let replicas = usage::Replicas::find(&target.endpoints()).await;
    let _idle = connect_idle(&target.endpoints(), options.idle_clients).await?;
    let mut all = Vec::new();
    for (round, &clients) in options.clients.iter().enumerate() {
        let mut figures = measure(options, &mut target, &replicas, clients, round).await?;
        figures.idle_clients = options.idle_clients;
        figures.replica_rss_mib = replicas.rss_mib();
        each(&figures);
        all.push(figures);
    }
    if let Target::Own { cluster, .. } = &mut target {
        cluster.stop().await;
    }
    Ok(all)
}

async fn measure(
    options: &Options,
    target: &mut Target,
    replicas: &usage::Replicas,
    clients: usize,
    round: usize,
) -> anyhow::Result<Figures> {
    let tag = std::process::id() % 10_000;
    // With one client, a second (idle) user receives its messages.
    let users = clients.max(2).max(options.room_members);
    let names = (0..users).map(|i| format!("b{tag}r{round}u{i}")).collect::<Vec<_>>();
    let room = (options.room_members > 0).then(|| format!("#b{tag}r{round}"));
    let members = if room.is_some() { options.room_members } else { clients };
    let run = Arc::new(Run {
        endpoints: target.endpoints(),
        names: names[..members].to_vec(),
        senders: clients,
        room,
        payload: options.payload,
        online: options.online,
        origin: Instant::now(),
        window_start: u64::MAX.into(),
        window_end: u64::MAX.into(),
        acked: 0.into(),
        last_ack_us: 0.into(),
        killed_at_us: u64::MAX.into(),
        last_ack_before_kill_us: 0.into(),
        first_ack_after_kill_us: 0.into(),
    });
    if clients == 1 && options.room_members == 0 {
        let extra = chorus_client::Client::connect(run.endpoints.clone()).await?;
        extra.create(&names[1], PASSWORD).await?;
    }
    let (ready, go) = (Arc::new(Barrier::new(members + 1)), Arc::new(Barrier::new(members + 1)));
    let load = tokio::spawn(load::run_clients(run.clone(), ready.clone(), go.clone()));
    ready.wait().await;
    let start = run.now_us() + WARM_UP.as_micros() as u64;
    run.window_start.store(start, Ordering::Relaxed);
    run.window_end.store(start + options.duration.as_micros() as u64, Ordering::Relaxed);
    go.wait().await;
    let killer = kill_leader_later(options, target, &run);
    let progress = progress(&run, options.duration);
    let cpu = cpu_in_window(replicas, &run);
    let ((), cpu, per_client) = tokio::join!(killer, cpu, async { load.await? });
    progress.finish_and_clear();
    let mut figures = summarize(clients, options, &run, &per_client?);
    figures.room_members = options.room_members;
    if !replicas.is_empty() && figures.ops > 0 {
        figures.replica_cpu_us_per_op = Some((cpu as f64 / figures.ops as f64 * 10.0).round() / 10.0);
    }
    Ok(figures)
}

/// Microseconds of CPU the replicas spent inside the measured window.
async fn cpu_in_window(replicas: &usage::Replicas, run: &Run) -> u64 {
    let (start, end) = run.window();
    tokio::time::sleep_until((run.origin + Duration::from_micros(start)).into()).await;
    let before = replicas.cpu_micros();
    tokio::time::sleep_until((run.origin + Duration::from_micros(end)).into()).await;
    replicas.cpu_micros().saturating_sub(before)
}

/// Connects `count` clients, each creating its own user and subscribing
/// to it; they stay connected (and idle) while the result is held.
async fn connect_idle(endpoints: &Endpoints, count: usize) -> anyhow::Result<Vec<chorus_client::Client>> {
    let tag = std::process::id() % 10_000;
    let mut clients = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for index in 0..count {
        if pending.len() == IDLE_CONNECTS_AT_ONCE {
            clients.push(pending.join_next().await.expect("a task is pending")??);
        }
        let endpoints = endpoints.clone();
        pending.spawn(async move {
            let client = chorus_client::Client::connect(endpoints).await?;
            let name = format!("b{tag}i{index}");
            client.create(&name, PASSWORD).await?;
            client.sign_in(&name, PASSWORD).await?;
            client.subscribe(&name).await?;
            anyhow::Ok(client)
        });
    }
    while let Some(client) = pending.join_next().await {
        clients.push(client??);
    }
    Ok(clients)
}

async fn kill_leader_later(options: &Options, target: &mut Target, run: &Run) {
    let (Some(at), Target::Own { cluster, .. }) = (options.kill_leader_at, target) else { return };
    let when = run.origin + Duration::from_micros(run.window().0) + at;
    tokio::time::sleep_until(when.into()).await;
    let Some(leader) = cluster.leader().await else {
        eprintln!("no leader to kill at {at:?}");
        return;
    };
    cluster.kill(leader).await;
    // After the process is reaped: replies still in flight from the old
    // leader count as before the kill; any later one comes from the new.
    run.last_ack_before_kill_us.store(run.last_ack_us.load(Ordering::Relaxed), Ordering::Relaxed);
    run.killed_at_us.store(run.now_us(), Ordering::Relaxed);
}

fn progress(run: &Arc<Run>, duration: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
    let run = run.clone();
    let ticker = bar.clone();
    tokio::spawn(async move {
        while !ticker.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let elapsed = run.now_us().saturating_sub(run.window().0) as f64 / 1e6;
            ticker.set_position(elapsed as u64);
            let rate = run.acked.load(Ordering::Relaxed) as f64 / elapsed.max(0.001);
            ticker.set_message(format!("{rate:.0} acks/s"));
        }
    });
    bar
}

fn summarize(clients: usize, options: &Options, run: &Run, per_client: &[ClientFigures]) -> Figures {
    let mut acks = Latencies::default();
    let mut deliveries = Latencies::default();
    for figures in per_client {
        acks.merge(&figures.acks);
        deliveries.merge(&figures.deliveries);
    }
    let mut figures = Figures::new(clients, options.payload, options.duration.as_secs_f64(), &acks, &deliveries);
    figures.errors = per_client.iter().map(|f| f.errors).sum();
    let killed = run.killed_at_us.load(Ordering::Relaxed);
    if killed != u64::MAX {
        let first_after = run.first_ack_after_kill_us.load(Ordering::Relaxed);
        let before = run.last_ack_before_kill_us.load(Ordering::Relaxed);
        figures.failover_gap_ms = (first_after > 0).then(|| (first_after - before) as f64 / 1e3);
    }
    figures
}

async fn wait_for_leader(cluster: &ChaosCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEADER_WAIT;
    while cluster.leader().await.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "no leader within {LEADER_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
