//! Snapshots, digests and proposal encoding.

use std::io::{self, Read, Write};

use chorus_limits::{MAILBOX_MESSAGES_MAX, MESSAGE_TEXT_BYTES_MAX, NAME_CHARS_MAX};

use super::*;
use crate::snapshot::Fnv1a;
use crate::state::Account;
use crate::types::Queued;
use crate::{decode_proposal, encode_proposal, DecodeError, SnapshotError};

/// FNV-1a of `bytes`, written in one piece.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv1a::new();
    hasher.write_all(bytes).unwrap();
    hasher.finish()
}

/// The snapshot of `state` as `write_snapshot` streams it.
fn streamed(state: &ChatState) -> Vec<u8> {
    let mut bytes = Vec::new();
    state.write_snapshot(&mut bytes).unwrap();
    bytes
}

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
    let mut pieces = Fnv1a::new();
    for piece in [&b"foo"[..], b"", b"ba", b"r"] {
        pieces.write_all(piece).unwrap();
    }
    assert_eq!(pieces.finish(), fnv1a(b"foobar"));
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

    let mut bad_sender = busy_state();
    let first = &mut bad_sender.accounts.get_mut("bob").unwrap().mailbox[0];
    *first = Queued::new(first.id, "not valid", first.at_millis, "hi");
    let error = SnapshotError::Inconsistent { reason: "a queued message's sender breaks the naming rule" };
    assert_eq!(ChatState::from_snapshot(&bad_sender.to_snapshot()), Err(error));

    let mut empty_text = busy_state();
    let first = &mut empty_text.accounts.get_mut("bob").unwrap().mailbox[0];
    *first = Queued::new(first.id, "alice", first.at_millis, "");
    let error = SnapshotError::Inconsistent { reason: "a queued message's text is empty or over the size limit" };
    assert_eq!(ChatState::from_snapshot(&empty_text.to_snapshot()), Err(error));
}

#[test]
fn a_snapshot_with_a_session_used_in_the_future_is_refused() {
    let mut state = busy_state();
    state.applied_count = 1;
    let names: Vec<String> = state.accounts.keys().cloned().collect();
    for name in names {
        state.accounts.get_mut(&name).unwrap().created = 0;
    }
    let error = SnapshotError::Inconsistent { reason: "a session was used after the last applied proposal" };
    assert_eq!(ChatState::from_snapshot(&state.to_snapshot()), Err(error));
}

#[test]
fn a_snapshot_with_an_account_created_in_the_future_or_a_bad_hash_is_refused() {
    let mut future = busy_state();
    future.accounts.get_mut("bob").unwrap().created = future.applied_count + 1;
    let error = SnapshotError::Inconsistent { reason: "an account was created after the last applied proposal" };
    assert_eq!(ChatState::from_snapshot(&future.to_snapshot()), Err(error));

    let mut plain = busy_state();
    plain.accounts.get_mut("bob").unwrap().password_hash = "hunter22".into();
    let reason = "an account's password hash is not an argon2id PHC string within the size limit";
    assert_eq!(ChatState::from_snapshot(&plain.to_snapshot()), Err(SnapshotError::Inconsistent { reason }));
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

#[test]
fn a_streamed_round_trip_gives_an_equal_state() {
    let state = busy_state();
    let bytes = streamed(&state);
    assert_eq!(bytes, state.to_snapshot());
    assert_eq!(state.digest(), fnv1a(&bytes));
    let restored = ChatState::read_snapshot(&bytes[..]).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.digest(), state.digest());
}

#[test]
fn a_clone_shares_the_state_and_changes_apart() {
    let state = busy_state();
    let digest = state.digest();
    let mut copy = state.clone();
    assert!(copy.accounts.ptr_eq(&state.accounts));
    assert!(copy.accounts["bob"].mailbox.ptr_eq(&state.accounts["bob"].mailbox));
    let result = copy.apply(&proposal(CLIENT, 9, send("alice", "bob", "later")));
    assert_eq!(result.reply, Ok(Outcome::Sent { id: 4 }));
    assert_eq!(state.digest(), digest);
    assert_eq!(state.mailbox("bob", 0, 10).unwrap().len(), 2);
    assert_eq!(copy.mailbox("bob", 0, 10).unwrap().len(), 3);
}

#[test]
fn the_longest_strings_a_state_holds_round_trip() {
    let mut harness = Harness::new();
    harness.ok(create("alice"), Outcome::Created);
    let text = "x".repeat(MESSAGE_TEXT_BYTES_MAX);
    harness.ok(send("alice", "alice", &text), Outcome::Sent { id: 1 });
    // A refused name is echoed, cut to NAME_CHARS_MAX characters, in the
    // cached reply: four bytes each for this character.
    let long_name = "\u{1D11E}".repeat(NAME_CHARS_MAX + 1);
    let refused = harness.run(create(&long_name));
    assert!(matches!(&refused.reply, Err(ChatError::NameInvalid { name, .. }) if name.len() == 4 * NAME_CHARS_MAX + 3));
    let state = harness.state;
    assert_eq!(ChatState::read_snapshot(&streamed(&state)[..]), Ok(state));
}

#[test]
fn a_text_longer_than_any_valid_one_does_not_decode() {
    let with_text = |text: &str| {
        let mut state = busy_state();
        let first = &mut state.accounts.get_mut("bob").unwrap().mailbox[0];
        *first = Queued::new(first.id, "alice", first.at_millis, text);
        state
    };
    // A body (name and text) longer than the decoder's scratch stops decoding...
    let state = with_text(&"x".repeat(MESSAGE_TEXT_BYTES_MAX + NAME_CHARS_MAX));
    let result = ChatState::read_snapshot(&streamed(&state)[..]);
    assert!(matches!(result, Err(SnapshotError::Malformed { .. })), "{result:?}");
    // ...and a shorter one with a text over the limit fails the check.
    let state = with_text(&"x".repeat(MESSAGE_TEXT_BYTES_MAX + 1));
    let error = SnapshotError::Inconsistent { reason: "a queued message's text is empty or over the size limit" };
    assert_eq!(ChatState::read_snapshot(&streamed(&state)[..]), Err(error));
}

#[test]
fn every_truncated_stream_is_refused() {
    let bytes = streamed(&busy_state());
    for end in 0..bytes.len() {
        let result = ChatState::read_snapshot(&bytes[..end]);
        assert!(matches!(result, Err(SnapshotError::Malformed { .. })), "cut at {end}: {result:?}");
    }
}

#[test]
fn a_stream_with_a_tail_is_refused() {
    let mut bytes = streamed(&busy_state());
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(ChatState::read_snapshot(&bytes[..]), Err(SnapshotError::TrailingBytes { bytes: 2 }));
}

/// Every byte of a snapshot flipped in a few ways: decoding never panics,
/// and whatever still decodes passes the checks and re-encodes to a state
/// that decodes to itself.
#[test]
fn a_flipped_byte_gives_an_error_or_a_valid_state() {
    let bytes = streamed(&busy_state());
    for index in 0..bytes.len() {
        for mask in [0x01, 0x10, 0x80, 0xff] {
            let mut flipped = bytes.clone();
            flipped[index] ^= mask;
            if let Ok(state) = ChatState::read_snapshot(&flipped[..]) {
                assert_eq!(ChatState::read_snapshot(&streamed(&state)[..]), Ok(state), "byte {index} ^ {mask:#x}");
            }
        }
    }
}

#[test]
fn a_claimed_length_past_the_limit_is_refused_while_decoding() {
    let mut state = busy_state();
    let bob = state.accounts.get_mut("bob").unwrap();
    let message = bob.mailbox[0].clone();
    bob.mailbox = std::iter::repeat_n(message, MAILBOX_MESSAGES_MAX + 1).collect();
    // Malformed, not Inconsistent: the decoder stopped, not the later check.
    let result = ChatState::read_snapshot(&streamed(&state)[..]);
    assert!(matches!(result, Err(SnapshotError::Malformed { .. })), "{result:?}");
}

#[test]
fn keys_out_of_order_or_repeated_are_refused() {
    // Postcard encodes a map exactly like a sequence of pairs, so a list of
    // pairs in the wrong order stands in for a corrupt map.
    let no_sessions = (Vec::<(u64, u64)>::new(), Vec::<(u64, u64)>::new());
    let no_rooms = (Vec::<(u64, u64)>::new(), (Vec::<u64>::new(), 0u64, 0u64));
    for names in [["bob", "alice"], ["bob", "bob"]] {
        let accounts: Vec<(&str, Account)> = names.iter().map(|name| (*name, account())).collect();
        let bytes =
            postcard::to_stdvec(&(accounts, 0u64, &no_sessions, 0u64, &no_rooms, crate::HistoryBounds::MAX)).unwrap();
        let result = ChatState::read_snapshot(&bytes[..]);
        assert!(matches!(result, Err(SnapshotError::Malformed { .. })), "{names:?}: {result:?}");
    }
    let sorted = vec![("alice", account()), ("bob", account())];
    let bytes = postcard::to_stdvec(&(sorted, 0u64, &no_sessions, 0u64, &no_rooms, crate::HistoryBounds::MAX)).unwrap();
    assert_eq!(ChatState::read_snapshot(&bytes[..]).map(|state| state.accounts_len()), Ok(2));
}

/// An empty account with a well-formed password hash.
fn account() -> Account {
    Account { password_hash: super::HASH.into(), ..Account::default() }
}

/// A reader that serves `bytes`, then fails instead of reporting their end.
struct FailingReader<'a> {
    /// What is left to serve before failing.
    bytes: &'a [u8],
}

impl Read for FailingReader<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "disk says no"));
        }
        self.bytes.read(buffer)
    }
}

#[test]
fn a_failing_reader_is_an_io_error_not_a_corrupt_snapshot() {
    let bytes = streamed(&busy_state());
    let kind = io::ErrorKind::PermissionDenied;
    let error = SnapshotError::Io { kind, reason: "disk says no".to_string() };
    // The reader fails in the middle of the state and after a whole state.
    for served in [bytes.len() / 2, bytes.len()] {
        let reader = FailingReader { bytes: &bytes[..served] };
        assert_eq!(ChatState::read_snapshot(reader), Err(error.clone()), "after {served} bytes");
    }
}

/// A writer that takes `room` bytes, then fails.
struct FullWriter {
    /// Bytes it still takes.
    room: usize,
}

impl Write for FullWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.len() > self.room {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        }
        self.room -= bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_fails_the_write_with_its_own_error() {
    let state = busy_state();
    let size = state.to_snapshot().len();
    let error = state.write_snapshot(FullWriter { room: size - 1 }).unwrap_err();
    assert_eq!((error.kind(), error.to_string()), (io::ErrorKind::StorageFull, "no space left".to_string()));
    assert!(state.write_snapshot(FullWriter { room: size }).is_ok());
}
