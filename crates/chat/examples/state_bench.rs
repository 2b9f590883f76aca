//! Measures what a background snapshot costs the core task: how fast
//! proposals apply, how long `clone()` of a large [`ChatState`] takes, and how
//! long the snapshot takes to write and to read back.
//!
//! Builds a state with `MESSAGES` queued messages of `TEXT_BYTES` bytes spread
//! over `ACCOUNTS` accounts, through the public API only (register a session,
//! create the accounts, send). Run with:
//!
//! ```text
//! cargo run --release -p chorus-chat --example state_bench
//! ```
//!
//! Timings are wall-clock and vary from run to run (each snapshot-side
//! figure is the fastest of `RUNS` runs); compare runs on the same machine
//! only.

use std::io;
use std::time::{Duration, Instant};

use chorus_chat::{ChatState, Command, Proposal};

/// Accounts the messages are spread over.
const ACCOUNTS: usize = 1_000;
/// Messages queued in total (every one stays queued: nothing is acked).
const MESSAGES: usize = 1_000_000;
/// Size of every message text, in bytes.
const TEXT_BYTES: usize = 100;
/// Proposals built ahead of applying them, so that building them stays out
/// of the apply timing without holding all of them in memory at once.
const BATCH_PROPOSALS: usize = 10_000;
/// The session every proposal belongs to.
const CLIENT: u64 = 1;

/// Times each snapshot-side measurement this many times and reports the
/// fastest run, the one least disturbed by the allocator and page faults.
const RUNS: usize = 3;

const _: () = assert!(RUNS >= 1);

/// A well-formed argon2id PHC string; the state machine never verifies it.
const HASH: &str = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";

fn main() -> io::Result<()> {
    let (state, apply_time) = build();
    report_rate("build: apply", apply_time, ACCOUNTS + MESSAGES + 1);
    println!("rss after build: {} KiB", rss_kibibytes()?);
    measure_clone(&state);
    let bytes = measure_encoding(&state)?;
    measure_decoding(&bytes, state.digest());
    Ok(())
}

/// Times `clone()` and the first change to a clone (which copies whatever
/// the two still share on its path).
fn measure_clone(state: &ChatState) {
    let (mut copy, elapsed) = fastest(|| state.clone());
    report("clone()", elapsed);
    let started = Instant::now();
    copy.apply(&send_proposal(u64::MAX, 0));
    report("first apply on the clone", started.elapsed());
}

/// Times the encoders; returns the snapshot bytes.
fn measure_encoding(state: &ChatState) -> io::Result<Vec<u8>> {
    let (bytes, elapsed) = fastest(|| state.to_snapshot());
    report("to_snapshot()", elapsed);
    println!("snapshot size: {} bytes", bytes.len());
    let (written, elapsed) = fastest(|| state.write_snapshot(io::sink()));
    written?;
    report("write_snapshot(io::sink())", elapsed);
    let (digest, elapsed) = fastest(|| state.digest());
    report("digest()", elapsed);
    println!("digest: {digest:#018x}");
    Ok(bytes)
}

/// Times the decoders, checking that each gives back a state with `digest`.
fn measure_decoding(bytes: &[u8], digest: u64) {
    let (restored, elapsed) = fastest(|| ChatState::from_snapshot(bytes));
    report("from_snapshot()", elapsed);
    assert_eq!(restored.map(|state| state.digest()), Ok(digest), "from_snapshot gives the same state");
    let (streamed, elapsed) = fastest(|| ChatState::read_snapshot(bytes));
    report("read_snapshot()", elapsed);
    assert_eq!(streamed.map(|state| state.digest()), Ok(digest), "read_snapshot gives the same state");
}

/// Runs `measure` `RUNS` times; returns the last result and the fastest
/// time. Earlier results are dropped outside the timing.
fn fastest<T>(mut measure: impl FnMut() -> T) -> (T, Duration) {
    let mut fastest = Duration::MAX;
    let mut result = None;
    for _ in 0..RUNS {
        drop(result.take());
        let started = Instant::now();
        let value = measure();
        fastest = fastest.min(started.elapsed());
        result = Some(value);
    }
    (result.expect("RUNS is at least one"), fastest)
}

/// Applies the whole workload to an empty state; returns the state and the
/// time spent inside `apply` alone.
fn build() -> (ChatState, Duration) {
    let mut state = ChatState::new();
    let mut apply_time = Duration::ZERO;
    let mut next_seq = 0u64;
    let total = ACCOUNTS + MESSAGES + 1;
    while (next_seq as usize) < total {
        let batch_end = (next_seq as usize + BATCH_PROPOSALS).min(total) as u64;
        let batch: Vec<Proposal> = (next_seq..batch_end).map(workload_proposal).collect();
        let started = Instant::now();
        for proposal in &batch {
            let applied = state.apply(proposal);
            assert!(applied.reply.is_ok(), "{applied:?}");
        }
        apply_time += started.elapsed();
        next_seq = batch_end;
    }
    assert_eq!(state.accounts_len(), ACCOUNTS);
    (state, apply_time)
}

/// The proposal with sequence number `seq`: register, then create every
/// account, then send messages round-robin.
fn workload_proposal(seq: u64) -> Proposal {
    let index = seq as usize;
    let command = if index == 0 {
        Command::RegisterClient
    } else if index <= ACCOUNTS {
        Command::Create { name: account_name(index - 1), password_hash: HASH.to_string() }
    } else {
        return send_proposal(seq, index - ACCOUNTS - 1);
    };
    Proposal::new(CLIENT, seq, seq, command)
}

/// The send of message number `message` (0-based), as sequence number `seq`.
fn send_proposal(seq: u64, message: usize) -> Proposal {
    let from = account_name((message + 1) % ACCOUNTS);
    let to = account_name(message % ACCOUNTS);
    let text = format!("{message:0width$}", width = TEXT_BYTES);
    let command = Command::Send { from, to, text };
    Proposal::new(CLIENT, seq, seq, command)
}

/// Name of account number `index`.
fn account_name(index: usize) -> String {
    format!("user{index:04}")
}

/// Resident set size of this process, from `/proc/self/status`.
fn rss_kibibytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"));
    let value = line.and_then(|line| line.split_whitespace().nth(1)).and_then(|kib| kib.parse().ok());
    value.ok_or_else(|| io::Error::other("no VmRSS line in /proc/self/status"))
}

/// Prints one timing.
fn report(what: &str, elapsed: Duration) {
    println!("{what}: {elapsed:.3?}");
}

/// Prints one timing with its throughput.
fn report_rate(what: &str, elapsed: Duration, count: usize) {
    let per_second = count as f64 / elapsed.as_secs_f64();
    println!("{what}: {:.3} ms for {count} proposals ({per_second:.0} proposals/s)", elapsed.as_secs_f64() * 1e3);
}
