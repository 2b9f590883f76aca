//! What only the write-ahead log can get wrong: torn tails, damaged
//! records, rewrites interrupted by a crash, reopening, and ownership of the
//! data directory.

use std::path::{Path, PathBuf};

use chorus_paxos::{Ballot, DurableState, Entry, Value, WriteBatch};
use chorus_store::{
    LogStore, MemStore, StoreError, WalStore, HEADER_BYTES, PREALLOCATE_BYTES, RECORD_PREFIX_BYTES, SECTOR_BYTES,
    TORN_ZEROS_MIN, WAL_FORMAT_VERSION,
};

fn entry(round: u64, command: &[u8], chosen: bool) -> Entry {
    Entry { ballot: Ballot::new(round, 1), value: Value::batch(vec![command.to_vec()]), chosen }
}

/// Three `persist` calls, each different enough to tell apart.
fn three_persists() -> Vec<Vec<WriteBatch>> {
    vec![
        vec![WriteBatch {
            id: 1,
            promised: Some(Ballot::new(2, 1)),
            entries: vec![(1, entry(2, b"first", true)), (2, entry(2, b"second", false))],
            chosen_through: Some(1),
            ..WriteBatch::default()
        }],
        vec![
            WriteBatch { id: 2, entries: vec![(3, entry(2, b"third", false))], ..WriteBatch::default() },
            WriteBatch { id: 3, chosen_through: Some(3), ..WriteBatch::default() },
        ],
        vec![WriteBatch {
            id: 4,
            promised: Some(Ballot::new(3, 0)),
            entries: vec![(4, Entry { ballot: Ballot::new(3, 0), value: Value::Noop, chosen: false })],
            compact_through: Some(1),
            ..WriteBatch::default()
        }],
    ]
}

/// A founding store with `persists` written; returns the end of the
/// segment's records after opening and after each persist, and the state
/// after each (the first one the empty state). The file itself is longer:
/// zeros are preallocated after the records.
fn write_persists(dir: &Path, persists: &[Vec<WriteBatch>]) -> (Vec<u64>, Vec<DurableState>) {
    let mut store = WalStore::open_founding(dir, 1).unwrap();
    let mut model = MemStore::new();
    let mut lengths = vec![store.segment_bytes()];
    assert_eq!(file_length(&store.segment_path()), lengths[0], "nothing preallocated before the first persist");
    let mut states = vec![model.durable()];
    for batches in persists {
        store.persist(batches).unwrap();
        model.persist(batches).unwrap();
        lengths.push(store.segment_bytes());
        assert_eq!(file_length(&store.segment_path()), PREALLOCATE_BYTES, "the file is preallocated");
        states.push(model.durable());
    }
    assert_eq!(store.load().unwrap(), model.durable());
    (lengths, states)
}

fn file_length(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The one `.log` segment in `dir`.
fn only_segment(dir: &Path) -> PathBuf {
    let segments = segments(dir);
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.into_iter().next().unwrap()
}

/// Every `.log` and `.tmp` file in `dir`, sorted.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|item| item.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log" || extension == "tmp"))
        .collect();
    found.sort();
    found
}

fn open_and_load(dir: &Path) -> Result<DurableState, StoreError> {
    WalStore::open_founding(dir, 1).and_then(|mut store| store.load())
}

#[test]
fn reopen_returns_exactly_what_was_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let (_, states) = write_persists(dir.path(), &three_persists());
    assert_eq!(open_and_load(dir.path()).unwrap(), states[3]);
    assert_ne!(states[3], DurableState::default());
}

/// A crash mid-`persist` can leave any prefix of its record on disk. Every
/// such prefix loads as the state before that persist, and open cuts it off.
#[test]
fn torn_tail_at_every_cut_point_loads_the_state_before_the_persist() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, states) = write_persists(dir.path(), &three_persists());
    let path = only_segment(dir.path());
    let whole = std::fs::read(&path).unwrap();
    for persist in 1..lengths.len() {
        for cut in lengths[persist - 1]..lengths[persist] {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            let loaded = open_and_load(dir.path());
            assert_eq!(loaded.as_ref(), Ok(&states[persist - 1]), "persist {persist}, cut at byte {cut}");
            assert_eq!(file_length(&path), lengths[persist - 1], "the torn tail is cut off on open");
        }
    }
    std::fs::write(&path, &whole).unwrap();
    assert_eq!(open_and_load(dir.path()).unwrap(), states[3]);
}

/// The header and checkpoint were fsynced before the segment got its name,
/// so a segment cut short inside them is damage, not a torn write.
#[test]
fn segment_cut_inside_its_header_or_checkpoint_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_persists(dir.path(), &three_persists());
    let path = only_segment(dir.path());
    let whole = std::fs::read(&path).unwrap();
    for cut in 0..lengths[0] {
        std::fs::write(&path, &whole[..cut as usize]).unwrap();
        let loaded = open_and_load(dir.path());
        assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "cut at byte {cut}: {loaded:?}");
    }
}

/// A store that cut a torn tail appends after it, and reads back both.
#[test]
fn appends_after_a_cut_torn_tail_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let persists = three_persists();
    let (lengths, _) = write_persists(dir.path(), &persists[..2]);
    let path = only_segment(dir.path());
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..lengths[2] as usize - 3]).unwrap();
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    store.persist(&persists[2]).unwrap();
    drop(store);
    let mut model = MemStore::new();
    model.persist(&persists[0]).unwrap();
    model.persist(&persists[2]).unwrap();
    assert_eq!(open_and_load(dir.path()).unwrap(), model.durable());
}

/// Every byte of a record that has others after it, flipped in turn
/// (length, checksum and payload alike): `Corrupt`, never skipped.
#[test]
fn flipped_byte_in_a_middle_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_persists(dir.path(), &three_persists());
    assert_every_flip_is_corrupt(dir.path(), lengths[1]..lengths[2]);
}

/// The last record is complete, so damage to it is `Corrupt` too, not a
/// torn tail: including a length field that now claims more bytes than the
/// file holds (the payload is whole and its checksum matches).
#[test]
fn flipped_byte_in_the_last_complete_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_persists(dir.path(), &three_persists());
    assert_every_flip_is_corrupt(dir.path(), lengths[2]..lengths[3]);
}

#[test]
fn flipped_byte_in_the_header_or_checkpoint_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_persists(dir.path(), &three_persists());
    assert_every_flip_is_corrupt(dir.path(), 0..lengths[0]);
}

fn assert_every_flip_is_corrupt(dir: &Path, range: std::ops::Range<u64>) {
    let path = only_segment(dir);
    let whole = std::fs::read(&path).unwrap();
    for at in range {
        for bit in [0x01_u8, 0x80] {
            let mut damaged = whole.clone();
            damaged[at as usize] ^= bit;
            std::fs::write(&path, &damaged).unwrap();
            let loaded = open_and_load(dir);
            assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "byte {at} ^ {bit:#x}: {loaded:?}");
            assert_eq!(std::fs::read(&path).unwrap(), damaged, "a refused open changes nothing");
        }
    }
    std::fs::write(&path, &whole).unwrap();
}

/// A crash can leave the file longer, its new blocks unwritten (zeros).
#[test]
fn zero_filled_tail_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, states) = write_persists(dir.path(), &three_persists());
    let path = only_segment(dir.path());
    for zeros in [1, 7, 8, 9, 300] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::iter::repeat_n(0_u8, zeros));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(open_and_load(dir.path()).unwrap(), states[3], "{zeros} zeros");
        assert_eq!(file_length(&path), lengths[3]);
    }
}

/// Two persists, the second one record spanning several sectors (of a
/// command of `command_bytes` that holds no zero byte); returns the record
/// ends and states as `write_persists` does.
fn write_a_multi_sector_record(dir: &Path, command_bytes: usize) -> (Vec<u64>, Vec<DurableState>) {
    let command = vec![7; command_bytes];
    let persists = vec![
        three_persists().remove(0),
        vec![WriteBatch { id: 9, entries: vec![(3, entry(2, &command, false))], ..WriteBatch::default() }],
    ];
    let (lengths, states) = write_persists(dir, &persists);
    assert!(lengths[2] - lengths[1] > 5 * SECTOR_BYTES as u64);
    (lengths, states)
}

/// The sectors the record in `range` reaches into: each one's part of it.
fn sector_parts(range: std::ops::Range<u64>) -> Vec<std::ops::Range<usize>> {
    let (start, end) = (range.start as usize, range.end as usize);
    let first = start / SECTOR_BYTES;
    let last = (end - 1) / SECTOR_BYTES;
    (first..=last).map(|sector| (sector * SECTOR_BYTES).max(start)..((sector + 1) * SECTOR_BYTES).min(end)).collect()
}

/// A crash mid-`persist` inside the preallocated zeros leaves the record
/// whole-length, with the sectors the write did not reach still zero: when
/// any sector but its first (which holds its length) is missing, with
/// enough of the record in it to tell, it is a torn tail, cut off on open.
/// The first sector missing, or too little of the record to tell, is
/// `Corrupt`: the replica rebuilds rather than guess.
#[test]
fn a_write_torn_inside_the_preallocated_zeros_is_torn() {
    let (torn, corrupt) = tear_every_sector_of_the_last_record(3000);
    // Only the first sector alone: its length field reads 0, later bytes do not.
    assert!(torn >= 10 && corrupt == 1, "{torn} torn, {corrupt} corrupt");
    // Sized so that its last sector holds only 12 bytes of it (some of them
    // its own trailing zeros).
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_a_multi_sector_record(dir.path(), 3000);
    let shift = (12 + SECTOR_BYTES - lengths[2] as usize % SECTOR_BYTES) % SECTOR_BYTES;
    let (torn, corrupt) = tear_every_sector_of_the_last_record(3000 + shift);
    // The first sector alone, and the last (alone, or from it on).
    assert!(torn >= 10 && corrupt == 3, "{torn} torn, {corrupt} corrupt");
}

/// Writes a last record of a `command_bytes` command, then for each sector
/// it reaches into, reopens it with that sector missing and then with that
/// one and all later ones missing. Returns how many opens found a torn
/// tail and how many `Corrupt`.
fn tear_every_sector_of_the_last_record(command_bytes: usize) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, states) = write_a_multi_sector_record(dir.path(), command_bytes);
    let path = only_segment(dir.path());
    let whole = std::fs::read(&path).unwrap();
    assert_eq!(whole.len() as u64, PREALLOCATE_BYTES);
    let parts = sector_parts(lengths[1]..lengths[2]);
    let (mut torn, mut corrupt) = (0, 0);
    for (index, part) in parts.iter().enumerate() {
        // Only this sector missing, then this one and every later one.
        for missing in [part.clone(), part.start..lengths[2] as usize] {
            let mut bytes = whole.clone();
            bytes[missing.clone()].fill(0);
            std::fs::write(&path, &bytes).unwrap();
            let loaded = open_and_load(dir.path());
            // Nothing written at all is a zero-filled tail (rule 2).
            let nothing_written = missing == (lengths[1] as usize..lengths[2] as usize);
            let evidence =
                index > 0 && parts.iter().any(|part| missing.contains(&part.start) && part.len() >= TORN_ZEROS_MIN);
            if bytes == whole {
                // Those bytes of the record were zeros already.
                assert!(loaded.as_ref() == Ok(&states[2]), "bytes {missing:?} were zero");
            } else if nothing_written || evidence {
                assert!(loaded.as_ref() == Ok(&states[1]), "bytes {missing:?} missing: not torn");
                assert_eq!(file_length(&path), lengths[1], "the torn record is cut off");
                torn += 1;
            } else {
                assert!(matches!(loaded, Err(StoreError::Corrupt(_))), "bytes {missing:?} missing: not corrupt");
                assert_eq!(std::fs::read(&path).unwrap(), bytes, "a refused open changes nothing");
                corrupt += 1;
            }
        }
    }
    // Undamaged: open cuts the zeros, and the next persist preallocates.
    std::fs::write(&path, &whole).unwrap();
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    assert_eq!(file_length(&path), lengths[2], "open cuts the preallocated zeros");
    store.persist(&three_persists()[1]).unwrap();
    assert_eq!(file_length(&path), PREALLOCATE_BYTES);
    (torn, corrupt)
}

/// Damage to a last record spanning sectors, followed by preallocated
/// zeros, is `Corrupt` wherever it is: a payload byte, its checksum, or a
/// length that now claims some of the zeros (its payload still decodes
/// whole and matches the checksum) or fewer bytes.
#[test]
fn flipped_byte_in_a_last_record_before_preallocated_zeros_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, _) = write_a_multi_sector_record(dir.path(), 3000);
    let path = only_segment(dir.path());
    // Keep 4 KiB of the zeros, so that each damaged copy is small to write.
    let mut kept = std::fs::read(&path).unwrap();
    kept.truncate(lengths[2] as usize + 4096);
    std::fs::write(&path, &kept).unwrap();
    assert_every_flip_is_corrupt(dir.path(), lengths[1]..lengths[2]);
}

/// A length this store never writes, followed by bytes that are not all
/// zero, is damage, not a torn write.
#[test]
fn impossible_length_with_data_after_it_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_persists(dir.path(), &three_persists());
    let path = only_segment(dir.path());
    let whole = std::fs::read(&path).unwrap();
    for prefix in [[0_u8, 0, 0, 0, 9, 9, 9, 9], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]] {
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(b"payload");
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(open_and_load(dir.path()), Err(StoreError::Corrupt(_))), "{prefix:?}");
    }
}

/// Persists many batches that compact as they go, with rewrites allowed at
/// any size, finishing the running rewrite every fourth persist (so at most
/// four records are appended while one runs) and at the end; returns the
/// store (still open) and what it must hold.
fn write_with_rewrites(dir: &Path, persists: u64) -> (WalStore, MemStore) {
    let mut store = WalStore::open_founding(dir, 1).unwrap();
    store.set_rewrite_bytes_min(0);
    let mut model = MemStore::new();
    for slot in 1..=persists {
        let batch = WriteBatch {
            id: slot,
            promised: Some(Ballot::new(slot / 10, 1)),
            entries: vec![(slot, entry(slot, &[7; 200], true))],
            chosen_through: Some(slot),
            compact_through: slot.checked_sub(5),
            ..WriteBatch::default()
        };
        store.persist(std::slice::from_ref(&batch)).unwrap();
        model.persist(&[batch]).unwrap();
        if slot % 4 == 0 {
            store.finish_rewrite().unwrap();
        }
    }
    store.finish_rewrite().unwrap();
    (store, model)
}

#[test]
fn rewrites_bound_the_file_and_reopen_reads_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, model) = write_with_rewrites(dir.path(), 200);
    assert!(store.segment_sequence() > 10, "rewrites happened: {}", store.segment_sequence());
    let path = store.segment_path();
    assert_eq!(only_segment(dir.path()), path, "old segments are removed");
    // Five live entries of about 220 bytes: twice that, plus one record.
    assert!(store.segment_bytes() < 4 * 1024, "{} bytes", store.segment_bytes());
    assert!(file_length(&path) <= PREALLOCATE_BYTES, "{} bytes", file_length(&path));
    assert_eq!(store.load().unwrap(), model.durable());
    drop(store);
    assert_eq!(open_and_load(dir.path()).unwrap(), model.durable());
}

/// A crash after a rewrite's rename but before the old segment was removed:
/// the newest segment holds everything, and open removes the old one. (The
/// old segment is put back as it was before its last record; either way it
/// holds no more than the new one.)
#[test]
fn old_segment_left_by_an_interrupted_rewrite_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    store.set_rewrite_bytes_min(0);
    let mut model = MemStore::new();
    let first = store.segment_sequence();
    let mut slot = 1;
    let (old_path, old_bytes) = loop {
        let before = (store.segment_path(), std::fs::read(store.segment_path()).unwrap());
        let batch = WriteBatch { id: slot, entries: vec![(slot, entry(1, &[1; 300], false))], ..Default::default() };
        store.persist(std::slice::from_ref(&batch)).unwrap();
        model.persist(&[batch]).unwrap();
        slot += 1;
        if store.segment_sequence() != first {
            break before;
        }
    };
    drop(store);
    assert!(!old_path.exists());
    std::fs::write(&old_path, &old_bytes).unwrap();
    // (Dropping the store may also have left the `.tmp` of the next rewrite.)
    let logs = segments(dir.path()).into_iter().filter(|path| path.extension().unwrap() == "log").count();
    assert_eq!(logs, 2);
    assert_eq!(open_and_load(dir.path()).unwrap(), model.durable());
    assert_eq!(segments(dir.path()).len(), 1);
    assert!(!old_path.exists());
}

/// The live state stays small (three entries of about 320 bytes), so a
/// segment that has just been rewritten is far below this and only the
/// one rewrite the tests start runs.
const SMALL_REWRITE_BYTES: u64 = 8 * 1024;

/// The persist of `slot`: one entry, keeping only the last three.
fn small_live_batch(slot: u64) -> WriteBatch {
    WriteBatch {
        id: slot,
        promised: Some(Ballot::new(slot, 1)),
        entries: vec![(slot, entry(slot, &[slot as u8; 300], true))],
        chosen_through: Some(slot),
        compact_through: slot.checked_sub(3),
        ..WriteBatch::default()
    }
}

/// A founding store that rewrites past [`SMALL_REWRITE_BYTES`] (its thread
/// leaving `catch_up_bytes` to copy), persisted into (from `slot` 1 on)
/// until a rewrite has just started. Returns the store, what it must hold,
/// and the next slot.
fn persist_until_a_rewrite_starts(dir: &Path, catch_up_bytes: u64) -> (WalStore, DurableState, u64) {
    let mut store = WalStore::open_founding(dir, 1).unwrap();
    store.set_rewrite_bytes_min(SMALL_REWRITE_BYTES);
    store.set_rewrite_catch_up_bytes(catch_up_bytes);
    let mut expected = DurableState::default();
    let mut slot = 1;
    while !store.rewrite_in_progress() {
        assert!(slot < 1_000, "no rewrite started");
        let batch = small_live_batch(slot);
        store.persist(std::slice::from_ref(&batch)).unwrap();
        expected.apply(&batch);
        slot += 1;
    }
    assert_eq!(store.segment_sequence(), 1, "the first rewrite is not in force yet");
    (store, expected, slot)
}

/// Bytes of the header and checkpoint record of the segment at `path`.
fn checkpoint_bytes(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let length = u32::from_le_bytes(bytes[HEADER_BYTES..HEADER_BYTES + 4].try_into().unwrap());
    (HEADER_BYTES + RECORD_PREFIX_BYTES) as u64 + u64::from(length)
}

/// `persist` goes on while a rewrite runs in the background (its thread
/// copying whatever records it finds appended); once it is finished the
/// store is on the next segment, alone in the directory, and both the store
/// and a reopen load exactly what was persisted.
#[test]
fn rewrite_runs_in_the_background_while_persists_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut expected, first_slot) = persist_until_a_rewrite_starts(dir.path(), 0);
    for slot in first_slot..first_slot + 6 {
        let batch = small_live_batch(slot);
        store.persist(std::slice::from_ref(&batch)).unwrap();
        expected.apply(&batch);
    }
    store.finish_rewrite().unwrap();
    assert!(!store.rewrite_in_progress());
    assert_eq!(store.segment_sequence(), 2);
    assert_eq!(only_segment(dir.path()), store.segment_path());
    assert_eq!(store.load().unwrap(), expected);
    drop(store);
    assert_eq!(open_and_load(dir.path()).unwrap(), expected);
}

/// The records persisted after the rewrite read the old segment are copied
/// (by the `persist` that installs it: far less than the thread's
/// catch-up threshold was appended) after the new segment's checkpoint, and
/// read back after a reopen.
#[test]
fn records_appended_during_a_rewrite_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut expected, slot) =
        persist_until_a_rewrite_starts(dir.path(), chorus_store::REWRITE_CATCH_UP_BYTES);
    let during = WriteBatch {
        id: slot,
        promised: Some(Ballot::new(1_000, 2)),
        entries: vec![(slot, entry(7, b"written while the rewrite ran", false))],
        ..WriteBatch::default()
    };
    store.persist(std::slice::from_ref(&during)).unwrap();
    expected.apply(&during);
    store.finish_rewrite().unwrap();
    assert_eq!(store.segment_sequence(), 2);
    let path = store.segment_path();
    assert!(file_length(&path) > checkpoint_bytes(&path), "the new segment holds records after its checkpoint");
    drop(store);
    let loaded = open_and_load(dir.path()).unwrap();
    assert_eq!(loaded, expected);
    assert_eq!(loaded.promised, Ballot::new(1_000, 2));
}

/// A crash after the rewrite wrote its `.tmp` but before the rename (the
/// store dropped with the job not yet put in force): the old segment stays
/// in force, with every record, and open removes the `.tmp`.
#[test]
fn crash_before_a_rewrites_rename_reopens_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (store, expected, _) = persist_until_a_rewrite_starts(dir.path(), 0);
    let old_path = store.segment_path();
    drop(store);
    let temporary = dir.path().join(format!("wal-{:020}.tmp", 2));
    assert!(temporary.exists(), "the rewrite wrote its .tmp before the store was dropped");
    assert_eq!(segments(dir.path()), vec![old_path.clone(), temporary.clone()]);
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    assert_eq!(store.segment_sequence(), 1);
    assert_eq!(store.load().unwrap(), expected);
    assert_eq!(segments(dir.path()), vec![old_path]);
}

/// The first `load` returns the state open replayed; a later one reads the
/// segment again; a `persist` in between is seen by both.
#[test]
fn loads_after_open_and_after_persists_agree() {
    let dir = tempfile::tempdir().unwrap();
    let persists = three_persists();
    let (_, states) = write_persists(dir.path(), &persists[..2]);
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    assert_eq!(store.load().unwrap(), states[2]);
    assert_eq!(store.load().unwrap(), states[2]);
    drop(store);
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    store.persist(&persists[2]).unwrap();
    let mut expected = states[2].clone();
    persists[2].iter().for_each(|batch| expected.apply(batch));
    assert_eq!(store.load().unwrap(), expected);
    assert_eq!(store.load().unwrap(), expected);
}

/// A crash before a rewrite's rename: the `.tmp` was never in force, and
/// open removes it, whatever it holds.
#[test]
fn temporary_segment_left_by_an_interrupted_rewrite_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, states) = write_persists(dir.path(), &three_persists());
    let temporary = dir.path().join(format!("wal-{:020}.tmp", 2));
    std::fs::write(&temporary, b"half a segment").unwrap();
    assert_eq!(open_and_load(dir.path()).unwrap(), states[3]);
    assert!(!temporary.exists());
}

#[test]
fn wrong_replica_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (lengths, states) = write_persists(dir.path(), &three_persists());
    // A torn tail, which a refused open must not cut.
    let path = only_segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(lengths[3] as usize);
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
    std::fs::write(&path, &bytes).unwrap();
    let refused = WalStore::open_founding(dir.path(), 2).err();
    assert_eq!(refused, Some(StoreError::WrongReplica { expected: 2, found: 1 }));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(open_and_load(dir.path()).unwrap(), states[3]);
}

#[test]
fn empty_directory_opens_as_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let (founding, rebuilding) = (dir.path().join("founding"), dir.path().join("rebuilding"));
    std::fs::create_dir(&founding).unwrap();
    std::fs::create_dir(&rebuilding).unwrap();
    assert_eq!(WalStore::open_founding(&founding, 0).unwrap().load().unwrap(), DurableState::default());
    let rebuilt = WalStore::open(&rebuilding, 0).unwrap().load().unwrap();
    assert_eq!(rebuilt, DurableState { recovering: true, ..DurableState::default() }, "an empty disk must rebuild");
    // Opening an existing store as founding changes nothing.
    assert!(WalStore::open_founding(&rebuilding, 0).unwrap().load().unwrap().recovering);
    let mut store = WalStore::open(&rebuilding, 0).unwrap();
    store.persist(&[WriteBatch { id: 1, recovered: true, ..WriteBatch::default() }]).unwrap();
    drop(store);
    assert!(!WalStore::open(&rebuilding, 0).unwrap().load().unwrap().recovering, "finished rebuilding is durable");
}

#[test]
fn missing_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let mut store = WalStore::open_founding(&nested, 1).unwrap();
    store.persist(&three_persists()[0]).unwrap();
    assert_eq!(only_segment(&nested), store.segment_path());
}

#[test]
fn second_open_while_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = WalStore::open_founding(dir.path(), 1).unwrap();
    match WalStore::open_founding(dir.path(), 1) {
        Err(StoreError::Engine(_)) => {}
        other => panic!("expected Engine error, got {:?}", other.err()),
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_persists(dir.path(), &three_persists());
    let path = only_segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&(WAL_FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..HEADER_BYTES - 4]);
    bytes[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let opened = open_and_load(dir.path());
    let wrong = StoreError::WrongFormat { found: WAL_FORMAT_VERSION + 1, reads: WAL_FORMAT_VERSION };
    assert_eq!(opened.err(), Some(wrong));
}

#[test]
fn a_directory_holding_a_redb_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chorus.redb"), b"a store from an earlier build").unwrap();
    let opened = WalStore::open_founding(dir.path(), 1).map(|_| ());
    assert!(matches!(&opened, Err(StoreError::Engine(message)) if message.contains("new directory")), "{opened:?}");
    assert_eq!(segments(dir.path()), Vec::<PathBuf>::new(), "nothing written beside it");
}

#[test]
fn a_set_aside_store_reopens_empty_and_not_founding_with_its_segment_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_persists(dir.path(), &three_persists());
    let segment = only_segment(dir.path());
    assert_eq!(WalStore::disk_bytes(dir.path()), file_length(&segment));
    let moved = WalStore::set_aside(dir.path()).unwrap();
    assert_eq!(moved.len(), 1);
    assert!(moved[0].to_string_lossy().ends_with(".log.corrupt"), "{moved:?}");
    assert_eq!(WalStore::segment_files(dir.path()).unwrap(), Vec::<PathBuf>::new());
    // The replica that set its store aside is no founder: it must rebuild.
    let state = WalStore::open(dir.path(), 1).and_then(|mut store| store.load()).unwrap();
    assert_eq!(state, DurableState { recovering: true, ..DurableState::default() });
    assert!(moved[0].exists(), "the damaged segment is kept for inspection");
}

/// A record damaged after it was written is found when a rewrite replays
/// the segment: the rewrite fails and stops the store, rather than
/// carrying the damage (or dropping the record) into the next segment.
#[test]
fn a_rewrite_over_a_damaged_record_stops_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = WalStore::open_founding(dir.path(), 1).unwrap();
    store.set_rewrite_bytes_min(SMALL_REWRITE_BYTES);
    for slot in 1..=3 {
        store.persist(&[small_live_batch(slot)]).unwrap();
    }
    let path = store.segment_path();
    let mut bytes = std::fs::read(&path).unwrap();
    let inside_the_last_record = store.segment_bytes() as usize - 100;
    bytes[inside_the_last_record] ^= 0x40;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| {
            use std::io::{Seek, SeekFrom, Write};
            file.seek(SeekFrom::Start(inside_the_last_record as u64))?;
            file.write_all(&bytes[inside_the_last_record..=inside_the_last_record])
        })
        .unwrap();
    let mut slot = 4;
    while !store.rewrite_in_progress() {
        assert!(slot < 1_000, "no rewrite started");
        store.persist(&[small_live_batch(slot)]).unwrap();
        slot += 1;
    }
    let finished = store.finish_rewrite();
    assert!(matches!(&finished, Err(StoreError::Corrupt(message)) if message.contains("checksum")), "{finished:?}");
    assert!(store.persist(&[small_live_batch(slot)]).is_err(), "a stopped store refuses writes");
    assert_eq!(store.segment_sequence(), 1);
}
