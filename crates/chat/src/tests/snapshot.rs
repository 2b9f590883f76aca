//! Snapshots, digests and proposal encoding.

use super::*;
use crate::snapshot::fnv1a;
use crate::state::Account;
use crate::{decode_proposal, encode_proposal, DecodeError, SnapshotError};

/// A state with accounts, queued and acked messages, and two sessions.
fn busy_state() -> ChatState {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    harness.ok(create("bob"), Outcome::Created);
    for id in 1..=3 {
        harness.ok(send("alice", "bob", "m"), Outcome::Sent { id });
    }
    harness.ok(ack("bob", 1), Outcome::Acked);
    harness.apply(&proposal(7, 0, Command::RegisterClient));
    harness.state
}

#[test]
fn fnv1a_matches_the_reference_vectors() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn a_snapshot_round_trip_gives_an_equal_state() {
    let state = busy_state();
    let restored = ChatState::from_snapshot(&state.to_snapshot()).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.digest(), state.digest());
    assert_eq!(restored.to_snapshot(), state.to_snapshot());
}

#[test]
fn a_restored_state_keeps_sessions_and_counters() {
    let mut state = busy_state();
    let mut restored = ChatState::from_snapshot(&state.to_snapshot()).unwrap();
    let retry = proposal(CLIENT, 5, send("alice", "bob", "m"));
    let next = proposal(CLIENT, 7, send("alice", "bob", "m"));
    for p in [&retry, &next] {
        assert_eq!(restored.apply(p), state.apply(p));
    }
    assert_eq!(restored.mailbox("bob", 0, 10).unwrap().len(), 3);
    assert_eq!(restored.digest(), state.digest());
}

#[test]
fn the_digest_changes_with_the_state() {
    let empty = ChatState::new();
    let state = busy_state();
    assert_ne!(empty.digest(), state.digest());
    let mut acked = state.clone();
    let result = acked.apply(&proposal(CLIENT, 0, ack("bob", 2)));
    assert_eq!(result, applied(CLIENT, 0, Ok(Outcome::Acked), None));
    assert_ne!(acked.digest(), state.digest());
    assert_eq!(empty.digest(), ChatState::default().digest());
}

#[test]
fn snapshot_bytes_with_a_tail_are_refused() {
    let mut bytes = busy_state().to_snapshot();
    bytes.extend_from_slice(&[0, 0]);
    let error = SnapshotError::TrailingBytes { bytes: 2 };
    assert_eq!(ChatState::from_snapshot(&bytes), Err(error));
}

#[test]
fn truncated_snapshot_bytes_are_refused() {
    let bytes = busy_state().to_snapshot();
    let result = ChatState::from_snapshot(&bytes[..bytes.len() / 2]);
    assert!(matches!(result, Err(SnapshotError::Malformed { .. })), "{result:?}");
}

#[test]
fn an_inconsistent_snapshot_is_refused() {
    let mut bad_name = ChatState::new();
    bad_name.accounts.insert("not valid".to_string(), Account::default());
    let error = SnapshotError::Inconsistent { reason: "an account name breaks the naming rule" };
    assert_eq!(ChatState::from_snapshot(&bad_name.to_snapshot()), Err(error));

    let mut cursor_ahead = busy_state();
    cursor_ahead.accounts.get_mut("bob").unwrap().acked_through = 99;
    let error = SnapshotError::Inconsistent { reason: "an ack cursor is past the last assigned message id" };
    assert_eq!(ChatState::from_snapshot(&cursor_ahead.to_snapshot()), Err(error));

    let mut misaddressed = busy_state();
    misaddressed.accounts.get_mut("bob").unwrap().mailbox[0].to = "alice".to_string();
    let error = SnapshotError::Inconsistent { reason: "a queued message is addressed to another account" };
    assert_eq!(ChatState::from_snapshot(&misaddressed.to_snapshot()), Err(error));
}

#[test]
fn a_snapshot_with_a_session_used_in_the_future_is_refused() {
    let mut state = busy_state();
    state.applied_count = 1;
    let error = SnapshotError::Inconsistent { reason: "a session was used after the last applied proposal" };
    assert_eq!(ChatState::from_snapshot(&state.to_snapshot()), Err(error));
}

#[test]
fn proposals_round_trip_through_their_encoding() {
    let commands =
        [Command::RegisterClient, create("alice"), delete("alice"), send("alice", "bob", "hé"), ack("bob", u64::MAX)];
    for (seq, command) in commands.into_iter().enumerate() {
        let p = proposal(u64::MAX - 1, seq as u64, command);
        assert_eq!(decode_proposal(&encode_proposal(&p)), Ok(p));
    }
}

#[test]
fn bad_proposal_bytes_are_refused() {
    let mut bytes = encode_proposal(&proposal(CLIENT, 1, create("alice")));
    bytes.push(0);
    assert_eq!(decode_proposal(&bytes), Err(DecodeError::TrailingBytes { bytes: 1 }));
    let result = decode_proposal(&bytes[..3]);
    assert!(matches!(result, Err(DecodeError::Malformed { .. })), "{result:?}");
    let result = decode_proposal(&[0, 0, 0, 9]);
    assert!(matches!(result, Err(DecodeError::Malformed { .. })), "{result:?}");
}
