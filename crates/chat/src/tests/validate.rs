//! Stateless validation of names, text and whole commands.

use chorus_limits::{MESSAGE_TEXT_BYTES_MAX, NAME_CHARS_MAX};

use super::*;
use crate::{validate, validate_name};

/// The error for `name` failing because of `bad`.
fn bad_char(name: &str, bad: char) -> ChatError {
    ChatError::NameInvalid {
        name: name.to_string(),
        reason: format!("character {bad:?} is not allowed (use ASCII letters, digits, _, - or .)"),
    }
}

#[test]
fn names_of_allowed_characters_and_lengths_pass() {
    for name in ["a", "Z", "9", "_", "-", ".", "alice.B-2_x"] {
        assert_eq!(validate_name(name), Ok(()), "{name}");
    }
    assert_eq!(validate_name(&"n".repeat(NAME_CHARS_MAX)), Ok(()));
}

#[test]
fn an_empty_name_fails() {
    let error = ChatError::NameInvalid { name: String::new(), reason: "a name must not be empty".to_string() };
    assert_eq!(validate_name(""), Err(error));
}

#[test]
fn a_long_name_fails_and_is_echoed_cut() {
    let long = "n".repeat(NAME_CHARS_MAX + 1000);
    let error = ChatError::NameInvalid {
        name: format!("{}...", "n".repeat(NAME_CHARS_MAX)),
        reason: format!("{} characters, longer than the limit of {NAME_CHARS_MAX}", NAME_CHARS_MAX + 1000),
    };
    assert_eq!(validate_name(&long), Err(error));
}

#[test]
fn names_with_other_characters_fail() {
    for (name, bad) in [("a b", ' '), ("é", 'é'), ("a/b", '/'), ("x\n", '\n'), ("a@b", '@')] {
        assert_eq!(validate_name(name), Err(bad_char(name, bad)), "{name}");
    }
}

#[test]
fn validate_checks_every_field_of_a_command() {
    assert_eq!(validate(&Command::RegisterClient), Ok(()));
    assert_eq!(validate(&create("a b")), Err(bad_char("a b", ' ')));
    assert_eq!(validate(&delete("a b")), Err(bad_char("a b", ' ')));
    assert_eq!(validate(&ack("a b", 1)), Err(bad_char("a b", ' ')));
    assert_eq!(validate(&send("a b", "ok", "hi")), Err(bad_char("a b", ' ')));
    assert_eq!(validate(&send("ok", "a b", "hi")), Err(bad_char("a b", ' ')));
    assert_eq!(validate(&send("ok", "ok", "")), Err(ChatError::TextEmpty));
    assert_eq!(validate(&send("ok", "ok", "hi")), Ok(()));
}

#[test]
fn text_is_measured_in_utf8_bytes() {
    let fits = "é".repeat(MESSAGE_TEXT_BYTES_MAX / 2);
    assert_eq!(validate(&send("a", "b", &fits)), Ok(()));
    let over = format!("{fits}x");
    let error = ChatError::TextTooLong { bytes: MESSAGE_TEXT_BYTES_MAX + 1, max: MESSAGE_TEXT_BYTES_MAX };
    assert_eq!(validate(&send("a", "b", &over)), Err(error));
}

#[test]
fn errors_read_well() {
    let missing = ChatError::NoSuchAccount { name: "bob".to_string() };
    assert_eq!(missing.to_string(), "no such account: bob");
    let stale = ChatError::StaleSequence { seq: 1, last: 2 };
    assert_eq!(stale.to_string(), "stale sequence number 1: the session has already executed 2");
}
