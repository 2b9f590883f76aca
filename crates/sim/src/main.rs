//! `chorus-sim`: run one seed (`--seed S`) or sweep many (`--seeds N
//! [--first-seed S]`); every failure prints the seed, the command that
//! replays it, and the events that led to it. A sweep ends with how often
//! the snapshot and disk-wipe paths were taken.

use chorus_sim::{run_seed, Coverage, Failure, Options, Plant};
use clap::Parser;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "chorus-sim", about = "Deterministic simulation of a Chorus cluster")]
struct Args {
    /// Replay exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep this many consecutive seeds.
    #[arg(long)]
    seeds: Option<u64>,
    /// First seed of a sweep (random when omitted; printed).
    #[arg(long)]
    first_seed: Option<u64>,
    /// Ticks of the fault phase.
    #[arg(long, default_value_t = Options::default().fault_ticks)]
    fault_ticks: u64,
    /// Bound on the liveness phase, in ticks.
    #[arg(long, default_value_t = Options::default().liveness_ticks)]
    liveness_ticks: u64,
    /// Chance, in percent, that a restart finds its disk wiped, for every
    /// seed (default: each seed's own mix).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    wipe_percent: Option<u8>,
    /// Plant a bug (debug builds only) to see the checkers catch it.
    #[arg(long, value_enum)]
    plant: Option<Plant>,
    /// Print one line per passing seed.
    #[arg(long)]
    verbose: bool,
}

fn main() {
    let args = Args::parse();
    let options = Options {
        fault_ticks: args.fault_ticks,
        liveness_ticks: args.liveness_ticks,
        plant: args.plant,
        wipe_percent: args.wipe_percent,
    };
    let (first, count) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, 1),
        (None, count) => (args.first_seed.unwrap_or_else(rand::random), count.unwrap_or(1)),
    };
    println!("chorus-sim: seeds {first}..{} ({count} runs)", first.wrapping_add(count));
    let started = Instant::now();
    let (mut events, mut failures) = (0u64, 0u64);
    let mut coverage = Coverage::default();
    for seed in (0..count).map(|i| first.wrapping_add(i)) {
        match run_seed(seed, options) {
            Ok(report) => {
                events += report.events;
                coverage += report.coverage;
                if args.verbose || count == 1 {
                    println!(
                        "seed {seed}: ok ({} replicas, {} clients, {} ticks, {} slots, {} operations, {} crashes, {} partitions, {} disks wiped)",
                        report.plan.replicas, report.plan.clients, report.ticks, report.slots, report.operations,
                        report.crashes, report.partitions, report.coverage.disks_wiped
                    );
                }
            }
            Err(failure) => {
                failures += 1;
                print_failure(&failure, &args);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} passed, {failures} failed in {seconds:.1} s ({:.0} simulated events/s)",
        count - failures,
        events as f64 / seconds.max(1e-9)
    );
    println!("coverage (passing runs): {coverage}");
    if failures > 0 {
        std::process::exit(1);
    }
}

fn print_failure(failure: &Failure, args: &Args) {
    let plant = args
        .plant
        .map(|p| {
            format!(
                " --plant {}",
                clap::ValueEnum::to_possible_value(&p).map(|v| v.get_name().to_string()).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let wipes = args.wipe_percent.map(|percent| format!(" --wipe-percent {percent}")).unwrap_or_default();
    println!("seed {}: FAILED at t={}: {}", failure.seed, failure.tick, failure.violation);
    println!("  plan: {:?}", failure.plan);
    println!(
        "  replay: cargo run -p chorus-sim -- --seed {} --fault-ticks {} --liveness-ticks {}{wipes}{plant}",
        failure.seed, args.fault_ticks, args.liveness_ticks
    );
    println!("  last events:\n{}", failure.trace);
}
