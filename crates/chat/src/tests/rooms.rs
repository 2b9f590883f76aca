//! Rooms: join, leave, say, broadcast, their limits, history and the
//! merged stream a member receives.

use super::*;
use crate::{validate, HistoryBounds, HistoryPage, Message, RoomSummary, RoomsResult};

/// Bounds small enough to reach each room limit in a few steps.
const ROOMY: Bounds = Bounds {
    rooms_max: 2,
    room_members_max: 2,
    rooms_per_account_max: 2,
    history_messages_max: 3,
    history_bytes_max: 64,
    ..Bounds::LIMITS
};

fn join(name: &str, room: &str) -> Command {
    Command::Join { name: name.to_string(), room: room.to_string() }
}

fn leave(name: &str, room: &str) -> Command {
    Command::Leave { name: name.to_string(), room: room.to_string() }
}

fn say(from: &str, room: &str, text: &str) -> Command {
    Command::Say { from: from.to_string(), room: room.to_string(), text: text.to_string() }
}

fn broadcast(from: &str, text: &str) -> Command {
    Command::Broadcast { from: from.to_string(), text: text.to_string() }
}

/// A room message as member `to` receives it, posted at sequence `seq`.
fn posted(id: u64, from: &str, room: &str, to: &str, seq: u64, text: &str) -> Message {
    Message {
        id,
        from: from.to_string(),
        to: to.to_string(),
        room: Some(room.to_string()),
        at_millis: millis(seq),
        text: text.to_string(),
    }
}

/// Accounts alice, bob and carol under `bounds`; alice and bob in `#x`.
fn three_in_x(bounds: Bounds) -> Harness {
    let mut harness = Harness::with_bounds(bounds);
    for name in ["alice", "bob", "carol"] {
        harness.ok(create(name), Outcome::Created);
    }
    harness.ok(join("alice", "#x"), Outcome::Joined);
    harness.ok(join("bob", "#x"), Outcome::Joined);
    harness
}

/// Ids of what `name`'s subscription delivers after `after`.
fn stream_ids(harness: &Harness, name: &str, after: u64) -> Vec<u64> {
    harness.state.stream(name, after, 100).unwrap().iter().map(|m| m.id).collect()
}

#[test]
fn members_see_one_order_merged_with_direct_messages() {
    let mut harness = three_in_x(Bounds::LIMITS);
    let said = harness.ok(say("alice", "#x", "one"), Outcome::Sent { id: 1 });
    assert_eq!(said.event, Some(StateEvent::Posted { room: "#x".into() }));
    harness.ok(send("carol", "bob", "direct"), Outcome::Sent { id: 2 });
    harness.ok(say("bob", "#x", "two"), Outcome::Sent { id: 3 });
    let bob = harness.state.stream("bob", 0, 100).unwrap();
    assert_eq!(bob[0], posted(1, "alice", "#x", "bob", 6, "one"));
    assert_eq!(bob[2], posted(3, "bob", "#x", "bob", 8, "two"));
    assert_eq!(stream_ids(&harness, "bob", 0), [1, 2, 3]);
    assert_eq!(stream_ids(&harness, "alice", 0), [1, 3]);
    assert_eq!(stream_ids(&harness, "carol", 0), Vec::<u64>::new());
    assert_eq!(stream_ids(&harness, "bob", 1), [2, 3], "resumes after a delivered id");
}

#[test]
fn ack_moves_every_room_read_position() {
    let mut harness = three_in_x(Bounds::LIMITS);
    harness.ok(say("alice", "#x", "one"), Outcome::Sent { id: 1 });
    harness.ok(say("alice", "#x", "two"), Outcome::Sent { id: 2 });
    harness.ok(ack("bob", 1), Outcome::Acked);
    assert_eq!(harness.state.rooms["#x"].members["bob"], 1);
    assert_eq!(stream_ids(&harness, "bob", 0), [2], "an offline member resumes at its read position");
    harness.ok(ack("bob", 99), Outcome::Acked);
    assert_eq!(harness.state.rooms["#x"].members["bob"], 2, "clamped to the last id");
}

#[test]
fn a_late_joiner_sees_only_what_follows() {
    let mut harness = three_in_x(Bounds::LIMITS);
    harness.ok(say("alice", "#x", "before"), Outcome::Sent { id: 1 });
    harness.ok(join("carol", "#x"), Outcome::Joined);
    harness.ok(say("alice", "#x", "after"), Outcome::Sent { id: 2 });
    assert_eq!(stream_ids(&harness, "carol", 0), [2]);
    let page = harness.state.history("carol", "#x", None, 10).unwrap();
    assert_eq!(page.messages.len(), 2, "history shows what was said before joining");
}

#[test]
fn join_and_leave_refuse_what_they_cannot_do() {
    let mut harness = three_in_x(ROOMY);
    let member = |room: &str| (String::from("alice"), room.to_string());
    harness.fails(join("alice", "#x"), ChatError::AlreadyMember { name: member("#x").0, room: member("#x").1 });
    harness.fails(join("carol", "#x"), ChatError::RoomFull { room: "#x".into(), max: 2 });
    harness.fails(leave("carol", "#x"), ChatError::NotMember { name: "carol".into(), room: "#x".into() });
    harness.fails(join("alice", "#all"), ChatError::RoomReserved { room: "#all".into() });
    harness.fails(join("dave", "#y"), ChatError::NoSuchAccount { name: "dave".into() });
    harness.ok(join("alice", "#y"), Outcome::Joined);
    harness.fails(join("alice", "#z"), ChatError::TooManyRooms { name: "alice".into(), max: 2 });
    harness.fails(join("carol", "#z"), ChatError::RoomsFull { max: 2 });
    let invalid = harness.run(join("alice", "x"));
    assert!(matches!(invalid.reply, Err(ChatError::RoomNameInvalid { .. })), "{invalid:?}");
    harness.ok(leave("alice", "#y"), Outcome::Left);
    assert!(!harness.state.rooms.contains_key("#y"), "an empty room is removed");
    harness.ok(join("carol", "#z"), Outcome::Joined);
}

#[test]
fn say_refuses_non_members_and_missing_rooms() {
    let mut harness = three_in_x(Bounds::LIMITS);
    harness.fails(say("carol", "#x", "hi"), ChatError::NotMember { name: "carol".into(), room: "#x".into() });
    harness.fails(say("alice", "#nope", "hi"), ChatError::NoSuchRoom { room: "#nope".into() });
    harness.fails(say("dave", "#x", "hi"), ChatError::SenderUnknown { name: "dave".into() });
    harness.fails(say("alice", "#x", ""), ChatError::TextEmpty);
}

#[test]
fn history_is_bounded_and_a_lagging_member_gets_a_gap_notice() {
    let mut harness = three_in_x(ROOMY);
    for id in 1..=5 {
        harness.ok(say("alice", "#x", "m"), Outcome::Sent { id });
    }
    let history = &harness.state.rooms["#x"].history;
    assert_eq!((history.messages.len(), history.dropped_through), (3, 2));
    let bob = harness.state.stream("bob", 0, 100).unwrap();
    assert!(bob[0].is_gap_notice() && bob[0].id == 2, "{bob:?}");
    assert_eq!(bob.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3, 4, 5]);
    assert_eq!(stream_ids(&harness, "bob", 2), [3, 4, 5], "no notice once past the dropped ids");
    // Bytes bound: a long text pushes older messages out.
    let long = "y".repeat(50);
    harness.ok(say("alice", "#x", &long), Outcome::Sent { id: 6 });
    let history = &harness.state.rooms["#x"].history;
    assert_eq!((history.messages.len(), history.bytes), (2, 61));
}

#[test]
fn history_pages_backwards() {
    let mut harness = three_in_x(Bounds::LIMITS);
    for id in 1..=5 {
        harness.ok(say("alice", "#x", &format!("m{id}")), Outcome::Sent { id });
    }
    let page = harness.state.history("bob", "#x", None, 2).unwrap();
    let ids = |page: &HistoryPage| page.messages.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!((ids(&page), page.more), (vec![4, 5], true));
    let page = harness.state.history("bob", "#x", Some(4), 2).unwrap();
    assert_eq!((ids(&page), page.more), (vec![2, 3], true));
    let page = harness.state.history("bob", "#x", Some(2), 2).unwrap();
    assert_eq!((ids(&page), page.more), (vec![1], false));
    let refused = harness.state.history("carol", "#x", None, 2);
    assert_eq!(refused, Err(ChatError::NotMember { name: "carol".into(), room: "#x".into() }));
}

#[test]
fn broadcast_reaches_every_account_including_later_ones_only_from_then() {
    let mut harness = three_in_x(Bounds::LIMITS);
    let sent = harness.ok(broadcast("carol", "hello all"), Outcome::Sent { id: 1 });
    assert_eq!(sent.event, Some(StateEvent::Posted { room: "#all".into() }));
    for name in ["alice", "bob", "carol"] {
        assert_eq!(harness.state.stream(name, 0, 10).unwrap(), [posted(1, "carol", "#all", name, 6, "hello all")]);
    }
    harness.ok(create("dave"), Outcome::Created);
    assert_eq!(stream_ids(&harness, "dave", 0), Vec::<u64>::new());
    harness.ok(say("alice", "#all", "also a broadcast"), Outcome::Sent { id: 2 });
    assert_eq!(stream_ids(&harness, "dave", 0), [2]);
}

#[test]
fn rooms_lists_member_counts_and_delete_leaves_rooms() {
    let mut harness = three_in_x(Bounds::LIMITS);
    let summary = |name: &str, members| RoomSummary { name: name.to_string(), members };
    let listed = harness.state.rooms(None).unwrap();
    assert_eq!(listed, RoomsResult { rooms: vec![summary("#all", 3), summary("#x", 2)], truncated: false });
    assert_eq!(harness.state.rooms(Some("x")).unwrap().rooms, [summary("#x", 2)]);
    harness.ok(delete("alice"), Outcome::Deleted);
    assert_eq!(harness.state.rooms(Some("x")).unwrap().rooms, [summary("#x", 1)]);
    harness.ok(delete("bob"), Outcome::Deleted);
    assert_eq!(harness.state.rooms(Some("x")).unwrap().rooms, []);
    assert!(ChatState::from_snapshot(&harness.state.to_snapshot()).is_ok());
}

#[test]
fn snapshots_keep_rooms_and_refuse_inconsistent_ones() {
    let mut harness = three_in_x(Bounds::LIMITS);
    harness.ok(say("alice", "#x", "kept"), Outcome::Sent { id: 1 });
    harness.ok(broadcast("bob", "kept too"), Outcome::Sent { id: 2 });
    let state = harness.state.clone();
    assert_eq!(ChatState::from_snapshot(&state.to_snapshot()), Ok(state.clone()));
    let refused = |broken: ChatState| match ChatState::from_snapshot(&broken.to_snapshot()) {
        Err(crate::SnapshotError::Inconsistent { reason }) => reason,
        other => panic!("accepted an inconsistent state: {other:?}"),
    };
    let mut one_sided = state.clone();
    one_sided.rooms.get_mut("#x").unwrap().members.remove("bob");
    assert_eq!(refused(one_sided), "an account lists a room that does not list it as a member");
    let mut unlisted = state.clone();
    unlisted.accounts.get_mut("alice").unwrap().rooms.remove("#x");
    assert_eq!(refused(unlisted), "a room lists a member that does not list the room");
    let mut miscounted = state.clone();
    miscounted.rooms.get_mut("#x").unwrap().history.bytes += 1;
    assert_eq!(refused(miscounted), "a room history's byte count is wrong");
    let mut ahead = state.clone();
    ahead.rooms.get_mut("#x").unwrap().members.insert("alice".into(), 99);
    assert_eq!(refused(ahead), "a room read position is past the last assigned message id");
    let mut reordered = state;
    reordered.broadcasts.dropped_through = 2;
    assert_eq!(refused(reordered), "room message ids are out of order or out of range");
}

#[test]
fn configure_sets_the_history_bounds_and_trims_every_history_at_once() {
    let mut harness = three_in_x(Bounds::LIMITS);
    for i in 0..5 {
        assert!(matches!(harness.run(say("alice", "#x", &format!("m{i}"))).reply, Ok(Outcome::Sent { .. })));
    }
    harness.run(broadcast("bob", "to everyone"));
    let bytes = chorus_limits::ROOM_HISTORY_BYTES_MIN as u32;
    let small = HistoryBounds { messages: 2, bytes };
    harness.ok(Command::Configure { room_history: small }, Outcome::Configured);
    assert_eq!(harness.state.room_history(), small);
    // carol (not in #x) still reads #all; bob, behind in #x, gets a gap notice.
    let delivered = harness.state.stream("bob", 0, 100).unwrap();
    let in_x: Vec<&Message> = delivered.iter().filter(|m| m.room.as_deref() == Some("#x")).collect();
    assert!(in_x[0].is_gap_notice(), "{in_x:?}");
    assert_eq!(in_x.len(), 3, "the notice, then the 2 retained: {in_x:?}");
    harness.run(say("alice", "#x", "m5"));
    let retained = harness.state.history("alice", "#x", None, 64).unwrap();
    assert_eq!(retained.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["m4", "m5"]);
    let snapshot = ChatState::from_snapshot(&harness.state.to_snapshot()).expect("the snapshot checks");
    assert_eq!(snapshot.room_history(), small);
}

#[test]
fn configure_refuses_bounds_outside_the_limits_and_changes_nothing() {
    let mut harness = three_in_x(Bounds::LIMITS);
    let too_small = HistoryBounds { messages: 0, bytes: HistoryBounds::MAX.bytes };
    let before = chat_bytes(&harness.state);
    let applied = harness.run(Command::Configure { room_history: too_small });
    assert!(matches!(applied.reply, Err(ChatError::HistoryBoundsInvalid { .. })), "{applied:?}");
    assert_eq!(chat_bytes(&harness.state), before);
    let too_big = HistoryBounds { messages: HistoryBounds::MAX.messages + 1, bytes: HistoryBounds::MAX.bytes };
    assert!(validate(&Command::Configure { room_history: too_big }).is_err());
}

#[test]
fn a_say_carries_its_senders_read_position_into_every_room() {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    harness.ok(join("alice", "#tea"), Outcome::Joined);
    harness.ok(join("bob", "#tea"), Outcome::Joined);
    harness.ok(say("alice", "#tea", "one"), Outcome::Sent { id: 1 });
    harness.seq += 1;
    let reply = Proposal { read_through: Some(1), ..proposal(CLIENT, harness.seq, say("bob", "#tea", "two")) };
    assert_eq!(harness.apply(&reply).reply, Ok(Outcome::Sent { id: 2 }));
    assert_eq!(harness.state.rooms["#tea"].members["bob"], 1);
    assert_eq!(harness.state.accounts["bob"].acked_through, 1);
    assert_eq!(harness.state.rooms["#tea"].members["alice"], 0);
}
