//! Rooms through the real [`Machine`] of a one-replica cluster: members
//! see one order, an offline member catches up on connect, acks move the
//! read positions, and every room request acts only for the signed-in
//! account.

mod common;

use chorus_chat::{Command, HistoryBounds, HistoryPage, Message, MessageId, Outcome};
use chorus_proto::{Password, Request, RequestError, Response, ServerFrame};
use chorus_server::machine::ConnId;
use common::Lone;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

const ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
const CLIENT: u64 = 31;
const PASSWORD: &str = "room password";

/// The lone leader with one connection per account, signed in: `alice` on
/// 1, `bob` on 2, `carol` on 3.
struct Cluster {
    lone: Lone,
    next_seq: u64,
}

impl Deref for Cluster {
    type Target = Lone;
    fn deref(&self) -> &Lone {
        &self.lone
    }
}

impl DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Lone {
        &mut self.lone
    }
}

const NAMES: [&str; 3] = ["alice", "bob", "carol"];

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_room_history(None)
    }

    /// As `new`, with the cluster file's room history bounds.
    fn with_room_history(bounds: Option<HistoryBounds>) -> Cluster {
        let mut cluster = Cluster { lone: Lone::new(|machine| machine.with_room_history(bounds)), next_seq: 1 };
        for (conn, name) in (1..).zip(NAMES) {
            cluster.machine.connected(conn, ADDRESS);
            assert_eq!(cluster.ask(conn, Request::Register { client: CLIENT + conn }), Ok(Response::Registered));
            let password = Password(PASSWORD.into());
            let create = Request::CreateAccount { client: CLIENT + conn, seq: 1, name: name.into(), password };
            assert_eq!(cluster.ask(conn, create), Ok(Response::Outcome(Outcome::Created)));
            let sign_in = Request::SignIn { name: name.into(), password: Password(PASSWORD.into()) };
            assert!(matches!(cluster.ask(conn, sign_in), Ok(Response::SignedIn { .. })));
        }
        cluster
    }

    /// Runs `command` exactly once on `conn`'s session.
    fn command(&mut self, conn: ConnId, command: Command) -> Result<Response, RequestError> {
        self.next_seq += 1;
        let request = Request::Command { client: CLIENT + conn, seq: self.next_seq, command, read_through: None };
        self.ask(conn, request)
    }

    fn say(&mut self, conn: ConnId, room: &str, text: &str) -> MessageId {
        let from = NAMES[conn as usize - 1].to_string();
        let say = Command::Say { from, room: room.into(), text: text.into() };
        match self.command(conn, say) {
            Ok(Response::Outcome(Outcome::Sent { id })) => id,
            other => panic!("say answered {other:?}"),
        }
    }

    fn subscribe(&mut self, conn: ConnId, after: MessageId) {
        let name = NAMES[conn as usize - 1].to_string();
        assert_eq!(self.ask(conn, Request::Subscribe { name, after }), Ok(Response::Subscribed));
    }

    /// The messages delivered to `conn` since the last call.
    fn delivered(&mut self, conn: ConnId) -> Vec<Message> {
        let frames = std::mem::take(self.out.0.entry(conn).or_default());
        let delivered = frames.into_iter().flat_map(|frame| match frame {
            ServerFrame::Deliver { messages } => messages,
            _ => Vec::new(),
        });
        delivered.collect()
    }
}

/// (id, room, text) of what was delivered, to compare across members.
fn seen(messages: &[Message]) -> Vec<(MessageId, Option<String>, String)> {
    messages.iter().map(|m| (m.id, m.room.clone(), m.text.clone())).collect()
}

fn join(cluster: &mut Cluster, conn: ConnId, room: &str) {
    let name = NAMES[conn as usize - 1].to_string();
    let joined = cluster.command(conn, Command::Join { name, room: room.into() });
    assert_eq!(joined, Ok(Response::Outcome(Outcome::Joined)));
}

#[test]
fn members_see_one_order_and_an_offline_member_catches_up_on_connect() {
    let mut cluster = Cluster::new();
    for conn in 1..=3 {
        join(&mut cluster, conn, "#r");
    }
    cluster.subscribe(1, 0);
    cluster.subscribe(2, 0);
    let mut ids = vec![cluster.say(1, "#r", "one"), cluster.say(2, "#r", "two")];
    let direct = Command::Send { from: "bob".into(), to: "alice".into(), text: "direct".into() };
    assert!(matches!(cluster.command(2, direct), Ok(Response::Outcome(Outcome::Sent { .. }))));
    let broadcast = Command::Broadcast { from: "carol".into(), text: "to all".into() };
    assert!(matches!(cluster.command(3, broadcast), Ok(Response::Outcome(Outcome::Sent { .. }))));
    ids.push(cluster.say(1, "#r", "three"));
    let in_room = |messages: &[Message]| seen(messages).into_iter().filter(|m| m.1.as_deref() == Some("#r")).collect();
    let (alice, bob): (Vec<Message>, Vec<Message>) = (cluster.delivered(1), cluster.delivered(2));
    let alice_room: Vec<_> = in_room(&alice);
    assert_eq!(alice_room, in_room(&bob), "one order for every member");
    assert_eq!(alice_room.iter().map(|m| m.0).collect::<Vec<_>>(), ids, "the log's order, no gaps");
    assert!(alice.windows(2).all(|pair| pair[0].id < pair[1].id), "a member's stream increases");
    assert!(alice.iter().any(|m| m.text == "direct") && alice.iter().any(|m| m.text == "to all"));
    assert!(cluster.delivered(3).is_empty(), "carol is not connected");
    cluster.subscribe(3, 0);
    let carol = cluster.delivered(3);
    assert_eq!(in_room(&carol), alice_room, "carol catches up in the same order");
    assert!(carol.iter().any(|m| m.text == "to all" && m.room.as_deref() == Some("#all")));
    let last = carol.last().expect("carol caught up").id;
    let ack = Request::Ack { name: "carol".into(), through: last };
    assert_eq!(cluster.ask(3, ack), Ok(Response::Acked));
    cluster.subscribe(3, 0);
    assert!(cluster.delivered(3).is_empty(), "an ack moves carol's read position in every room");
    let four = cluster.say(2, "#r", "four");
    assert_eq!(cluster.delivered(3).iter().map(|m| m.id).collect::<Vec<_>>(), [four], "then live messages");
}

#[test]
fn history_and_rooms_are_linearizable_reads() {
    let mut cluster = Cluster::new();
    join(&mut cluster, 1, "#r");
    join(&mut cluster, 2, "#r");
    let ids: Vec<MessageId> = (0..5).map(|i| cluster.say(1 + i % 2, "#r", &format!("m{i}"))).collect();
    let history = |before| Request::History { name: "bob".into(), room: "#r".into(), before, count: 3 };
    let Ok(Response::History(HistoryPage { messages, more })) = cluster.ask(2, history(None)) else {
        panic!("a history page");
    };
    assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..]);
    assert!(more);
    let Ok(Response::History(older)) = cluster.ask(2, history(Some(ids[2]))) else { panic!("a history page") };
    assert_eq!(older.messages.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
    assert!(!older.more);
    let Ok(Response::Rooms(rooms)) = cluster.ask(3, Request::Rooms { pattern: Some("^#r$".into()) }) else {
        panic!("a rooms listing");
    };
    assert_eq!((rooms.rooms[0].name.as_str(), rooms.rooms[0].members), ("#r", 2));
    let carol_reads = Request::History { name: "carol".into(), room: "#r".into(), before: None, count: 3 };
    assert!(matches!(cluster.ask(3, carol_reads), Err(RequestError::Chat(_))), "carol is not a member");
}

#[test]
fn room_commands_act_only_for_the_signed_in_account() {
    let mut cluster = Cluster::new();
    join(&mut cluster, 1, "#r");
    let forged = [
        Command::Join { name: "alice".into(), room: "#s".into() },
        Command::Leave { name: "alice".into(), room: "#r".into() },
        Command::Say { from: "alice".into(), room: "#r".into(), text: "forged".into() },
        Command::Broadcast { from: "alice".into(), text: "forged".into() },
    ];
    for command in forged {
        let result = cluster.command(2, command.clone());
        assert!(matches!(result, Err(RequestError::Unauthorized(_))), "{command:?}: {result:?}");
    }
    let peek = Request::History { name: "alice".into(), room: "#r".into(), before: None, count: 3 };
    assert!(matches!(cluster.ask(2, peek), Err(RequestError::Unauthorized(_))));
    let full = "#".to_string() + &"x".repeat(chorus_limits::ROOM_NAME_CHARS_MAX);
    let too_long = Command::Join { name: "bob".into(), room: full };
    assert!(matches!(cluster.command(2, too_long), Err(RequestError::Chat(_))), "room names are bounded");
}

#[test]
fn the_leader_proposes_the_cluster_files_room_history_bounds_and_clients_cannot() {
    let small = HistoryBounds { messages: 3, bytes: chorus_limits::ROOM_HISTORY_BYTES_MIN as u32 };
    let mut cluster = Cluster::with_room_history(Some(small));
    assert_eq!(cluster.machine.chat().room_history(), small, "applied through the log");
    join(&mut cluster, 1, "#x");
    for i in 0..5 {
        cluster.say(1, "#x", &format!("m{i}"));
    }
    let request = Request::History { name: "alice".into(), room: "#x".into(), before: None, count: 64 };
    let Ok(Response::History(page)) = cluster.ask(1, request) else { panic!("history refused") };
    assert_eq!(page.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["m2", "m3", "m4"]);
    let forged = Command::Configure { room_history: HistoryBounds::MAX };
    assert!(matches!(cluster.command(1, forged), Err(RequestError::BadRequest(_))), "not a client's command");
    assert_eq!(cluster.machine.chat().room_history(), small);
}

#[test]
fn a_post_carries_its_senders_read_position_and_nothing_else_may() {
    let mut cluster = Cluster::new();
    join(&mut cluster, 1, "#r");
    join(&mut cluster, 2, "#r");
    let first = cluster.say(1, "#r", "one");
    cluster.next_seq += 1;
    let say = Command::Say { from: "bob".into(), room: "#r".into(), text: "two".into() };
    let carried =
        Request::Command { client: CLIENT + 2, seq: cluster.next_seq, command: say, read_through: Some(first) };
    assert!(matches!(cluster.ask(2, carried), Ok(Response::Outcome(Outcome::Sent { .. }))));
    // bob's position moved with his post: a new subscription starts after it.
    cluster.subscribe(2, 0);
    let texts: Vec<String> = cluster.delivered(2).into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["two".to_string()]);

    cluster.next_seq += 1;
    let leave = Command::Leave { name: "bob".into(), room: "#r".into() };
    let refused = Request::Command { client: CLIENT + 2, seq: cluster.next_seq, command: leave, read_through: Some(1) };
    assert!(matches!(cluster.ask(2, refused), Err(RequestError::BadRequest(_))));
}
