//! Times every `persist` of a write-ahead log whose segment grows past
//! [`REWRITE_BYTES_MIN`], and reports the slowest ones: the pause a rewrite
//! puts on the caller.
//!
//! `cargo run --release -p chorus-store --example wal_rewrite_pause -- [persists] [dir]`
//!
//! Each persist writes one entry of [`COMMAND_BYTES`] and compacts all but
//! the last [`LIVE_ENTRIES`], so the segment outgrows its checkpoint and is
//! rewritten once it passes [`REWRITE_BYTES_MIN`]. Use a real disk, not
//! tmpfs, or fsync costs nothing.

use std::time::{Duration, Instant};

use chorus_paxos::{Ballot, Entry, Value, WriteBatch};
use chorus_store::{LogStore, StoreError, WalStore, REWRITE_BYTES_MIN};

/// Bytes of the one command in each entry.
const COMMAND_BYTES: usize = 64 * 1024;

/// Entries left after each persist's compaction.
const LIVE_ENTRIES: u64 = 100;

/// Slowest persists reported.
const REPORTED_PERSISTS: usize = 5;

fn main() -> Result<(), StoreError> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let persists: u64 = arguments.first().and_then(|text| text.parse().ok()).unwrap_or(1_400);
    let parent = arguments.get(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(|error| StoreError::Io(error.to_string()))?;
    let root = tempfile::tempdir_in(&parent).map_err(|error| StoreError::Io(error.to_string()))?;
    let mut store = WalStore::open_founding(root.path(), 0)?;
    let mut timings = Vec::new();
    for slot in 1..=persists {
        let sequence = store.segment_sequence();
        let started = Instant::now();
        store.persist(&[batch(slot)])?;
        timings.push((started.elapsed(), slot, sequence, store.segment_sequence()));
    }
    let rewrites = store.segment_sequence() - 1;
    assert_eq!(store.load()?.entries.len() as u64, persists.min(LIVE_ENTRIES), "the live entries read back");
    report(&mut timings, rewrites);
    Ok(())
}

/// The persist of `slot`: one entry, compacting all but the last few.
fn batch(slot: u64) -> WriteBatch {
    let entry = Entry {
        ballot: Ballot::new(1, 0),
        value: Value::batch(vec![vec![(slot % 251) as u8; COMMAND_BYTES]]),
        chosen: true,
    };
    WriteBatch {
        id: slot,
        entries: vec![(slot, entry)],
        chosen_through: Some(slot),
        compact_through: slot.checked_sub(LIVE_ENTRIES),
        ..Default::default()
    }
}

/// Prints the median and the slowest persists, each with its slot and the
/// segment sequence before and after it.
fn report(timings: &mut [(Duration, u64, u64, u64)], rewrites: u64) {
    timings.sort();
    let median = timings[timings.len() / 2].0;
    println!(
        "{} persists of {COMMAND_BYTES} bytes, {rewrites} rewrites (REWRITE_BYTES_MIN {REWRITE_BYTES_MIN}); median {:.3} ms",
        timings.len(),
        median.as_secs_f64() * 1e3
    );
    for (elapsed, slot, before, after) in timings.iter().rev().take(REPORTED_PERSISTS) {
        println!("  slot {slot}: {:.3} ms (segment {before} -> {after})", elapsed.as_secs_f64() * 1e3);
    }
}
