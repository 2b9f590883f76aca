//! The snapshot and disk-loss paths are exercised, not silently skipped:
//! over a fixed range of seeds, snapshots are written and the log
//! compacted, fetched from peers and installed, loaded at restarts (also
//! past the log's chosen prefix), replicas crash in the middle of each,
//! disks are wiped and their replicas finish rebuilding, and room
//! members are shown gap notices (runs with small history bounds).

use chorus_sim::{run_seed, Coverage, Options};

/// The seeds swept (with the default options).
const SEEDS: std::ops::Range<u64> = 0..40;

/// Paths that may legitimately stay at zero over the range: a fetch fails
/// only when its peer stays silent for the whole retry budget.
const OPTIONAL: &[&str] = &["fetches failed"];

#[test]
fn every_snapshot_and_wipe_path_is_taken() {
    let mut total = Coverage::default();
    for seed in SEEDS {
        match run_seed(seed, Options::default()) {
            Ok(report) => total += report.coverage,
            Err(failure) => panic!("seed {seed} failed: {}", failure.violation),
        }
    }
    let missing: Vec<&str> = total.missing().into_iter().filter(|name| !OPTIONAL.contains(name)).collect();
    assert!(missing.is_empty(), "seeds {SEEDS:?} never took: {missing:?} ({total})");
}
