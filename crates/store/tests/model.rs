//! The write-ahead log and the in-memory twin against a trivial model, under random writes and reboots
//! (the sled habit): after every reopen, what the store loads must equal
//! what the model holds. The in-memory store runs the same operations, with
//! a clone standing in for a reboot.

use std::collections::BTreeMap;

use chorus_paxos::{Ballot, DurableState, Entry, Incarnations, Slot, Value, WriteBatch};
use chorus_store::{LogStore, MemStore, WalStore};
use proptest::prelude::*;

/// One step of a run.
#[derive(Clone, Debug)]
enum Operation {
    /// One `persist` call with these batches.
    Persist(Vec<WriteBatch>),
    /// Drop the store and open the same directory again.
    Reopen,
    /// Wait for the write-ahead log's background rewrite, if one is
    /// running, to be put in force (the other stores do nothing).
    FinishRewrite,
}

/// What a correct store holds: the fields, written the obvious way.
#[derive(Default)]
struct Model {
    promised: Ballot,
    entries: BTreeMap<Slot, Entry>,
    chosen_through: Slot,
    compacted_through: Slot,
    incarnations: Incarnations,
    /// False until a batch says the replica finished rebuilding: both
    /// stores here start as a replica that lost its disk would.
    voter: bool,
}

impl Model {
    fn apply(&mut self, batch: &WriteBatch) {
        if let Some(promised) = batch.promised {
            self.promised = promised;
        }
        for (slot, entry) in &batch.entries {
            self.entries.insert(*slot, entry.clone());
        }
        if let Some(chosen_through) = batch.chosen_through {
            self.chosen_through = chosen_through;
        }
        if let Some(through) = batch.compact_through {
            self.entries.retain(|slot, _| *slot > through);
            self.compacted_through = self.compacted_through.max(through);
        }
        if let Some(table) = &batch.incarnations {
            self.incarnations = table.clone();
        }
        self.voter |= batch.recovered;
    }

    fn expected(&self) -> DurableState {
        DurableState {
            promised: self.promised,
            entries: self.entries.clone(),
            chosen_through: self.chosen_through,
            compacted_through: self.compacted_through,
            incarnations: self.incarnations.clone(),
            recovering: !self.voter,
        }
    }
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (0_u64..5, 0_u8..3).prop_map(|(round, replica)| Ballot::new(round, replica))
}

fn entry() -> impl Strategy<Value = Entry> {
    let value = prop_oneof![
        Just(Value::Noop),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..3).prop_map(Value::batch),
    ];
    (ballot(), value, any::<bool>()).prop_map(|(ballot, value, chosen)| Entry { ballot, value, chosen })
}

fn incarnations() -> impl Strategy<Value = Incarnations> {
    prop::collection::vec((0_u8..7, any::<u64>()), 0..7).prop_map(|pairs| {
        let mut table = Incarnations::default();
        for (replica, incarnation) in pairs {
            table.raise(replica, incarnation);
        }
        table
    })
}

fn write_batch() -> impl Strategy<Value = WriteBatch> {
    (
        prop::option::of(ballot()),
        // A map, so the entries come in slot order as the core emits them.
        prop::collection::btree_map(1_u64..24, entry(), 0..5),
        prop::option::of(0_u64..24),
        prop::option::weighted(0.2, 0_u64..24),
        prop::option::weighted(0.2, incarnations()),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(promised, entries, chosen_through, compact_through, incarnations, recovered)| WriteBatch {
            id: 0,
            promised,
            entries: entries.into_iter().collect(),
            chosen_through,
            compact_through,
            incarnations,
            recovered,
        })
}

fn operations() -> impl Strategy<Value = Vec<Operation>> {
    let operation = prop_oneof![
        4 => prop::collection::vec(write_batch(), 0..4).prop_map(Operation::Persist),
        1 => Just(Operation::Reopen),
        1 => Just(Operation::FinishRewrite),
    ];
    prop::collection::vec(operation, 1..16)
}

/// Numbers the batches of a run 1, 2, 3, ... as the core would, and drops
/// entries at or below an earlier compaction (the core never writes those).
fn number_batches(operations: &mut [Operation]) {
    let mut next_id = 1;
    let mut compacted = 0;
    for operation in operations {
        if let Operation::Persist(batches) = operation {
            for batch in batches {
                batch.id = next_id;
                next_id += 1;
                batch.entries.retain(|(slot, _)| *slot > compacted);
                compacted = compacted.max(batch.compact_through.unwrap_or(0));
            }
        }
    }
}

/// A write-ahead log as a replica that lost its disk opens it, starting a
/// background rewrite of its segment whenever it outgrows twice its
/// checkpoint, so runs cross rewrites: put in force by a later persist once
/// the thread has ended, by `FinishRewrite`, or dropped unfinished by a
/// reopen (which leaves its `.tmp` behind).
fn open_wal(dir: &std::path::Path) -> WalStore {
    let mut store = WalStore::open(dir, 1).unwrap();
    store.set_rewrite_bytes_min(0);
    // The thread copies whatever records it finds appended, so both it and
    // the persist that installs the rewrite copy some.
    store.set_rewrite_catch_up_bytes(0);
    store
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn stores_match_the_model_across_reboots(mut operations in operations()) {
        number_batches(&mut operations);
        let wal_dir = tempfile::tempdir().unwrap();
        let mut wal = Some(open_wal(wal_dir.path()));
        let mut mem = MemStore::wiped();
        let mut model = Model::default();
        for operation in &operations {
            match operation {
                Operation::Persist(batches) => {
                    wal.as_mut().unwrap().persist(batches).unwrap();
                    mem.persist(batches).unwrap();
                    batches.iter().for_each(|batch| model.apply(batch));
                }
                Operation::Reopen => {
                    drop(wal.take());
                    let mut reopened = open_wal(wal_dir.path());
                    prop_assert_eq!(reopened.load().unwrap(), model.expected());
                    wal = Some(reopened);
                    let mut rebooted = mem.clone();
                    prop_assert_eq!(rebooted.load().unwrap(), model.expected());
                    mem = rebooted;
                }
                Operation::FinishRewrite => {
                    let wal = wal.as_mut().unwrap();
                    wal.finish_rewrite().unwrap();
                    prop_assert!(!wal.rewrite_in_progress());
                }
            }
        }
        prop_assert_eq!(wal.as_mut().unwrap().load().unwrap(), model.expected());
        prop_assert_eq!(mem.durable(), model.expected());
    }
}
