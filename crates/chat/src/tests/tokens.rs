//! Session tokens: issued for an existing account, refused once expired,
//! altered, or after the account is deleted and created again.

use super::{create, delete, proposal, CLIENT};
use crate::{ChatState, Command, TokenError};

/// A state where `alice` exists; `seq` numbers continue from 2.
fn with_alice() -> ChatState {
    let mut state = ChatState::new();
    state.apply(&proposal(CLIENT, 0, Command::RegisterClient));
    state.apply(&proposal(CLIENT, 1, create("alice")));
    state
}

#[test]
fn a_token_is_good_until_it_expires() {
    let state = with_alice();
    let token = state.issue_token("alice", 5_000).expect("alice exists");
    assert_eq!(state.check_token(&token, 4_999), Ok(()));
    assert_eq!(state.check_token(&token, 5_000), Err(TokenError::Expired));
    assert_eq!(state.issue_token("bob", 5_000), None, "no token for a missing account");
}

#[test]
fn an_altered_token_is_invalid() {
    let state = with_alice();
    let token = state.issue_token("alice", 5_000).expect("alice exists");
    let mut later = token.clone();
    later.expires_at_millis += 1_000_000;
    assert_eq!(state.check_token(&later, 1), Err(TokenError::Invalid), "a longer life is not the token's");
    let mut forged = token.clone();
    forged.mac[0] ^= 1;
    assert_eq!(state.check_token(&forged, 1), Err(TokenError::Invalid));
    let mut other = token;
    other.name = "bob".into();
    assert_eq!(state.check_token(&other, 1), Err(TokenError::Invalid), "bob does not exist");
}

#[test]
fn a_token_dies_with_its_account_even_if_the_name_returns() {
    let mut state = with_alice();
    let token = state.issue_token("alice", 5_000).expect("alice exists");
    state.apply(&proposal(CLIENT, 2, delete("alice")));
    assert_eq!(state.check_token(&token, 1), Err(TokenError::Invalid));
    state.apply(&proposal(CLIENT, 3, create("alice")));
    assert!(state.account_exists("alice"));
    assert_eq!(state.check_token(&token, 1), Err(TokenError::Invalid), "the new alice is another account");
}

#[test]
fn tokens_of_two_accounts_with_one_hash_differ() {
    let mut state = with_alice();
    state.apply(&proposal(CLIENT, 2, create("bob")));
    let alice = state.issue_token("alice", 5_000).expect("alice exists");
    let bob = state.issue_token("bob", 5_000).expect("bob exists");
    assert_ne!(alice.mac, bob.mac);
    let mut swapped = bob;
    swapped.mac = alice.mac;
    assert_eq!(state.check_token(&swapped, 1), Err(TokenError::Invalid));
}
