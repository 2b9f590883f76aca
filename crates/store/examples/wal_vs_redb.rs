//! Times `persist` of one small entry at a time, the write-ahead log against
//! redb, in the same run.
//!
//! `cargo run --release -p chorus-store --example wal_vs_redb -- [both|redb|wal] [persists] [dir]`
//!
//! Each store gets a fresh directory under `dir` (default: the system's
//! temporary directory); use a real disk, not tmpfs, or fsync costs nothing.

use std::path::Path;
use std::time::Instant;

use chorus_paxos::{Ballot, Entry, Value, WriteBatch};
use chorus_store::{LogStore, RedbStore, StoreError, WalStore};

const COMMAND_BYTES: usize = 200;

fn main() -> Result<(), StoreError> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let which = arguments.first().map(String::as_str).unwrap_or("both");
    let persists: u64 = arguments.get(1).and_then(|text| text.parse().ok()).unwrap_or(2_000);
    let parent = arguments.get(2).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(|error| StoreError::Io(error.to_string()))?;
    let root = tempfile::tempdir_in(&parent).map_err(|error| StoreError::Io(error.to_string()))?;
    if which == "both" || which == "redb" {
        let dir = root.path().join("redb");
        report("redb", persists, time_persists(RedbStore::open_founding(&dir, 0)?, persists)?, &dir);
    }
    if which == "both" || which == "wal" {
        let dir = root.path().join("wal");
        report("wal", persists, time_persists(WalStore::open_founding(&dir, 0)?, persists)?, &dir);
    }
    Ok(())
}

/// Seconds taken by `persists` calls of one entry each.
fn time_persists(mut store: impl LogStore, persists: u64) -> Result<f64, StoreError> {
    let started = Instant::now();
    for slot in 1..=persists {
        let entry = Entry {
            ballot: Ballot::new(1, 0),
            value: Value::Batch(vec![vec![(slot % 251) as u8; COMMAND_BYTES]]),
            chosen: false,
        };
        let batch =
            WriteBatch { id: slot, entries: vec![(slot, entry)], chosen_through: Some(slot - 1), ..Default::default() };
        store.persist(&[batch])?;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(store.load()?.entries.len() as u64, persists, "every entry reads back");
    Ok(seconds)
}

fn report(name: &str, persists: u64, seconds: f64, dir: &Path) {
    let bytes: u64 = std::fs::read_dir(dir)
        .map(|items| items.filter_map(|item| item.ok()?.metadata().ok()).map(|metadata| metadata.len()).sum())
        .unwrap_or(0);
    println!(
        "{name}: {persists} persists in {seconds:.3} s, {:.1} us per persist, {bytes} bytes on disk",
        seconds * 1e6 / persists as f64
    );
}
