//! Pre-vote and phase 1, one handler at a time, asserting the whole `Ready`.

mod support;

use chorus_paxos::*;
use std::collections::BTreeMap;
use support::*;

fn pre_vote(round: u64, chosen_through: Slot) -> Message {
    Message::PreVote { round, chosen_through }
}

fn pre_vote_reply(round: u64, granted: bool, promised: Ballot) -> Message {
    Message::PreVoteReply { round, granted, promised }
}

fn prepare(ballot: Ballot) -> Message {
    Message::Prepare { ballot, from_slot: 1 }
}

fn promise(ballot: Ballot, entries: Vec<(Slot, Entry)>, chosen_through: Slot) -> Message {
    Message::Promise {
        ballot,
        from_slot: 1,
        entries,
        truncated: false,
        chosen_through,
        incarnations: Default::default(),
    }
}

fn heartbeat(ballot: Ballot, chosen_through: Slot) -> Message {
    Message::Heartbeat { ballot, chosen_through, read_round: 0 }
}

/// Replica 1 (fresh) hears its first heartbeat from the leader of `ballot`:
/// it writes the promise, and acknowledges once that write is durable.
fn follow_by_heartbeat(r: &mut Replica, ballot: Ballot) {
    r.step(envelope(0, 1, heartbeat(ballot, 0)));
    assert_eq!(r.ready(), only_write(WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() }));
    r.step(Event::Persisted(1));
    let ack = Message::HeartbeatAck { ballot, read_round: 0, chosen_through: 0 };
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, ack)]));
}

/// Replica 0 with `durable` asks for pre-votes, gets one grant, and sends
/// its prepare; the prepare's write is made durable. Returns the ballot.
fn candidate(durable: DurableState) -> (Replica, Ballot) {
    let mut r = replica(0, durable);
    let round = start_pre_vote(&mut r);
    r.step(envelope(1, 0, pre_vote_reply(round, true, Ballot::ZERO)));
    let ballot = Ballot::new(round, 0);
    let write = WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() };
    assert_eq!(r.ready(), Ready { write: Some(write), messages: to_peers(0, prepare(ballot)), ..Ready::default() });
    r.step(Event::Persisted(1));
    assert_eq!(r.role(), Role::Candidate);
    (r, ballot)
}

#[test]
fn follower_refuses_pre_votes_until_its_leader_is_silent_for_election_ticks_min() {
    let mut r = replica(1, DurableState::default());
    tick(&mut r, 3);
    assert_eq!(r.ready(), Ready::default());
    let ballot = Ballot::new(1, 0);
    follow_by_heartbeat(&mut r, ballot);
    // Heard at tick 3; at tick 12 the leader is still live.
    tick(&mut r, 9);
    r.step(envelope(2, 1, pre_vote(2, 0)));
    assert_eq!(r.ready(), only_messages(vec![out(1, 2, pre_vote_reply(2, false, ballot))]));
    // At tick 13 it has been silent for election_ticks_min; this replica's
    // own timer has not fired yet (its timeout is drawn from the seed).
    tick(&mut r, 1);
    assert_eq!(r.role(), Role::Follower);
    r.step(envelope(2, 1, pre_vote(2, 0)));
    assert_eq!(r.ready(), only_messages(vec![out(1, 2, pre_vote_reply(2, true, ballot))]));
}

#[test]
fn pre_vote_is_refused_for_a_round_not_above_the_promise_or_a_shorter_log() {
    let chosen = Entry { ballot: Ballot::new(1, 2), value: batch(b"a"), chosen: true };
    let entries = BTreeMap::from([(1, chosen.clone()), (2, chosen)]);
    let promised = Ballot::new(3, 2);
    let mut r = replica(1, DurableState { promised, entries, chosen_through: 2, ..Default::default() });
    assert_eq!(r.ready().committed.len(), 2);
    let asks = [(2, 2, false), (3, 2, false), (4, 1, false), (4, 2, true), (5, 3, true)];
    for (round, chosen_through, granted) in asks {
        r.step(envelope(0, 1, pre_vote(round, chosen_through)));
        let reply = pre_vote_reply(round, granted, promised);
        assert_eq!(r.ready(), only_messages(vec![out(1, 0, reply)]), "round {round} through {chosen_through}");
    }
    assert_eq!(r.status().promised, promised, "pre-votes change no state");
}

#[test]
fn leader_that_steps_down_grants_pre_votes_at_once() {
    let mut r = replica(0, DurableState::default());
    let ballot = elect(&mut r);
    let higher = Ballot::new(ballot.round + 1, 2);
    r.step(envelope(1, 0, Message::Reject { ballot, promised: higher }));
    assert_eq!((r.role(), r.ready()), (Role::Follower, Ready::default()));
    // It led a moment ago, but it follows nobody now.
    r.step(envelope(2, 0, pre_vote(higher.round + 1, 0)));
    let reply = pre_vote_reply(higher.round + 1, true, ballot);
    assert_eq!(r.ready(), only_messages(vec![out(0, 2, reply)]));
}

#[test]
fn pre_candidate_counts_only_grants_for_its_own_round() {
    let mut r = replica(0, DurableState::default());
    let round = start_pre_vote(&mut r);
    r.step(envelope(1, 0, pre_vote_reply(round, false, Ballot::ZERO)));
    r.step(envelope(2, 0, pre_vote_reply(round + 1, true, Ballot::ZERO)));
    assert_eq!((r.role(), r.ready()), (Role::PreCandidate, Ready::default()));
    assert_eq!(r.status().promised, Ballot::ZERO);
}

#[test]
fn pre_candidate_picks_a_round_above_every_promise_it_heard_of() {
    let mut r = replica(0, DurableState::default());
    let round = start_pre_vote(&mut r);
    r.step(envelope(2, 0, pre_vote_reply(round, false, Ballot::new(7, 2))));
    assert_eq!(r.ready(), Ready::default());
    r.step(envelope(1, 0, pre_vote_reply(round, true, Ballot::ZERO)));
    let ballot = Ballot::new(8, 0);
    let write = WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() };
    assert_eq!(r.ready(), Ready { write: Some(write), messages: to_peers(0, prepare(ballot)), ..Ready::default() });
    assert_eq!(r.role(), Role::Candidate);
}

#[test]
fn repeated_prepare_at_the_promised_ballot_is_promised_again_and_keeps_the_leader() {
    let ballot = Ballot::new(2, 0);
    let mut r = replica(1, DurableState { promised: ballot, ..DurableState::default() });
    r.step(envelope(0, 1, heartbeat(ballot, 0)));
    let ack = Message::HeartbeatAck { ballot, read_round: 0, chosen_through: 0 };
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, ack)]), "the promise is already durable");
    r.step(envelope(0, 1, prepare(ballot)));
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, promise(ballot, vec![], 0))]));
    assert_eq!(r.propose(b"x".to_vec()), Err(ProposeError::NotLeader(NotLeader { leader: Some(0) })));
}

#[test]
fn prepare_from_another_replica_is_ignored_while_the_leader_is_live() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(1, 0);
    follow_by_heartbeat(&mut r, ballot);
    r.step(envelope(2, 1, prepare(Ballot::new(2, 2))));
    assert_eq!(r.ready(), Ready::default());
    assert_eq!(r.status().promised, ballot);
    // The live leader itself may run phase 1 again with a higher ballot.
    let again = Ballot::new(3, 0);
    r.step(envelope(0, 1, prepare(again)));
    assert_eq!(r.ready(), only_write(WriteBatch { id: 2, promised: Some(again), ..WriteBatch::default() }));
    r.step(Event::Persisted(2));
    assert_eq!(r.ready(), only_messages(vec![out(1, 0, promise(again, vec![], 0))]));
}

#[test]
fn prepare_relayed_by_a_replica_that_does_not_own_the_ballot_is_ignored() {
    let mut r = replica(1, DurableState::default());
    r.step(envelope(0, 1, prepare(Ballot::new(1, 2))));
    assert_eq!(r.ready(), Ready::default());
    assert_eq!(r.status().promised, Ballot::ZERO);
}

/// `count` entries accepted under ballot 1.1, each exactly `bytes` in size.
fn log_of(count: u64, bytes: usize) -> BTreeMap<Slot, Entry> {
    let command = vec![7u8; bytes - chorus_limits::VALUE_OVERHEAD_BYTES];
    let value = Value::batch(vec![command]);
    (1..=count).map(|slot| (slot, accepted(Ballot::new(1, 1), value.clone()))).collect()
}

/// Sends a prepare to replica 1 holding `log`, makes the promise durable,
/// and returns the promise it sends.
fn promise_for(log: BTreeMap<Slot, Entry>) -> Envelope {
    let mut r = replica(1, DurableState { promised: Ballot::new(1, 1), entries: log, ..Default::default() });
    let ballot = Ballot::new(2, 0);
    r.step(envelope(0, 1, prepare(ballot)));
    assert_eq!(r.ready(), only_write(WriteBatch { id: 1, promised: Some(ballot), ..WriteBatch::default() }));
    r.step(Event::Persisted(1));
    let mut ready = r.ready();
    assert_eq!(ready.messages.len(), 1);
    let message = ready.messages.remove(0);
    assert_eq!(ready, Ready::default());
    message
}

#[test]
fn promise_carries_entries_up_to_exactly_the_byte_limit_and_says_when_it_stops() {
    // `assert!(a == b)` here: a failing `assert_eq!` would print megabytes.
    let per_entry = 1024 * 1024;
    assert_eq!(chorus_limits::PROMISE_BYTES_MAX % per_entry, 0);
    let fit = (chorus_limits::PROMISE_BYTES_MAX / per_entry) as u64;
    let log = log_of(fit + 1, per_entry);
    let kept: Vec<(Slot, Entry)> = log.range(..=fit).map(|(s, e)| (*s, e.clone())).collect();
    let expected = Message::Promise {
        ballot: Ballot::new(2, 0),
        from_slot: 1,
        entries: kept,
        truncated: true,
        chosen_through: 0,
        incarnations: Default::default(),
    };
    assert!(promise_for(log) == out(1, 0, expected), "the first {fit} entries, truncated");
    let log = log_of(fit, per_entry);
    let all: Vec<(Slot, Entry)> = log.clone().into_iter().collect();
    let expected = Message::Promise {
        ballot: Ballot::new(2, 0),
        from_slot: 1,
        entries: all,
        truncated: false,
        chosen_through: 0,
        incarnations: Default::default(),
    };
    assert!(promise_for(log) == out(1, 0, expected), "exactly the byte limit is not truncated");
}

#[test]
fn promise_carries_at_most_promise_entries_max_entries() {
    let max = chorus_limits::PROMISE_ENTRIES_MAX as u64;
    let log = log_of(max + 1, chorus_limits::VALUE_OVERHEAD_BYTES + 1);
    let kept: Vec<(Slot, Entry)> = log.range(..=max).map(|(s, e)| (*s, e.clone())).collect();
    let expected = Message::Promise {
        ballot: Ballot::new(2, 0),
        from_slot: 1,
        entries: kept,
        truncated: true,
        chosen_through: 0,
        incarnations: Default::default(),
    };
    assert!(promise_for(log) == out(1, 0, expected));
}

#[test]
fn promise_from_a_replica_further_ahead_starts_a_catch_up_and_its_chosen_values_are_learned() {
    let (mut r, ballot) = candidate(DurableState::default());
    let old = Ballot::new(0, 1);
    let chosen = |command: &[u8]| Entry { ballot: old, value: batch(command), chosen: true };
    r.step(envelope(1, 0, promise(ballot, vec![(1, chosen(b"a")), (2, chosen(b"b"))], 2)));
    assert_eq!(r.role(), Role::Leader);
    let learned = |command: &[u8]| Entry { ballot, value: batch(command), chosen: true };
    let write = WriteBatch {
        id: 2,
        promised: None,
        entries: vec![(1, learned(b"a")), (2, learned(b"b"))],
        chosen_through: Some(2),
        ..WriteBatch::default()
    };
    let mut messages = vec![out(0, 1, Message::CatchupRequest { from_slot: 1 })];
    messages.extend(to_peers(0, heartbeat(ballot, 2)));
    let expected =
        Ready { write: Some(write), messages, committed: vec![(1, batch(b"a")), (2, batch(b"b"))], ..Ready::default() };
    assert_eq!(r.ready(), expected);
}

#[test]
fn value_a_promise_reports_chosen_is_learned_not_proposed_again() {
    // Replica 0 accepted "v" under 2.2 after it was chosen under 1.1.
    let own = BTreeMap::from([(1, accepted(Ballot::new(2, 2), batch(b"v")))]);
    let (mut r, ballot) = candidate(DurableState { promised: Ballot::new(2, 2), entries: own, ..Default::default() });
    let chosen = Entry { ballot: Ballot::new(1, 1), value: batch(b"v"), chosen: true };
    r.step(envelope(1, 0, promise(ballot, vec![(1, chosen)], 0)));
    assert_eq!(r.role(), Role::Leader);
    // The new chosen mark alone is not written: it rides with the next write.
    let expected = Ready {
        write: None,
        messages: to_peers(0, heartbeat(ballot, 1)),
        committed: vec![(1, batch(b"v"))],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
}

#[test]
fn new_leader_adopts_a_peers_value_accepted_under_a_higher_ballot_than_its_own() {
    let own = BTreeMap::from([(1, accepted(Ballot::new(1, 1), batch(b"low")))]);
    let (mut r, ballot) = candidate(DurableState { promised: Ballot::new(2, 2), entries: own, ..Default::default() });
    r.step(envelope(1, 0, promise(ballot, vec![(1, accepted(Ballot::new(2, 2), batch(b"high")))], 0)));
    let entries = vec![(1, batch(b"high"))];
    let write = WriteBatch { id: 2, entries: vec![(1, accepted(ballot, batch(b"high")))], ..WriteBatch::default() };
    let mut messages = to_peers(0, Message::Accept { ballot, entries, chosen_through: 0 });
    messages.extend(to_peers(0, heartbeat(ballot, 0)));
    assert_eq!(r.ready(), Ready { write: Some(write), messages, ..Ready::default() });
}

#[test]
fn candidate_steps_down_on_a_reject_reporting_a_higher_promise() {
    let (mut r, ballot) = candidate(DurableState::default());
    r.step(envelope(1, 0, Message::Reject { ballot, promised: Ballot::new(ballot.round + 1, 1) }));
    assert_eq!((r.role(), r.ready()), (Role::Follower, Ready::default()));
    // A late promise for the abandoned ballot no longer makes it leader.
    r.step(envelope(2, 0, promise(ballot, vec![], 0)));
    assert_eq!((r.role(), r.ready()), (Role::Follower, Ready::default()));
}

#[test]
fn leader_ignores_a_reject_of_an_older_ballot() {
    let mut r = replica(0, DurableState { promised: Ballot::new(3, 1), ..DurableState::default() });
    let ballot = elect(&mut r);
    assert!(ballot.round > 3);
    r.step(envelope(1, 0, Message::Reject { ballot: Ballot::new(2, 0), promised: Ballot::new(3, 1) }));
    assert_eq!((r.role(), r.ready()), (Role::Leader, Ready::default()));
}
