//! Exactly-once: registration, cached replies, stale and unknown sessions,
//! and least-recently-used eviction.

use chorus_limits::CLIENT_SESSIONS_MAX;

use super::*;

/// Bounds with room for three sessions.
const THREE_SESSIONS: Bounds = Bounds { sessions_max: 3, ..Bounds::LIMITS };

#[test]
fn commands_without_a_session_are_refused_and_change_nothing() {
    let mut state = ChatState::new();
    for command in [create("alice"), delete("alice"), send("a", "b", "hi")] {
        let before = state.to_snapshot();
        let result = state.apply(&proposal(CLIENT, 1, command));
        assert_eq!(result, applied(CLIENT, 1, Err(ChatError::SessionUnknown), None));
        assert_eq!(chat_bytes(&state), chat_bytes(&ChatState::from_snapshot(&before).unwrap()));
        assert_eq!(state.sessions.len(), 0);
    }
}

#[test]
fn a_retried_send_returns_the_cached_reply_and_sends_once() {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    let first = harness.run(send("alice", "alice", "once"));
    let before = chat_bytes(&harness.state);
    let retry = harness.apply(&proposal(CLIENT, 2, send("alice", "alice", "once")));
    assert_eq!(retry, applied(CLIENT, 2, first.reply, None));
    assert_eq!(chat_bytes(&harness.state), before);
    assert_eq!(harness.state.mailbox("alice", 0, 10).unwrap().len(), 1);
}

#[test]
fn a_retry_returns_the_cached_error_even_if_it_would_now_succeed() {
    let mut harness = Harness::new();
    let missing = ChatError::NoSuchAccount { name: "alice".to_string() };
    harness.fails(delete("alice"), missing.clone());
    let other = 7;
    harness.apply(&proposal(other, 0, Command::RegisterClient));
    harness.apply(&proposal(other, 1, create("alice")));
    let retry = harness.apply(&proposal(CLIENT, 1, delete("alice")));
    assert_eq!(retry, applied(CLIENT, 1, Err(missing), None));
    assert!(harness.state.account_exists("alice"));
}

#[test]
fn a_stale_sequence_number_is_refused_and_keeps_the_cached_reply() {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    let before = chat_bytes(&harness.state);
    let stale = harness.apply(&proposal(CLIENT, 1, create("carol")));
    let error = ChatError::StaleSequence { seq: 1, last: 2 };
    assert_eq!(stale, applied(CLIENT, 1, Err(error), None));
    assert_eq!(chat_bytes(&harness.state), before);
    let retry = harness.apply(&proposal(CLIENT, 2, create("bob")));
    assert_eq!(retry, applied(CLIENT, 2, Ok(Outcome::Created), None));
}

#[test]
fn sequence_numbers_may_skip_ahead() {
    let mut harness = Harness::new();
    let result = harness.apply(&proposal(CLIENT, 10, create("alice")));
    assert_eq!(result, applied(CLIENT, 10, Ok(Outcome::Created), None));
    let stale = harness.apply(&proposal(CLIENT, 9, create("bob")));
    let error = ChatError::StaleSequence { seq: 9, last: 10 };
    assert_eq!(stale, applied(CLIENT, 9, Err(error), None));
}

#[test]
fn sequence_zero_after_registering_returns_registered() {
    let mut harness = Harness::new();
    let result = harness.apply(&proposal(CLIENT, 0, create("alice")));
    assert_eq!(result, applied(CLIENT, 0, Ok(Outcome::Registered), None));
    assert!(!harness.state.account_exists("alice"));
}

#[test]
fn registering_again_keeps_the_session() {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    let again = harness.apply(&proposal(CLIENT, 5, Command::RegisterClient));
    assert_eq!(again, applied(CLIENT, 5, Ok(Outcome::Registered), None));
    let retry = harness.apply(&proposal(CLIENT, 1, create("alice")));
    assert_eq!(retry, applied(CLIENT, 1, Ok(Outcome::Created), None));
    assert_eq!(harness.state.sessions.len(), 1);
}

#[test]
fn registering_past_the_limit_evicts_the_least_recently_used() {
    let mut harness = Harness::with_bounds(THREE_SESSIONS);
    let (b, c, d) = (2, 3, 4);
    harness.apply(&proposal(b, 0, Command::RegisterClient));
    harness.apply(&proposal(c, 0, Command::RegisterClient));
    harness.ok(create("alice"), Outcome::Created);
    harness.apply(&proposal(d, 0, Command::RegisterClient));
    assert_eq!(harness.state.sessions.len(), 3);
    let evicted = harness.apply(&proposal(b, 1, create("bob")));
    assert_eq!(evicted, applied(b, 1, Err(ChatError::SessionUnknown), None));
    for (client, name) in [(CLIENT, "carol"), (c, "dave"), (d, "erin")] {
        let result = harness.apply(&proposal(client, 7, create(name)));
        assert_eq!(result, applied(client, 7, Ok(Outcome::Created), None));
    }
}

#[test]
fn a_duplicate_counts_as_use_for_eviction() {
    let mut harness = Harness::with_bounds(THREE_SESSIONS);
    harness.ok(create("alice"), Outcome::Created);
    harness.apply(&proposal(2, 0, Command::RegisterClient));
    harness.apply(&proposal(3, 0, Command::RegisterClient));
    harness.apply(&proposal(CLIENT, 1, create("alice")));
    harness.apply(&proposal(4, 0, Command::RegisterClient));
    assert!(harness.state.sessions.get(CLIENT).is_some());
    assert!(harness.state.sessions.get(2).is_none());
}

#[test]
fn eviction_at_the_real_session_limit() {
    let mut state = ChatState::new();
    for client in 0..=CLIENT_SESSIONS_MAX as u64 {
        let result = state.apply(&proposal(client, 0, Command::RegisterClient));
        assert_eq!(result, applied(client, 0, Ok(Outcome::Registered), None));
    }
    assert_eq!(state.sessions.len(), CLIENT_SESSIONS_MAX);
    let evicted = state.apply(&proposal(0, 1, create("alice")));
    assert_eq!(evicted, applied(0, 1, Err(ChatError::SessionUnknown), None));
    let kept = state.apply(&proposal(1, 1, create("alice")));
    assert_eq!(kept, applied(1, 1, Ok(Outcome::Created), None));
}
