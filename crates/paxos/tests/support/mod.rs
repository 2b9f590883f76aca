//! Helpers shared by the handler test files: build one replica, wrap
//! messages in events and envelopes, and drive a replica to leadership.
//! Each test file uses only some of them.
#![allow(dead_code)]

use chorus_paxos::*;

/// Replica `id` of the cluster {0, 1, 2} with the default timeouts.
pub fn replica(id: ReplicaId, durable: DurableState) -> Replica {
    Replica::new(Config::new(id, vec![0, 1, 2], 42), durable, 0)
}

/// A message from `from` to `to` arriving as an event.
pub fn envelope(from: ReplicaId, to: ReplicaId, message: Message) -> Event {
    Event::Receive(Envelope { from, to, message })
}

/// A message the replica under test is expected to send.
pub fn out(from: ReplicaId, to: ReplicaId, message: Message) -> Envelope {
    Envelope { from, to, message }
}

/// The same message from `from` to every other member of {0, 1, 2}.
pub fn to_peers(from: ReplicaId, message: Message) -> Vec<Envelope> {
    [0, 1, 2].into_iter().filter(|to| *to != from).map(|to| out(from, to, message.clone())).collect()
}

/// A one-command batch.
pub fn batch(command: &[u8]) -> Value {
    Value::batch(vec![command.to_vec()])
}

/// An accepted (not chosen) entry.
pub fn accepted(ballot: Ballot, value: Value) -> Entry {
    Entry { ballot, value, chosen: false }
}

/// Only a write.
pub fn only_write(write: WriteBatch) -> Ready {
    Ready { write: Some(write), ..Ready::default() }
}

/// Only messages.
pub fn only_messages(messages: Vec<Envelope>) -> Ready {
    Ready { messages, ..Ready::default() }
}

/// Ticks `r` `count` times without draining it.
pub fn tick(r: &mut Replica, count: u64) {
    for _ in 0..count {
        r.step(Event::Tick);
    }
}

/// Ticks replica `r` (a follower of {0, 1, 2}) until its election timer
/// fires, and returns the pre-vote round it asked for.
pub fn start_pre_vote(r: &mut Replica) -> u64 {
    for _ in 0..chorus_limits::ELECTION_TICKS_MAX {
        r.step(Event::Tick);
        if r.role() == Role::PreCandidate {
            break;
        }
    }
    let ready = r.ready();
    assert_eq!(ready.messages.len(), 2, "pre-vote goes to both peers");
    let Message::PreVote { round, .. } = ready.messages[0].message else { panic!("expected a pre-vote") };
    round
}

/// Elects `r` with a pre-vote from the next replica and a promise from it
/// carrying no entries; the promise write is made durable and everything
/// the election produced is drained. Returns the ballot.
pub fn elect(r: &mut Replica) -> Ballot {
    let me = r.id();
    let peer = (me + 1) % 3;
    let round = start_pre_vote(r);
    r.step(envelope(peer, me, Message::PreVoteReply { round, granted: true, promised: Ballot::ZERO }));
    let ballot = Ballot::new(round, me);
    let ready = r.ready();
    r.step(Event::Persisted(ready.write.expect("own promise is written").id));
    let promise = empty_promise(ballot);
    r.step(envelope(peer, me, promise));
    assert_eq!(r.role(), Role::Leader);
    r.ready();
    ballot
}

/// A promise for `ballot` from slot 1 that reports nothing accepted, from a
/// replica that never lost its disk.
pub fn empty_promise(ballot: Ballot) -> Message {
    Message::Promise {
        ballot,
        from_slot: 1,
        entries: vec![],
        truncated: false,
        chosen_through: 0,
        incarnations: Incarnations::default(),
    }
}
