//! `list`: all names, regex filtering, anchors, and the pattern and result bounds.

use chorus_limits::{LIST_NAMES_MAX, LIST_PATTERN_BYTES_MAX};

use super::*;
use crate::ListResult;

/// A state holding `names`.
fn with_accounts(names: &[&str]) -> ChatState {
    let mut harness = Harness::new();
    for name in names {
        harness.ok(create(name), Outcome::Created);
    }
    harness.state
}

/// An untruncated result.
fn listed(names: &[&str]) -> Result<ListResult, ChatError> {
    Ok(ListResult { names: names.iter().map(|name| name.to_string()).collect(), truncated: false })
}

#[test]
fn list_without_a_pattern_returns_every_name_sorted() {
    let state = with_accounts(&["dan", "alice", "carla", "bob"]);
    assert_eq!(state.list(None), listed(&["alice", "bob", "carla", "dan"]));
    assert_eq!(ChatState::new().list(None), listed(&[]));
}

#[test]
fn list_matches_anywhere_in_the_name() {
    let state = with_accounts(&["dan", "alice", "carla", "bob"]);
    assert_eq!(state.list(Some("a.*")), listed(&["alice", "carla", "dan"]));
    assert_eq!(state.list(Some("o")), listed(&["bob"]));
    assert_eq!(state.list(Some("")), listed(&["alice", "bob", "carla", "dan"]));
    assert_eq!(state.list(Some("zed")), listed(&[]));
}

#[test]
fn list_honours_anchors() {
    let state = with_accounts(&["dan", "alice", "carla", "bob", "anna"]);
    assert_eq!(state.list(Some("^a")), listed(&["alice", "anna"]));
    assert_eq!(state.list(Some("a$")), listed(&["anna", "carla"]));
    assert_eq!(state.list(Some("^bob$")), listed(&["bob"]));
    assert_eq!(state.list(Some("^b$")), listed(&[]));
}

#[test]
fn list_treats_dot_as_any_character_and_escapes_as_literal() {
    let state = with_accounts(&["a.b", "axb"]);
    assert_eq!(state.list(Some("a.b")), listed(&["a.b", "axb"]));
    assert_eq!(state.list(Some(r"a\.b")), listed(&["a.b"]));
}

#[test]
fn list_refuses_a_pattern_over_the_byte_limit() {
    let state = with_accounts(&["alice"]);
    let longest = "a".repeat(LIST_PATTERN_BYTES_MAX);
    assert_eq!(state.list(Some(&longest)), listed(&[]));
    let too_long = "a".repeat(LIST_PATTERN_BYTES_MAX + 1);
    let error = ChatError::PatternTooLong { bytes: LIST_PATTERN_BYTES_MAX + 1, max: LIST_PATTERN_BYTES_MAX };
    assert_eq!(state.list(Some(&too_long)), Err(error));
}

#[test]
fn list_refuses_an_invalid_pattern() {
    let state = with_accounts(&["alice"]);
    let unclosed = String::from("(");
    let reason = regex::Regex::new(&unclosed).unwrap_err().to_string();
    let error = ChatError::PatternInvalid { reason };
    assert_eq!(state.list(Some(&unclosed)), Err(error));
}

#[test]
fn list_refuses_a_pattern_that_compiles_too_big() {
    let state = with_accounts(&["alice"]);
    let result = state.list(Some(r"\w{1000}\w{1000}"));
    assert!(
        matches!(&result, Err(ChatError::PatternInvalid { reason }) if reason.contains("size limit")),
        "{result:?}"
    );
}

#[test]
fn list_cuts_at_the_name_limit() {
    let mut harness = Harness::new();
    for index in 0..LIST_NAMES_MAX {
        harness.ok(create(&format!("u{index:05}")), Outcome::Created);
    }
    let all: Vec<String> = (0..LIST_NAMES_MAX).map(|index| format!("u{index:05}")).collect();
    let full = ListResult { names: all.clone(), truncated: false };
    assert_eq!(harness.state.list(None), Ok(full));
    harness.ok(create("zz-one-more"), Outcome::Created);
    let cut = ListResult { names: all, truncated: true };
    assert_eq!(harness.state.list(None), Ok(cut.clone()));
    assert_eq!(harness.state.list(Some("u|zz")), Ok(cut));
}
