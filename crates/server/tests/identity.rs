//! Sign-in, tokens and authorization, through the real [`Machine`] of a
//! one-replica cluster: writes are persisted at once, password jobs run
//! inline with the real argon2id code (at the smallest cost).

mod common;

use chorus_chat::{ChatError, Command, SessionToken};
use chorus_proto::{Password, Request, RequestError, Response, ServerFrame};
use chorus_server::machine::ConnId;
use chorus_server::passwords;
use common::Lone;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

/// The lone leader with two connections, from `HOME` (1) and `AWAY` (2),
/// and one exactly-once session.
struct Single {
    lone: Lone,
    next_seq: u64,
}

impl Deref for Single {
    type Target = Lone;
    fn deref(&self) -> &Lone {
        &self.lone
    }
}

impl DerefMut for Single {
    fn deref_mut(&mut self) -> &mut Lone {
        &mut self.lone
    }
}

const CLIENT: u64 = 77;

impl Single {
    fn new() -> Single {
        let mut single = Single { lone: Lone::new(|machine| machine), next_seq: 1 };
        single.machine.connected(1, HOME);
        single.machine.connected(2, AWAY);
        assert_eq!(single.ask(1, Request::Register { client: CLIENT }), Ok(Response::Registered));
        single
    }

    fn create(&mut self, name: &str, password: &str) -> Result<Response, RequestError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let request =
            Request::CreateAccount { client: CLIENT, seq, name: name.into(), password: Password(password.into()) };
        self.ask(1, request)
    }

    fn sign_in(&mut self, conn: ConnId, name: &str, password: &str) -> Result<SessionToken, RequestError> {
        match self.ask(conn, Request::SignIn { name: name.into(), password: Password(password.into()) })? {
            Response::SignedIn { token } => Ok(token),
            other => panic!("a sign-in answered {other:?}"),
        }
    }

    fn command(&mut self, conn: ConnId, command: Command) -> Result<Response, RequestError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ask(conn, Request::Command { client: CLIENT, seq, command, read_through: None })
    }

    fn send(&mut self, conn: ConnId, from: &str, to: &str) -> Result<Response, RequestError> {
        self.command(conn, Command::Send { from: from.into(), to: to.into(), text: "hi".into() })
    }
}

fn unauthorized(result: Result<impl std::fmt::Debug, RequestError>) -> bool {
    matches!(result, Err(RequestError::Unauthorized(_)))
}

#[test]
fn the_state_holds_an_argon2id_hash_of_the_password_never_the_password() {
    let mut single = Single::new();
    assert!(single.create("alice", "correct horse").is_ok());
    let hash = single.machine.chat().credentials("alice").expect("alice exists").0.to_string();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"), "{hash}");
    assert!(passwords::verify("correct horse", &hash));
    assert!(matches!(single.create("bob", "short"), Err(RequestError::BadRequest(_))), "too short");
    let forged = Command::Create { name: "mallory".into(), password_hash: hash };
    assert!(matches!(single.command(1, forged), Err(RequestError::BadRequest(_))), "no client picks a hash");
    assert!(!single.machine.chat().account_exists("mallory"));
}

#[test]
fn only_the_signed_in_account_sends_deletes_subscribes_and_acks() {
    let mut single = Single::new();
    single.create("alice", "alice's password").unwrap();
    single.create("bob", "bob's password").unwrap();
    assert!(unauthorized(single.send(1, "alice", "bob")), "nobody signed in");
    single.sign_in(1, "bob", "bob's password").unwrap();
    assert!(unauthorized(single.send(1, "alice", "bob")), "signed in as bob, sending as alice");
    assert!(unauthorized(single.command(1, Command::Delete { name: "alice".into() })));
    assert!(unauthorized(single.ask(1, Request::Subscribe { name: "alice".into(), after: 0 })));
    assert!(unauthorized(single.ask(1, Request::Ack { name: "alice".into(), through: 1 })));
    assert!(matches!(single.send(1, "bob", "alice"), Ok(Response::Outcome(_))));
    assert_eq!(single.ask(1, Request::Subscribe { name: "bob".into(), after: 0 }), Ok(Response::Subscribed));
    assert!(unauthorized(single.send(2, "bob", "alice")), "another connection is not signed in");
}

#[test]
fn a_token_signs_in_another_connection_until_the_account_goes() {
    let mut single = Single::new();
    single.create("alice", "alice's password").unwrap();
    let token = single.sign_in(1, "alice", "alice's password").unwrap();
    assert_eq!(
        single.ask(2, Request::Resume { token: token.clone() }),
        Ok(Response::SignedIn { token: token.clone() })
    );
    assert!(matches!(single.send(2, "alice", "alice"), Ok(Response::Outcome(_))));
    let mut stretched = token.clone();
    stretched.expires_at_millis += 1;
    assert!(unauthorized(single.ask(2, Request::Resume { token: stretched })));
    single.now = token.expires_at_millis;
    assert!(unauthorized(single.ask(2, Request::Resume { token: token.clone() })), "expired");
    single.now = 1_000;
    assert!(matches!(single.command(1, Command::Delete { name: "alice".into() }), Ok(Response::Outcome(_))));
    assert!(unauthorized(single.send(1, "alice", "alice")), "the deleted account's sign-in ended");
    single.create("alice", "a new password").unwrap();
    assert!(unauthorized(single.ask(2, Request::Resume { token })), "the new alice is another account");
}

#[test]
fn wrong_passwords_are_throttled_per_account_and_per_address() {
    let mut single = Single::new();
    single.create("alice", "alice's password").unwrap();
    single.create("bob", "bob's password").unwrap();
    for _ in 0..chorus_limits::SIGN_IN_FAILURES_FREE + 1 {
        assert!(unauthorized(single.sign_in(1, "alice", "a wrong guess")));
    }
    let throttled = single.sign_in(1, "alice", "alice's password");
    assert!(matches!(throttled, Err(RequestError::Throttled { .. })), "even the right password waits: {throttled:?}");
    assert!(matches!(single.sign_in(2, "alice", "alice's password"), Err(RequestError::Throttled { .. })));
    assert!(matches!(single.sign_in(1, "bob", "bob's password"), Err(RequestError::Throttled { .. })));
    assert!(single.sign_in(2, "bob", "bob's password").is_ok(), "another address, another account");
    single.now += chorus_limits::SIGN_IN_BACKOFF_MIN_MILLIS;
    assert!(single.sign_in(1, "alice", "alice's password").is_ok(), "after the wait");
    for _ in 0..3 * chorus_limits::SIGN_IN_FAILURES_FREE {
        assert!(unauthorized(single.sign_in(2, "nobody", "whatever it is")), "no such account");
    }
    assert!(single.sign_in(2, "bob", "bob's password").is_ok(), "unknown names do not throttle the address");
    let missing = single.sign_in(2, "nobody", "whatever it is");
    assert!(unauthorized(missing.clone()), "an unknown account answers like a wrong password");
    assert!(!matches!(missing, Err(RequestError::Chat(ChatError::NoSuchAccount { .. }))));
}

#[test]
fn an_unsubscribe_ends_a_subscription_whose_read_is_still_pending() {
    let mut single = Single::new();
    single.create("bob", "bob's password").unwrap();
    single.sign_in(1, "bob", "bob's password").unwrap();
    single.send(1, "bob", "bob").unwrap();
    // Both requests arrive before the subscription's read is confirmed.
    let subscribe = Request::Subscribe { name: "bob".into(), after: 0 };
    let unsubscribe = Request::Unsubscribe { name: "bob".into() };
    let (subscribed, unsubscribed) = (single.submit(1, subscribe), single.submit(1, unsubscribe));
    single.settle();
    single.send(1, "bob", "bob").unwrap();
    let frames = single.out.0.remove(&1).unwrap_or_default();
    let replied = |id: u64, want: Response| {
        frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Reply { request_id, result: Ok(r) } if *request_id == id && *r == want))
    };
    assert!(replied(subscribed, Response::Subscribed) && replied(unsubscribed, Response::Unsubscribed), "{frames:?}");
    let delivered = frames.iter().any(|f| matches!(f, ServerFrame::Deliver { .. }));
    assert!(!delivered, "the unsubscribe came after the subscribe, so nothing is delivered: {frames:?}");
}
