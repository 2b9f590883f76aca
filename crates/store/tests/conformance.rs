//! The `LogStore` contract, written once and run against every store.
//!
//! Each check takes a factory that returns a fresh, empty store; the
//! `conformance!` macro turns every check into one `#[test]` per store.

use chorus_paxos::{Ballot, DurableState, Entry, Incarnations, Slot, Value, WriteBatch};
use chorus_store::{LogStore, MemStore, WalStore};

/// The checks, generic over the store.
mod suite {
    use super::*;

    pub fn empty_load_is_default<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        assert_eq!(store.load().unwrap(), DurableState::default());
    }

    pub fn persist_then_load<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let batch = write_batch(
            1,
            Some(Ballot::new(3, 1)),
            vec![(1, entry(3, b"hello", true)), (2, entry(3, b"world", false))],
            Some(1),
        );
        store.persist(&[batch]).unwrap();
        let expected = state(Ballot::new(3, 1), &[(1, entry(3, b"hello", true)), (2, entry(3, b"world", false))], 1);
        assert_eq!(store.load().unwrap(), expected);
    }

    pub fn later_batch_overrides_within_one_call<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let batches = [
            write_batch(
                1,
                Some(Ballot::new(1, 0)),
                vec![(1, entry(1, b"a", false)), (2, entry(1, b"b", false))],
                Some(0),
            ),
            write_batch(2, Some(Ballot::new(2, 2)), vec![(2, entry(2, b"c", false))], None),
            write_batch(3, None, vec![(1, entry(1, b"a", true))], Some(1)),
        ];
        store.persist(&batches).unwrap();
        let expected = state(Ballot::new(2, 2), &[(1, entry(1, b"a", true)), (2, entry(2, b"c", false))], 1);
        assert_eq!(store.load().unwrap(), expected);
    }

    pub fn later_batch_overrides_across_calls<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        store
            .persist(&[write_batch(
                1,
                Some(Ballot::new(5, 1)),
                vec![(1, entry(5, b"x", false)), (3, entry(5, b"z", false))],
                Some(0),
            )])
            .unwrap();
        store.persist(&[write_batch(2, Some(Ballot::new(6, 2)), vec![(3, entry(6, b"zz", true))], Some(3))]).unwrap();
        let expected = state(Ballot::new(6, 2), &[(1, entry(5, b"x", false)), (3, entry(6, b"zz", true))], 3);
        assert_eq!(store.load().unwrap(), expected);
    }

    /// Overriding is "last write wins", not "maximum wins": the store
    /// stores what the core decided, and never second-guesses it.
    pub fn later_batch_wins_even_when_smaller<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let batches = [
            write_batch(1, Some(Ballot::new(9, 0)), vec![], Some(7)),
            write_batch(2, Some(Ballot::new(4, 0)), vec![], Some(2)),
        ];
        store.persist(&batches).unwrap();
        assert_eq!(store.load().unwrap(), state(Ballot::new(4, 0), &[], 2));
    }

    pub fn unset_fields_keep_their_values<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        store.persist(&[write_batch(1, Some(Ballot::new(2, 1)), vec![(4, entry(2, b"d", true))], Some(4))]).unwrap();
        store
            .persist(&[write_batch(
                2,
                None,
                vec![(5, Entry { ballot: Ballot::new(2, 1), value: Value::Noop, chosen: false })],
                None,
            )])
            .unwrap();
        store.persist(&[write_batch(3, Some(Ballot::new(3, 0)), vec![], None)]).unwrap();
        let expected = state(
            Ballot::new(3, 0),
            &[(4, entry(2, b"d", true)), (5, Entry { ballot: Ballot::new(2, 1), value: Value::Noop, chosen: false })],
            4,
        );
        assert_eq!(store.load().unwrap(), expected);
    }

    pub fn empty_batches_are_fine<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        store.persist(&[]).unwrap();
        store.persist(&[WriteBatch::default(), WriteBatch { id: 1, ..WriteBatch::default() }]).unwrap();
        assert_eq!(store.load().unwrap(), DurableState::default());

        store.persist(&[write_batch(2, Some(Ballot::new(1, 1)), vec![], None)]).unwrap();
        store.persist(&[]).unwrap();
        store.persist(&[WriteBatch { id: 3, ..WriteBatch::default() }]).unwrap();
        assert_eq!(store.load().unwrap(), state(Ballot::new(1, 1), &[], 0));
    }

    pub fn load_does_not_change_state<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        store.persist(&[write_batch(1, Some(Ballot::new(1, 2)), vec![(1, entry(1, b"q", false))], Some(0))]).unwrap();
        let first = store.load().unwrap();
        assert_eq!(store.load().unwrap(), first);
        assert_eq!(first, state(Ballot::new(1, 2), &[(1, entry(1, b"q", false))], 0));
    }

    pub fn compaction_deletes_the_covered_entries_and_is_remembered<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let entries = (1..=4).map(|slot| (slot, entry(1, &[slot as u8], true))).collect();
        let mut compact = write_batch(2, None, vec![(5, entry(1, b"5", false))], Some(4));
        compact.compact_through = Some(2);
        store.persist(&[write_batch(1, Some(Ballot::new(1, 0)), entries, Some(4)), compact]).unwrap();
        let mut lower = write_batch(3, None, vec![], None);
        lower.compact_through = Some(1);
        store.persist(&[lower]).unwrap();
        let kept = [(3, entry(1, &[3], true)), (4, entry(1, &[4], true)), (5, entry(1, b"5", false))];
        let mut expected = state(Ballot::new(1, 0), &kept, 4);
        expected.compacted_through = 2;
        assert_eq!(store.load().unwrap(), expected, "a lower compaction never lowers the mark");
    }

    pub fn incarnations_are_kept_and_the_last_table_wins<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let table = |pairs: &[(u8, u64)]| {
            let mut table = Incarnations::default();
            pairs.iter().for_each(|(replica, incarnation)| {
                table.raise(*replica, *incarnation);
            });
            table
        };
        let first = WriteBatch { id: 1, incarnations: Some(table(&[(1, 2)])), ..WriteBatch::default() };
        let second = WriteBatch { id: 2, incarnations: Some(table(&[(1, 3), (4, 1)])), ..WriteBatch::default() };
        store.persist(&[first, second]).unwrap();
        store.persist(&[write_batch(3, Some(Ballot::new(2, 1)), vec![], None)]).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!((loaded.incarnations, loaded.promised), (table(&[(1, 3), (4, 1)]), Ballot::new(2, 1)));
    }

    pub fn slot_zero_is_a_caller_bug<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let _ = store.persist(&[write_batch(1, None, vec![(0, entry(1, b"no", false))], None)]);
    }

    pub fn oversized_entry_is_a_caller_bug<S: LogStore>(mut new_store: impl FnMut() -> S) {
        let mut store = new_store();
        let command = vec![7_u8; chorus_store::ENTRY_BYTES_MAX];
        let oversized = Entry { ballot: Ballot::new(1, 0), value: Value::batch(vec![command]), chosen: false };
        let _ = store.persist(&[write_batch(1, None, vec![(1, oversized)], None)]);
    }
}

fn entry(round: u64, command: &[u8], chosen: bool) -> Entry {
    Entry { ballot: Ballot::new(round, 0), value: Value::batch(vec![command.to_vec()]), chosen }
}

fn write_batch(
    id: u64,
    promised: Option<Ballot>,
    entries: Vec<(Slot, Entry)>,
    chosen_through: Option<Slot>,
) -> WriteBatch {
    WriteBatch { id, promised, entries, chosen_through, ..WriteBatch::default() }
}

fn state(promised: Ballot, entries: &[(Slot, Entry)], chosen_through: Slot) -> DurableState {
    DurableState { promised, entries: entries.iter().cloned().collect(), chosen_through, ..DurableState::default() }
}

/// A `WalStore` in its own temporary directory, removed after the store.
struct TempWal {
    /// Declared first so it is dropped (and its files closed) first.
    store: WalStore,
    /// Whether each `persist` waits for the rewrite it started (or found
    /// running) to be put in force before it returns.
    finish_rewrites: bool,
    _dir: tempfile::TempDir,
}

impl LogStore for TempWal {
    fn load(&mut self) -> Result<DurableState, chorus_store::StoreError> {
        self.store.load()
    }

    fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), chorus_store::StoreError> {
        self.store.persist(batches)?;
        if self.finish_rewrites {
            self.store.finish_rewrite()?;
        }
        Ok(())
    }
}

fn new_wal() -> TempWal {
    let dir = tempfile::tempdir().unwrap();
    let store = WalStore::open_founding(dir.path(), 1).unwrap();
    TempWal { store, finish_rewrites: false, _dir: dir }
}

/// A `WalStore` that starts a background rewrite of its segment after
/// nearly every `persist`; a later `persist` puts it in force whenever its
/// thread has ended, so checks run across rewrites finished at any point,
/// and `load` often runs while one is still going.
fn new_wal_rewriting() -> TempWal {
    let mut wal = new_wal();
    wal.store.set_rewrite_bytes_min(0);
    wal.store.set_rewrite_catch_up_bytes(0);
    wal
}

/// Like [`new_wal_rewriting`], but each `persist` waits for its rewrite to
/// be put in force, so every check also runs right after rewrites that had
/// no records to carry over.
fn new_wal_rewriting_finished() -> TempWal {
    let mut wal = new_wal_rewriting();
    wal.finish_rewrites = true;
    wal
}

/// One `#[test]` per check of `suite`, for the store `$new_store` builds.
macro_rules! conformance {
    ($module:ident, $new_store:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn empty_load_is_default() {
                suite::empty_load_is_default($new_store);
            }
            #[test]
            fn persist_then_load() {
                suite::persist_then_load($new_store);
            }
            #[test]
            fn later_batch_overrides_within_one_call() {
                suite::later_batch_overrides_within_one_call($new_store);
            }
            #[test]
            fn later_batch_overrides_across_calls() {
                suite::later_batch_overrides_across_calls($new_store);
            }
            #[test]
            fn later_batch_wins_even_when_smaller() {
                suite::later_batch_wins_even_when_smaller($new_store);
            }
            #[test]
            fn unset_fields_keep_their_values() {
                suite::unset_fields_keep_their_values($new_store);
            }
            #[test]
            fn empty_batches_are_fine() {
                suite::empty_batches_are_fine($new_store);
            }
            #[test]
            fn load_does_not_change_state() {
                suite::load_does_not_change_state($new_store);
            }
            #[test]
            fn compaction_deletes_the_covered_entries_and_is_remembered() {
                suite::compaction_deletes_the_covered_entries_and_is_remembered($new_store);
            }

            #[test]
            fn incarnations_are_kept_and_the_last_table_wins() {
                suite::incarnations_are_kept_and_the_last_table_wins($new_store);
            }
            #[test]
            #[should_panic(expected = "slot 0")]
            fn slot_zero_is_a_caller_bug() {
                suite::slot_zero_is_a_caller_bug($new_store);
            }
            #[test]
            #[should_panic(expected = "ENTRY_BYTES_MAX")]
            fn oversized_entry_is_a_caller_bug() {
                suite::oversized_entry_is_a_caller_bug($new_store);
            }
        }
    };
}

conformance!(mem_store, MemStore::new);
conformance!(wal_store, new_wal);
conformance!(wal_store_rewriting, new_wal_rewriting);
conformance!(wal_store_rewriting_finished, new_wal_rewriting_finished);
