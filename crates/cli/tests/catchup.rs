//! A replica that was down while the cluster moved far ahead (past its
//! compacted log) catches up by fetching a snapshot, while the other two
//! keep serving; afterwards every replica holds the same state.

mod common;

use chorus_client::fetch_digest;
use chorus_proto::ClusterFile;
use common::*;
use std::time::{Duration, Instant};

/// Concurrent senders (each its own session and account).
const SENDERS: usize = 16;

/// Messages pushed while the replica is down: 100,000 unless
/// `CHORUS_CATCHUP_MESSAGES` says otherwise.
fn messages_while_down() -> usize {
    std::env::var("CHORUS_CATCHUP_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

#[test]
fn a_replica_down_during_many_sends_catches_up_by_snapshot_while_the_others_serve() {
    let cluster = Cluster::start_with(3, &["--snapshot-every-slots=200"]);
    let file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let load = SendLoad { file: file.clone(), senders: SENDERS };
    runtime.block_on(load.create_accounts());
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let down = (leader + 1) % 3;
    cluster.kill9(down);

    let count = messages_while_down();
    let started = Instant::now();
    let acked = runtime.block_on(load.push(count, 0, |i| format!("while-down {i}")));
    assert_eq!(acked, count, "two of three replicas serve every send");
    eprintln!("{count} sends with one replica down: {:?}", started.elapsed());
    let leader_status = cluster.status().into_iter().find(|s| s["role"] == "leader").expect("a leader");
    let compacted = leader_status["compacted_through"].as_u64().expect("compacted_through");
    assert!(compacted > 0, "the leader compacted its log: {leader_status}");

    let mut restarted = cluster.restart_replica(down);
    let caught_up_at = Instant::now();
    let during = runtime.block_on(load.push(2_000, 0, |i| format!("during-catch-up {i}")));
    assert_eq!(during, 2_000, "the cluster keeps serving while the replica catches up");
    let total_slots = wait_for_equal_applied(&cluster, Duration::from_secs(120));
    eprintln!("replica {down} caught up to slot {total_slots} in {:?}", caught_up_at.elapsed());
    let row = cluster.status().into_iter().find(|s| s["id"] == down).expect("restarted replica listed");
    assert!(row["snapshot_slot"].as_u64().unwrap_or(0) >= compacted, "it installed a snapshot: {row}");

    let digests: Vec<_> = runtime.block_on(async {
        let mut digests = Vec::new();
        let endpoints = load.endpoints();
        for replica in &file.replicas {
            digests.push(fetch_digest(&endpoints, replica.id, Duration::from_secs(10)).await.expect("digest"));
        }
        digests
    });
    assert!(digests.windows(2).all(|pair| pair[0] == pair[1]), "replicas differ: {digests:?}");
    let _ = restarted.kill();
    let _ = restarted.wait();
}

/// Waits until every replica reports the same applied slot (the cluster is
/// idle by then); returns it.
fn wait_for_equal_applied(cluster: &Cluster, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let applied: Vec<Option<u64>> = cluster.status().iter().map(|s| s["applied"].as_u64()).collect();
        if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
            return applied[0].unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "replicas did not converge: applied {applied:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
