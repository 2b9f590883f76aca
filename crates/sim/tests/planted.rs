//! The checkers can fail: each planted bug (debug builds only) is caught
//! within a bounded number of seeds, by the checker meant to catch it.

use chorus_sim::{run_seed, Options, Plant};

/// Seeds tried per planted bug before the test gives up. (Acknowledging
/// before showing is first caught at seed 86 since simulated users switch
/// accounts only once their acknowledgements are done.)
const SEEDS_MAX: u64 = 120;

/// Runs seeds from 1 until one fails; returns the checker that caught it.
fn caught_by(plant: Plant) -> (u64, &'static str) {
    caught_with(Options { plant: Some(plant), ..Options::default() })
}

/// As [`caught_by`], with `options` (which name the plant).
fn caught_with(options: Options) -> (u64, &'static str) {
    let plant = options.plant.expect("a planted bug");
    for seed in 1..=SEEDS_MAX {
        if let Err(failure) = run_seed(seed, options) {
            return (seed, failure.violation.check);
        }
    }
    panic!("{plant:?} was not caught in {SEEDS_MAX} seeds");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn replying_before_persisting_is_caught() {
    let (seed, check) = caught_by(Plant::ReplyBeforePersist);
    assert!(["promises", "agreement", "chosen-stable"].contains(&check), "seed {seed}: caught by {check}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn skipping_value_recovery_is_caught() {
    let (seed, check) = caught_by(Plant::SkipRecovery);
    assert!(["agreement", "chosen-stable", "acked-survive"].contains(&check), "seed {seed}: caught by {check}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn dedup_outside_the_log_is_caught() {
    let (seed, check) = caught_by(Plant::DedupOutsideLog);
    assert!(["exactly-once", "acked-survive"].contains(&check), "seed {seed}: caught by {check}");
}

/// Every restart wipes its disk (when few enough are lost): in the default
/// mix the wipe that exposes this bug (one per run with three replicas,
/// since the wiped disk never records a rebuild) is too rare.
#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn a_wiped_replica_voting_at_once_is_caught() {
    let options = Options { plant: Some(Plant::WipedVotesAtOnce), wipe_percent: Some(100), ..Options::default() };
    let (seed, check) = caught_with(options);
    assert!(["agreement", "chosen-stable", "acked-survive"].contains(&check), "seed {seed}: caught by {check}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn skipping_a_members_room_backlog_is_caught() {
    let (seed, check) = caught_by(Plant::RoomBacklogSkipped);
    assert_eq!(check, "rooms", "seed {seed}");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "bugs are planted only in debug builds")]
fn ignoring_a_carried_read_position_is_caught() {
    let (seed, check) = caught_by(Plant::CarriedReadPositionIgnored);
    // A direct message (`delivery`) or a room's (`rooms`, `#all` included)
    // shown again after a read position covering it was confirmed.
    assert!(check == "delivery" || check == "rooms", "seed {seed}: {check}");
}

#[test]
fn acking_before_showing_is_caught() {
    let (seed, check) = caught_by(Plant::AckBeforeShown);
    assert_eq!(check, "delivery", "seed {seed}");
}

#[test]
fn without_a_plant_the_same_seeds_pass() {
    let wiping = Options { wipe_percent: Some(100), ..Options::default() };
    for seed in 1..=10 {
        assert!(run_seed(seed, Options::default()).is_ok(), "seed {seed}");
        assert!(run_seed(seed, wiping).is_ok(), "seed {seed}, every restart wiping");
    }
}
