//! What a password costs a replica: wall time per argon2id hash and per
//! check, one at a time and with every core busy, at the default cost and
//! at the cheap cost the chaos harness uses.
//!
//! `cargo run --release -p chorus-server --example password_cost`

use chorus_server::passwords::{self, HashCost};
use std::time::Instant;

const ROUNDS: u32 = 20;

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for memory_kib in [chorus_limits::PASSWORD_HASH_MEMORY_KIB_DEFAULT, 256] {
        let cost = HashCost { memory_kib };
        let started = Instant::now();
        let mut hash = String::new();
        for round in 0..ROUNDS {
            hash = passwords::hash("correct horse battery", cost, [round as u8; 16]).expect("hashes");
        }
        let hash_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(ROUNDS);
        let started = Instant::now();
        for _ in 0..ROUNDS {
            assert!(passwords::verify("correct horse battery", &hash));
        }
        let verify_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(ROUNDS);
        let parallel = checks_per_second_on(cores, &hash);
        println!(
            "{{\"memory_kib\":{memory_kib},\"hash_ms\":{hash_ms:.2},\"verify_ms\":{verify_ms:.2},\
             \"sign_ins_per_s_all_cores\":{parallel:.0},\"cores\":{cores}}}"
        );
    }
}

/// Checks per second with `threads` threads checking at once.
fn checks_per_second_on(threads: usize, hash: &str) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..ROUNDS {
                    assert!(passwords::verify("correct horse battery", hash));
                }
            });
        }
    });
    (threads as f64 * f64::from(ROUNDS)) / started.elapsed().as_secs_f64()
}
