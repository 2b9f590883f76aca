//! Shared by the fuzz targets: reading a byte stream as a replica or a
//! client does, frame by frame, through the real `read_frame`.

use chorus_proto::{encode_frame, read_frame, FrameError};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
}

/// Reads `data` as a stream: first a hello of type `H`, then frames of type
/// `T`, as the real reader does, until the stream ends or a frame is
/// refused. Every frame that decodes must encode again and decode to itself.
pub fn read_stream<H, T>(data: &[u8], max_bytes: usize)
where
    H: DeserializeOwned + Serialize + PartialEq + Debug,
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let mut reader = data;
            let mut buf = Vec::new();
            let hello: Result<H, FrameError> = read_frame(&mut reader, max_bytes, &mut buf).await;
            let Ok(hello) = hello else { return };
            round_trip(&hello, max_bytes);
            while let Ok(frame) = read_frame::<_, T>(&mut reader, max_bytes, &mut buf).await {
                round_trip(&frame, max_bytes);
            }
        })
    });
}

/// A decoded value encodes within the limit it was read under... or is
/// refused as too large, never panics; and what encodes decodes to itself.
pub fn round_trip<T>(value: &T, max_bytes: usize)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Ok(frame) = encode_frame(value, max_bytes) else { return };
    let decoded: T = chorus_proto::decode_payload(&frame[4..]).expect("an encoded frame decodes");
    assert_eq!(&decoded, value, "a frame does not survive a round trip");
}

/// Writes the seed corpora of the frame and command targets (run once, by
/// hand: `cargo test --manifest-path fuzz/Cargo.toml -- --ignored`). The
/// store and snapshot seeds are files copied from a real cluster.
#[cfg(test)]
mod seeds {
    use chorus_chat::{Command, Message};
    use chorus_paxos::{Ballot, Envelope, Message as Message2, Value};
    use chorus_proto::{ClientFrame, Hello, Password, Peer, PeerFrame, Request, RequestError, Response, ServerFrame};
    use std::path::Path;

    fn write(target: &str, name: &str, bytes: &[u8]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }

    fn frame<T: serde::Serialize>(value: &T) -> Vec<u8> {
        chorus_proto::encode_frame(value, 1 << 20).expect("encodes")
    }

    fn token() -> chorus_chat::SessionToken {
        chorus_chat::SessionToken { name: "alice".into(), created: 2, expires_at_millis: 9, mac: [5; 32] }
    }

    #[test]
    #[ignore]
    fn write_seed_corpora() {
        let requests = [
            Request::Register { client: 7 },
            Request::CreateAccount { client: 7, seq: 1, name: "alice".into(), password: Password("hunter2!".into()) },
            Request::SignIn { name: "alice".into(), password: Password("hunter2!".into()) },
            Request::Resume { token: token() },
            Request::Command { client: 7, seq: 3, command: Command::Delete { name: "alice".into() } },
            Request::Command {
                client: 7,
                seq: 2,
                command: Command::Send { from: "alice".into(), to: "bob".into(), text: "hi there".into() },
            },
            Request::List { pattern: Some("^a.*".into()) },
            Request::Command { client: 7, seq: 4, command: Command::Join { name: "alice".into(), room: "#x".into() } },
            Request::Command {
                client: 7,
                seq: 5,
                command: Command::Say { from: "alice".into(), room: "#x".into(), text: "hello room".into() },
            },
            Request::Command {
                client: 7,
                seq: 6,
                command: Command::Broadcast { from: "alice".into(), text: "all".into() },
            },
            Request::Rooms { pattern: Some("^#".into()) },
            Request::History { name: "alice".into(), room: "#x".into(), before: Some(9), count: 10 },
            Request::Subscribe { name: "alice".into(), after: 3 },
            Request::Unsubscribe { name: "alice".into() },
            Request::Ack { name: "alice".into(), through: 9 },
            Request::Status,
        ];
        let mut stream = frame(&Hello::new(Peer::Client));
        for (index, request) in requests.into_iter().enumerate() {
            let one = frame(&ClientFrame { request_id: index as u64 + 1, request });
            stream.extend_from_slice(&one);
        }
        write("client_frame", "session", &stream);
        let mut peer = frame(&Hello::new(Peer::Replica(1)));
        let ballot = Ballot::new(3, 1);
        let messages = [
            Message2::PreVote { round: 3, chosen_through: 5 },
            Message2::Accept { ballot, entries: vec![(6, Value::Batch(vec![b"cmd".to_vec()]))], chosen_through: 5 },
            Message2::Heartbeat { ballot, chosen_through: 6, read_round: 2 },
        ];
        for message in messages {
            peer.extend_from_slice(&frame(&PeerFrame::Paxos(Envelope { from: 1, to: 0, message })));
        }
        write("peer_frame", "link", &peer);
        let message =
            Message { id: 4, from: "alice".into(), to: "bob".into(), room: None, at_millis: 1, text: "hi".into() };
        let replies = [
            ServerFrame::Reply { request_id: 1, result: Ok(Response::Registered) },
            ServerFrame::Reply { request_id: 2, result: Err(RequestError::BadRequest("no".into())) },
            ServerFrame::Reply { request_id: 3, result: Ok(Response::SignedIn { token: token() }) },
            ServerFrame::Reply { request_id: 4, result: Err(RequestError::Throttled { retry_after_millis: 1_000 }) },
            ServerFrame::Reply { request_id: 5, result: Err(RequestError::Unauthorized("wrong".into())) },
            ServerFrame::Deliver { messages: vec![message] },
            ServerFrame::Ended { name: "bob".into(), reason: "gone".into() },
        ];
        let stream: Vec<u8> = replies.iter().flat_map(frame).collect();
        write("server_frame", "replies", &stream);
        for (name, line) in [("create", "create alice"), ("send", "send bob hello  there"), ("list", "list ^a")] {
            write("command", name, line.as_bytes());
        }
        for (name, line) in [("join", "join #x"), ("say", "say #x hi all"), ("history", "history #x 5")] {
            write("command", name, line.as_bytes());
        }
        write("snapshot", "rooms-state", &state_with_rooms().to_snapshot());
    }

    /// A chat state with accounts, a room with history, a broadcast and
    /// small history bounds, built by applying commands.
    fn state_with_rooms() -> chorus_chat::ChatState {
        use chorus_chat::{HistoryBounds, Proposal};
        let hash = "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let mut state = chorus_chat::ChatState::new();
        let commands = [
            Command::RegisterClient,
            Command::Create { name: "alice".into(), password_hash: hash.into() },
            Command::Create { name: "bob".into(), password_hash: hash.into() },
            Command::Join { name: "alice".into(), room: "#x".into() },
            Command::Join { name: "bob".into(), room: "#x".into() },
            Command::Say { from: "alice".into(), room: "#x".into(), text: "one".into() },
            Command::Say { from: "bob".into(), room: "#x".into(), text: "two".into() },
            Command::Broadcast { from: "bob".into(), text: "to all".into() },
            Command::Send { from: "alice".into(), to: "bob".into(), text: "direct".into() },
            Command::Configure { room_history: HistoryBounds { messages: 1, bytes: 5_000 } },
        ];
        for (seq, command) in commands.into_iter().enumerate() {
            let applied = state.apply(&Proposal { client: 7, seq: seq as u64, at_millis: 1, command });
            assert!(applied.reply.is_ok(), "{applied:?}");
        }
        state
    }
}
