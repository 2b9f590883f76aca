//! Phase 2, heartbeats and catch-up, one handler at a time, asserting the
//! whole `Ready` each step produces.

mod support;

use chorus_limits as limits;
use chorus_paxos::*;
use std::collections::BTreeMap;
use support::*;

fn heartbeat(ballot: Ballot, chosen_through: Slot) -> Message {
    Message::Heartbeat { ballot, chosen_through, read_round: 0 }
}

fn heartbeat_ack(ballot: Ballot) -> Message {
    Message::HeartbeatAck { ballot, read_round: 0, chosen_through: 0 }
}

fn accept(ballot: Ballot, entries: Vec<(Slot, Value)>, chosen_through: Slot) -> Message {
    Message::Accept { ballot, entries, chosen_through }
}

/// `rounds` heartbeats from leader 0 to both peers.
fn heartbeats(ballot: Ballot, rounds: usize) -> Vec<Envelope> {
    (0..rounds).flat_map(|_| to_peers(0, heartbeat(ballot, 0))).collect()
}

/// A value exactly `bytes` in size by `Value::size_bytes`.
fn value_of(bytes: usize) -> Value {
    Value::batch(vec![vec![7u8; bytes - limits::VALUE_OVERHEAD_BYTES]])
}

/// Replica 1 with `count` chosen entries of `bytes` each, drained.
fn learner_with_chosen(count: u64, bytes: usize) -> (Replica, Vec<(Slot, Value)>) {
    let chosen: Vec<(Slot, Value)> = (1..=count).map(|slot| (slot, value_of(bytes))).collect();
    let entries: BTreeMap<Slot, Entry> = chosen
        .iter()
        .map(|(slot, value)| (*slot, Entry { ballot: Ballot::new(1, 0), value: value.clone(), chosen: true }))
        .collect();
    let mut r = replica(
        1,
        DurableState {
            promised: Ballot::new(1, 0),
            entries,
            chosen_through: count,
            compacted_through: 0,
            ..Default::default()
        },
    );
    assert_eq!(r.ready().committed, chosen);
    (r, chosen)
}

#[test]
fn accept_and_heartbeat_below_the_promise_are_rejected_without_a_write() {
    let promised = Ballot::new(5, 2);
    let mut r = replica(1, DurableState { promised, ..DurableState::default() });
    let stale = Ballot::new(3, 0);
    r.step(envelope(0, 1, accept(stale, vec![(1, batch(b"x"))], 0)));
    let reject = out(1, 0, Message::Reject { ballot: stale, promised });
    assert_eq!(r.ready(), only_messages(vec![reject.clone()]));
    r.step(envelope(0, 1, heartbeat(stale, 0)));
    assert_eq!(r.ready(), only_messages(vec![reject]));
    assert_eq!(r.status().leader, None);
}

#[test]
fn accept_and_heartbeat_relayed_by_a_replica_that_does_not_own_the_ballot_are_ignored() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(1, 2);
    r.step(envelope(0, 1, accept(ballot, vec![(1, batch(b"x"))], 0)));
    assert_eq!(r.ready(), Ready::default());
    r.step(envelope(0, 1, heartbeat(ballot, 0)));
    assert_eq!(r.ready(), Ready::default());
    assert_eq!((r.status().promised, r.status().leader), (Ballot::ZERO, None));
}

#[test]
fn accept_leaves_a_slot_known_chosen_past_the_prefix_as_it_is() {
    let mut r = replica(1, DurableState::default());
    r.step(envelope(0, 1, Message::Catchup { entries: vec![(2, batch(b"v"))], chosen_through: 2 }));
    let learned = Entry { ballot: Ballot::ZERO, value: batch(b"v"), chosen: true };
    let expected = Ready {
        write: Some(WriteBatch { id: 1, entries: vec![(2, learned)], ..WriteBatch::default() }),
        messages: vec![out(1, 0, Message::CatchupRequest { from_slot: 1 })],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
    let ballot = Ballot::new(1, 0);
    r.step(envelope(0, 1, accept(ballot, vec![(1, batch(b"a")), (2, batch(b"v"))], 0)));
    let write = WriteBatch {
        id: 2,
        promised: Some(ballot),
        entries: vec![(1, accepted(ballot, batch(b"a")))],
        chosen_through: None,
        ..WriteBatch::default()
    };
    assert_eq!(r.ready(), only_write(write));
    r.step(Event::Persisted(2));
    let reply = Message::Accepted { ballot, slots: vec![1, 2], chosen_through: 0, incarnations: Default::default() };
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, reply)]));
}

#[test]
#[should_panic(expected = "two values chosen for slot 2")]
fn learning_a_second_value_for_a_chosen_slot_stops_the_replica() {
    let mut r = replica(1, DurableState::default());
    r.step(envelope(0, 1, Message::Catchup { entries: vec![(2, batch(b"v"))], chosen_through: 2 }));
    r.ready();
    r.step(envelope(2, 1, Message::Catchup { entries: vec![(2, batch(b"w"))], chosen_through: 2 }));
}

#[test]
fn leader_heartbeats_every_heartbeat_ticks() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    assert_eq!(limits::HEARTBEAT_TICKS, 3);
    for _ in 0..2 {
        tick(&mut r, 1);
        assert_eq!(r.ready(), Ready::default());
    }
    tick(&mut r, 1);
    assert_eq!(r.ready(), only_messages(heartbeats(ballot, 1)));
}

#[test]
fn leader_steps_down_once_a_majority_is_silent_for_election_ticks_max() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    assert_eq!(limits::ELECTION_TICKS_MAX, 20);
    tick(&mut r, 10);
    r.step(envelope(1, 0, heartbeat_ack(ballot)));
    assert_eq!(r.ready(), only_messages(heartbeats(ballot, 3)));
    // 20 ticks after election, only replica 1 (heard 10 ticks ago) is in touch.
    tick(&mut r, 10);
    assert_eq!((r.role(), r.ready()), (Role::Leader, only_messages(heartbeats(ballot, 3))));
    tick(&mut r, 9);
    assert_eq!((r.role(), r.ready()), (Role::Leader, only_messages(heartbeats(ballot, 3))));
    // Replica 1 has now been silent for election_ticks_max as well.
    tick(&mut r, 1);
    assert_eq!((r.role(), r.ready()), (Role::Follower, Ready::default()));
}

#[test]
fn leader_resends_an_unanswered_accept_after_two_heartbeats_to_the_peers_missing() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    tick(&mut r, 1);
    r.propose(b"x".to_vec()).expect("the leader takes proposals");
    let entries = vec![(1, batch(b"x"))];
    let write = WriteBatch { id: 2, entries: vec![(1, accepted(ballot, batch(b"x")))], ..WriteBatch::default() };
    let messages = to_peers(0, accept(ballot, entries.clone(), 0));
    assert_eq!(r.ready(), Ready { write: Some(write), messages, ..Ready::default() });
    // Replica 1 accepts; the leader's own write is not durable, so slot 1
    // is not chosen and replica 2 has not answered.
    r.step(envelope(
        1,
        0,
        Message::Accepted { ballot, slots: vec![1], chosen_through: 0, incarnations: Default::default() },
    ));
    assert_eq!(r.ready(), Ready::default());
    // Heartbeats two and five ticks after the send: not yet.
    tick(&mut r, 2);
    assert_eq!(r.ready(), only_messages(heartbeats(ballot, 1)));
    tick(&mut r, 3);
    assert_eq!(r.ready(), only_messages(heartbeats(ballot, 1)));
    // Eight ticks after the send, past 2 * heartbeat_ticks: to replica 2 only.
    tick(&mut r, 3);
    let mut expected = vec![out(0, 2, accept(ballot, entries, 0))];
    expected.extend(heartbeats(ballot, 1));
    assert_eq!(r.ready(), only_messages(expected));
}

#[test]
fn catch_up_is_asked_of_one_peer_at_a_time_and_again_after_catchup_retry_ticks() {
    assert_eq!(limits::CATCHUP_RETRY_TICKS, 10);
    let mut r = replica(1, DurableState::default());
    tick(&mut r, 3);
    let ballot = Ballot::new(1, 0);
    let request = out(1, 0, Message::CatchupRequest { from_slot: 1 });
    let ack = out(1, 0, heartbeat_ack(ballot));
    r.step(envelope(0, 1, heartbeat(ballot, 5)));
    let write = WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() };
    assert_eq!(r.ready(), Ready { write: Some(write), messages: vec![request.clone()], ..Ready::default() });
    r.step(Event::Persisted(1));
    assert_eq!(r.ready(), only_messages(vec![ack.clone()]));
    // Nine ticks after asking, the request is still outstanding.
    tick(&mut r, 9);
    r.step(envelope(0, 1, heartbeat(ballot, 5)));
    assert_eq!(r.ready(), only_messages(vec![ack.clone()]));
    // Ten ticks after asking, it is given up and the next sign of lag asks again.
    tick(&mut r, 1);
    r.step(envelope(0, 1, heartbeat(ballot, 5)));
    assert_eq!(r.ready(), only_messages(vec![ack, request]));
}

#[test]
fn catch_up_that_falls_short_asks_the_same_peer_for_the_rest() {
    let mut r = replica(1, DurableState::default());
    let entries = vec![(1, batch(b"a")), (2, batch(b"b"))];
    r.step(envelope(2, 1, Message::Catchup { entries: entries.clone(), chosen_through: 3 }));
    let chosen = |value: Value| Entry { ballot: Ballot::ZERO, value, chosen: true };
    let write = WriteBatch {
        id: 1,
        entries: vec![(1, chosen(batch(b"a"))), (2, chosen(batch(b"b")))],
        chosen_through: Some(2),
        ..WriteBatch::default()
    };
    let expected = Ready {
        write: Some(write),
        messages: vec![out(1, 2, Message::CatchupRequest { from_slot: 3 })],
        committed: entries,
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
    // The answer that covers everything asks for nothing more.
    r.step(envelope(2, 1, Message::Catchup { entries: vec![(3, batch(b"c"))], chosen_through: 3 }));
    let write =
        WriteBatch { id: 2, entries: vec![(3, chosen(batch(b"c")))], chosen_through: Some(3), ..WriteBatch::default() };
    let expected = Ready { write: Some(write), committed: vec![(3, batch(b"c"))], ..Ready::default() };
    assert_eq!(r.ready(), expected);
}

#[test]
fn late_catch_up_from_a_peer_not_asked_leaves_the_outstanding_request_alone() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(1, 0);
    r.step(envelope(0, 1, heartbeat(ballot, 3)));
    let request = out(1, 0, Message::CatchupRequest { from_slot: 1 });
    let write = WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() };
    assert_eq!(r.ready(), Ready { write: Some(write), messages: vec![request], ..Ready::default() });
    // Replica 2 answers a request this replica no longer waits for, and
    // falls short: the request to replica 0 is still the one outstanding.
    r.step(envelope(2, 1, Message::Catchup { entries: vec![(1, batch(b"a"))], chosen_through: 3 }));
    let chosen = Entry { ballot, value: batch(b"a"), chosen: true };
    let expected = Ready {
        write: Some(WriteBatch { id: 2, entries: vec![(1, chosen)], chosen_through: Some(1), ..WriteBatch::default() }),
        committed: vec![(1, batch(b"a"))],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
}

#[test]
fn catch_up_request_is_answered_from_the_requested_slot_through_the_chosen_prefix() {
    let (mut r, chosen) = learner_with_chosen(2, 40);
    for (from_slot, first) in [(0, 0), (1, 0), (2, 1)] {
        r.step(envelope(0, 1, Message::CatchupRequest { from_slot }));
        let answer = Message::Catchup { entries: chosen[first..].to_vec(), chosen_through: 2 };
        assert_eq!(r.ready(), only_messages(vec![out(1, 0, answer)]), "from slot {from_slot}");
    }
    r.step(envelope(0, 1, Message::CatchupRequest { from_slot: 3 }));
    assert_eq!(r.ready(), Ready::default(), "nothing chosen past the prefix to offer");
}

#[test]
fn catch_up_carries_entries_up_to_exactly_the_byte_limit() {
    // `assert!(a == b)` here: a failing `assert_eq!` would print megabytes.
    let per_entry = 1024 * 1024;
    assert_eq!(limits::CATCHUP_BYTES_MAX % per_entry, 0);
    let fit = limits::CATCHUP_BYTES_MAX / per_entry;
    let (mut r, chosen) = learner_with_chosen(fit as u64 + 1, per_entry);
    r.step(envelope(0, 1, Message::CatchupRequest { from_slot: 1 }));
    let answer = Message::Catchup { entries: chosen[..fit].to_vec(), chosen_through: fit as u64 + 1 };
    assert!(r.ready() == only_messages(vec![out(1, 0, answer)]), "exactly {fit} entries");
}

#[test]
fn catch_up_carries_at_most_catchup_entries_max_entries() {
    let max = limits::CATCHUP_ENTRIES_MAX;
    let (mut r, chosen) = learner_with_chosen(max as u64 + 1, 40);
    r.step(envelope(0, 1, Message::CatchupRequest { from_slot: 1 }));
    let answer = Message::Catchup { entries: chosen[..max].to_vec(), chosen_through: max as u64 + 1 };
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, answer)]));
}

#[test]
fn leader_keeps_at_most_slots_in_flight_max_slots_in_flight() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    let window = limits::SLOTS_IN_FLIGHT_MAX;
    for slot in 1..=window {
        r.propose(vec![slot as u8]).expect("the leader takes proposals");
        let value = Value::batch(vec![vec![slot as u8]]);
        let write = WriteBatch {
            id: slot + 1,
            entries: vec![(slot, accepted(ballot, value.clone()))],
            ..WriteBatch::default()
        };
        let messages = to_peers(0, accept(ballot, vec![(slot, value)], 0));
        assert_eq!(r.ready(), Ready { write: Some(write), messages, ..Ready::default() }, "slot {slot}");
    }
    r.propose(b"waits".to_vec()).expect("the queue has room");
    assert_eq!(r.ready(), Ready::default(), "the window is full");
    // Slot 1 is chosen (the leader's write plus replica 1): one slot frees up.
    r.step(Event::Persisted(2));
    r.step(envelope(
        1,
        0,
        Message::Accepted { ballot, slots: vec![1], chosen_through: 0, incarnations: Default::default() },
    ));
    let next = window + 1;
    let write = WriteBatch {
        id: window + 2,
        entries: vec![(next, accepted(ballot, batch(b"waits")))],
        chosen_through: Some(1),
        ..WriteBatch::default()
    };
    let expected = Ready {
        write: Some(write),
        messages: to_peers(0, accept(ballot, vec![(next, batch(b"waits"))], 1)),
        committed: vec![(1, Value::batch(vec![vec![1]]))],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
}

/// Proposes `commands` to a fresh leader and returns the values of the
/// slots it cut, after checking they went to both peers and to the write.
fn cut(commands: Vec<Vec<u8>>) -> Vec<(Slot, Value)> {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    for command in commands {
        r.propose(command).expect("the leader takes proposals");
    }
    let ready = r.ready();
    let Some(Message::Accept { entries, .. }) = ready.messages.first().map(|e| e.message.clone()) else {
        panic!("expected an accept, got {ready:?}");
    };
    let written = entries.iter().map(|(slot, value)| (*slot, accepted(ballot, value.clone()))).collect();
    let expected = Ready {
        write: Some(WriteBatch { id: 2, entries: written, ..WriteBatch::default() }),
        messages: to_peers(0, accept(ballot, entries.clone(), 0)),
        ..Ready::default()
    };
    assert!(ready == expected, "one accept to each peer and the same entries written");
    entries
}

#[test]
fn batch_holds_commands_up_to_exactly_batch_bytes_max() {
    let half = vec![1u8; limits::BATCH_BYTES_MAX / 2];
    let slots = cut(vec![half.clone(), half.clone(), b"z".to_vec()]);
    assert!(slots == vec![(1, Value::batch(vec![half.clone(), half])), (2, batch(b"z"))]);
}

#[test]
fn batch_holds_at_most_batch_commands_max_commands() {
    let commands: Vec<Vec<u8>> = (0..=limits::BATCH_COMMANDS_MAX).map(|i| (i as u32).to_le_bytes().to_vec()).collect();
    let (first, rest) = commands.split_at(limits::BATCH_COMMANDS_MAX);
    let slots = cut(commands.clone());
    assert!(slots == vec![(1, Value::batch(first.to_vec())), (2, Value::batch(rest.to_vec()))]);
}

#[test]
fn accept_messages_are_split_at_exactly_accept_bytes_max() {
    // Four values of a quarter of the limit fill one message exactly.
    let quarter = limits::ACCEPT_BYTES_MAX / 4;
    assert!(quarter <= limits::BATCH_BYTES_MAX);
    let command = vec![3u8; quarter - limits::VALUE_OVERHEAD_BYTES];
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    for _ in 0..5 {
        r.propose(command.clone()).expect("the leader takes proposals");
    }
    let slots: Vec<(Slot, Value)> = (1..=5).map(|slot| (slot, Value::batch(vec![command.clone()]))).collect();
    let written = slots.iter().map(|(slot, value)| (*slot, accepted(ballot, value.clone()))).collect();
    let mut messages = to_peers(0, accept(ballot, slots[..4].to_vec(), 0));
    messages.extend(to_peers(0, accept(ballot, slots[4..].to_vec(), 0)));
    let expected = Ready {
        write: Some(WriteBatch { id: 2, entries: written, ..WriteBatch::default() }),
        messages,
        ..Ready::default()
    };
    assert!(r.ready() == expected, "slots 1-4 in one accept, slot 5 in the next");
}
