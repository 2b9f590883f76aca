//! One chaos run, start to finish ([`run`]): start the cluster and the
//! workload, inject the planned faults, heal, let the clients finish and
//! the replicas converge, then check the history ([`crate::report::Report`]).

use crate::check;
use crate::cluster::ChaosCluster;
use crate::faults::{self, Injected, Kind, Plan};
use crate::history::{Clock, History, Micros};
use crate::report::{Counts, FaultEvent, Report};
use crate::workload::{Shape, Workload};
use anyhow::Context;
use chorus_paxos::ReplicaId;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Load before the first fault.
const WARM_UP: Duration = Duration::from_secs(2);
/// Longest wait, after the load stops, for every acknowledged message to
/// reach its recipient.
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the first leader.
const FIRST_LEADER_MAX: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `chorus` binary that runs the replicas.
    pub exe: PathBuf,
    pub replicas: usize,
    /// Length of the fault phase.
    pub seconds: u64,
    pub seed: u64,
    /// Where the cluster lives; a fresh temporary directory when `None`.
    pub dir: Option<PathBuf>,
    pub shape: Shape,
    /// After healing, the replicas must hold equal states within this bound.
    pub converge_within: Duration,
    /// Extra flags for every `chorus server`.
    pub server_args: Vec<String>,
    /// Only these fault kinds (all when empty).
    pub kinds: Vec<Kind>,
}

/// Runs the whole thing and returns the report; violations are in it.
/// An error means the harness itself could not run.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let (dir, temp) = run_dir(options)?;
    let result = run_in(options, &dir).await;
    let failed = result.as_ref().map_or(true, |report| !report.violations.is_empty());
    if let (Some(temp), true) = (temp, failed) {
        // Keep the logs of a failed run, and of a harness that failed.
        let _ = temp.keep();
    }
    result.with_context(|| format!("the replicas' logs are kept in {}", dir.display()))
}

/// Starts the cluster in `dir`, drives the run and stops the cluster.
async fn run_in(options: &Options, dir: &Path) -> anyhow::Result<Report> {
    let mut cluster = ChaosCluster::start(&options.exe, dir, options.replicas, options.server_args.clone()).await?;
    let outcome = drive(options, &mut cluster).await;
    cluster.stop().await;
    let mut report = outcome?;
    report.dir = dir.display().to_string();
    Ok(report)
}

/// The run's directory, and the temporary directory guard when we made one.
fn run_dir(options: &Options) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok((dir.clone(), None))
        }
        None => {
            let temp = tempfile::Builder::new().prefix("chorus-chaos-").tempdir()?;
            Ok((temp.path().to_owned(), Some(temp)))
        }
    }
}

async fn drive(options: &Options, cluster: &mut ChaosCluster) -> anyhow::Result<Report> {
    wait_for_first_leader(cluster).await?;
    let clock = Clock::start();
    let history = Arc::new(History::default());
    let mut workload =
        Workload::start(cluster.client_endpoints(), history.clone(), clock, options.shape, options.seed).await?;
    tokio::time::sleep(WARM_UP).await;
    let mut report = Report::new(options);
    inject_faults(options, cluster, &clock, &mut report).await?;
    cluster.heal_network();
    let healed_at = clock.now();
    say(&clock, "faults over; every replica up and every link healed");
    workload.stop_load().await;
    report.drained_after_ms = wait_drained(&history, options.shape.recipients, &clock, healed_at).await;
    workload.stop_subscribers().await;
    report.converged_after_ms = wait_converged(cluster, options.converge_within, &clock, healed_at).await;
    if report.converged_after_ms.is_none() {
        let digests = cluster.digests().await;
        report.add_violation(
            "convergence",
            format!("replicas differ {:?} after healing: {digests:?}", options.converge_within),
        );
    }
    check_history(&history, options.shape.recipients, &mut report);
    Ok(report)
}

async fn wait_for_first_leader(cluster: &ChaosCluster) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + FIRST_LEADER_MAX;
    while cluster.leader().await.is_none() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no leader within {FIRST_LEADER_MAX:?} of starting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The fault phase: the plan's faults, one after another, until time is up.
async fn inject_faults(
    options: &Options,
    cluster: &mut ChaosCluster,
    clock: &Clock,
    report: &mut Report,
) -> anyhow::Result<()> {
    let end = clock.now() + options.seconds * 1_000_000;
    for &fault in &Plan::new(options.seed, options.seconds, &options.kinds).faults {
        if clock.now() >= end {
            break;
        }
        let injected = faults::inject(cluster, fault).await?;
        // After the kill was reaped or the signal sent: a reply that
        // arrives later came from the new leader.
        let at = clock.now();
        say(clock, &format!("{}: {} (hold {} ms)", fault.kind.name(), injected.summary, fault.hold.as_millis()));
        faults::hold(cluster, &injected).await;
        let restarted = faults::heal(cluster, &injected).await?;
        note_unexpected_exits(&injected, &restarted, report);
        report.faults.push(FaultEvent::new(&injected, at));
        tokio::time::sleep(fault.quiet).await;
    }
    Ok(())
}

/// A replica that stopped though the fault did not stop it is a crash.
fn note_unexpected_exits(injected: &Injected, restarted: &[ReplicaId], report: &mut Report) {
    let kind = injected.fault.kind;
    for id in restarted {
        let expected = injected.victims.contains(id)
            && matches!(kind, Kind::KillLeader | Kind::KillAny | Kind::KillMajority | Kind::DiskFull);
        if kind == Kind::DiskFull && injected.victims.contains(id) {
            report.disk_full_stopped += 1;
        }
        if !expected {
            let detail =
                format!("replica {id} exited during {} though nothing killed it; see replica-{id}.log", kind.name());
            report.add_violation("crash", detail);
        }
    }
}

/// Waits until every acknowledged send was handed to its recipient and
/// every acknowledged room post to each of the `recipients`; returns how
/// long after healing, or `None` past [`DRAIN_MAX`].
async fn wait_drained(history: &History, recipients: u16, clock: &Clock, healed_at: Micros) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + DRAIN_MAX;
    while history.undelivered_acked() > 0 || history.undelivered_posts(recipients) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((clock.now() - healed_at) / 1_000)
}

/// Waits until every replica answers with the same digest at the same slot;
/// returns how long after healing, or `None` past `within`.
async fn wait_converged(cluster: &ChaosCluster, within: Duration, clock: &Clock, healed_at: Micros) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let digests = cluster.digests().await;
        let first = digests[0];
        if first.is_some() && digests.iter().all(|d| *d == first) {
            let after = (clock.now() - healed_at) / 1_000;
            say(clock, &format!("all {} replicas hold the same state: {first:?}", digests.len()));
            return Some(after);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check_history(history: &History, recipients: u16, report: &mut Report) {
    let sends = history.sends();
    let delivered = history.delivered();
    let account_ops = history.account_ops();
    report.sends = Counts::of_sends(&sends);
    report.account_ops = Counts::of_account_ops(&account_ops);
    report.delivered = delivered.len() as u64;
    report.reconnects = history.reconnects();
    report.set_gaps(&history.ack_times());
    report.extend_violations(check::deliveries(&sends, &delivered));
    report.extend_violations(check::real_time_order(&sends));
    let posts = history.posts();
    report.posts = Counts::of_posts(&posts);
    report.extend_violations(check::room_order(&posts, &delivered, recipients));
    match check::accounts(&account_ops) {
        Ok(violations) => report.extend_violations(violations),
        Err(gave_up) => report.linearizability_inconclusive = Some(gave_up),
    }
}

/// A progress line on standard error.
fn say(clock: &Clock, line: &str) {
    eprintln!("[{:>8.1}s] {line}", clock.now() as f64 / 1e6);
}
