//! The client library's own logic, against fake replicas: redirects,
//! retries with the same sequence number, delivery de-duplication,
//! resubscription after a lost connection, and acknowledgements.

mod fake;

use std::time::Duration;

use chorus_chat::{ChatError, Command, Message, MessageId, Outcome};
use chorus_client::{fetch_status, Client, ClientError, ClientOptions, Delivery, Endpoints};
use chorus_paxos::{Ballot, Role};
use chorus_proto::{Password, Request, RequestError, Response, ServerFrame, StatusReport};
use fake::{Action, FakeReplica, Received};
use tokio::sync::mpsc;

/// A leader that accepts everything: registers, runs commands, subscribes, acks.
fn leader_policy() -> fake::Policy {
    Box::new(|request: &Request, _| Action::Reply(Ok(answer(request))))
}

/// The successful answer to `request`.
fn answer(request: &Request) -> Response {
    match request {
        Request::Register { .. } => Response::Registered,
        Request::CreateAccount { .. } => Response::Outcome(Outcome::Created),
        Request::SignIn { name, .. } => Response::SignedIn { token: token(name) },
        Request::Resume { token } => Response::SignedIn { token: token.clone() },
        Request::Command { command, .. } => Response::Outcome(match command {
            Command::Create { .. } => Outcome::Created,
            Command::Delete { .. } => Outcome::Deleted,
            Command::Send { .. } | Command::Say { .. } | Command::Broadcast { .. } => Outcome::Sent { id: 9 },
            Command::Join { .. } => Outcome::Joined,
            Command::Leave { .. } => Outcome::Left,
            Command::Ack { .. } => Outcome::Acked,
            Command::RegisterClient => Outcome::Registered,
            Command::Configure { .. } => Outcome::Configured,
        }),
        Request::List { .. } => Response::List(chorus_chat::ListResult { names: vec![], truncated: false }),
        Request::Rooms { .. } => Response::Rooms(chorus_chat::RoomsResult { rooms: vec![], truncated: false }),
        Request::History { .. } => Response::History(chorus_chat::HistoryPage { messages: vec![], more: false }),
        Request::Subscribe { .. } => Response::Subscribed,
        Request::Unsubscribe { .. } => Response::Unsubscribed,
        Request::Ack { .. } => Response::Acked,
        Request::Status | Request::Digest => panic!("not used"),
    }
}

/// A token as a replica would issue it (the fake does not check it).
fn token(name: &str) -> chorus_chat::SessionToken {
    chorus_chat::SessionToken { name: name.into(), created: 1, expires_at_millis: u64::MAX, mac: [7; 32] }
}

fn alice_created(id: u64) -> Request {
    Request::CreateAccount { client: id, seq: 1, name: "alice".into(), password: Password("password".into()) }
}

fn options_starting_at(id: u8) -> ClientOptions {
    ClientOptions { first_replica: Some(id), ..ClientOptions::default() }
}

fn message(id: MessageId, to: &str) -> Message {
    Message {
        id,
        from: "alice".into(),
        to: to.into(),
        room: None,
        at_millis: 1_700_000_000_000 + id,
        text: format!("message {id}"),
    }
}

fn deliver(ids: &[MessageId], to: &str) -> ServerFrame {
    ServerFrame::Deliver { messages: ids.iter().map(|id| message(*id, to)).collect() }
}

/// The next delivered message id; fails the test after a while.
async fn next_id(stream: &mut mpsc::Receiver<Delivery>) -> MessageId {
    let delivery = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("a delivery in time")
        .expect("stream open");
    match delivery {
        Delivery::Message(message) => message.id,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn commands(received: &[Received]) -> Vec<(usize, u64, u64)> {
    received
        .iter()
        .filter_map(|r| match &r.request {
            Request::Command { client, seq, .. } => Some((r.connection, *client, *seq)),
            _ => None,
        })
        .collect()
}

fn acks(received: &[Received]) -> Vec<MessageId> {
    received
        .iter()
        .filter_map(|r| match &r.request {
            Request::Ack { through, .. } => Some(*through),
            _ => None,
        })
        .collect()
}

/// A client subscribed to `bob` on a single accepting fake leader.
async fn subscribed_client() -> (FakeReplica, Client, mpsc::Receiver<Delivery>) {
    let leader = FakeReplica::start(0, leader_policy()).await;
    let client = Client::connect_with(Endpoints::plaintext(vec![leader.address()]), options_starting_at(0))
        .await
        .expect("connects");
    let stream = client.deliveries().expect("first take");
    assert!(client.deliveries().is_none(), "the stream is taken once");
    client.subscribe("bob").await.expect("subscribes");
    (leader, client, stream)
}

#[tokio::test]
async fn not_leader_with_a_hint_sends_the_client_to_that_replica() {
    let follower = FakeReplica::start(
        0,
        Box::new(|_: &Request, _| Action::Reply(Err(RequestError::NotLeader { leader: Some(1) }))),
    )
    .await;
    let leader = FakeReplica::start(1, leader_policy()).await;
    let replicas = vec![follower.address(), leader.address()];
    let client = Client::connect_with(Endpoints::plaintext(replicas), options_starting_at(0))
        .await
        .expect("connects through the redirect");
    client.create("alice", "password").await.expect("created");

    let id = client.client_id();
    let to_follower: Vec<Request> = follower.received().into_iter().map(|r| r.request).collect();
    assert_eq!(to_follower, vec![Request::Register { client: id }]);
    let to_leader: Vec<Request> = leader.received().into_iter().map(|r| r.request).collect();
    assert_eq!(to_leader, vec![Request::Register { client: id }, alice_created(id)]);
    // The follower's connection is not left open beside the leader's.
    follower.wait_closed_by_client(0).await;
}

#[tokio::test]
async fn not_leader_without_a_hint_and_a_dead_replica_move_on_round_robin() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead); // Nothing listens there now: connecting is refused.
    let electing =
        FakeReplica::start(1, Box::new(|_: &Request, _| Action::Reply(Err(RequestError::NotLeader { leader: None }))))
            .await;
    let leader = FakeReplica::start(2, leader_policy()).await;
    let mut dead_entry = electing.address();
    dead_entry.id = 0;
    dead_entry.client_addr = dead_addr;
    let replicas = vec![dead_entry, electing.address(), leader.address()];
    let client = Client::connect_with(Endpoints::plaintext(replicas), options_starting_at(0))
        .await
        .expect("connects after trying 0 and 1");
    let id = client.client_id();
    let asked = |fake: &FakeReplica| -> Vec<Request> { fake.received().into_iter().map(|r| r.request).collect() };
    assert_eq!(asked(&electing), vec![Request::Register { client: id }]);
    assert_eq!(asked(&leader), vec![Request::Register { client: id }]);
}

/// A fake leader that accepts everything but drops the connection on the
/// first command, and a client connected to it.
async fn leader_dropping_the_first_command() -> (FakeReplica, Client) {
    leader_dropping_the_first(|request| matches!(request, Request::Command { .. }), None).await
}

/// A fake leader that drops the connection on the first request `first`
/// matches, refuses every resume with `refusal` (if given), answers the
/// rest; and a client connected to it.
async fn leader_dropping_the_first(
    first: fn(&Request) -> bool,
    refusal: Option<&'static str>,
) -> (FakeReplica, Client) {
    let mut dropped = false;
    let policy: fake::Policy = Box::new(move |request: &Request, _| match (request, refusal) {
        (request, _) if !dropped && first(request) => {
            dropped = true;
            Action::Drop
        }
        (Request::Resume { .. }, Some(refusal)) => Action::Reply(Err(RequestError::Unauthorized(refusal.into()))),
        (other, _) => Action::Reply(Ok(answer(other))),
    });
    let leader = FakeReplica::start(0, policy).await;
    let client = Client::connect_with(Endpoints::plaintext(vec![leader.address()]), options_starting_at(0))
        .await
        .expect("connects");
    (leader, client)
}

#[tokio::test]
async fn a_command_retried_after_a_dropped_connection_keeps_its_sequence_number() {
    let (leader, client) = leader_dropping_the_first_command().await;
    client.delete("alice").await.expect("deleted on the retry");
    assert_eq!(client.send("alice", "alice", "hi").await, Ok(9));

    let id = client.client_id();
    assert_eq!(
        commands(&leader.received()),
        vec![(0, id, 1), (1, id, 1), (1, id, 2)],
        "the retry reuses seq 1 on the new connection; the next command takes seq 2"
    );
}

#[tokio::test]
async fn a_command_without_an_answer_fails_with_an_unknown_outcome() {
    let policy: fake::Policy = Box::new(|request: &Request, _| match request {
        Request::Command { .. } => Action::Silent,
        other => Action::Reply(Ok(answer(other))),
    });
    let leader = FakeReplica::start(0, policy).await;
    let options = ClientOptions {
        call_timeout: Duration::from_millis(400),
        attempt_timeout: Duration::from_millis(100),
        ..options_starting_at(0)
    };
    let client = Client::connect_with(Endpoints::plaintext(vec![leader.address()]), options).await.expect("connects");
    let error = client.delete("alice").await.expect_err("no answer");
    assert!(
        matches!(&error, ClientError::Unavailable(m) if m.contains("outcome of the command is unknown")),
        "{error}"
    );
    let sequence_numbers: Vec<u64> = commands(&leader.received()).iter().map(|c| c.2).collect();
    assert!(sequence_numbers.len() >= 2, "retried: {sequence_numbers:?}");
    assert!(sequence_numbers.iter().all(|seq| *seq == 1), "{sequence_numbers:?}");
}

#[tokio::test]
async fn an_evicted_session_is_registered_again_and_the_outcome_reported_unknown() {
    let mut evicted = false;
    let policy: fake::Policy = Box::new(move |request: &Request, _| match request {
        Request::Command { .. } if !evicted => {
            evicted = true;
            Action::Reply(Err(RequestError::Chat(ChatError::SessionUnknown)))
        }
        other => Action::Reply(Ok(answer(other))),
    });
    let leader = FakeReplica::start(0, policy).await;
    let client = Client::connect_with(Endpoints::plaintext(vec![leader.address()]), options_starting_at(0))
        .await
        .expect("connects");
    let first_id = client.client_id();
    assert_eq!(client.delete("alice").await, Err(ClientError::SessionExpired));
    let second_id = client.client_id();
    assert_ne!(first_id, second_id, "a fresh session id");
    client.delete("bob").await.expect("works on the new session");
    let received = leader.received();
    assert!(received.contains(&Received { connection: 0, request: Request::Register { client: second_id } }));
    assert_eq!(commands(&received), vec![(0, first_id, 1), (0, second_id, 1)]);
}

#[tokio::test]
async fn a_new_connection_resumes_the_sign_in_before_anything_else() {
    let (leader, client) = leader_dropping_the_first_command().await;
    client.sign_in("alice", "password").await.expect("signed in");
    assert_eq!(client.signed_in_as().as_deref(), Some("alice"));
    assert_eq!(client.send("alice", "bob", "hi").await, Ok(9), "sent on the retry");

    let id = client.client_id();
    let on = |connection: usize| -> Vec<Request> {
        leader.received().into_iter().filter(|r| r.connection == connection).map(|r| r.request).collect()
    };
    let send = Request::Command {
        client: id,
        seq: 1,
        command: Command::Send { from: "alice".into(), to: "bob".into(), text: "hi".into() },
        read_through: None,
    };
    let sign_in = Request::SignIn { name: "alice".into(), password: Password("password".into()) };
    assert_eq!(on(0), vec![Request::Register { client: id }, sign_in, send.clone()]);
    assert_eq!(on(1), vec![Request::Resume { token: token("alice") }, send], "the token first, then the retry");
}

#[tokio::test]
async fn a_refused_resume_ends_the_sign_in_but_not_what_needs_none() {
    let listing = |request: &Request| matches!(request, Request::List { .. });
    let (leader, client) = leader_dropping_the_first(listing, Some("the account is gone")).await;
    client.sign_in("alice", "password").await.expect("signed in");
    client.list(None).await.expect("a list needs no sign-in, on the new connection either");
    let refused = client.send("alice", "bob", "hi").await;
    assert!(matches!(refused, Err(ClientError::Unauthorized(_))), "{refused:?}");
    assert_eq!(client.signed_in_as(), None, "the sign-in is over");
    let on_second: Vec<Request> =
        leader.received().into_iter().filter(|r| r.connection == 1).map(|r| r.request).collect();
    assert_eq!(on_second.len(), 2, "the list, then one resume: {on_second:?}");
    assert!(matches!(on_second[1], Request::Resume { .. }));
}

#[tokio::test]
async fn a_sign_in_that_ends_while_a_command_is_retried_leaves_its_outcome_unknown() {
    // The delete is dropped unanswered, though it may have run: the account
    // and its sign-in are gone, so the retry's resume is refused.
    let commanding = |request: &Request| matches!(request, Request::Command { .. });
    let (_leader, client) = leader_dropping_the_first(commanding, Some("the session is not valid")).await;
    client.sign_in("alice", "password").await.expect("signed in");
    let error = client.delete("alice").await.expect_err("no answer to the delete");
    assert!(matches!(&error, ClientError::Unavailable(m) if m.contains("unknown")), "not a refusal: {error}");
}

#[tokio::test]
async fn repeated_deliveries_reach_the_application_once_and_in_order() {
    let (leader, _client, mut stream) = subscribed_client().await;
    leader.push(deliver(&[1, 2], "bob")).await;
    leader.push(deliver(&[2, 1, 3], "bob")).await;
    leader.push(deliver(&[5], "carol")).await;
    leader.push(deliver(&[3, 4], "bob")).await;
    let ids = [
        next_id(&mut stream).await,
        next_id(&mut stream).await,
        next_id(&mut stream).await,
        next_id(&mut stream).await,
    ];
    assert_eq!(ids, [1, 2, 3, 4]);
    // Frames are handled in order, so every repeat was already dropped.
    assert!(matches!(stream.try_recv(), Err(mpsc::error::TryRecvError::Empty)));
}

#[tokio::test]
async fn a_lost_connection_resubscribes_after_the_last_delivered_message() {
    let (leader, _client, mut stream) = subscribed_client().await;
    leader.push(deliver(&[1, 2], "bob")).await;
    assert_eq!(next_id(&mut stream).await, 1);
    assert_eq!(next_id(&mut stream).await, 2);

    leader.close_latest().await;
    let received = leader
        .wait_for("a resubscription on a new connection", |received| {
            received.iter().any(|r| r.connection == 1 && matches!(r.request, Request::Subscribe { .. }))
        })
        .await;
    let resubscription = received.iter().find(|r| r.connection == 1).expect("found");
    assert_eq!(resubscription.request, Request::Subscribe { name: "bob".into(), after: 2 });
    // The replica re-sends from its read position; the repeat is dropped.
    leader.push(deliver(&[2, 3], "bob")).await;
    assert_eq!(next_id(&mut stream).await, 3);
}

#[tokio::test]
async fn only_shown_messages_are_acknowledged() {
    let (leader, client, mut stream) = subscribed_client().await;
    leader.push(deliver(&[1, 2, 3], "bob")).await;
    for expected in 1..=3 {
        assert_eq!(next_id(&mut stream).await, expected);
    }
    client.shown("bob", 1);
    client.shown("bob", 2);
    client.flush().await.expect("acknowledged");
    let acknowledged = acks(&leader.received());
    assert_eq!(acknowledged.last(), Some(&2));
    assert!(acknowledged.iter().all(|through| *through <= 2), "{acknowledged:?}");

    client.shown("bob", 3);
    client.flush().await.expect("acknowledged");
    assert_eq!(acks(&leader.received()).last(), Some(&3));
}

#[tokio::test]
async fn messages_shown_in_a_stream_share_acknowledgements() {
    let (leader, client, mut stream) = subscribed_client().await;
    let ids: Vec<MessageId> = (1..=50).collect();
    leader.push(deliver(&ids, "bob")).await;
    let started = tokio::time::Instant::now();
    for expected in ids {
        assert_eq!(next_id(&mut stream).await, expected);
        client.shown("bob", expected);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    client.flush().await.expect("acknowledged");
    let acknowledged = acks(&leader.received());
    assert_eq!(acknowledged.last(), Some(&50));
    // At most one per ACK_INTERVAL while the stream lasts, plus the first
    // and the flush; one per message before the interval existed.
    let bound = elapsed.as_millis() / chorus_client::limits::ACK_INTERVAL.as_millis() + 2;
    assert!(acknowledged.len() as u128 <= bound, "{} acks in {elapsed:?}: {acknowledged:?}", acknowledged.len());
    assert!(acknowledged.len() < 25, "{acknowledged:?}");
}

/// The read positions posts carried, in order.
fn carried(received: &[Received]) -> Vec<Option<MessageId>> {
    received
        .iter()
        .filter_map(|r| match &r.request {
            Request::Command { read_through, .. } => Some(*read_through),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_send_carries_the_read_position_so_no_ack_is_needed() {
    let (leader, client, mut stream) = subscribed_client().await;
    leader.push(deliver(&[1, 2, 3], "bob")).await;
    for expected in 1..=3 {
        assert_eq!(next_id(&mut stream).await, expected);
    }
    client.shown("bob", 2);
    assert_eq!(client.send("bob", "alice", "hi").await, Ok(9));
    // Another account's post does not carry bob's position.
    client.shown("bob", 3);
    assert_eq!(client.send("carol", "alice", "hi").await, Ok(9));
    assert_eq!(client.send("bob", "alice", "again").await, Ok(9));
    assert_eq!(client.send("bob", "alice", "nothing new").await, Ok(9));
    client.flush().await.expect("nothing left to acknowledge");
    let received = leader.received();
    assert_eq!(carried(&received), vec![Some(2), None, Some(3), None]);
    assert_eq!(acks(&received), Vec::<MessageId>::new(), "the posts carried every position");
}

#[tokio::test]
async fn a_position_a_refused_post_carried_is_acknowledged_alone() {
    let policy: fake::Policy = Box::new(|request: &Request, _| match request {
        Request::Command { .. } => Action::Reply(Err(RequestError::Chat(ChatError::MailboxFull { name: "a".into() }))),
        other => Action::Reply(Ok(answer(other))),
    });
    let leader = FakeReplica::start(0, policy).await;
    let client = Client::connect_with(Endpoints::plaintext(vec![leader.address()]), options_starting_at(0))
        .await
        .expect("connects");
    let mut stream = client.deliveries().expect("first take");
    client.subscribe("bob").await.expect("subscribes");
    leader.push(deliver(&[1], "bob")).await;
    assert_eq!(next_id(&mut stream).await, 1);
    client.shown("bob", 1);
    assert!(client.send("bob", "alice", "hi").await.is_err());
    client.flush().await.expect("acknowledged");
    let received = leader.received();
    assert_eq!(carried(&received), vec![Some(1)]);
    assert_eq!(acks(&received), vec![1], "an error does not confirm what the post carried");
}

#[tokio::test]
async fn status_is_fetched_from_one_replica() {
    let report = StatusReport {
        id: 0,
        pid: 42,
        role: Role::Leader,
        leader: Some(0),
        ballot: Ballot { round: 3, replica: 0 },
        chosen_through: 7,
        applied_through: 7,
        last_slot: 8,
        accounts: 2,
        clients_connected: 1,
        snapshot_slot: 4,
        compacted_through: 2,
        log_disk_bytes: 1 << 20,
        snapshot_disk_bytes: 4096,
        snapshot_fetch: None,
        incarnation: 0,
    };
    let expected = report.clone();
    let replica =
        FakeReplica::start(0, Box::new(move |_: &Request, _| Action::Reply(Ok(Response::Status(report.clone())))))
            .await;
    let fetched = fetch_status(&Endpoints::plaintext(vec![replica.address()]), 0, Duration::from_secs(5)).await;
    assert_eq!(fetched, Ok(expected));
}
