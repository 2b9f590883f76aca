//! Compaction and snapshot installation, one handler at a time, asserting
//! the whole `Ready` each step produces.

mod support;

use chorus_paxos::*;
use std::collections::BTreeMap;
use support::*;

const OLD: Ballot = Ballot { round: 1, replica: 0 };

fn chosen(value: Value) -> Entry {
    Entry { ballot: OLD, value, chosen: true }
}

/// Replica `id` holding slots 1..=count chosen, applied and drained.
fn with_chosen(id: ReplicaId, count: Slot) -> Replica {
    let entries: BTreeMap<Slot, Entry> = (1..=count).map(|slot| (slot, chosen(batch(&[slot as u8])))).collect();
    let durable = DurableState { promised: OLD, entries, chosen_through: count, ..Default::default() };
    let mut r = replica(id, durable);
    assert_eq!(r.ready().committed.len() as u64, count);
    r
}

#[test]
fn compact_deletes_the_covered_entries_with_one_write() {
    let mut r = with_chosen(1, 5);
    r.compact(3);
    assert_eq!(r.ready(), only_write(WriteBatch { id: 1, compact_through: Some(3), ..WriteBatch::default() }));
    assert_eq!((r.status().compacted_through, r.chosen_value(3), r.chosen_value(4)), (3, None, Some(&batch(&[4]))));
    r.compact(2);
    assert_eq!(r.ready(), Ready::default(), "compacting below the compacted prefix changes nothing");
}

#[test]
#[should_panic(expected = "compacting past the applied prefix")]
fn compacting_past_the_applied_prefix_is_a_caller_bug() {
    with_chosen(1, 2).compact(3);
}

#[test]
fn catch_up_request_from_inside_the_compacted_prefix_is_answered_with_snapshot_needed() {
    let mut r = with_chosen(0, 6);
    r.compact(4);
    r.ready();
    r.step(envelope(1, 0, Message::CatchupRequest { from_slot: 3 }));
    let needed = Message::SnapshotNeeded { compacted_through: 4, chosen_through: 6 };
    assert_eq!(r.ready(), only_messages(vec![out(0, 1, needed)]));
    r.step(envelope(1, 0, Message::CatchupRequest { from_slot: 5 }));
    let catchup = Message::Catchup { entries: vec![(5, batch(&[5])), (6, batch(&[6]))], chosen_through: 6 };
    assert_eq!(r.ready(), only_messages(vec![out(0, 1, catchup)]), "the retained tail still serves");
}

#[test]
fn snapshot_needed_is_handed_to_the_caller_and_install_resumes_from_the_log() {
    let mut r = replica(1, DurableState::default());
    let ballot = Ballot::new(2, 0);
    // A leader says 8 slots are chosen; we hold only slot 8, accepted under its ballot.
    r.step(envelope(0, 1, Message::Accept { ballot, entries: vec![(8, batch(b"h"))], chosen_through: 8 }));
    let ready = r.ready();
    assert!(ready.messages.contains(&out(1, 0, Message::CatchupRequest { from_slot: 1 })));
    r.step(Event::Persisted(ready.write.expect("the accept is written").id));
    r.ready();
    r.step(envelope(0, 1, Message::SnapshotNeeded { compacted_through: 6, chosen_through: 8 }));
    let wanted = SnapshotWanted { from: 0, covering: 6 };
    assert_eq!(r.ready(), Ready { snapshot_wanted: Some(wanted), ..Ready::default() });
    // The caller fetched a snapshot taken at slot 7 and made it durable.
    assert!(r.install_snapshot(7));
    assert!(!r.install_snapshot(7), "installing the same slot twice does nothing");
    let expected = Ready {
        write: Some(WriteBatch { id: 2, chosen_through: Some(8), compact_through: Some(7), ..WriteBatch::default() }),
        committed: vec![(8, batch(b"h"))],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
    let status = r.status();
    assert_eq!((status.applied_through, status.chosen_through, status.compacted_through), (8, 8, 7));
}

#[test]
fn snapshot_needed_after_catching_up_by_other_means_is_ignored() {
    let mut r = with_chosen(1, 6);
    r.step(envelope(0, 1, Message::SnapshotNeeded { compacted_through: 4, chosen_through: 6 }));
    assert_eq!(r.ready(), Ready::default());
}

#[test]
fn a_leader_installing_a_snapshot_steps_down_first() {
    let mut r = replica(0, DurableState::default());
    elect(&mut r);
    assert!(r.install_snapshot(3));
    assert_eq!((r.role(), r.status().applied_through), (Role::Follower, 3));
}

#[test]
fn promise_to_a_candidate_behind_the_compacted_prefix_is_truncated() {
    let mut r = with_chosen(1, 6);
    r.compact(4);
    r.ready();
    let ballot = Ballot::new(5, 2);
    r.step(envelope(2, 1, Message::Prepare { ballot, from_slot: 3 }));
    let ready = r.ready();
    r.step(Event::Persisted(ready.write.expect("the promise is written").id));
    let promise = Message::Promise {
        ballot,
        from_slot: 3,
        entries: vec![],
        truncated: true,
        chosen_through: 6,
        incarnations: Default::default(),
    };
    assert_eq!(r.ready(), only_messages(vec![out(1, 2, promise)]));
}

#[test]
fn restart_from_a_snapshot_newer_than_the_log_installs_it() {
    let entries = BTreeMap::from([(2, accepted(OLD, batch(b"stale"))), (5, chosen(batch(b"e")))]);
    let durable =
        DurableState { promised: OLD, entries, chosen_through: 1, compacted_through: 1, ..Default::default() };
    let mut r = Replica::new(Config::new(1, vec![0, 1, 2], 42), durable, 4);
    let expected = Ready {
        write: Some(WriteBatch { id: 1, chosen_through: Some(5), compact_through: Some(4), ..WriteBatch::default() }),
        committed: vec![(5, batch(b"e"))],
        ..Ready::default()
    };
    assert_eq!(r.ready(), expected);
}

#[test]
fn restart_from_a_snapshot_inside_the_log_keeps_the_retained_tail() {
    let entries: BTreeMap<Slot, Entry> = (3..=6).map(|slot| (slot, chosen(batch(&[slot as u8])))).collect();
    let durable =
        DurableState { promised: OLD, entries, chosen_through: 6, compacted_through: 2, ..Default::default() };
    let mut r = Replica::new(Config::new(1, vec![0, 1, 2], 42), durable, 4);
    assert_eq!(r.ready(), Ready { committed: vec![(5, batch(&[5])), (6, batch(&[6]))], ..Ready::default() });
    assert_eq!(r.chosen_value(3), Some(&batch(&[3])));
}

#[test]
#[should_panic(expected = "compacted past the caller's state")]
fn restart_without_the_snapshot_that_covers_the_compacted_log_is_refused() {
    let durable = DurableState { chosen_through: 4, compacted_through: 4, ..DurableState::default() };
    Replica::new(Config::new(1, vec![0, 1, 2], 42), durable, 2);
}
