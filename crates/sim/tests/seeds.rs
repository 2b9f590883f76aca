//! Fixed seeds: every seed that once failed (kept as a regression case)
//! and a small contiguous range. Each failure prints the replay command.

use chorus_sim::{run_seed, Options};

/// Seeds that exposed a bug, with what it was.
const REGRESSIONS: &[(u64, &str)] = &[
    (12, "client never reconnected to acknowledge shown messages while idle"),
    (14, "client never reconnected to acknowledge shown messages while idle"),
    (33, "an operation stayed 'in flight' on a connection dropped by a resubscription redirect"),
    (52, "checker attributed a delivery to a later resubscription"),
    (220, "checker counted a replayed (cached) send as a new message"),
    (235, "checker compared slots, not positions within a slot"),
    (
        128_614_296_785_235,
        "a resubscription's read finished after the connection signed in as another account, which left it \
         subscribed to the old one; its messages went past the client and an acknowledgement covered them",
    ),
    (
        259_961_852_385_643,
        "a client switched accounts with shown messages unacknowledged; the acknowledgement was refused, and \
         its own filter skipped them when it came back, so the mailbox never drained",
    ),
    (
        777_001_090,
        "a failed sign-in as another account left the connection subscribed to the old one while the client's \
         filter skipped its messages; when the client subscribed to it again, a message of that old stream \
         moved the filter past the skipped ones (a broadcast never shown)",
    ),
];

fn check(seed: u64) {
    if let Err(failure) = run_seed(seed, Options::default()) {
        panic!(
            "seed {seed} failed at t={}: {}\nreplay: cargo run -p chorus-sim -- --seed {seed}\n{}",
            failure.tick, failure.violation, failure.trace
        );
    }
}

#[test]
fn regression_seeds_pass() {
    for (seed, _why) in REGRESSIONS {
        check(*seed);
    }
}

#[test]
fn first_forty_seeds_pass() {
    for seed in 0..40 {
        check(seed);
    }
}

#[test]
fn a_seed_replays_exactly() {
    let first = run_seed(7, Options::default()).expect("seed 7 passes");
    let second = run_seed(7, Options::default()).expect("seed 7 passes");
    assert_eq!(first, second, "one seed, one run");
}
