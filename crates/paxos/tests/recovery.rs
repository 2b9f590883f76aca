//! Rebuilding after a disk loss, one handler at a time: a rebuilding
//! replica never votes; peers record its new incarnation durably before
//! answering; it votes only once it learned far enough; votes from a lost
//! incarnation are discarded by candidates and leaders.

mod support;

use chorus_paxos::*;
use support::*;

const OLD: Ballot = Ballot { round: 3, replica: 1 };

/// Replica `id` of {0, 1, 2} started on an empty, non-founding disk,
/// with its first `Recover` drained; returns the replica and the nonce.
fn rebuilding(id: ReplicaId) -> (Replica, u64) {
    let mut r = replica(id, DurableState { recovering: true, ..DurableState::default() });
    assert_eq!(r.role(), Role::Recovering);
    let ready = r.ready();
    assert_eq!(ready.messages.len(), 2, "asks both peers");
    let Message::Recover { incarnation, nonce } = ready.messages[0].message else { panic!("expected Recover") };
    assert_eq!(incarnation, 1);
    (r, nonce)
}

fn incarnations(pairs: &[(ReplicaId, u64)]) -> Incarnations {
    let mut table = Incarnations::default();
    for (replica, incarnation) in pairs {
        table.raise(*replica, *incarnation);
    }
    table
}

fn ack(incarnation: u64, nonce: u64, promised: Ballot, last_slot: Slot) -> Message {
    let incarnations = incarnations(&[(0, incarnation)]);
    Message::RecoverAck { incarnation, nonce, promised, last_slot, incarnations }
}

#[test]
fn a_rebuilding_replica_never_votes() {
    let (mut r, _) = rebuilding(0);
    let ballot = Ballot::new(9, 1);
    r.step(envelope(1, 0, Message::Prepare { ballot, from_slot: 1 }));
    r.step(envelope(1, 0, Message::Accept { ballot, entries: vec![(1, batch(b"x"))], chosen_through: 0 }));
    r.step(envelope(1, 0, Message::Heartbeat { ballot, chosen_through: 0, read_round: 1 }));
    r.step(envelope(2, 0, Message::PreVote { round: 20, chosen_through: 0 }));
    tick(&mut r, chorus_limits::ELECTION_TICKS_MAX * 3);
    let ready = r.ready();
    for envelope in &ready.messages {
        match &envelope.message {
            Message::Recover { .. } => {}
            Message::PreVoteReply { granted, .. } => assert!(!granted, "granted a pre-vote"),
            other => panic!("a rebuilding replica sent {other:?}"),
        }
    }
    assert!(ready.write.is_none_or(|w| w.entries.is_empty()), "accepted an entry while rebuilding");
    assert_eq!(r.role(), Role::Recovering, "stood for election while rebuilding");
}

#[test]
fn a_peer_records_the_new_incarnation_before_it_answers() {
    let mut peer = replica(1, DurableState { promised: OLD, ..DurableState::default() });
    peer.ready();
    peer.step(envelope(0, 1, Message::Recover { incarnation: 1, nonce: 77 }));
    let ready = peer.ready();
    let write = ready.write.expect("the incarnation is written");
    assert_eq!(write.incarnations, Some(incarnations(&[(0, 1)])));
    assert!(ready.messages.is_empty(), "answered before the write was durable");
    peer.step(Event::Persisted(write.id));
    let expected = out(1, 0, ack(1, 77, OLD, 0));
    assert_eq!(peer.ready().messages, vec![expected.clone()]);
    // The same request again (the answer was lost) is answered again;
    // another attempt with the same number is refused.
    peer.step(envelope(0, 1, Message::Recover { incarnation: 1, nonce: 77 }));
    assert_eq!(peer.ready().messages, vec![expected]);
    peer.step(envelope(0, 1, Message::Recover { incarnation: 1, nonce: 78 }));
    assert_eq!(peer.ready().messages, vec![out(1, 0, Message::RecoverNack { known: 1 })]);
}

#[test]
fn a_refused_attempt_retries_above_the_known_incarnation() {
    let (mut r, nonce) = rebuilding(0);
    r.step(envelope(1, 0, Message::RecoverNack { known: 4 }));
    let expected = to_peers(0, Message::Recover { incarnation: 5, nonce });
    assert_eq!(r.ready().messages, expected);
}

#[test]
fn votes_only_after_learning_through_every_reported_log() {
    let (mut r, nonce) = rebuilding(0);
    let high = Ballot::new(7, 2);
    r.step(envelope(1, 0, ack(1, nonce, OLD, 2)));
    assert_eq!(r.role(), Role::Recovering, "one of the two others is not enough");
    r.step(envelope(2, 0, ack(1, nonce, high, 3)));
    let ready = r.ready();
    assert_eq!(ready.write.as_ref().and_then(|w| w.promised), Some(high), "promise raised to the highest reported");
    assert_eq!(r.role(), Role::Recovering, "has not learned slots 1..=3 yet");
    assert!(ready.messages.iter().any(|e| matches!(e.message, Message::CatchupRequest { from_slot: 1 })));
    let entries = (1..=3).map(|slot| (slot, batch(&[slot as u8]))).collect();
    r.step(envelope(2, 0, Message::Catchup { entries, chosen_through: 3 }));
    let ready = r.ready();
    assert_eq!(r.role(), Role::Follower);
    let write = ready.write.expect("the new incarnation is written");
    assert!(write.recovered);
    assert_eq!(write.incarnations.map(|t| t.get(0)), Some(1));
    // Its votes now carry the new incarnation, once that write is durable.
    let ballot = Ballot::new(8, 1);
    r.step(envelope(1, 0, Message::Prepare { ballot, from_slot: 4 }));
    assert!(r.ready().messages.is_empty(), "promised before its recovery was durable");
    r.step(Event::Persisted(write.id + 1));
    let sent = r.ready().messages;
    let Message::Promise { incarnations: table, .. } = &sent[0].message else { panic!("expected a promise") };
    assert_eq!(table.get(0), 1);
}

/// Cluster {0..5}: replica 1 is the leader; replica 2 voted for slot 1 in
/// incarnation 0, then lost its disk; replica 3 learned incarnation 1.
#[test]
fn a_leader_drops_votes_of_a_lost_incarnation() {
    let config = Config::new(1, vec![0, 1, 2, 3, 4], 5);
    let mut leader = Replica::new(config, DurableState::default(), 0);
    for _ in 0..chorus_limits::ELECTION_TICKS_MAX {
        leader.step(Event::Tick);
        if leader.role() == Role::PreCandidate {
            break;
        }
    }
    let round = match leader.ready().messages[0].message {
        Message::PreVote { round, .. } => round,
        ref other => panic!("expected a pre-vote, got {other:?}"),
    };
    for peer in [0, 2] {
        leader.step(envelope(peer, 1, Message::PreVoteReply { round, granted: true, promised: Ballot::ZERO }));
    }
    let ballot = Ballot::new(round, 1);
    let write = leader.ready().write.expect("own promise");
    leader.step(Event::Persisted(write.id));
    let promise = |table: Incarnations| Message::Promise {
        ballot,
        from_slot: 1,
        entries: vec![],
        truncated: false,
        chosen_through: 0,
        incarnations: table,
    };
    leader.step(envelope(0, 1, promise(Incarnations::default())));
    leader.step(envelope(2, 1, promise(Incarnations::default())));
    assert_eq!(leader.role(), Role::Leader);
    leader.propose(b"m".to_vec()).expect("leader accepts");
    let write = leader.ready().write.expect("slot written");
    leader.step(Event::Persisted(write.id));
    let accepted =
        |table: Incarnations| Message::Accepted { ballot, slots: vec![1], chosen_through: 0, incarnations: table };
    leader.step(envelope(2, 1, accepted(Incarnations::default())));
    // Leader + replica 2 = 2 of 5; replica 3 knows replica 2 lost its disk.
    leader.step(envelope(3, 1, accepted(incarnations(&[(2, 1)]))));
    assert_eq!(leader.status().chosen_through, 0, "a vote of the lost incarnation was counted");
    leader.step(envelope(4, 1, accepted(Incarnations::default())));
    assert_eq!(leader.status().chosen_through, 1);
}

#[test]
fn a_candidate_drops_promises_of_a_lost_incarnation() {
    let mut r = replica(0, DurableState::default());
    let round = start_pre_vote(&mut r);
    r.step(envelope(1, 0, Message::PreVoteReply { round, granted: true, promised: Ballot::ZERO }));
    let ballot = Ballot::new(round, 0);
    let write = r.ready().write.expect("own promise");
    // Replica 1's promise comes from incarnation 0, but this candidate
    // already recorded incarnation 1 of it.
    r.step(envelope(1, 0, Message::Recover { incarnation: 1, nonce: 3 }));
    r.step(Event::Persisted(write.id));
    let promise = empty_promise(ballot);
    r.step(envelope(1, 0, promise));
    assert_eq!(r.role(), Role::Candidate, "counted a promise of the lost incarnation");
}

#[test]
fn a_rebuilding_replica_asks_its_leader_to_fill_slots_nobody_proposes() {
    let (mut r, nonce) = rebuilding(0);
    r.step(envelope(1, 0, ack(1, nonce, OLD, 5)));
    r.step(envelope(2, 0, ack(1, nonce, OLD, 2)));
    let ballot = Ballot::new(4, 1);
    r.step(envelope(1, 0, Message::Heartbeat { ballot, chosen_through: 0, read_round: 0 }));
    r.ready();
    tick(&mut r, chorus_limits::ELECTION_TICKS_MIN);
    let sent = r.ready().messages;
    assert!(sent.contains(&out(0, 1, Message::FillRequest { through: 5 })), "{sent:?}");
}

#[test]
fn a_leader_fills_requested_slots_past_its_log_with_noops() {
    let mut leader = replica(1, DurableState::default());
    let ballot = elect(&mut leader);
    leader.step(envelope(0, 1, Message::FillRequest { through: 3 }));
    let ready = leader.ready();
    let noops: Vec<(Slot, Value)> = (1..=3).map(|slot| (slot, Value::Noop)).collect();
    let accept = Message::Accept { ballot, entries: noops, chosen_through: 0 };
    assert!(ready.messages.contains(&out(1, 0, accept)), "{:?}", ready.messages);
    leader.step(envelope(0, 1, Message::FillRequest { through: 2 }));
    assert!(leader.ready().messages.is_empty(), "slots already proposed are not proposed again");
}
