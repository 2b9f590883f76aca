//! Rooms through `chorus chat --json` against a real 3-replica cluster:
//! members see one order, an offline member catches up on connect, and
//! the room commands answer in their documented shapes.

mod common;

use common::{texts, Cluster};
use serde_json::{json, Value};
use std::time::Duration;

/// The ids of the deliveries posted to `room`.
fn room_ids(deliveries: &[Value], room: &str) -> Vec<u64> {
    let in_room = deliveries.iter().filter(|d| d["room"] == room);
    in_room.map(|d| d["id"].as_u64().expect("an id")).collect()
}

#[test]
fn members_share_one_order_and_an_offline_member_catches_up() {
    let cluster = Cluster::start(3);
    let mut clients = [cluster.client(), cluster.client(), cluster.client()];
    for (client, name) in clients.iter_mut().zip(["alice", "bob", "carol"]) {
        assert_eq!(client.command(&format!("create {name}"))["ok"], true);
        assert_eq!(client.command("join #r"), json!({"command": "join", "ok": true, "room": "#r"}));
    }
    let [a, b, c] = &mut clients;
    assert_eq!(a.command("connect alice")["ok"], true);
    assert_eq!(b.command("connect bob")["ok"], true);
    let said = a.command("say #r one");
    assert_eq!((said["room"].as_str(), said["id"].is_u64()), (Some("#r"), true));
    assert_eq!(b.command("say #r two")["ok"], true);
    assert_eq!(c.command("broadcast hello all")["room"], "#all");
    assert_eq!(a.command("say #r three")["ok"], true);
    let alice = a.wait_deliveries(4, Duration::from_secs(10)).to_vec();
    let bob = b.wait_deliveries(4, Duration::from_secs(10)).to_vec();
    assert_eq!(texts(&alice), ["one", "two", "hello all", "three"]);
    assert_eq!(room_ids(&alice, "#r"), room_ids(&bob, "#r"), "one order for every member");
    assert_eq!(texts(&bob), texts(&alice));
    assert!(c.wait_deliveries(1, Duration::from_millis(300)).is_empty(), "carol has not connected");
    assert_eq!(c.command("connect carol")["ok"], true);
    let carol = c.wait_deliveries(4, Duration::from_secs(10)).to_vec();
    assert_eq!(texts(&carol), texts(&alice), "carol catches up in the same order");
    assert_eq!(room_ids(&carol, "#r"), room_ids(&alice, "#r"));
    let rooms = a.command("rooms");
    let listed = json!([{"name": "#all", "members": 3}, {"name": "#r", "members": 3}]);
    assert_eq!((&rooms["rooms"], &rooms["truncated"]), (&listed, &json!(false)));
    let page = a.command("history #r 2");
    let page_texts: Vec<&str> =
        page["messages"].as_array().expect("messages").iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!((page_texts, &page["more"]), (vec!["two", "three"], &json!(true)));
    let before = page["messages"][0]["id"].as_u64().expect("an id");
    let older = a.command(&format!("history #r 2 {before}"));
    assert_eq!((&older["messages"][0]["text"], &older["more"]), (&json!("one"), &json!(false)));
    assert_eq!(b.command("leave #r")["ok"], true);
    assert_eq!(a.command("rooms ^#r$")["rooms"], json!([{"name": "#r", "members": 2}]));
}

#[test]
fn room_mistakes_get_clear_errors() {
    let cluster = Cluster::start(3);
    let mut a = cluster.client();
    assert!(a.command("join #r")["error"].as_str().expect("error").contains("sign in"));
    assert_eq!(a.command("create alice")["ok"], true);
    let error = |reply: Value| reply["error"].as_str().expect("an error").to_string();
    assert!(error(a.command("join r")).contains("starts with #"));
    assert!(error(a.command("say #nowhere hi")).contains("no such room"));
    assert!(error(a.command("leave #all")).contains("built in"));
    assert!(error(a.command("history #r")).contains("no such room"));
    assert_eq!(a.command("join #r")["ok"], true);
    assert!(error(a.command("join #r")).contains("already a member"));
    let long_text = "y".repeat(chorus_limits::MESSAGE_TEXT_BYTES_MAX + 1);
    assert!(a.command(&format!("say #r {long_text}"))["error"].is_string(), "oversized text refused");
    let long_room = format!("join #{}", "x".repeat(chorus_limits::ROOM_NAME_CHARS_MAX));
    assert!(error(a.command(&long_room)).contains("invalid room name"));
    assert!(a.command("rooms (")["error"].is_string(), "invalid pattern refused");
}
