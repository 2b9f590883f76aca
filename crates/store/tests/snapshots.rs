//! Snapshot files on both backends: write and read back, crashes while
//! writing, corruption, and a chunked transfer that is interrupted and
//! resumed.

use chorus_store::{Blobs, DirBlobs, MemBlobs, SnapshotInfo, Snapshots, StoreError};
use std::io::{Read, Write};

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn write<B: Blobs>(snapshots: &mut Snapshots<B>, slot: u64, body: &[u8]) -> SnapshotInfo {
    let mut writer = snapshots.writer(slot).unwrap();
    for piece in body.chunks(1000) {
        writer.write_all(piece).unwrap();
    }
    writer.finish().unwrap()
}

fn read_body<B: Blobs>(snapshots: &Snapshots<B>, slot: u64) -> std::io::Result<Vec<u8>> {
    let mut read = Vec::new();
    snapshots.reader(slot).map_err(std::io::Error::other)?.read_to_end(&mut read)?;
    Ok(read)
}

/// Copies snapshot `slot` from `from` to `to` in chunks of `chunk` bytes,
/// stopping after `stop_after` chunks (None: to the end).
fn transfer<A: Blobs, B: Blobs>(
    from: &Snapshots<A>,
    to: &mut Snapshots<B>,
    slot: u64,
    chunk: usize,
    stop_after: Option<usize>,
) -> Result<Option<SnapshotInfo>, StoreError> {
    let total = from.list()?.into_iter().find(|info| info.slot == slot).unwrap().bytes;
    let mut offset = to.incoming(slot)?;
    let mut sent = 0;
    while offset < total {
        if stop_after == Some(sent) {
            return Ok(None);
        }
        let bytes = from.read_chunk(slot, offset, chunk)?;
        offset = to.append_incoming(slot, offset, &bytes)?;
        sent += 1;
    }
    to.finish_incoming(slot).map(Some)
}

/// One test module per check: once on in-memory files, once in a
/// temporary directory. The check gets a factory of fresh, empty `Blobs`.
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn in_memory() {
                ($body)(|| MemBlobs::new());
            }
            #[test]
            fn on_disk() {
                let dir = tempfile::tempdir().unwrap();
                let mut count = 0;
                ($body)(|| {
                    count += 1;
                    DirBlobs::open(&dir.path().join(count.to_string())).unwrap()
                });
            }
        }
    };
}

fn round_trip<B: Blobs + Clone>(mut new_blobs: impl FnMut() -> B) {
    let mut snapshots = Snapshots::open(new_blobs()).unwrap();
    assert_eq!(snapshots.newest().unwrap(), None);
    let old = body(10, 1);
    let new = body(700_000, 2);
    write(&mut snapshots, 5, &old);
    let info = write(&mut snapshots, 9, &new);
    assert_eq!(info, SnapshotInfo { slot: 9, bytes: new.len() as u64 + 40 });
    assert_eq!(snapshots.newest().unwrap(), Some(info));
    assert_eq!(read_body(&snapshots, 9).unwrap(), new);
    assert_eq!(read_body(&snapshots, 5).unwrap(), old);
    snapshots.prune(9).unwrap();
    assert_eq!(snapshots.list().unwrap(), vec![info]);
}
both_backends!(round_trip_and_prune, round_trip);

fn unfinished_write<B: Blobs + Clone>(mut new_blobs: impl FnMut() -> B) {
    let mut snapshots = Snapshots::open(new_blobs()).unwrap();
    let done = write(&mut snapshots, 3, &body(100, 1));
    let mut writer = snapshots.writer(8).unwrap();
    writer.write_all(&body(300_000, 2)).unwrap();
    drop(writer);
    assert_eq!(snapshots.newest().unwrap(), Some(done), "a half-written snapshot is not a snapshot");
    let reopened = Snapshots::open(snapshots.blobs().clone()).unwrap();
    assert_eq!(reopened.blobs().list().unwrap().len(), 1, "the leftover is removed on open");
}
both_backends!(unfinished_write_is_ignored_and_removed, unfinished_write);

fn flipped_byte<B: Blobs + Clone>(mut new_blobs: impl FnMut() -> B) {
    for position in [3_u64, 14, 25, 5_000, 20_025, 20_031, 20_039] {
        let mut snapshots = Snapshots::open(new_blobs()).unwrap();
        write(&mut snapshots, 4, &body(20_000, 3));
        let name = "snapshot-00000000000000000004.chs";
        flip(snapshots.blobs_mut(), name, position);
        let result = read_body(&snapshots, 4);
        assert!(result.is_err(), "a flipped byte at {position} was not noticed");
    }
}
both_backends!(a_flipped_byte_anywhere_is_refused, flipped_byte);

/// Rewrites `name` with one byte inverted.
fn flip<B: Blobs>(blobs: &mut B, name: &str, position: u64) {
    let length = blobs.list().unwrap().into_iter().find(|(n, _)| n == name).unwrap().1;
    let mut bytes = vec![0; length as usize];
    blobs.read_at(name, 0, &mut bytes).unwrap();
    bytes[position as usize] ^= 0xff;
    blobs.create(name).unwrap();
    blobs.append(name, &bytes).unwrap();
}

fn interrupted_transfer<B: Blobs + Clone>(mut new_blobs: impl FnMut() -> B) {
    let mut sender = Snapshots::open(new_blobs()).unwrap();
    let state = body(1_000_000, 4);
    write(&mut sender, 77, &state);
    let receiver_blobs = new_blobs();
    let mut receiver = Snapshots::open(receiver_blobs.clone()).unwrap();
    assert_eq!(transfer(&sender, &mut receiver, 77, 64 * 1024, Some(5)).unwrap(), None);
    // The receiver restarts: the transfer resumes after the five chunks.
    let mut receiver = Snapshots::open(receiver.blobs().clone()).unwrap();
    assert_eq!(receiver.incoming(77).unwrap(), 5 * 64 * 1024);
    let info = transfer(&sender, &mut receiver, 77, 64 * 1024, None).unwrap().unwrap();
    assert_eq!(info, sender.newest().unwrap().unwrap());
    assert_eq!(read_body(&receiver, 77).unwrap(), state);
    drop(receiver_blobs);
}
both_backends!(an_interrupted_transfer_resumes, interrupted_transfer);

fn damaged_transfer<B: Blobs + Clone>(mut new_blobs: impl FnMut() -> B) {
    let mut sender = Snapshots::open(new_blobs()).unwrap();
    write(&mut sender, 6, &body(50_000, 5));
    let mut receiver = Snapshots::open(new_blobs()).unwrap();
    let mut chunk = sender.read_chunk(6, 0, 30_000).unwrap();
    chunk[100] ^= 1;
    receiver.append_incoming(6, 0, &chunk).unwrap();
    let wrong_offset = receiver.append_incoming(6, 1, b"x");
    assert!(wrong_offset.is_err(), "a chunk that does not continue the file is refused");
    let rest = sender.read_chunk(6, 30_000, 1 << 20).unwrap();
    receiver.append_incoming(6, 30_000, &rest).unwrap();
    assert!(matches!(receiver.finish_incoming(6), Err(StoreError::Corrupt(_))));
    assert_eq!(receiver.newest().unwrap(), None);
    assert_eq!(receiver.incoming(6).unwrap(), 0, "the damaged partial file is gone; the transfer starts over");
    assert!(transfer(&sender, &mut receiver, 6, 10_000, None).unwrap().is_some());
}
both_backends!(a_damaged_transfer_is_refused_and_restarts, damaged_transfer);

#[test]
fn a_crash_loses_what_was_not_synced() {
    let mut snapshots = Snapshots::open(MemBlobs::new()).unwrap();
    let done = write(&mut snapshots, 2, &body(1000, 6));
    snapshots.append_incoming(9, 0, &body(500, 7)).unwrap();
    snapshots.blobs_mut().crash();
    let mut reopened = Snapshots::open(snapshots.blobs().clone()).unwrap();
    assert_eq!(reopened.newest().unwrap(), Some(done));
    assert_eq!(reopened.incoming(9).unwrap(), 0);
}
