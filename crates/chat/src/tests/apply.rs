//! Each command, its success and each of its errors.

use chorus_limits::{ACCOUNTS_MAX, MAILBOX_MESSAGES_MAX, MESSAGE_TEXT_BYTES_MAX};

use super::*;
use crate::Message;

/// Bounds small enough to reach fullness in a few steps.
const SMALL: Bounds = Bounds { accounts_max: 2, mailbox_messages_max: 2, sessions_max: 3, ..Bounds::LIMITS };

/// The message the harness produces for a send at sequence number `seq`.
fn message(id: u64, from: &str, to: &str, seq: u64, text: &str) -> Message {
    Message {
        id,
        from: from.to_string(),
        to: to.to_string(),
        room: None,
        at_millis: millis(seq),
        text: text.to_string(),
    }
}

/// A harness with accounts `alice` and `bob`.
fn alice_and_bob() -> Harness {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    harness
}

#[test]
fn new_state_is_empty() {
    let state = ChatState::new();
    assert_eq!(state, ChatState::default());
    assert_eq!(state.accounts_len(), 0);
    assert!(!state.account_exists("alice"));
    assert_eq!(state.sessions.len(), 0);
}

#[test]
fn create_adds_an_account() {
    let mut harness = Harness::new();
    let result = harness.run(create("alice"));
    assert_eq!(result, applied(CLIENT, 1, Ok(Outcome::Created), None));
    assert!(harness.state.account_exists("alice"));
    assert_eq!(harness.state.accounts_len(), 1);
    assert_eq!(harness.state.mailbox("alice", 0, 10), Ok(vec![]));
}

#[test]
fn create_refuses_a_taken_name() {
    let mut harness = alice_and_bob();
    let taken = ChatError::NameTaken { name: "alice".to_string() };
    harness.fails(create("alice"), taken);
}

#[test]
fn create_refuses_an_invalid_name() {
    let mut harness = Harness::new();
    let invalid = ChatError::NameInvalid {
        name: "a b".to_string(),
        reason: "character ' ' is not allowed (use ASCII letters, digits, _, - or .)".to_string(),
    };
    harness.fails(create("a b"), invalid);
    assert_eq!(harness.state.accounts_len(), 0);
}

#[test]
fn create_refuses_past_the_account_limit() {
    let mut harness = Harness::with_bounds(SMALL);
    harness.ok(create("a"), Outcome::Created);
    harness.ok(create("b"), Outcome::Created);
    harness.fails(create("c"), ChatError::AccountsFull);
    harness.ok(delete("a"), Outcome::Deleted);
    harness.ok(create("c"), Outcome::Created);
}

#[test]
fn create_refuses_past_the_real_account_limit() {
    let mut harness = Harness::new();
    for index in 0..ACCOUNTS_MAX {
        harness.ok(create(&format!("u{index}")), Outcome::Created);
    }
    assert_eq!(harness.state.accounts_len(), ACCOUNTS_MAX);
    harness.fails(create("one-more"), ChatError::AccountsFull);
}

#[test]
fn delete_removes_the_account_and_its_queue() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "hi"), Outcome::Sent { id: 1 });
    let result = harness.run(delete("bob"));
    let event = StateEvent::AccountDeleted { name: "bob".to_string() };
    assert_eq!(result, applied(CLIENT, 4, Ok(Outcome::Deleted), Some(event)));
    assert!(!harness.state.account_exists("bob"));
    harness.ok(create("bob"), Outcome::Created);
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(vec![]));
}

#[test]
fn delete_keeps_messages_the_account_sent() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "hi"), Outcome::Sent { id: 1 });
    harness.ok(delete("alice"), Outcome::Deleted);
    let expected = vec![message(1, "alice", "bob", 3, "hi")];
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(expected));
}

#[test]
fn delete_refuses_a_missing_account() {
    let mut harness = alice_and_bob();
    let missing = ChatError::NoSuchAccount { name: "carol".to_string() };
    harness.fails(delete("carol"), missing);
}

#[test]
fn send_queues_a_message_with_the_next_id() {
    let mut harness = alice_and_bob();
    let result = harness.run(send("alice", "bob", "hello"));
    let queued = message(1, "alice", "bob", 3, "hello");
    let event = Some(StateEvent::Queued(queued.clone()));
    assert_eq!(result, applied(CLIENT, 3, Ok(Outcome::Sent { id: 1 }), event));
    let result = harness.run(send("bob", "alice", "hey"));
    let reply = message(2, "bob", "alice", 4, "hey");
    let event = Some(StateEvent::Queued(reply.clone()));
    assert_eq!(result, applied(CLIENT, 4, Ok(Outcome::Sent { id: 2 }), event));
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(vec![queued]));
    assert_eq!(harness.state.mailbox("alice", 0, 10), Ok(vec![reply]));
}

#[test]
fn send_to_yourself_is_allowed() {
    let mut harness = alice_and_bob();
    let result = harness.run(send("alice", "alice", "note"));
    let queued = message(1, "alice", "alice", 3, "note");
    let event = Some(StateEvent::Queued(queued.clone()));
    assert_eq!(result, applied(CLIENT, 3, Ok(Outcome::Sent { id: 1 }), event));
    assert_eq!(harness.state.mailbox("alice", 0, 10), Ok(vec![queued]));
}

#[test]
fn send_refuses_an_unknown_sender() {
    let mut harness = alice_and_bob();
    let unknown = ChatError::SenderUnknown { name: "mallory".to_string() };
    harness.fails(send("mallory", "bob", "hi"), unknown);
}

#[test]
fn send_refuses_an_unknown_recipient() {
    let mut harness = alice_and_bob();
    let missing = ChatError::NoSuchAccount { name: "carol".to_string() };
    harness.fails(send("alice", "carol", "hi"), missing);
}

#[test]
fn send_refuses_empty_and_oversized_text() {
    let mut harness = alice_and_bob();
    harness.fails(send("alice", "bob", ""), ChatError::TextEmpty);
    let long = "x".repeat(MESSAGE_TEXT_BYTES_MAX + 1);
    let too_long = ChatError::TextTooLong { bytes: MESSAGE_TEXT_BYTES_MAX + 1, max: MESSAGE_TEXT_BYTES_MAX };
    harness.fails(send("alice", "bob", &long), too_long);
    let longest = "x".repeat(MESSAGE_TEXT_BYTES_MAX);
    harness.ok(send("alice", "bob", &longest), Outcome::Sent { id: 1 });
}

#[test]
fn send_refuses_when_the_mailbox_is_full() {
    let mut harness = Harness::with_bounds(SMALL);
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    harness.ok(send("alice", "bob", "2"), Outcome::Sent { id: 2 });
    let full = ChatError::MailboxFull { name: "bob".to_string() };
    harness.fails(send("alice", "bob", "3"), full);
    harness.ok(send("bob", "alice", "to alice"), Outcome::Sent { id: 3 });
    harness.ok(ack("bob", 1), Outcome::Acked);
    harness.ok(send("alice", "bob", "3"), Outcome::Sent { id: 4 });
}

#[test]
fn send_refuses_when_the_mailbox_is_full_at_the_real_limit() {
    let mut harness = alice_and_bob();
    for id in 1..=MAILBOX_MESSAGES_MAX as u64 {
        harness.ok(send("alice", "bob", "m"), Outcome::Sent { id });
    }
    let full = ChatError::MailboxFull { name: "bob".to_string() };
    harness.fails(send("alice", "bob", "m"), full);
}

#[test]
fn ack_drops_messages_through_the_cursor() {
    let mut harness = alice_and_bob();
    for id in 1..=3 {
        harness.ok(send("alice", "bob", "m"), Outcome::Sent { id });
    }
    let result = harness.run(ack("bob", 2));
    assert_eq!(result, applied(CLIENT, 6, Ok(Outcome::Acked), None));
    let rest = vec![message(3, "alice", "bob", 5, "m")];
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(rest));
}

#[test]
fn ack_cursor_never_moves_back() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    harness.ok(send("alice", "bob", "2"), Outcome::Sent { id: 2 });
    harness.ok(ack("bob", 2), Outcome::Acked);
    let before = harness.state.clone();
    harness.ok(ack("bob", 1), Outcome::Acked);
    harness.ok(ack("bob", 2), Outcome::Acked);
    assert_eq!(harness.state.accounts, before.accounts);
    assert_eq!(harness.state.accounts["bob"].acked_through, 2);
}

#[test]
fn ack_ahead_of_the_last_id_does_not_hide_later_messages() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    harness.ok(ack("bob", u64::MAX), Outcome::Acked);
    assert_eq!(harness.state.accounts["bob"].acked_through, 1);
    harness.ok(send("alice", "bob", "2"), Outcome::Sent { id: 2 });
    let later = vec![message(2, "alice", "bob", 5, "2")];
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(later));
}

#[test]
fn ack_refuses_a_missing_or_invalid_account() {
    let mut harness = alice_and_bob();
    let missing = ChatError::NoSuchAccount { name: "carol".to_string() };
    harness.fails(ack("carol", 1), missing);
    let invalid = ChatError::NameInvalid { name: String::new(), reason: "a name must not be empty".to_string() };
    harness.fails(ack("", 1), invalid);
}

#[test]
fn ack_needs_no_session_and_ignores_sequence_numbers() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    let stranger = 9_999;
    let result = harness.apply(&proposal(stranger, 0, ack("bob", 1)));
    assert_eq!(result, applied(stranger, 0, Ok(Outcome::Acked), None));
    let again = harness.apply(&proposal(stranger, 0, ack("bob", 1)));
    assert_eq!(again, applied(stranger, 0, Ok(Outcome::Acked), None));
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(vec![]));
    assert!(harness.state.sessions.get(stranger).is_none());
}

#[test]
fn mailbox_reads_after_a_cursor_and_up_to_a_count() {
    let mut harness = alice_and_bob();
    for id in 1..=4 {
        harness.ok(send("alice", "bob", &format!("m{id}")), Outcome::Sent { id });
    }
    harness.ok(ack("bob", 1), Outcome::Acked);
    let m = |id: u64| message(id, "alice", "bob", id + 2, &format!("m{id}"));
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(vec![m(2), m(3), m(4)]));
    assert_eq!(harness.state.mailbox("bob", 2, 10), Ok(vec![m(3), m(4)]));
    assert_eq!(harness.state.mailbox("bob", 0, 2), Ok(vec![m(2), m(3)]));
    assert_eq!(harness.state.mailbox("bob", 4, 10), Ok(vec![]));
    assert_eq!(harness.state.mailbox("bob", 0, 0), Ok(vec![]));
}

#[test]
fn mailbox_of_a_missing_account_is_an_error() {
    let harness = alice_and_bob();
    let missing = ChatError::NoSuchAccount { name: "carol".to_string() };
    assert_eq!(harness.state.mailbox("carol", 0, 10), Err(missing));
}

/// Proposes `command` carrying the read position `through`.
fn carrying(harness: &mut Harness, command: Command, through: u64) -> Applied {
    harness.seq += 1;
    let proposal = Proposal { read_through: Some(through), ..proposal(CLIENT, harness.seq, command) };
    harness.apply(&proposal)
}

#[test]
fn a_send_carries_its_senders_read_position() {
    let mut harness = alice_and_bob();
    for id in 1..=3 {
        harness.ok(send("alice", "bob", "m"), Outcome::Sent { id });
    }
    let sent = carrying(&mut harness, send("bob", "alice", "reply"), 2);
    let event = StateEvent::Queued(message(4, "bob", "alice", 6, "reply"));
    assert_eq!(sent, applied(CLIENT, 6, Ok(Outcome::Sent { id: 4 }), Some(event)));
    assert_eq!(harness.state.accounts["bob"].acked_through, 2);
    let rest = vec![message(3, "alice", "bob", 5, "m")];
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(rest));
    assert_eq!(harness.state.accounts["alice"].acked_through, 0, "only the sender's position moves");
}

#[test]
fn a_carried_read_position_applies_even_when_the_post_fails() {
    let mut harness = Harness::with_bounds(SMALL);
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    harness.ok(send("bob", "alice", "1"), Outcome::Sent { id: 2 });
    harness.ok(send("bob", "alice", "2"), Outcome::Sent { id: 3 });
    // alice's mailbox is full, so bob's post fails; his position moves anyway.
    let full = ChatError::MailboxFull { name: "alice".to_string() };
    let failed = carrying(&mut harness, send("bob", "alice", "3"), 1);
    assert_eq!(failed, applied(CLIENT, 6, Err(full), None));
    assert_eq!(harness.state.accounts["bob"].acked_through, 1);
    assert_eq!(harness.state.mailbox("bob", 0, 10), Ok(vec![]));
    // A retry of the same post (its reply cached) is harmless: acks are idempotent.
    harness.seq -= 1;
    let _ = carrying(&mut harness, send("bob", "alice", "3"), 1);
    assert_eq!(harness.state.accounts["bob"].acked_through, 1);
}

#[test]
fn a_read_position_on_anything_but_a_post_is_ignored() {
    let mut harness = alice_and_bob();
    harness.ok(send("alice", "bob", "1"), Outcome::Sent { id: 1 });
    let before = chat_bytes(&harness.state);
    let deleted = carrying(&mut harness, delete("alice"), 1);
    assert_eq!(deleted.reply, Ok(Outcome::Deleted));
    assert_eq!(harness.state.accounts["bob"].acked_through, 0);
    assert_ne!(chat_bytes(&harness.state), before, "the delete itself ran");
    // An unknown sender: the post fails and nothing else changes.
    let before = chat_bytes(&harness.state);
    let unknown = carrying(&mut harness, send("carol", "bob", "hi"), 1);
    assert_eq!(unknown.reply, Err(ChatError::SenderUnknown { name: "carol".to_string() }));
    assert_eq!(chat_bytes(&harness.state), before);
}
