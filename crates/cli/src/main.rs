//! `chorus`: run a local cluster (`up`), one replica (`server`), the chat
//! client (`chat`), a cluster status probe (`status`), the benchmark
//! (`bench`) or the chaos harness (`chaos`).

mod bench;
mod chaos;
mod chat;
mod status;
mod up;

use anyhow::Context;
use chorus_server::machine::SnapshotPolicy;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Default cluster file for client commands.
const DEFAULT_CLUSTER_FILE: &str = "./chorus-data/cluster.toml";

#[derive(Parser)]
#[command(name = "chorus", version, about = "A replicated chat service that does not lose messages")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster: one child process per replica, in the foreground.
    Up {
        /// Number of replicas (1, 3, 5 or 7).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Directory holding cluster.toml and each replica's data.
        #[arg(long, default_value = "./chorus-data")]
        dir: PathBuf,
        /// First client port; client ports are P..P+N-1, peer ports P+N..P+2N-1.
        #[arg(long, default_value_t = 7100)]
        port: u16,
        #[command(flatten)]
        replica: ReplicaArgs,
    },
    /// Run one replica as the cluster file describes.
    Server {
        /// The cluster file.
        #[arg(long)]
        cluster: PathBuf,
        /// This replica's id in the cluster file.
        #[arg(long)]
        id: u8,
        /// This replica founds a new cluster: if its data directory is
        /// empty, it votes from the start. Without it an empty directory is
        /// a lost disk, and the replica rebuilds from its peers first.
        /// (`chorus up` founds its replicas itself.) Never pass it to a
        /// replica of a cluster that has run: it could lose acknowledged data.
        #[arg(long)]
        new_cluster: bool,
        /// Runtime threads serving clients and peers. One (the default)
        /// costs the least CPU per message: no wake-ups cross threads. The
        /// store always writes on a thread of its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        threads: u64,
        #[command(flatten)]
        replica: ReplicaArgs,
    },
    /// The chat client: reads commands from standard input.
    Chat {
        /// The cluster file.
        #[arg(long, default_value = DEFAULT_CLUSTER_FILE)]
        cluster: PathBuf,
        /// One JSON object per line for every reply and delivered message.
        #[arg(long)]
        json: bool,
    },
    /// Measure acknowledged sends per second and latency with C closed-loop
    /// clients (see docs/BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Run a local cluster under load and faults, then check what the
    /// clients saw (see docs/TESTING.md, "Chaos runs"). Exits 1 on a violation.
    Chaos(chaos::ChaosArgs),
    /// Show every replica's state.
    Status {
        /// The cluster file.
        #[arg(long, default_value = DEFAULT_CLUSTER_FILE)]
        cluster: PathBuf,
        /// One JSON object per replica, one per line.
        #[arg(long)]
        json: bool,
    },
}

/// Settings of every replica: when it snapshots its state and compacts its
/// log, how many connections one address may hold, and whether plaintext
/// is allowed.
#[derive(Args, Clone, Copy, Debug)]
struct ReplicaArgs {
    /// Snapshot after this many log slots were applied since the last one.
    #[arg(long, default_value_t = chorus_limits::SNAPSHOT_EVERY_SLOTS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every_slots: u64,
    /// ...or after this many bytes of commands, whichever comes first.
    #[arg(long, default_value_t = chorus_limits::SNAPSHOT_EVERY_BYTES_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every_bytes: u64,
    /// Most client connections one address may hold on a replica.
    #[arg(long, default_value_t = chorus_limits::CLIENT_CONNECTIONS_PER_ADDRESS_DEFAULT as u64, value_parser = clap::value_parser!(u64).range(1..=chorus_limits::CLIENT_CONNECTIONS_MAX as u64))]
    connections_per_address: u64,
    /// Memory cost of new password hashes (argon2id), in KiB. The default
    /// is the OWASP minimum; lower it only for test clusters.
    #[arg(long, default_value_t = chorus_limits::PASSWORD_HASH_MEMORY_KIB_DEFAULT, value_parser = clap::value_parser!(u32).range(i64::from(chorus_limits::PASSWORD_HASH_MEMORY_KIB_MIN)..=4 * 1024 * 1024))]
    password_memory_kib: u32,
    /// Allow plaintext: `chorus up` creates a cluster without TLS, and a
    /// replica whose cluster file has no [tls] table starts anyway. Only
    /// for a network where everything that can reach the ports is trusted.
    #[arg(long)]
    insecure: bool,
}

impl ReplicaArgs {
    fn options(self) -> chorus_server::Options {
        let snapshots = SnapshotPolicy {
            every_slots: self.snapshot_every_slots,
            every_bytes: self.snapshot_every_bytes,
            ..SnapshotPolicy::default()
        };
        chorus_server::Options {
            snapshots,
            connections_per_address: self.connections_per_address as usize,
            hash_cost: chorus_server::passwords::HashCost { memory_kib: self.password_memory_kib },
            insecure: self.insecure,
        }
    }

    /// The same flags, for a child `chorus server`.
    fn to_args(self) -> Vec<String> {
        let mut args = vec![
            format!("--snapshot-every-slots={}", self.snapshot_every_slots),
            format!("--snapshot-every-bytes={}", self.snapshot_every_bytes),
            format!("--connections-per-address={}", self.connections_per_address),
            format!("--password-memory-kib={}", self.password_memory_kib),
        ];
        if self.insecure {
            args.push("--insecure".into());
        }
        args
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let planted = planted_bugs()?;
    chorus_plant::set(planted);
    let threads = match &cli.command {
        Command::Server { threads, .. } => Some(*threads),
        Command::Bench(args) => Some(args.threads),
        _ => None,
    };
    raise_open_files_limit();
    let runtime = runtime(threads, planted)?;
    match cli.command {
        Command::Up { replicas, dir, port, replica } => {
            runtime.block_on(up::run(replicas, dir, port, replica.insecure, replica.to_args()))
        }
        Command::Server { cluster, id, new_cluster, replica, .. } => {
            init_logging();
            ignore_file_size_signal();
            // Before anything touches the data directory: no plaintext
            // replica without --insecure.
            let file = chorus_proto::ClusterFile::load(&cluster)?;
            chorus_server::node::transport_security(&file, id, replica.insecure)
                .with_context(|| format!("cannot start replica {id} of {}", cluster.display()))?;
            if new_cluster {
                chorus_server::found(&file, id)?;
            }
            runtime.block_on(chorus_server::run_from_file(&cluster, id, replica.options()))
        }
        Command::Chat { cluster, json } => runtime.block_on(chat::run(&cluster, json)),
        Command::Status { cluster, json } => {
            die_quietly_on_closed_stdout();
            runtime.block_on(status::run(&cluster, json))
        }
        Command::Chaos(args) => runtime.block_on(chaos::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
    }
}

/// The tokio runtime: one thread for `Some(1)`, that many workers for
/// `Some(n)`, one per core for `None`.
fn runtime(threads: Option<u64>, planted: u32) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n as usize);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().on_thread_start(move || chorus_plant::set(planted)).build()
}

/// Bugs to plant on every runtime thread, from `CHORUS_PLANT` (comma
/// separated names): only debug builds have them, so the chaos tests can
/// show their checkers catch a real bug in real processes.
fn planted_bugs() -> anyhow::Result<u32> {
    let Ok(names) = std::env::var("CHORUS_PLANT") else { return Ok(0) };
    anyhow::ensure!(cfg!(debug_assertions), "CHORUS_PLANT is set, but planted bugs exist only in debug builds");
    let mut flags = 0;
    for name in names.split(',').filter(|name| !name.is_empty()) {
        flags |=
            chorus_plant::from_name(name).with_context(|| format!("CHORUS_PLANT: no planted bug called {name:?}"))?;
    }
    Ok(flags)
}

/// Raises the soft limit on open files to the hard limit: a replica holds
/// a socket per client (up to `CLIENT_CONNECTIONS_MAX`) and the benchmark
/// one per simulated client, past the usual soft limit of 1,024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `chorus status | head -1` ends quietly, as Unix tools do, instead of
/// panicking when stdout closes: the default SIGPIPE action again (Rust
/// ignores the signal). Sockets are unaffected: they write with
/// MSG_NOSIGNAL.
fn die_quietly_on_closed_stdout() {
    // SAFETY: setting a signal disposition is thread-safe, and SIG_DFL is
    // always a valid one.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A write past the file size limit (`RLIMIT_FSIZE`) fails with EFBIG
/// instead of killing the process with SIGXFSZ, so the replica reports a
/// failed write and stops as it does on a full disk.
fn ignore_file_size_signal() {
    // SAFETY: called once at start, before any thread that could race on
    // signal dispositions; SIG_IGN is always a valid disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
