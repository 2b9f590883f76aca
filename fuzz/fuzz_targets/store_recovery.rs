//! Opening a store whose file holds arbitrary bytes (the corpus starts from
//! real store files): recovery reports the damage as an error, never
//! panics, and what it does load is within the log's own rules.
#![no_main]

use chorus_store::{LogStore, RedbStore, DATABASE_FILE_NAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(DATABASE_FILE_NAME), data).expect("write the file");
    let Ok(mut store) = RedbStore::open(dir.path(), 0) else { return };
    let Ok(state) = store.load() else { return };
    assert!(state.entries.keys().all(|slot| *slot > state.compacted_through));
});
