//! Hostile input against real replicas: random bytes, a huge length
//! prefix, a truncated frame, a wrong protocol version, a sender that
//! dribbles one byte a second, a request left half-sent, a flood of
//! requests on one connection, a flood of connections, a flood of wrong
//! passwords, and strangers on the peer port. These attack the frames
//! themselves, so they run on a plaintext cluster (`--insecure`), where the
//! raw bytes reach the frame code exactly as sent.
//!
//! Then the attacks that only TLS makes possible, on a TLS cluster: a
//! plaintext client on the TLS port, connections that never finish their
//! handshake, frame attacks inside a TLS session, and impostors on the
//! peer port (no certificate, a certificate from another CA, a valid
//! certificate of one replica claiming to be another).
//!
//! After each attack every replica still runs (same pid), ordinary clients
//! are served, and the replicated state is unchanged.

mod common;

use chorus_client::{Client, ClientError, ClientOptions, Endpoints};
use chorus_paxos::{Ballot, Envelope, Message};
use chorus_proto::{
    encode_frame, ClientFrame, ClusterFile, Hello, Password, Peer, PeerFrame, Request, RequestError, Response,
    ServerFrame, PROTOCOL_VERSION,
};
use chorus_tls::{CertificateAuthority, ClientTls, ReplicaTls};
use common::{ChatClient, Cluster};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wrong passwords sent at once by the sign-in flood.
const FAILED_SIGN_INS: usize = 500;

/// Connections opened at once by the flood.
const FLOOD_CONNECTIONS: usize = 1_000;

/// The cluster's limit on connections from one address.
const PER_ADDRESS: usize = 200;

/// Requests pipelined on one connection by the request flood (well past
/// the burst and a second's worth of the per-connection rate).
const FLOOD_REQUESTS: usize = 30_000;

/// A cluster with one account holding one queued message, and what every
/// attack must leave as it was.
struct Target {
    cluster: Cluster,
    client: ChatClient,
    pids: Vec<u64>,
    digests: Vec<(u64, u64)>,
}

impl Target {
    /// A cluster with extra flags (`--insecure` for plaintext).
    fn start(flags: &[&str]) -> Target {
        let per_address = PER_ADDRESS.to_string();
        let mut args = vec!["--connections-per-address", &per_address];
        args.extend_from_slice(flags);
        let cluster = Cluster::start_with(3, &args);
        let mut client = cluster.client();
        assert_eq!(client.command("create mallory-target")["ok"], true);
        assert_eq!(client.command("send mallory-target kept")["ok"], true);
        let pids = pids(&cluster);
        let digests = settled_digests(&cluster);
        Target { cluster, client, pids, digests }
    }

    fn client_addr(&self, id: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.cluster.port + id))
    }

    fn peer_addr(&self, id: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.cluster.port + self.cluster.replicas as u16 + id))
    }

    fn leader_client_addr(&self) -> SocketAddr {
        self.client_addr(self.cluster.wait_for_leader(Duration::from_secs(10)) as u16)
    }

    /// Every replica runs as before, an ordinary client is served, and
    /// the state is what it was.
    fn assert_unharmed(&mut self, attack: &str) {
        assert_eq!(pids(&self.cluster), self.pids, "{attack}: a replica exited");
        let started = Instant::now();
        let listed = self.client.command("list mallory");
        assert_eq!(listed["names"], serde_json::json!(["mallory-target"]), "{attack}: {listed}");
        assert!(started.elapsed() < Duration::from_secs(5), "{attack}: a list took {:?}", started.elapsed());
        assert_eq!(settled_digests(&self.cluster), self.digests, "{attack}: the state changed");
    }
}

fn pids(cluster: &Cluster) -> Vec<u64> {
    cluster.status().iter().map(|row| row["pid"].as_u64().expect("every replica answers")).collect()
}

/// (applied slot, digest) of every replica once all three agree.
fn settled_digests(cluster: &Cluster) -> Vec<(u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let endpoints = endpoints(cluster);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let digests: Vec<(u64, u64)> = (0..cluster.replicas as u8)
            .map(|id| {
                let digest = runtime.block_on(chorus_client::fetch_digest(&endpoints, id, Duration::from_secs(2)));
                digest.map_or((0, 0), |d| (d.applied_through, d.digest))
            })
            .collect();
        if digests.iter().all(|d| d.1 == digests[0].1 && d.0 > 0) {
            // Applied slots may differ by no-ops; the state may not.
            return vec![(0, digests[0].1); digests.len()];
        }
        assert!(Instant::now() < deadline, "replicas did not converge: {digests:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
}

fn hello(peer: Peer) -> Vec<u8> {
    encode_frame(&Hello::new(peer), 1024).expect("hello encodes")
}

/// Reads until the server closes the connection; returns what it sent.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    received
}

/// How many of `streams` were admitted: each refused one hears "too many
/// connections from your address" (then the close); an admitted one, having
/// sent its hello, hears nothing. Waits up to 10 s for the refusals.
fn admitted_after_refusals(streams: &[TcpStream]) -> usize {
    let mut pending: Vec<&TcpStream> = streams.iter().collect();
    for stream in &pending {
        stream.set_nonblocking(true).expect("non-blocking");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending.len() > PER_ADDRESS && Instant::now() < deadline {
        pending.retain(|stream| {
            let mut received = [0; 512];
            match (&**stream).read(&mut received) {
                Ok(n) => !String::from_utf8_lossy(&received[..n]).contains("too many connections from your address"),
                Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    pending.len()
}

/// True when the server closed (or reset) the connection, false when it
/// is still open when the read timeout expires.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn random_bytes(count: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn cluster_file(cluster: &Cluster) -> ClusterFile {
    ClusterFile::load(&cluster.cluster_file()).expect("cluster file")
}

fn endpoints(cluster: &Cluster) -> Endpoints {
    Endpoints::from_cluster(&cluster_file(cluster)).expect("the cluster file's TLS settings")
}

#[test]
fn hostile_clients_and_strangers_change_nothing() {
    let mut target = Target::start(&["--insecure"]);
    let leader = target.leader_client_addr();

    // Random bytes, before and after a valid hello.
    for (seed, with_hello) in [(1, false), (2, true), (3, true)] {
        let mut stream = connect(leader);
        if with_hello {
            stream.write_all(&hello(Peer::Client)).expect("hello sent");
        }
        let _ = stream.write_all(&random_bytes(64 * 1024, seed));
        read_until_closed(&mut stream);
    }
    target.assert_unharmed("random bytes");

    // A length prefix of 4 GiB: refused from the prefix alone, no allocation.
    let rss_before = rss_kib(target.pids[target.cluster.wait_for_leader(Duration::from_secs(5)) as usize]);
    for with_hello in [false, true] {
        let mut stream = connect(leader);
        if with_hello {
            stream.write_all(&hello(Peer::Client)).expect("hello sent");
        }
        stream.write_all(&u32::MAX.to_be_bytes()).expect("prefix sent");
        let answer = read_until_closed(&mut stream);
        assert!(String::from_utf8_lossy(&answer).contains("exceeds the limit"), "a clear error: {answer:?}");
    }
    let rss_after = rss_kib(target.pids[target.cluster.wait_for_leader(Duration::from_secs(5)) as usize]);
    assert!(rss_after < rss_before + 64 * 1024, "memory grew from {rss_before} to {rss_after} KiB");
    target.assert_unharmed("huge length prefix");

    // A truncated frame: the prefix promises 100 bytes, 10 arrive, then EOF.
    let mut stream = connect(leader);
    stream.write_all(&hello(Peer::Client)).expect("hello sent");
    stream.write_all(&100u32.to_be_bytes()).expect("prefix sent");
    stream.write_all(&[7; 10]).expect("part sent");
    stream.shutdown(std::net::Shutdown::Write).expect("half close");
    read_until_closed(&mut stream);
    target.assert_unharmed("truncated frame");

    // A wrong protocol version gets a version error, then the door.
    let mut stream = connect(leader);
    let mut wrong = Hello::new(Peer::Client);
    wrong.version = PROTOCOL_VERSION.wrapping_add(7);
    stream.write_all(&encode_frame(&wrong, 1024).expect("encodes")).expect("hello sent");
    let answer = read_until_closed(&mut stream);
    assert!(!answer.is_empty(), "the replica says why it refuses the version");
    target.assert_unharmed("wrong protocol version");

    // A slow sender dribbling its hello, one byte a second, while an
    // ordinary client works: the replica closes it at its hello deadline.
    let mut slow = connect(leader);
    let dribble = hello(Peer::Client);
    let started = Instant::now();
    let mut closed = false;
    for byte in dribble.iter().cycle().take(12) {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        assert_eq!(target.client.command("list mallory")["names"], serde_json::json!(["mallory-target"]));
        std::thread::sleep(Duration::from_secs(1));
    }
    slow.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    closed = closed || closed_by_server(&mut slow);
    assert!(closed, "a dribbling hello is cut off");
    assert!(started.elapsed() < Duration::from_secs(9), "cut off only after {:?}", started.elapsed());
    target.assert_unharmed("slow sender");

    // A request started after the hello but never finished: closed at the
    // frame deadline with a reason, while an ordinary client is served.
    let mut half = connect(leader);
    half.write_all(&hello(Peer::Client)).expect("hello sent");
    half.write_all(&[0, 0, 0, 10, 1, 2, 3]).expect("part of a frame sent");
    let started = Instant::now();
    assert_eq!(target.client.command("list mallory")["names"], serde_json::json!(["mallory-target"]));
    half.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    let answer = read_until_closed(&mut half);
    let waited = started.elapsed();
    assert!(String::from_utf8_lossy(&answer).contains("took longer"), "a reason: {answer:?}");
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(14), "closed after {waited:?}");
    target.assert_unharmed("half-sent request");

    // A flood of requests on one connection is answered Busy past the rate
    // limit, without starving anyone else.
    let (sent, busy) = request_flood(leader, FLOOD_REQUESTS);
    assert_eq!(sent, FLOOD_REQUESTS);
    eprintln!("request flood: {busy} of {FLOOD_REQUESTS} pipelined requests answered Busy");
    assert!(busy > 0 && busy < FLOOD_REQUESTS, "{busy} of {FLOOD_REQUESTS} requests refused as busy");
    target.assert_unharmed("request flood");

    // A flood of connections from one address, each sending its hello (so
    // an admitted one stays, however slowly the flood is opened): past the
    // cluster's per-address limit they are refused with a reason, and the
    // ordinary client, already connected, is served meanwhile.
    let flood: Vec<TcpStream> = (0..FLOOD_CONNECTIONS)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(leader).ok()?;
            let _ = stream.write_all(&hello(Peer::Client));
            Some(stream)
        })
        .collect();
    assert_eq!(target.client.command("list mallory")["names"], serde_json::json!(["mallory-target"]));
    let admitted = admitted_after_refusals(&flood);
    // The client's own connection and any not yet closed from earlier
    // attacks count against the address too.
    assert!(admitted <= PER_ADDRESS && admitted + 20 >= PER_ADDRESS, "{admitted} admitted, limit {PER_ADDRESS}");
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    target.assert_unharmed("connection flood");

    // Strangers on the peer port: random bytes, a client hello, and a
    // replica id this cluster does not have.
    for id in 0..target.cluster.replicas as u16 {
        let peer_port = target.peer_addr(id);
        let mut stream = connect(peer_port);
        let _ = stream.write_all(&random_bytes(16 * 1024, 10 + u64::from(id)));
        read_until_closed(&mut stream);
        for stranger in [Peer::Client, Peer::Replica(99)] {
            let mut stream = connect(peer_port);
            stream.write_all(&hello(stranger)).expect("hello sent");
            let _ = stream.write_all(&random_bytes(1024, 20 + u64::from(id)));
            read_until_closed(&mut stream);
        }
    }
    target.assert_unharmed("strangers on the peer port");

    // Many peer connections each claiming a 16 MiB frame and sending 100
    // bytes of it: memory follows the bytes sent, not the bytes claimed.
    let leader_id = target.cluster.wait_for_leader(Duration::from_secs(5)) as u16;
    let leader_pid = target.pids[usize::from(leader_id)];
    let rss_before = rss_kib(leader_pid);
    let other = (leader_id + 1) % target.cluster.replicas as u16;
    let claims: Vec<TcpStream> = (0..40)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(target.peer_addr(leader_id)).ok()?;
            stream.write_all(&hello(Peer::Replica(other as u8))).ok()?;
            stream.write_all(&(chorus_limits::PEER_FRAME_BYTES_MAX as u32).to_be_bytes()).ok()?;
            stream.write_all(&[0; 100]).ok()?;
            Some(stream)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let rss_during = rss_kib(leader_pid);
    drop(claims);
    assert!(rss_during < rss_before + 32 * 1024, "peer claims grew memory from {rss_before} to {rss_during} KiB");
    target.assert_unharmed("large claims on the peer port");

    // Wrong passwords for an existing account: the first few are checked
    // (and refused), then every attempt is throttled without any hashing,
    // even the right password; a flood of them changes nothing.
    let guess = |password: &str| Request::SignIn { name: "mallory-target".into(), password: Password(password.into()) };
    let free = chorus_limits::SIGN_IN_FAILURES_FREE as usize;
    let one_by_one: Vec<_> = (0..free + 4).map(|_| pipeline(leader, 1, || guess("a wrong guess")).remove(0)).collect();
    let unauthorized = |r: &Result<Response, RequestError>| matches!(r, Err(RequestError::Unauthorized(_)));
    let throttled = |r: &Result<Response, RequestError>| matches!(r, Err(RequestError::Throttled { .. }));
    assert!(one_by_one[..=free].iter().all(unauthorized), "checked and refused: {one_by_one:?}");
    assert!(one_by_one[free + 1..].iter().all(throttled), "then throttled: {one_by_one:?}");
    let right = pipeline(leader, 1, || guess(common::PASSWORD)).remove(0);
    assert!(throttled(&right), "the right password waits too: {right:?}");
    let flood = pipeline(leader, FAILED_SIGN_INS, || guess("a wrong guess"));
    let checked = flood.iter().filter(|r| unauthorized(r)).count();
    let waited = flood.iter().filter(|r| throttled(r) || matches!(r, Err(RequestError::Busy))).count();
    assert_eq!(checked + waited, FAILED_SIGN_INS, "every guess refused: {flood:?}");
    assert!(checked <= chorus_limits::PASSWORD_JOBS_MAX, "{checked} of the flood's guesses were checked");
    eprintln!("sign-in flood: {checked} of {FAILED_SIGN_INS} pipelined wrong passwords checked, the rest throttled");
    target.assert_unharmed("a flood of failed sign-ins");

    // Every replica's client port, not only the leader's.
    for id in 0..target.cluster.replicas as u16 {
        let mut stream = connect(target.client_addr(id));
        stream.write_all(&hello(Peer::Client)).expect("hello sent");
        let _ = stream.write_all(&random_bytes(8 * 1024, 30 + u64::from(id)));
        read_until_closed(&mut stream);
    }
    target.assert_unharmed("random bytes to every replica");
}

/// Pipelines `count` status requests on one connection while reading the
/// replies; returns (replies, of which `Busy`).
fn request_flood(addr: SocketAddr, count: usize) -> (usize, usize) {
    let results = pipeline(addr, count, || Request::Status);
    let busy = results.iter().filter(|r| matches!(r, Err(RequestError::Busy))).count();
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(RequestError::Busy))), "only status or Busy");
    (results.len(), busy)
}

/// Sends `count` requests made by `request` on one connection, all at
/// once, while reading the replies; returns the results in arrival order.
fn pipeline(addr: SocketAddr, count: usize, request: impl Fn() -> Request) -> Vec<Result<Response, RequestError>> {
    let mut stream = connect(addr);
    let mut requests = hello(Peer::Client);
    for request_id in 1..=count as u64 {
        let frame = ClientFrame { request_id, request: request() };
        requests.extend_from_slice(&encode_frame(&frame, 4096).expect("encodes"));
    }
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || writer.write_all(&requests).expect("requests sent"));
    let mut results = Vec::with_capacity(count);
    while results.len() < count {
        let mut prefix = [0; 4];
        stream.read_exact(&mut prefix).expect("a reply arrives");
        let mut payload = vec![0; u32::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut payload).expect("the reply's body arrives");
        match chorus_proto::decode_payload::<ServerFrame>(&payload).expect("a server frame") {
            ServerFrame::Reply { result, .. } => results.push(result),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    sender.join().expect("sender thread");
    results
}

fn rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("replica status");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS value")
}

/// A blocking TLS session to `addr` as `config` sets up, expecting the
/// server to be `name`; the handshake runs on the first write or read.
type TlsSession = StreamOwned<ClientConnection, TcpStream>;

fn tls_session(config: Arc<ClientConfig>, name: String, addr: SocketAddr) -> TlsSession {
    let name = ServerName::try_from(name).expect("a DNS name");
    let connection = ClientConnection::new(config, name).expect("a client session");
    StreamOwned::new(connection, connect(addr))
}

/// A TLS session to replica `id`'s client port, as an ordinary client.
fn client_session(ca: &str, id: u16, addr: SocketAddr) -> TlsSession {
    let config = ClientTls::new(ca).expect("the cluster CA").config();
    tls_session(config, format!("replica-{id}.chorus"), addr)
}

/// True when the other side ended the session: a clean close, a reset, a
/// TLS alert or a missing close_notify; false when the read timed out.
fn session_ended(session: &mut impl Read) -> bool {
    let mut received = Vec::new();
    match session.read_to_end(&mut received) {
        Ok(_) => true,
        Err(error) => !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// What a TLS session received before it ended.
fn read_session(session: &mut TlsSession) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = session.read_to_end(&mut received);
    received
}

/// A peer's credentials: a certificate chain and its key.
struct Credentials {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Credentials {
    /// Replica `id`'s own, from the files the cluster file names.
    fn of_replica(file: &ClusterFile, id: u8) -> Credentials {
        let replica = file.replica(id).expect("replica listed");
        let cert = replica.tls_cert.as_ref().expect("a certificate path");
        let chain = CertificateDer::pem_file_iter(cert).expect("cert file").map(|c| c.expect("a cert")).collect();
        let key = PrivateKeyDer::from_pem_file(replica.tls_key.as_ref().expect("a key path")).expect("key file");
        Credentials { chain, key }
    }

    /// A certificate for replica `id` from a CA of our own.
    fn foreign(id: u8) -> Credentials {
        let issued = CertificateAuthority::generate().expect("a CA").issue(id).expect("a certificate");
        let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
        Credentials { chain, key }
    }
}

/// A round far above any the test cluster reaches by itself.
const FORGED_ROUND: u64 = 1_000_000;

/// Connects to replica `to`'s peer port with `credentials` (trusting the
/// cluster CA, as any peer may), says hello as replica `claimed` and sends
/// a `Prepare` for round `FORGED_ROUND` owned by `claimed`; returns the
/// session, still open for reading.
fn impostor(target: &Target, ca: &str, credentials: Credentials, to: u8, claimed: u8) -> TlsSession {
    let config = ReplicaTls::peer_config(ca, credentials.chain, credentials.key).expect("a peer configuration");
    let mut session = tls_session(config, format!("replica-{to}.chorus"), target.peer_addr(u16::from(to)));
    let ballot = Ballot { round: FORGED_ROUND, replica: claimed };
    let prepare = Envelope { from: claimed, to, message: Message::Prepare { ballot, from_slot: 1 } };
    let mut bytes = hello(Peer::Replica(claimed));
    bytes.extend(encode_frame(&PeerFrame::Paxos(prepare), chorus_limits::PEER_FRAME_BYTES_MAX).expect("encodes"));
    // The handshake may already fail here (a certificate the replica refuses).
    let _ = session.write_all(&bytes).and_then(|()| session.flush());
    session
}

/// The round of every replica's promised ballot.
fn promised_rounds(cluster: &Cluster) -> Vec<u64> {
    let round = |row: &serde_json::Value| -> u64 {
        let ballot = row["ballot"].as_str().expect("a ballot");
        ballot.split('.').next().and_then(|r| r.parse().ok()).expect("round.replica")
    };
    cluster.status().iter().map(round).collect()
}

#[test]
fn attacks_that_tls_makes_possible_change_nothing() {
    let mut target = Target::start(&[]);
    let file = cluster_file(&target.cluster);
    let ca = file.tls.as_ref().expect("chorus up made a TLS cluster").ca_cert.clone();
    let leader_id = target.cluster.wait_for_leader(Duration::from_secs(10)) as u16;
    let leader = target.client_addr(leader_id);

    plaintext_clients_are_told_to_use_tls(&mut target, leader);
    unfinished_handshakes_hold_nothing(&mut target, &ca, leader_id);
    frame_attacks_inside_tls(&mut target, &ca, leader_id);
    impostors_on_the_peer_port(&mut target, &file, &ca);
}

/// A plaintext hello on the TLS port is answered, in plaintext, with the
/// reason; the client library with a plaintext cluster file fails with it.
fn plaintext_clients_are_told_to_use_tls(target: &mut Target, leader: SocketAddr) {
    let mut stream = connect(leader);
    stream.write_all(&hello(Peer::Client)).expect("hello sent");
    let answer = read_until_closed(&mut stream);
    assert!(String::from_utf8_lossy(&answer).contains("accepts TLS only"), "a clear refusal: {answer:?}");
    let mut stream = connect(leader);
    stream.write_all(&u32::MAX.to_be_bytes()).expect("a huge prefix sent");
    assert!(String::from_utf8_lossy(&read_until_closed(&mut stream)).contains("accepts TLS only"));

    let mut plain = cluster_file(&target.cluster);
    plain.tls = None;
    let options = ClientOptions { call_timeout: Duration::from_secs(3), ..ClientOptions::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let refused = runtime.block_on(Client::connect_with(Endpoints::plaintext(plain.replicas), options));
    match refused {
        Err(ClientError::BadRequest(reason)) => assert!(reason.contains("accepts TLS only"), "{reason}"),
        other => panic!("a plaintext client must be refused with the reason: {other:?}"),
    }
    target.assert_unharmed("plaintext clients on the TLS port");
}

/// Connections that open TCP and stay silent, or dribble a real TLS
/// ClientHello one byte a second, are closed at the 5 s deadline and
/// release their slots: with the address's whole allowance taken by
/// them, a new client is served once they are gone.
fn unfinished_handshakes_hold_nothing(target: &mut Target, ca: &str, leader_id: u16) {
    let leader = target.client_addr(leader_id);
    let mut client_hello = Vec::new();
    let config = ClientTls::new(ca).expect("the cluster CA").config();
    let name = ServerName::try_from(format!("replica-{leader_id}.chorus")).expect("a name");
    ClientConnection::new(config, name).expect("session").write_tls(&mut client_hello).expect("a ClientHello");
    let mut dribbler = connect(leader);
    let dribbling = std::thread::spawn(move || {
        let started = Instant::now();
        let mut cut_off = false;
        for byte in client_hello.iter().take(12) {
            if dribbler.write_all(&[*byte]).is_err() {
                cut_off = true;
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        dribbler.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        (cut_off || closed_by_server(&mut dribbler), started.elapsed())
    });
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..PER_ADDRESS).filter_map(|_| TcpStream::connect(leader).ok()).collect();
    for stream in &mut silent {
        stream.set_read_timeout(Some(Duration::from_secs(8))).expect("timeout");
        assert!(closed_by_server(stream), "a silent connection is closed at the deadline");
    }
    assert!(opened.elapsed() < Duration::from_secs(8), "silent ones closed only after {:?}", opened.elapsed());
    let (cut_off, after) = dribbling.join().expect("dribbler");
    assert!(cut_off && after < Duration::from_secs(9), "a dribbled handshake is cut off (after {after:?})");
    drop(silent);
    let mut fresh = target.cluster.client();
    assert_eq!(fresh.command("list mallory")["names"], serde_json::json!(["mallory-target"]), "slots released");
    fresh.quit();
    // A new client opens a session: that much of the state changes.
    target.digests = settled_digests(&target.cluster);
    target.assert_unharmed("unfinished TLS handshakes");
}

/// The frame attacks inside TLS sessions: the limits and deadlines hold
/// under TLS as they do in plaintext.
fn frame_attacks_inside_tls(target: &mut Target, ca: &str, leader_id: u16) {
    let leader = target.client_addr(leader_id);
    let mut session = client_session(ca, leader_id, leader);
    session.write_all(&hello(Peer::Client)).expect("hello sent");
    session.write_all(&u32::MAX.to_be_bytes()).expect("prefix sent");
    session.flush().expect("flushed");
    let answer = read_session(&mut session);
    assert!(String::from_utf8_lossy(&answer).contains("exceeds the limit"), "a clear error: {answer:?}");

    let mut session = client_session(ca, leader_id, leader);
    let _ = session.write_all(&hello(Peer::Client)).and_then(|()| session.write_all(&random_bytes(64 * 1024, 7)));
    assert!(session_ended(&mut session), "random bytes in a session close it");

    let started = Instant::now();
    let mut session = client_session(ca, leader_id, leader);
    session.conn.complete_io(&mut session.sock).expect("handshake done, then nothing");
    let answer = read_session(&mut session);
    assert!(String::from_utf8_lossy(&answer).contains("no hello in time"), "a reason: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "closed after {:?}", started.elapsed());
    target.assert_unharmed("frame attacks inside TLS");
}

/// Peers without the cluster's credentials, or with one replica's claiming
/// to be another, cannot deliver a consensus message: each forges a
/// `Prepare` from the leader, which would raise a follower's promise if it
/// were taken in. Last, the leader's own credentials show it would be.
fn impostors_on_the_peer_port(target: &mut Target, file: &ClusterFile, ca: &str) {
    let leader = target.cluster.wait_for_leader(Duration::from_secs(10)) as u8;
    let follower = (leader + 1) % 3;
    let third = (leader + 2) % 3;
    let plain_hello = {
        let mut stream = connect(target.peer_addr(u16::from(follower)));
        stream.write_all(&hello(Peer::Replica(leader))).expect("hello sent");
        closed_by_server(&mut stream)
    };
    assert!(plain_hello, "a plaintext peer is closed");
    let config = ClientTls::new(ca).expect("the cluster CA").config();
    let mut anonymous = tls_session(config, format!("replica-{follower}.chorus"), target.peer_addr(follower.into()));
    let _ = anonymous.write_all(&hello(Peer::Replica(leader))).and_then(|()| anonymous.flush());
    assert!(session_ended(&mut anonymous), "a peer without a certificate is closed");
    let mut foreign = impostor(target, ca, Credentials::foreign(leader), follower, leader);
    assert!(session_ended(&mut foreign), "a certificate from another CA is refused");
    let mut lying = impostor(target, ca, Credentials::of_replica(file, third), follower, leader);
    assert!(session_ended(&mut lying), "replica {third}'s certificate cannot speak for replica {leader}");
    let log = std::fs::read_to_string(target.cluster.dir.path().join(format!("replica-{follower}.log")));
    let warning = format!("but its certificate is not for replica-{leader}.chorus");
    assert!(log.expect("replica log").contains(&warning), "the impostor is logged as a warning");
    let rounds = promised_rounds(&target.cluster);
    assert!(rounds.iter().all(|&round| round < FORGED_ROUND), "a forged Prepare was taken in: {rounds:?}");
    target.assert_unharmed("impostors on the peer port");

    // The control: with the leader's own credentials the same Prepare is
    // taken in, so the refusals above are what kept it out.
    let _genuine = impostor(target, ca, Credentials::of_replica(file, leader), follower, leader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while promised_rounds(&target.cluster)[usize::from(follower)] < FORGED_ROUND {
        assert!(Instant::now() < deadline, "the genuine leader's Prepare was not taken in");
        std::thread::sleep(Duration::from_millis(100));
    }
}
