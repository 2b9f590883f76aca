//! Times one write plus one `fdatasync` per record, the way the log commits,
//! in three layouts of the file, and prints the latency and the CPU each
//! commit costs:
//!
//! - `append`: every record makes the file longer, so each `fdatasync`
//!   also makes a new length durable (a journal commit on ext4);
//! - `zeroed`: the file is extended with written zeros, a chunk at a time,
//!   and records overwrite them (what [`chorus_store::WalStore`] does);
//! - `reserved`: the same, but the chunk is only reserved with
//!   `posix_fallocate`, so its blocks are "unwritten" until a record lands.
//!
//! `cargo run --release -p chorus-store --example fsync_patterns -- [records] [bytes] [dir]`
//!
//! Use a real disk, not tmpfs, or fsync costs nothing.

use std::fs::{File, OpenOptions};
use std::io::Result;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use chorus_store::PREALLOCATE_BYTES;

/// Rounds of the three layouts, alternating, so that a noisy moment hits
/// them alike.
const ROUNDS: usize = 3;

fn main() -> Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let records: usize = arguments.first().and_then(|text| text.parse().ok()).unwrap_or(2_000);
    let bytes: usize = arguments.get(1).and_then(|text| text.parse().ok()).unwrap_or(300);
    let parent = arguments.get(2).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(parent)?;
    println!("{records} records of {bytes} bytes, each one write and one fdatasync, in {}", dir.path().display());
    for round in 1..=ROUNDS {
        for layout in ["append", "zeroed", "reserved"] {
            let timing = run(&dir.path().join(layout), layout, records, bytes)?;
            println!("round {round} {layout:>8}: {timing}");
        }
    }
    Ok(())
}

/// Latencies (sorted) and CPU time of one layout's run.
struct Timing {
    latencies: Vec<Duration>,
    cpu: Duration,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |fraction: f64| self.latencies[((self.latencies.len() - 1) as f64 * fraction) as usize];
        let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
        write!(
            formatter,
            "p50 {:5.0} µs  p90 {:5.0} µs  p99 {:5.0} µs  CPU {:4.0} µs per commit",
            micros(at(0.5)),
            micros(at(0.9)),
            micros(at(0.99)),
            micros(self.cpu) / self.latencies.len() as f64
        )
    }
}

fn run(path: &Path, layout: &str, records: usize, bytes: usize) -> Result<Timing> {
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path)?;
    let record = vec![0x5a_u8; bytes];
    let zeros = vec![0_u8; PREALLOCATE_BYTES as usize];
    let (mut end, mut allocated) = (0_u64, 0_u64);
    let mut latencies = Vec::with_capacity(records);
    let cpu_before = cpu_time();
    for _ in 0..records {
        let started = Instant::now();
        if layout != "append" && end + bytes as u64 > allocated {
            extend(&file, layout, allocated, &zeros)?;
            allocated += PREALLOCATE_BYTES;
        }
        file.write_all_at(&record, end)?;
        file.sync_data()?;
        end += bytes as u64;
        latencies.push(started.elapsed());
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    drop(file);
    std::fs::remove_file(path)?;
    latencies.sort_unstable();
    Ok(Timing { latencies, cpu })
}

/// Extends `file` by one chunk at `from`: written zeros, or a reservation.
fn extend(file: &File, layout: &str, from: u64, zeros: &[u8]) -> Result<()> {
    if layout == "zeroed" {
        return file.write_all_at(zeros, from);
    }
    // SAFETY: the descriptor is open for as long as `file` lives, and
    // posix_fallocate reads nothing through pointers.
    let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), from as libc::off_t, zeros.len() as libc::off_t) };
    match status {
        0 => Ok(()),
        error => Err(std::io::Error::from_raw_os_error(error)),
    }
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed value we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |value: libc::timeval| Duration::new(value.tv_sec as u64, value.tv_usec as u32 * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
