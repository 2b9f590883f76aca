//! One step of the core at a time, asserting the whole `Ready` it produces.

use chorus_paxos::*;
use std::collections::BTreeMap;

fn replica(id: ReplicaId, durable: DurableState) -> Replica {
    Replica::new(Config::new(id, vec![0, 1, 2], 42), durable, 0)
}

fn envelope(from: ReplicaId, to: ReplicaId, message: Message) -> Event {
    Event::Receive(Envelope { from, to, message })
}

fn out(from: ReplicaId, to: ReplicaId, message: Message) -> Envelope {
    Envelope { from, to, message }
}

fn batch(command: &[u8]) -> Value {
    Value::batch(vec![command.to_vec()])
}

#[test]
fn prepare_is_promised_only_after_the_promise_is_durable() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(1, 0);
    r.step(envelope(0, 1, Message::Prepare { ballot, from_slot: 1 }));
    let ready = r.ready();
    let expected_write =
        WriteBatch { id: 1, promised: Some(ballot), entries: vec![], chosen_through: None, ..WriteBatch::default() };
    assert_eq!(ready, Ready { write: Some(expected_write), ..Ready::default() });
    r.step(Event::Persisted(1));
    let promise = Message::Promise {
        ballot,
        from_slot: 1,
        entries: vec![],
        truncated: false,
        chosen_through: 0,
        incarnations: Default::default(),
    };
    assert_eq!(r.ready(), Ready { messages: vec![out(1, 0, promise)], ..Ready::default() });
}

#[test]
fn prepare_below_the_promise_is_rejected_at_once_without_a_write() {
    let durable = DurableState { promised: Ballot::new(5, 2), ..DurableState::default() };
    let mut r = replica(1, durable);
    let ballot = Ballot::new(3, 0);
    r.step(envelope(0, 1, Message::Prepare { ballot, from_slot: 1 }));
    let reject = Message::Reject { ballot, promised: Ballot::new(5, 2) };
    assert_eq!(r.ready(), Ready { messages: vec![out(1, 0, reject)], ..Ready::default() });
}

#[test]
fn promise_reports_accepted_entries_from_the_requested_slot() {
    let mut entries = BTreeMap::new();
    let old = Entry { ballot: Ballot::new(1, 2), value: batch(b"a"), chosen: false };
    entries.insert(1, Entry { chosen: true, ..old.clone() });
    entries.insert(2, old.clone());
    let durable = DurableState {
        promised: Ballot::new(1, 2),
        entries,
        chosen_through: 1,
        compacted_through: 0,
        ..Default::default()
    };
    let mut r = replica(1, durable);
    let ballot = Ballot::new(2, 0);
    r.step(envelope(0, 1, Message::Prepare { ballot, from_slot: 2 }));
    let write = r.ready().write.expect("the new promise is written");
    r.step(Event::Persisted(write.id));
    let promise = Message::Promise {
        ballot,
        from_slot: 2,
        entries: vec![(2, old)],
        truncated: false,
        chosen_through: 1,
        incarnations: Default::default(),
    };
    assert_eq!(r.ready().messages, vec![out(1, 0, promise)]);
}

#[test]
fn accept_is_acknowledged_after_the_entries_are_durable_and_learns_chosen() {
    let mut r = replica(2, DurableState::default());
    let ballot = Ballot::new(1, 0);
    let entries = vec![(1, batch(b"x")), (2, batch(b"y"))];
    r.step(envelope(0, 2, Message::Accept { ballot, entries, chosen_through: 0 }));
    let ready = r.ready();
    let accepted = |slot: Slot, v: &[u8]| (slot, Entry { ballot, value: batch(v), chosen: false });
    let write = WriteBatch {
        id: 1,
        promised: Some(ballot),
        entries: vec![accepted(1, b"x"), accepted(2, b"y")],
        chosen_through: None,
        ..WriteBatch::default()
    };
    assert_eq!(ready, Ready { write: Some(write), ..Ready::default() });
    r.step(Event::Persisted(1));
    let reply = Message::Accepted { ballot, slots: vec![1, 2], chosen_through: 0, incarnations: Default::default() };
    assert_eq!(r.ready(), Ready { messages: vec![out(2, 0, reply)], ..Ready::default() });
    // A heartbeat saying slot 1 is chosen under the same ballot commits it.
    r.step(envelope(0, 2, Message::Heartbeat { ballot, chosen_through: 1, read_round: 0 }));
    let ack = Message::HeartbeatAck { ballot, read_round: 0, chosen_through: 0 };
    // The chosen mark alone is not written; it rides with the next write.
    let expected =
        Ready { write: None, messages: vec![out(2, 0, ack)], committed: vec![(1, batch(b"x"))], ..Ready::default() };
    assert_eq!(r.ready(), expected);
}

#[test]
fn chosen_prefix_under_another_ballot_is_fetched_not_assumed() {
    let mut entries = BTreeMap::new();
    entries.insert(1, Entry { ballot: Ballot::new(1, 1), value: batch(b"stale"), chosen: false });
    let mut r = replica(2, DurableState { promised: Ballot::new(1, 1), entries, ..Default::default() });
    let ballot = Ballot::new(2, 0);
    r.step(envelope(0, 2, Message::Heartbeat { ballot, chosen_through: 1, read_round: 0 }));
    let ready = r.ready();
    assert!(ready.committed.is_empty(), "a value accepted under another ballot is not known chosen");
    assert_eq!(ready.messages, vec![out(2, 0, Message::CatchupRequest { from_slot: 1 })]);
    r.step(envelope(0, 2, Message::Catchup { entries: vec![(1, batch(b"real"))], chosen_through: 1 }));
    let ready = r.ready();
    assert_eq!(ready.committed, vec![(1, batch(b"real"))]);
    let chosen = Entry { ballot, value: batch(b"real"), chosen: true };
    let write = ready.write.expect("the chosen value is written");
    assert_eq!((write.entries, write.chosen_through), (vec![(1, chosen)], Some(1)));
}

/// Drives replica 0 through pre-vote and prepare with the given promises.
fn elect(r: &mut Replica, promises: Vec<(ReplicaId, Vec<(Slot, Entry)>)>) -> Ballot {
    for _ in 0..chorus_limits::ELECTION_TICKS_MAX {
        r.step(Event::Tick);
    }
    let pre_votes = r.ready();
    assert_eq!(pre_votes.messages.len(), 2, "pre-vote goes to both peers");
    let Message::PreVote { round, .. } = pre_votes.messages[0].message else { panic!("expected a pre-vote") };
    r.step(envelope(1, 0, Message::PreVoteReply { round, granted: true, promised: Ballot::ZERO }));
    let prepare = r.ready();
    let ballot = Ballot::new(round, 0);
    let expected: Vec<Envelope> =
        [1, 2].iter().map(|to| out(0, *to, Message::Prepare { ballot, from_slot: 1 })).collect();
    assert_eq!(prepare.messages, expected);
    r.step(Event::Persisted(prepare.write.expect("own promise").id));
    for (from, entries) in promises {
        let promise = Message::Promise {
            ballot,
            from_slot: 1,
            entries,
            truncated: false,
            chosen_through: 0,
            incarnations: Default::default(),
        };
        r.step(envelope(from, 0, promise));
    }
    ballot
}

#[test]
fn new_leader_reproposes_the_highest_ballot_value_and_fills_holes() {
    // The candidate itself accepted "high" under a higher ballot than the
    // promiser's "low"; a majority is the candidate plus replica 1.
    let high = Entry { ballot: Ballot::new(2, 2), value: batch(b"high"), chosen: false };
    let own = DurableState {
        promised: Ballot::new(2, 2),
        entries: BTreeMap::from([(1, high)]),
        chosen_through: 0,
        ..DurableState::default()
    };
    let mut r = replica(0, own);
    let low = Entry { ballot: Ballot::new(1, 1), value: batch(b"low"), chosen: false };
    let ballot = elect(&mut r, vec![(1, vec![(1, low), (3, batch_entry(b"three"))])]);
    assert_eq!(r.role(), Role::Leader);
    let ready = r.ready();
    let values = vec![(1, batch(b"high")), (2, Value::Noop), (3, batch(b"three"))];
    let accept = Message::Accept { ballot, entries: values.clone(), chosen_through: 0 };
    let heartbeat = Message::Heartbeat { ballot, chosen_through: 0, read_round: 0 };
    let expected_messages =
        vec![out(0, 1, accept.clone()), out(0, 2, accept), out(0, 1, heartbeat.clone()), out(0, 2, heartbeat)];
    assert_eq!(ready.messages, expected_messages);
    let written: Vec<(Slot, Value)> =
        ready.write.expect("re-proposals are written").entries.into_iter().map(|(s, e)| (s, e.value)).collect();
    assert_eq!(written, values);
}

fn batch_entry(command: &[u8]) -> Entry {
    Entry { ballot: Ballot::new(1, 1), value: batch(command), chosen: false }
}

#[test]
fn leader_commits_on_a_majority_counting_itself_only_once_durable() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r, vec![(1, vec![])]);
    r.ready();
    r.propose(b"cmd".to_vec()).expect("the leader takes proposals");
    let ready = r.ready();
    let write = ready.write.expect("the leader writes its own entry");
    r.step(envelope(
        1,
        0,
        Message::Accepted { ballot, slots: vec![1], chosen_through: 0, incarnations: Default::default() },
    ));
    assert!(r.ready().committed.is_empty(), "one peer alone is not a majority of three");
    r.step(Event::Persisted(write.id));
    let ready = r.ready();
    assert_eq!(ready.committed, vec![(1, batch(b"cmd"))]);
    assert_eq!(ready.write, None, "the chosen prefix alone waits for the next write");
    r.propose(b"next".to_vec()).expect("the leader takes proposals");
    assert_eq!(r.ready().write.expect("the next entry is written").chosen_through, Some(1));
}

#[test]
fn follower_refuses_proposals_and_names_the_leader() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(1, 0);
    r.step(envelope(0, 1, Message::Heartbeat { ballot, chosen_through: 0, read_round: 0 }));
    let refused = r.propose(b"x".to_vec());
    assert_eq!(refused, Err(ProposeError::NotLeader(NotLeader { leader: Some(0) })));
    assert_eq!(r.read(1), Err(ProposeError::NotLeader(NotLeader { leader: Some(0) })));
}

#[test]
fn read_waits_for_a_majority_heartbeat_round() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r, vec![(1, vec![])]);
    r.ready();
    r.read(9).expect("leader serves reads");
    let ready = r.ready();
    let heartbeat = Message::Heartbeat { ballot, chosen_through: 0, read_round: 1 };
    assert_eq!(ready.messages, vec![out(0, 1, heartbeat.clone()), out(0, 2, heartbeat)]);
    assert!(ready.reads.is_empty());
    r.step(envelope(2, 0, Message::HeartbeatAck { ballot, read_round: 1, chosen_through: 0 }));
    assert_eq!(r.ready(), Ready { reads: vec![(9, Ok(()))], ..Ready::default() });
}

#[test]
fn leader_steps_down_when_a_higher_ballot_is_reported() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r, vec![(1, vec![])]);
    r.ready();
    r.read(1).expect("leader serves reads");
    r.step(envelope(1, 0, Message::Reject { ballot, promised: Ballot::new(ballot.round + 1, 2) }));
    assert_eq!(r.role(), Role::Follower);
    assert_eq!(r.ready().reads, vec![(1, Err(NotLeader { leader: None }))]);
}

#[test]
fn cut_off_replica_does_not_raise_its_ballot_without_pre_votes() {
    let mut r = replica(0, DurableState::default());
    for _ in 0..10 * chorus_limits::ELECTION_TICKS_MAX {
        r.step(Event::Tick);
    }
    let ready = r.ready();
    assert_eq!(ready.write, None, "pre-votes change nothing durable");
    assert_eq!(r.status().promised, Ballot::ZERO);
}
