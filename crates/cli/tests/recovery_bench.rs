//! Recovery benchmarks for snapshots and compaction (not run by CI):
//!
//! `cargo test --release -p chorus-cli --test recovery_bench -- --ignored --nocapture`
//!
//! Prints, for a 3-replica cluster on this machine: disk bytes per replica
//! as sends accumulate (bounded by compaction), the time for a replica
//! holding 1,000,000 acknowledged messages to restart and catch up, and
//! the peak memory of the sending and receiving replicas during a
//! snapshot transfer, and the time for a replica whose disk was wiped to
//! rebuild and rejoin. `CHORUS_BENCH_MESSAGES` changes the message count.
//! Replicas snapshot every 32 MiB of commands (or 100,000 slots).

mod common;

use chorus_proto::ClusterFile;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Concurrent senders, each with its own recipient (a mailbox holds at
/// most 100,000 messages).
const SENDERS: usize = 64;

fn message_count() -> usize {
    std::env::var("CHORUS_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

/// Sends `count` 100-byte messages; panics unless all are acknowledged.
async fn push(load: &SendLoad, count: usize, round: usize) {
    let acked = load.push(count, round, |_| "x".repeat(100)).await;
    assert_eq!(acked, count, "every send acknowledged");
}

fn row(cluster: &Cluster, id: u64) -> Value {
    cluster.status().into_iter().find(|s| s["id"] == id).expect("replica listed")
}

fn disk_line(cluster: &Cluster) -> String {
    let rows = cluster.status();
    let cell = |s: &Value| {
        let log = s["log_disk_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0;
        let snapshots = s["snapshot_disk_bytes"].as_u64().unwrap_or(0) as f64 / 1_048_576.0;
        format!("r{}: log {log:.1} MiB + snapshots {snapshots:.1} MiB", s["id"])
    };
    rows.iter().map(cell).collect::<Vec<_>>().join(" | ")
}

/// Peak and current resident memory of a process, in MiB (VmHWM, VmRSS).
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or("");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).unwrap_or(0) / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Waits until replica `id` has applied as much as every other replica.
fn wait_caught_up(cluster: &Cluster, id: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = cluster.status();
        let applied = |s: &Value| s["applied"].as_u64();
        let best = rows.iter().filter_map(applied).max();
        let mine = rows.iter().find(|s| s["id"] == id).and_then(applied);
        if mine.is_some() && mine == best {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(cluster.dir.path().join(format!("replica-{id}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let panic_at = lines.iter().position(|l| l.contains("panicked") || l.contains("Error")).unwrap_or(0);
            let excerpt = lines[panic_at..lines.len().min(panic_at + 6)].join("\n");
            panic!("replica {id} did not catch up: {rows:?}\nits log:\n{excerpt}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore]
fn recovery_figures() {
    // A 32 MiB snapshot interval: a replica down for 250,000 sends falls behind the compacted log.
    let cluster = Cluster::start_with(3, &["--snapshot-every-bytes=33554432"]);
    let file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let load = SendLoad { file: file.clone(), senders: SENDERS };
    runtime.block_on(load.create_accounts());
    let count = message_count();
    let quarter = count / 4;
    let started = Instant::now();
    for round in 0..4 {
        runtime.block_on(push(&load, quarter, round));
        std::thread::sleep(Duration::from_millis(1500)); // status refreshes disk figures every second
        println!("after {} sends ({:?}): {}", quarter * (round + 1), started.elapsed(), disk_line(&cluster));
    }

    // Restart of a replica holding every message.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    let restart = Instant::now();
    let mut restarted = cluster.restart_replica(follower);
    wait_caught_up(&cluster, follower, Duration::from_secs(120));
    println!(
        "restart of replica {follower} with {} acknowledged messages: {:?} to serve, caught up",
        4 * quarter,
        restart.elapsed()
    );
    let _ = restarted.kill();
    let _ = restarted.wait();

    // A snapshot transfer: the replica misses enough to fall behind the compacted log.
    let sender_pid = cluster.pid_of(leader);
    let before = memory_mib(sender_pid);
    runtime.block_on(push(&load, quarter, 0));
    let mut restarted = cluster.restart_replica(follower);
    let transfer = Instant::now();
    let (mut sender_peak, mut receiver_peak) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (sender_hwm, _) = memory_mib(sender_pid);
        let (receiver_hwm, _) = memory_mib(restarted.id());
        (sender_peak, receiver_peak) = (sender_peak.max(sender_hwm), receiver_peak.max(receiver_hwm));
        let status = row(&cluster, follower);
        let leader_row = row(&cluster, leader);
        if status["applied"].as_u64().is_some() && status["applied"] == leader_row["applied"] {
            println!(
                "snapshot transfer and install: {:?}; replica {follower} snapshot slot {}",
                transfer.elapsed(),
                status["snapshot_slot"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "no catch-up: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "sender (replica {leader}) peak RSS before {} MiB, during/after {} MiB; receiver peak RSS {} MiB",
        before.0, sender_peak, receiver_peak
    );
    let _ = restarted.kill();
    let _ = restarted.wait();

    // The same replica loses its disk and rebuilds from its peers.
    std::fs::remove_dir_all(&file.replicas[follower as usize].data_dir).expect("wiping the data directory");
    let mut rebuilt = cluster.restart_replica(follower);
    let rejoin = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = row(&cluster, follower);
        let done = status["role"] != "rebuilding" && status["applied"] == row(&cluster, leader)["applied"];
        if status["reachable"] == true && done {
            println!(
                "wiped replica {follower} rebuilt (incarnation {}) and caught up with {} messages in the cluster: {:?}; peak RSS {} MiB",
                status["incarnation"],
                5 * quarter,
                rejoin.elapsed(),
                memory_mib(rebuilt.id()).0
            );
            break;
        }
        assert!(Instant::now() < deadline, "the wiped replica did not rebuild: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = rebuilt.kill();
    let _ = rebuilt.wait();
}
