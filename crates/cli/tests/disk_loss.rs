//! A replica whose data directory is wiped comes back empty: it must
//! rebuild from its peers before it votes, the cluster keeps serving
//! meanwhile, and once rebuilt it holds every message and counts in a
//! quorum again. With too few peers up to rebuild safely it stays out,
//! and no leader can form with it.

mod common;

use chorus_client::fetch_digest;
use chorus_proto::ClusterFile;
use common::*;
use serde_json::Value;
use std::process::Child;
use std::time::{Duration, Instant};

const SENDERS: usize = 8;

struct Test {
    cluster: Cluster,
    file: ClusterFile,
    runtime: tokio::runtime::Runtime,
    load: SendLoad,
    /// Replicas this test restarted itself (not children of `chorus up`).
    restarted: Vec<(u64, Child)>,
}

impl Test {
    fn start() -> Test {
        let cluster = Cluster::start_with(3, &["--snapshot-every-slots=200"]);
        let file = ClusterFile::load(&cluster.cluster_file()).expect("cluster file");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let load = SendLoad { file: file.clone(), senders: SENDERS };
        runtime.block_on(load.create_accounts());
        Test { cluster, file, runtime, load, restarted: Vec::new() }
    }

    /// Sends `count` messages; asserts every one was acknowledged.
    fn push_all(&self, count: usize, what: &str) {
        let acked = self.runtime.block_on(self.load.push(count, 0, |i| format!("message {i}")));
        assert_eq!(acked, count, "{what}: every send is acknowledged");
    }

    /// SIGKILL, whether `chorus up` or this test started the replica.
    fn kill(&mut self, id: u64) {
        if let Some(index) = self.restarted.iter().position(|(r, _)| *r == id) {
            let (_, mut child) = self.restarted.swap_remove(index);
            let _ = child.kill();
            let _ = child.wait();
        } else {
            self.cluster.kill9(id);
        }
    }

    /// kill -9, then the data directory is deleted: the disk is lost.
    fn kill_and_wipe(&mut self, id: u64) {
        self.kill(id);
        let dir = &self.file.replicas[id as usize].data_dir;
        std::fs::remove_dir_all(dir).expect("wiping the data directory");
    }

    fn restart(&mut self, id: u64) {
        let child = self.cluster.restart_replica(id);
        self.restarted.push((id, child));
    }

    fn row(&self, id: u64) -> Value {
        self.cluster.status().into_iter().find(|s| s["id"] == id).expect("replica listed")
    }

    /// Waits until replica `id` answers and no longer reports rebuilding.
    fn wait_rebuilt(&self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let row = self.row(id);
            if row["reachable"] == true && row["role"] != "rebuilding" {
                return row;
            }
            assert!(Instant::now() < deadline, "replica {id} did not finish rebuilding: {row}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the live replicas report the same applied slot, then
    /// asserts their state digests are equal.
    fn assert_converged(&self, live: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.cluster.status();
            let applied: Vec<Option<u64>> = live
                .iter()
                .map(|id| status.iter().find(|s| s["id"] == *id).and_then(|s| s["applied"].as_u64()))
                .collect();
            if applied.iter().all(|a| a.is_some() && *a == applied[0]) {
                break;
            }
            assert!(Instant::now() < deadline, "replicas did not converge: applied {applied:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        let digests: Vec<_> = self.runtime.block_on(async {
            let mut digests = Vec::new();
            let endpoints = self.load.endpoints();
            for id in live {
                digests.push(fetch_digest(&endpoints, *id as u8, Duration::from_secs(10)).await.expect("digest"));
            }
            digests
        });
        assert!(digests.windows(2).all(|pair| pair[0] == pair[1]), "replicas differ: {digests:?}");
    }

    fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.cluster.dir.path().join(format!("replica-{id}.log"))).unwrap_or_default()
    }
}

/// The ballot round a status row reports ("round.replica"), 0 if none.
fn round_of(row: &Value) -> u64 {
    row["ballot"].as_str().and_then(|b| b.split('.').next()).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// The highest ballot round among the reachable replicas.
fn highest_round(status: &[Value]) -> u64 {
    status.iter().map(round_of).max().unwrap_or(0)
}

/// A replica that lost its disk once rebuilt under a new incarnation: 1,
/// or 2 when a peer had already heard of incarnation 1 from the other
/// peer's messages before the request for it arrived (it cannot tell that
/// request from one of an earlier life, so it refuses, and the replica
/// asks again one higher: docs/ARCHITECTURE.md, "Disk loss").
fn assert_rebuilt_once(row: &Value) {
    let incarnation = row["incarnation"].as_u64().expect("an incarnation");
    assert!((1..=2).contains(&incarnation), "one rebuild is incarnation 1 or 2: {row}");
}

impl Drop for Test {
    fn drop(&mut self) {
        for (_, child) in &mut self.restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_wiped_replica_rebuilds_before_voting_keeps_every_message_and_counts_again() {
    let mut test = Test::start();
    test.push_all(3_000, "before the wipe");

    // The leader loses its disk: it held the highest promise and the most
    // accepted values.
    let wiped = test.cluster.wait_for_leader(Duration::from_secs(10));
    test.kill_and_wipe(wiped);
    test.push_all(1_000, "with the wiped replica down");
    test.restart(wiped);
    test.push_all(1_000, "while the wiped replica rebuilds");
    let row = test.wait_rebuilt(wiped, Duration::from_secs(60));
    assert_rebuilt_once(&row);
    let log = test.log_of(wiped);
    assert!(log.contains("rebuilding from the peers before voting"), "started as rebuilding:\n{log}");
    assert!(log.contains("finished rebuilding after a disk loss"), "finished rebuilding:\n{log}");
    test.assert_converged(&[0, 1, 2]);

    // It counts in a quorum again: with another replica killed, the
    // rebuilt one and the last one serve.
    let other = (wiped + 1) % 3;
    test.kill(other);
    test.push_all(500, "with the rebuilt replica in the quorum");
    let live: Vec<u64> = (0..3).filter(|id| *id != other).collect();
    test.assert_converged(&live);
    test.restart(other);
    test.assert_converged(&[0, 1, 2]);
}

#[test]
fn a_wiped_replica_stays_out_until_enough_peers_can_vouch_for_it() {
    let mut test = Test::start();
    test.push_all(1_000, "before the wipe");
    let wiped = test.cluster.wait_for_leader(Duration::from_secs(10));
    let down = (wiped + 1) % 3;
    // `down` first: the leader keeps its majority with the third replica
    // until it is wiped, so no election happens between the two kills.
    test.kill(down);
    let ballot_before = highest_round(&test.cluster.status());
    test.kill_and_wipe(wiped);
    test.restart(wiped);
    // Only the third replica still holds data. Rebuilding needs both other
    // replicas of three, so no leader may form: a blank replica voting with
    // the third could lose what `down` and the old `wiped` chose together.
    // (A leader elected before the wipe may still call itself leader until
    // it notices it lost its majority; an election after it would have a
    // higher ballot.)
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        let status = test.cluster.status();
        let elected = status.iter().any(|s| s["role"] == "leader" && round_of(s) > ballot_before);
        assert!(!elected, "a leader was elected with a blank replica (rounds before: {ballot_before}): {status:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(test.row(wiped)["role"], "rebuilding");

    test.restart(down);
    let row = test.wait_rebuilt(wiped, Duration::from_secs(60));
    assert_rebuilt_once(&row);
    test.push_all(500, "after the rebuild");
    test.assert_converged(&[0, 1, 2]);
}

/// A store that fails its checksums is never served from: the replica
/// moves it aside and rebuilds from its peers, as after a disk loss.
#[test]
fn a_corrupt_store_is_set_aside_and_rebuilt_from_the_peers() {
    const CANARY: &str = "chorus-canary-record-0123456789";
    let mut test = Test::start();
    test.push_all(500, "before the canaries");
    let acked = test.runtime.block_on(test.load.push(64, 0, |_| CANARY.to_string()));
    assert_eq!(acked, 64);
    // Idle a moment, so the follower damaged below holds the canaries too
    // (a majority acknowledged them, perhaps without it).
    std::thread::sleep(Duration::from_secs(1));
    let leader = test.cluster.wait_for_leader(Duration::from_secs(10));
    let damaged = (leader + 1) % 3;
    test.kill(damaged);
    let data_dir = &test.file.replicas[damaged as usize].data_dir;
    let path = chorus_store::WalStore::segment_files(data_dir).expect("listing the log").pop().expect("a segment");
    let mut bytes = std::fs::read(&path).expect("the store file");
    let mut flipped = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(CANARY.len()).position(|window| window == CANARY.as_bytes()) {
        bytes[at + offset + 3] ^= 0x01;
        at += offset + CANARY.len();
        flipped += 1;
    }
    assert!(flipped > 0, "no canary in the store file");
    std::fs::write(&path, &bytes).expect("writing the damaged file");

    test.restart(damaged);
    test.push_all(500, "while the damaged replica rebuilds");
    let row = test.wait_rebuilt(damaged, Duration::from_secs(60));
    let log = test.log_of(damaged);
    assert!(log.contains("local data is damaged"), "damage detected:\n{log}");
    assert_rebuilt_once(&row);
    let aside = path.with_extension("log.corrupt");
    assert!(aside.exists(), "the damaged segment is kept for inspection as {}", aside.display());
    test.assert_converged(&[0, 1, 2]);
}
