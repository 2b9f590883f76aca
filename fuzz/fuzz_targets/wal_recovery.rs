//! Opening a write-ahead-log segment whose records hold arbitrary bytes:
//! recovery reports damage as an error, never panics; what it does load is
//! within the log's own rules; and recovery is idempotent (a second open
//! loads the same state, the file no longer than after the first).
//!
//! The header is always valid (it is one checksum away from a refusal).
//! When the first input byte is odd, every record's checksum is fixed up
//! before writing, so the fuzzer reaches the decoder and the replay rather
//! than stopping at the checksums. When its second bit is set, zeros follow
//! the records, as the store preallocates them, so that records torn
//! inside them (rule 4's exception) are reached too.
#![no_main]

use chorus_store::{LogStore, WalStore, HEADER_BYTES, RECORD_PREFIX_BYTES, WAL_FORMAT_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut segment = header();
    let start = segment.len();
    segment.extend_from_slice(body);
    if mode & 1 == 1 {
        fix_checksums(&mut segment[start..]);
    }
    if mode & 2 == 2 {
        segment.resize(segment.len() + 2048, 0);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(format!("wal-{:020}.log", 1));
    std::fs::write(&path, &segment).expect("write the segment");
    let Ok(mut store) = WalStore::open(dir.path(), 0) else { return };
    let Ok(state) = store.load() else { return };
    assert!(state.entries.keys().all(|slot| *slot > state.compacted_through && *slot >= 1));
    drop(store);
    let length = std::fs::metadata(&path).expect("segment still there").len();
    assert!(length <= segment.len() as u64, "recovery made the segment longer");
    let mut again = WalStore::open(dir.path(), 0).expect("a recovered store opens again");
    assert_eq!(again.load().expect("and loads again"), state);
    drop(again);
    assert_eq!(std::fs::metadata(&path).expect("segment still there").len(), length);
});

/// A valid header of segment 1 of replica 0.
fn header() -> Vec<u8> {
    let mut bytes = b"CHORUSWL".to_vec();
    bytes.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(&1_u64.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(bytes.len(), HEADER_BYTES);
    bytes
}

/// Rewrites each record's checksum to match its payload, following the
/// length fields while they stay inside the buffer.
fn fix_checksums(records: &mut [u8]) {
    let mut offset = 0;
    while records.len() - offset >= RECORD_PREFIX_BYTES {
        let length = u32::from_le_bytes(records[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let start = offset + RECORD_PREFIX_BYTES;
        let Some(end) = start.checked_add(length).filter(|&end| end <= records.len()) else { return };
        let crc = crc32fast::hash(&records[start..end]);
        records[offset + 4..start].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
}
