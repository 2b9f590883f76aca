//! What only the redb store can get wrong: reopening, ownership of the data
//! directory, and damaged files.

use std::path::Path;

use chorus_paxos::{Ballot, DurableState, Entry, Value, WriteBatch};
use chorus_store::{LogStore, RedbStore, StoreError, DATABASE_FILE_NAME};
use redb::TableDefinition;

/// The store's tables, as a tool outside the store would see them.
const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn sample_batches() -> Vec<WriteBatch> {
    let entry = |round, command: &[u8], chosen| Entry {
        ballot: Ballot::new(round, 2),
        value: Value::Batch(vec![command.to_vec(), b"second".to_vec()]),
        chosen,
    };
    vec![
        WriteBatch {
            id: 1,
            promised: Some(Ballot::new(4, 2)),
            entries: vec![(1, entry(4, b"one", true)), (2, entry(4, b"two", false))],
            chosen_through: Some(1),
            ..WriteBatch::default()
        },
        WriteBatch {
            id: 2,
            promised: None,
            entries: vec![(3, Entry { ballot: Ballot::new(4, 2), value: Value::Noop, chosen: false })],
            chosen_through: None,
            ..WriteBatch::default()
        },
    ]
}

fn expected_after_sample() -> DurableState {
    let mut store = chorus_store::MemStore::new();
    store.persist(&sample_batches()).unwrap();
    store.durable()
}

/// Writes `record` under `key` of `table`, bypassing the store.
fn write_raw<K: redb::Key + 'static>(
    dir: &Path,
    table: TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
    record: &[u8],
) {
    let database = redb::Database::create(dir.join(DATABASE_FILE_NAME)).unwrap();
    let transaction = database.begin_write().unwrap();
    transaction.open_table(table).unwrap().insert(key, record).unwrap();
    transaction.commit().unwrap();
}

#[test]
fn reopen_returns_exactly_what_was_persisted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = RedbStore::open_founding(dir.path(), 2).unwrap();
        store.persist(&sample_batches()).unwrap();
    }
    let mut store = RedbStore::open_founding(dir.path(), 2).unwrap();
    assert_eq!(store.load().unwrap(), expected_after_sample());
    assert_ne!(expected_after_sample(), DurableState::default());
}

#[test]
fn reopen_of_an_empty_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open_founding(dir.path(), 0).unwrap());
    let mut store = RedbStore::open_founding(dir.path(), 0).unwrap();
    assert_eq!(store.load().unwrap(), DurableState::default());
}

#[test]
fn only_a_founding_store_votes_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (founding, rebuilding) = (dir.path().join("founding"), dir.path().join("rebuilding"));
    assert!(!RedbStore::open_founding(&founding, 0).unwrap().load().unwrap().recovering);
    assert!(RedbStore::open(&rebuilding, 0).unwrap().load().unwrap().recovering, "an empty disk must rebuild");
    // Opening an existing store as founding changes nothing: a wiped and
    // restarted replica cannot talk itself into voting.
    assert!(RedbStore::open_founding(&rebuilding, 0).unwrap().load().unwrap().recovering);
    let mut store = RedbStore::open(&rebuilding, 0).unwrap();
    store.persist(&[WriteBatch { id: 1, recovered: true, ..WriteBatch::default() }]).unwrap();
    drop(store);
    assert!(!RedbStore::open(&rebuilding, 0).unwrap().load().unwrap().recovering, "finished rebuilding is durable");
}

#[test]
fn missing_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let mut store = RedbStore::open_founding(&nested, 1).unwrap();
    store.persist(&sample_batches()).unwrap();
    assert!(nested.join(DATABASE_FILE_NAME).is_file());
}

#[test]
fn wrong_replica_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
        store.persist(&sample_batches()).unwrap();
    }
    let refused = RedbStore::open_founding(dir.path(), 2).err();
    assert_eq!(refused, Some(StoreError::WrongReplica { expected: 2, found: 1 }));
    // The refusal changed nothing: the owner still opens and reads its data.
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    assert_eq!(store.load().unwrap(), expected_after_sample());
}

#[test]
fn second_open_while_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RedbStore::open_founding(dir.path(), 1).unwrap();
    match RedbStore::open_founding(dir.path(), 1) {
        Err(StoreError::Engine(_)) => {}
        other => panic!("expected Engine error, got {:?}", other.err()),
    }
}

#[test]
fn undecodable_log_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
        store.persist(&sample_batches()).unwrap();
    }
    write_raw(dir.path(), LOG_TABLE, 2, &[0xff, 0xff, 0xff]);
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    match store.load() {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("log entry"), "{message}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn log_record_with_trailing_bytes_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let entry = Entry { ballot: Ballot::new(1, 1), value: Value::Noop, chosen: true };
    let mut record = postcard::to_stdvec(&entry).unwrap();
    record.push(0);
    drop(RedbStore::open_founding(dir.path(), 1).unwrap());
    write_raw(dir.path(), LOG_TABLE, 1, &record);
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
}

#[test]
fn log_record_for_slot_zero_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let entry = Entry { ballot: Ballot::new(1, 1), value: Value::Noop, chosen: true };
    drop(RedbStore::open_founding(dir.path(), 1).unwrap());
    write_raw(dir.path(), LOG_TABLE, 0, &postcard::to_stdvec(&entry).unwrap());
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
}

#[test]
fn undecodable_meta_records_are_corrupt() {
    let cases: [(&str, &[u8]); 3] =
        [("promised", &[0xff]), ("chosen_through", &[1, 2, 3]), ("format_version", &[1, 0, 0, 0, 0, 0, 0])];
    for (key, record) in cases {
        let dir = tempfile::tempdir().unwrap();
        drop(RedbStore::open_founding(dir.path(), 1).unwrap());
        write_raw(dir.path(), META_TABLE, key, record);
        let loaded = RedbStore::open_founding(dir.path(), 1).and_then(|mut store| store.load());
        assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "{key}: {loaded:?}");
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open_founding(dir.path(), 1).unwrap());
    let future = (chorus_store::FORMAT_VERSION + 1).to_le_bytes();
    write_raw(dir.path(), META_TABLE, "format_version", &future);
    assert!(matches!(RedbStore::open_founding(dir.path(), 1), Err(StoreError::Corrupt(_))));
}

/// A byte flipped on disk under a committed log record fails redb's page
/// checksum, and opening reports it instead of returning other data.
#[test]
fn flipped_byte_on_disk_is_corrupt() {
    let canary = b"chorus-canary-record-0123456789";
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
        let entry = Entry { ballot: Ballot::new(1, 1), value: Value::Batch(vec![canary.to_vec()]), chosen: false };
        store.persist(&[WriteBatch { id: 1, entries: vec![(1, entry)], ..WriteBatch::default() }]).unwrap();
        // A second commit that leaves the log alone: both of redb's commit
        // slots now reference the page holding the canary.
        store.persist(&[WriteBatch { id: 2, promised: Some(Ballot::new(2, 1)), ..WriteBatch::default() }]).unwrap();
    }
    let path = dir.path().join(DATABASE_FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(canary.len()).position(|window| window == canary) {
        bytes[at + offset + 3] ^= 0x01;
        at += offset + canary.len();
        flipped += 1;
    }
    assert!(flipped >= 1, "canary not found in the database file");
    std::fs::write(&path, &bytes).unwrap();

    let loaded = RedbStore::open_founding(dir.path(), 1).and_then(|mut store| store.load());
    assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "{loaded:?}");
}

#[test]
fn log_record_inside_the_compacted_prefix_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let entry = Entry { ballot: Ballot::new(1, 1), value: Value::Noop, chosen: true };
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    let batch = WriteBatch { id: 1, chosen_through: Some(3), compact_through: Some(3), ..WriteBatch::default() };
    store.persist(&[batch]).unwrap();
    drop(store);
    write_raw(dir.path(), LOG_TABLE, 2, &postcard::to_stdvec(&entry).unwrap());
    let mut store = RedbStore::open_founding(dir.path(), 1).unwrap();
    assert!(matches!(store.load(), Err(StoreError::Corrupt(message)) if message.contains("compacted through 3")));
}

/// Found by the `store_recovery` fuzz target: a file whose tree points at a
/// page outside its region made redb panic while opening it. A damaged file
/// is an error the replica recovers from, never a crash.
#[test]
fn a_file_that_makes_the_engine_panic_is_corrupt_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = include_bytes!("data/page-outside-its-region.redb");
    std::fs::write(dir.path().join(DATABASE_FILE_NAME), damaged).unwrap();
    let opened = RedbStore::open(dir.path(), 0).and_then(|mut store| store.load());
    assert!(matches!(opened, Err(StoreError::Corrupt(_))), "{opened:?}");
}
