//! `chorus bench`: the closed-loop benchmark (`chorus-bench`).

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `chorus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A running cluster to measure; without it the benchmark starts its own
    /// local 3-replica cluster in a temporary directory and stops it after.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// Concurrent clients, each signed in as its own user.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    clients: u64,
    /// Seconds measured per run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    duration: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=4096))]
    payload: u64,
    /// Several client counts, one run each (overrides --clients).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sweep: Vec<u64>,
    /// Write an SVG plot of throughput and latency against clients here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Own cluster only: SIGKILL the leader this many seconds into the
    /// measurement and report the clients' failover gap.
    #[arg(long, value_parser = seconds)]
    kill_leader_at: Option<f64>,
    /// Leave the recipients offline: nobody is connected for delivery, so
    /// every message stays queued (measures sends alone).
    #[arg(long)]
    offline_recipients: bool,
    /// Also connect this many idle clients, each signed in as its own user
    /// and connected for delivery, for the whole benchmark.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=16_000))]
    idle_clients: u64,
    /// Own cluster only: memory cost of password hashes, in KiB (each
    /// client creates an account and signs in before the measurement;
    /// lower it to connect many idle clients quickly).
    #[arg(long, default_value_t = chorus_limits::PASSWORD_HASH_MEMORY_KIB_DEFAULT, value_parser = clap::value_parser!(u32).range(i64::from(chorus_limits::PASSWORD_HASH_MEMORY_KIB_MIN)..=4 * 1024 * 1024))]
    password_memory_kib: u32,
    /// One JSON object per run, one per line.
    #[arg(long)]
    json: bool,
    /// Run the benchmark's own cluster in plaintext instead of TLS (to
    /// measure what TLS costs: compare with a run without it).
    #[arg(long)]
    insecure: bool,
    /// Room mode: this many members join one room and stay connected for
    /// delivery; the first --clients of them post to it. Deliveries count
    /// what every member received (fan-out).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=chorus_limits::ROOM_MEMBERS_MAX as u64))]
    room_members: u64,
    /// Runtime threads driving the clients. One (the default) takes the
    /// least CPU from a cluster on the same machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err("give seconds between 0 and 86400".into()),
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let clients = if args.sweep.is_empty() { vec![args.clients] } else { args.sweep.clone() };
    let options = chorus_bench::Options {
        exe: std::env::current_exe()?,
        cluster: args.cluster,
        clients: clients.into_iter().map(|c| c as usize).collect(),
        duration: Duration::from_secs_f64(args.duration),
        payload: args.payload as usize,
        online: !args.offline_recipients,
        kill_leader_at: args.kill_leader_at.map(Duration::from_secs_f64),
        idle_clients: args.idle_clients as usize,
        password_memory_kib: args.password_memory_kib,
        insecure: args.insecure,
        room_members: args.room_members as usize,
    };
    let json = args.json;
    let runs = chorus_bench::bench(&options, |figures| {
        if json {
            println!("{}", serde_json::to_string(figures).expect("figures serialize"));
        } else {
            println!("{}", figures.render());
        }
    })
    .await?;
    if let Some(path) = args.plot {
        chorus_bench::plot::write_svg(&path, &runs)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}
