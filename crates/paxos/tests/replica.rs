//! The replica's entry points: who it listens to, what it takes from a
//! client, what it reports about itself, and how it compares.

mod support;

use chorus_limits as limits;
use chorus_paxos::*;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use support::*;

fn hash_of(r: &Replica) -> u64 {
    let mut hasher = DefaultHasher::new();
    r.hash(&mut hasher);
    hasher.finish()
}

#[test]
fn messages_from_itself_or_from_a_non_member_are_ignored() {
    let mut r = replica(1, DurableState::default());
    r.step(envelope(9, 1, Message::Heartbeat { ballot: Ballot::new(1, 9), chosen_through: 0, read_round: 0 }));
    assert_eq!(r.ready(), Ready::default());
    r.step(envelope(1, 1, Message::Heartbeat { ballot: Ballot::new(1, 1), chosen_through: 0, read_round: 0 }));
    assert_eq!(r.ready(), Ready::default());
    assert_eq!((r.status().promised, r.status().leader), (Ballot::ZERO, None));
}

#[test]
fn status_id_and_chosen_value_describe_the_replica() {
    let a = Entry { ballot: Ballot::new(1, 2), value: batch(b"a"), chosen: true };
    let b = accepted(Ballot::new(1, 2), batch(b"b"));
    let entries = BTreeMap::from([(1, a), (2, b)]);
    let r = replica(
        1,
        DurableState {
            promised: Ballot::new(1, 2),
            entries,
            chosen_through: 1,
            compacted_through: 0,
            ..Default::default()
        },
    );
    let status = Status {
        id: 1,
        role: Role::Follower,
        leader: None,
        promised: Ballot::new(1, 2),
        chosen_through: 1,
        applied_through: 0,
        last_slot: 2,
        compacted_through: 0,
        incarnation: 0,
    };
    assert_eq!((r.id(), r.status()), (1, status));
    let known: Vec<Option<&Value>> = (1..=3).map(|slot| r.chosen_value(slot)).collect();
    assert_eq!(known, vec![Some(&batch(b"a")), None, None], "accepted is not chosen");
}

#[test]
fn leader_silence_counts_ticks_since_a_leader_was_last_heard() {
    let mut r = replica(1, DurableState::default());
    tick(&mut r, 4);
    assert_eq!(r.leader_silence_ticks(), 4, "never heard: silent since it started");
    let ballot = Ballot::new(1, 0);
    r.step(envelope(0, 1, Message::Heartbeat { ballot, chosen_through: 0, read_round: 0 }));
    assert_eq!(r.leader_silence_ticks(), 0);
    tick(&mut r, 3);
    assert_eq!(r.leader_silence_ticks(), 3);
    let mut leader = replica(0, DurableState::default());
    elect(&mut leader);
    tick(&mut leader, 2);
    assert_eq!((leader.role(), leader.leader_silence_ticks()), (Role::Leader, 0));
}

#[test]
fn replicas_compare_and_hash_by_their_state() {
    let r = replica(1, DurableState::default());
    let same = r.clone();
    assert!(r == same);
    assert_eq!(hash_of(&r), hash_of(&same));
    let mut later = r.clone();
    later.step(Event::Tick);
    assert!(r != later, "one tick later is another state");
    assert_ne!(hash_of(&r), hash_of(&later));
}

#[test]
fn ready_is_empty_only_when_every_part_is() {
    assert!(Ready::default().is_empty());
    let parts = [
        only_write(WriteBatch { id: 1, chosen_through: Some(1), ..WriteBatch::default() }),
        only_messages(vec![out(0, 1, Message::CatchupRequest { from_slot: 1 })]),
        Ready { committed: vec![(1, Value::Noop)], ..Ready::default() },
        Ready { reads: vec![(1, Ok(()))], ..Ready::default() },
    ];
    for ready in parts {
        assert!(!ready.is_empty(), "{ready:?}");
    }
}

#[test]
fn leader_takes_a_command_of_exactly_batch_bytes_max_and_refuses_one_byte_more() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    assert_eq!(r.propose(vec![1; limits::BATCH_BYTES_MAX + 1]), Err(ProposeError::TooLarge));
    assert_eq!(r.propose(vec![2; limits::BATCH_BYTES_MAX]), Ok(()));
    let value = Value::batch(vec![vec![2; limits::BATCH_BYTES_MAX]]);
    let write = WriteBatch { id: 2, entries: vec![(1, accepted(ballot, value.clone()))], ..WriteBatch::default() };
    let messages = to_peers(0, Message::Accept { ballot, entries: vec![(1, value)], chosen_through: 0 });
    assert!(r.ready() == Ready { write: Some(write), messages, ..Ready::default() });
}

#[test]
fn read_waits_until_the_last_proposed_slot_is_chosen() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    r.propose(b"x".to_vec()).expect("the leader takes proposals");
    let write = WriteBatch { id: 2, entries: vec![(1, accepted(ballot, batch(b"x")))], ..WriteBatch::default() };
    let accept = Message::Accept { ballot, entries: vec![(1, batch(b"x"))], chosen_through: 0 };
    assert_eq!(r.ready(), Ready { write: Some(write), messages: to_peers(0, accept), ..Ready::default() });
    r.read(5).expect("the leader serves reads");
    let heartbeat = Message::Heartbeat { ballot, chosen_through: 0, read_round: 1 };
    assert_eq!(r.ready(), only_messages(to_peers(0, heartbeat)));
    // Leadership is confirmed, but slot 1 may hold a write the read must see.
    r.step(envelope(2, 0, Message::HeartbeatAck { ballot, read_round: 1, chosen_through: 0 }));
    assert_eq!(r.ready(), Ready::default());
    r.step(Event::Persisted(2));
    r.step(envelope(
        1,
        0,
        Message::Accepted { ballot, slots: vec![1], chosen_through: 0, incarnations: Default::default() },
    ));
    let expected =
        Ready { write: None, committed: vec![(1, batch(b"x"))], reads: vec![(5, Ok(()))], ..Ready::default() };
    assert_eq!(r.ready(), expected);
}

#[test]
fn the_proposal_queue_is_bounded_in_bytes_as_well_as_count() {
    let mut r = replica(0, DurableState::default());
    elect(&mut r);
    r.ready();
    let command = vec![7u8; limits::BATCH_BYTES_MAX];
    let fits = limits::PROPOSALS_QUEUED_BYTES_MAX / command.len();
    for _ in 0..fits {
        assert_eq!(r.propose(command.clone()), Ok(()));
    }
    assert_eq!(r.propose(vec![1]), Err(ProposeError::Busy), "one more byte would pass the bound");
    r.ready(); // cuts a window of slots out of the queue
    assert_eq!(r.propose(command), Ok(()), "cutting slots frees room");
}
