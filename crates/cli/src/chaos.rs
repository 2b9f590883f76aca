//! `chorus chaos`: the chaos harness (`chorus-chaos`) on a local cluster of
//! this very binary.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `chorus chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Replicas (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = replicas)]
    replicas: usize,
    /// Length of the fault phase in seconds (load runs throughout).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Seed of the fault schedule and the workload; random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Directory for the cluster and its logs (kept); a temporary one,
    /// removed unless a violation is found, when absent.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// After healing, replicas must converge within this many seconds.
    #[arg(long, default_value_t = 30)]
    converge_within: u64,
    /// Only these fault kinds, comma-separated (kill-leader, kill-any,
    /// kill-majority, pause-leader, pause-any, isolate-leader, split,
    /// one-way, delay, flaky, client-cut, disk-full, wipe); all when absent.
    #[arg(long, value_delimiter = ',', value_parser = kind)]
    faults: Vec<chorus_chaos::faults::Kind>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn kind(text: &str) -> Result<chorus_chaos::faults::Kind, String> {
    chorus_chaos::faults::Kind::from_name(text).ok_or_else(|| format!("no fault kind called {text:?}"))
}

fn replicas(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(n @ (3 | 5)) => Ok(n),
        _ => Err("use 3 or 5 replicas".into()),
    }
}

/// Runs the harness, prints its report, and fails when it found a violation.
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = chorus_chaos::Options {
        exe: std::env::current_exe()?,
        replicas: args.replicas,
        seconds: args.seconds,
        seed,
        dir: args.dir,
        shape: chorus_chaos::Shape::DEFAULT,
        converge_within: Duration::from_secs(args.converge_within),
        // Cheap password hashes: the account workers create and sign in
        // hundreds of times a second; the cost is not what is under test.
        server_args: vec!["--password-memory-kib=256".to_string()],
        kinds: args.faults,
    };
    eprintln!("chaos: {} replicas, {} s of faults, seed {seed}", options.replicas, options.seconds);
    if let Some(dir) = &options.dir {
        anyhow::ensure!(
            !dir.exists() || std::fs::read_dir(dir)?.next().is_none(),
            "{} is not empty; give a new or empty directory",
            dir.display()
        );
    }
    let report = chorus_chaos::run(&options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    anyhow::ensure!(
        report.violations.is_empty(),
        "{} violation(s); reproduce with: {}",
        report.violations.len(),
        report.repro
    );
    Ok(())
}
