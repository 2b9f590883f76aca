//! kill -9 of the leader during a stream of sends, and of every replica at
//! once: nothing acknowledged is lost or delivered twice.

mod common;

use common::{texts, ChatClient, Cluster};
use std::time::Duration;

const SENDS: usize = 120;

/// A 3-replica cluster, a sender signed in as alice and a receiver connected as bob.
fn alice_and_connected_bob() -> (Cluster, ChatClient, ChatClient) {
    let cluster = Cluster::start(3);
    let mut sender = cluster.client();
    let mut receiver = cluster.client();
    assert_eq!(sender.command("create alice")["ok"], true);
    assert_eq!(receiver.command("create bob")["ok"], true);
    assert_eq!(receiver.command("connect bob")["ok"], true);
    (cluster, sender, receiver)
}

#[test]
fn leader_kill_during_sends_loses_and_duplicates_nothing() {
    let (cluster, mut sender, mut receiver) = alice_and_connected_bob();
    let mut acknowledged = Vec::new();
    let mut unknown = Vec::new();
    let mut killed = None;
    for i in 0..SENDS {
        if i == SENDS / 3 {
            let leader = cluster.wait_for_leader(Duration::from_secs(5));
            cluster.kill9(leader);
            killed = Some(leader);
        }
        let text = format!("m{i:04}");
        let reply = sender.command(&format!("send bob {text}"));
        if reply["ok"] == true {
            acknowledged.push(text);
        } else {
            unknown.push(text);
        }
    }
    assert!(acknowledged.len() >= SENDS * 9 / 10, "most sends succeed across a failover: {unknown:?}");
    let killed = killed.expect("the leader was killed");
    let new_leader = cluster.wait_for_leader(Duration::from_secs(5));
    assert_ne!(new_leader, killed, "a different replica leads after the kill");
    let status = cluster.status();
    let down: Vec<&serde_json::Value> = status.iter().filter(|s| s["reachable"] == false).collect();
    assert_eq!(down.len(), 1, "exactly the killed replica is down: {status:?}");
    assert_eq!(down[0]["id"], killed);
    let deliveries = receiver.wait_deliveries(acknowledged.len() + unknown.len(), Duration::from_secs(30)).to_vec();
    let delivered = texts(&deliveries);
    // In order, no repeats, nothing that was not sent, everything acknowledged.
    let mut sorted = delivered.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, delivered, "deliveries are in send order with no repeats");
    for text in &acknowledged {
        assert!(delivered.contains(text), "acknowledged {text} was not delivered");
    }
    for text in &delivered {
        assert!(acknowledged.contains(text) || unknown.contains(text), "{text} was never sent");
    }
    let ids: Vec<u64> = deliveries.iter().map(|d| d["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "message ids increase");
}

#[test]
fn killing_every_replica_at_once_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(3);
    let mut sender = cluster.client();
    assert_eq!(sender.command("create alice")["ok"], true);
    assert_eq!(sender.command("create bob")["ok"], true);
    assert_eq!(sender.command("create carol")["ok"], true);
    for i in 0..40 {
        assert_eq!(sender.command(&format!("send bob q{i:02}"))["ok"], true);
    }
    drop(sender);
    cluster.kill9_everything();
    cluster.up();
    let mut receiver = cluster.client();
    let listed = receiver.command("list");
    assert_eq!(listed["names"], serde_json::json!(["alice", "bob", "carol"]));
    assert_eq!(receiver.command("connect bob")["ok"], true);
    let expected: Vec<String> = (0..40).map(|i| format!("q{i:02}")).collect();
    assert_eq!(texts(receiver.wait_deliveries(40, Duration::from_secs(20))), expected);
}

#[test]
fn recipient_on_a_killed_replica_keeps_receiving_after_reconnecting() {
    let (cluster, mut sender, mut receiver) = alice_and_connected_bob();
    assert_eq!(sender.command("send bob before")["ok"], true);
    assert_eq!(texts(receiver.wait_deliveries(1, Duration::from_secs(10))), ["before"]);
    // The receiver's subscription lives on the leader: kill it.
    let leader = cluster.wait_for_leader(Duration::from_secs(5));
    cluster.kill9(leader);
    assert_eq!(sender.command("send bob after")["ok"], true);
    assert_eq!(texts(receiver.wait_deliveries(2, Duration::from_secs(20))), ["before", "after"]);
}
