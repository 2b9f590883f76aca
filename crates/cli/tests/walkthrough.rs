//! The original exercise's walk-through against a real 3-replica cluster.

mod common;

use common::{texts, Cluster};
use std::time::Duration;

#[test]
fn original_walkthrough_on_three_replicas() {
    let cluster = Cluster::start(3);
    let mut a = cluster.client();
    let mut b = cluster.client();
    assert_eq!(a.command("create user2")["ok"], true);
    assert_eq!(b.command("create user3")["ok"], true);
    let listed = a.command("list");
    assert_eq!(listed["names"], serde_json::json!(["user2", "user3"]));
    assert_eq!(a.command("send user3 hello")["ok"], true);
    // B has not connected: nothing is delivered yet.
    assert!(b.wait_deliveries(1, Duration::from_millis(500)).is_empty());
    assert_eq!(b.command("connect user3")["ok"], true);
    assert_eq!(texts(b.wait_deliveries(1, Duration::from_secs(10))), ["hello"]);
    let first = &b.deliveries[0];
    assert_eq!((first["from"].as_str(), first["to"].as_str()), (Some("user2"), Some("user3")));
    assert!(first["at"].as_u64().expect("leader timestamp") > 1_700_000_000_000);
    assert_eq!(a.command("send user3 helloagain")["ok"], true);
    assert_eq!(texts(b.wait_deliveries(2, Duration::from_secs(10))), ["hello", "helloagain"]);
}

#[test]
fn bad_input_gets_clear_errors_and_changes_nothing() {
    let cluster = Cluster::start(3);
    let mut a = cluster.client();
    assert!(a.command("send nobody hi")["error"].as_str().expect("error").contains("sign in"));
    assert_eq!(a.command("create alice")["ok"], true);
    assert!(a.command("create alice")["error"].is_string(), "duplicate name refused");
    assert!(a.command("create bad/name")["error"].is_string(), "invalid name refused");
    assert!(a.command(&format!("create {}", "x".repeat(33)))["error"].is_string(), "long name refused");
    assert!(a.command("send nobody hi")["error"].as_str().expect("error").contains("nobody"));
    let long_text = "y".repeat(chorus_limits::MESSAGE_TEXT_BYTES_MAX + 1);
    assert!(a.command(&format!("send alice {long_text}"))["error"].is_string(), "oversized text refused");
    assert!(a.command("delete ghost")["error"].is_string(), "deleting a missing account is an error");
    assert!(a.command("list (")["error"].is_string(), "invalid pattern refused");
    assert!(a.command("frobnicate")["error"].is_string(), "unknown command refused");
    assert_eq!(a.command("list")["names"], serde_json::json!(["alice"]));
    assert_eq!(a.command("list ^al")["names"], serde_json::json!(["alice"]));
    assert_eq!(a.command("list ice")["names"], serde_json::json!(["alice"]));
    assert_eq!(a.command("list ^ice")["names"], serde_json::json!([]));
    assert_eq!(a.command("delete alice")["ok"], true);
    assert_eq!(a.command("list")["names"], serde_json::json!([]));
}
