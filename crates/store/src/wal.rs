//! [`WalStore`]: the acceptor's state as an append-only write-ahead log.
//!
//! # Layout
//!
//! The data directory holds one live segment, `wal-<sequence>.log`
//! (twenty decimal digits), plus `wal.lock`, which an open store holds
//! locked. A segment is:
//!
//! - a fixed header of [`HEADER_BYTES`]: the magic `CHORUSWL`, the format
//!   version (u32 LE, [`WAL_FORMAT_VERSION`]), the owning replica id (1
//!   byte), 3 zero bytes, the segment's sequence number (u64 LE, equal to
//!   the one in its name), and a crc32 of those 24 bytes (u32 LE);
//! - then records, each `[len u32 LE][crc32 of the payload u32 LE][payload]`,
//!   the payload one postcard-encoded record:
//!   - the first record of a segment is a *checkpoint*: the whole durable
//!     state (promised, the live entries, chosen_through,
//!     compacted_through, incarnations, recovering). A new store's first
//!     checkpoint is empty, with `recovering` true unless it was opened
//!     with [`WalStore::open_founding`]: that is the founding flag;
//!   - every later record is one `persist` call: all its batches, verbatim.
//!     `load` replays them in order with [`DurableState::apply`], the same
//!     override rules as every other store.
//!
//! # Durability order
//!
//! `persist` encodes its batches as ONE record, writes it with one write
//! after the last record and issues ONE `fdatasync`. It returns `Ok` only
//! after that returned.
//!
//! The live segment's file is kept longer than its records: it is extended
//! [`PREALLOCATE_BYTES`] at a time with zeros, written by the `persist` that
//! first needs them and made durable by its `fdatasync`. So a record is
//! almost always written over blocks that are already allocated and within
//! the file's length, and its `fdatasync` has only data to flush: no new
//! length or block allocation goes through the file system's journal. (On
//! this project's ext4 VMs that measured about 30% less latency and 25% less
//! CPU per `fdatasync`; see docs/BENCHMARKS.md.) Reading back stops at the
//! zeros (rule 2 below) and open cuts them off; the next `persist` extends
//! the file again.
//!
//! A new segment (the first one, or a rewrite) is written under the name
//! `wal-<sequence>.tmp`, fsynced, renamed to `wal-<sequence>.log`, and the
//! directory is fsynced. So a `.log` segment's header and checkpoint are
//! always complete: the name appears only once its contents are durable.
//!
//! # Reading back: torn tail versus corruption
//!
//! Only the newest `.log` segment is read. Its header and checkpoint must be
//! whole and valid (see above); anything else there is [`StoreError::Corrupt`].
//! After the checkpoint, records are read in order until the end of the
//! file. The first record that is not whole and valid ends the scan:
//!
//! 1. Fewer than 8 bytes left (not even a length and a checksum): torn.
//! 2. The length field is 0 or over [`RECORD_BYTES_MAX`], values this store
//!    never writes: torn if every byte left is zero (a crash can leave the
//!    file longer with its new blocks unwritten, which read as zeros),
//!    otherwise `Corrupt`.
//! 3. The record claims more bytes than the file has left: torn, unless the
//!    bytes that are there decode as one whole record whose checksum
//!    matches, which means the record is complete and only its length field
//!    is damaged: `Corrupt`. (Postcard payloads delimit themselves, so this
//!    check needs no second length.) This is what stops a bit flip in the
//!    length of a record in the middle of the file from passing as a torn
//!    tail and silently dropping every record after it.
//! 4. The record is complete but its checksum does not match, or its
//!    payload does not decode (or has trailing bytes): `Corrupt`, even when
//!    it is the last record of the file, with one exception: a write torn
//!    inside the preallocated zeros. A crash mid-`persist` can leave some of
//!    a record's sectors written and others still zero, all within the
//!    file's length. So a record that fails its checksum is torn when
//!    every byte after it is zero, some [`SECTOR_BYTES`]-aligned sector it
//!    reaches into holds at least [`TORN_ZEROS_MIN`] bytes of it and those
//!    are all zero (a sector the write never reached), and, as in rule 3,
//!    the bytes from its payload on do not decode as one whole record that
//!    matches its checksum (which would mean its length field is what is
//!    damaged).
//!
//! A torn tail is cut off on open (`set_len`, `fdatasync`) and treated as
//! absent. That is safe: the only bytes ever appended are one `persist`'s
//! record, and `persist` returns `Ok` only after the `fdatasync` that
//! follows the whole record, so an incomplete last record belongs to a
//! `persist` that never returned `Ok`, and the contract lets it be absent.
//! Nothing after it can exist: `persist` refuses every call after a failure.
//!
//! Rule 4 is deliberately strict: a torn write is told from damage only
//! by a whole sector's worth of the record still reading as zeros. A tear
//! that left only the record's first sector unwritten (its length field
//! reads 0 but later bytes are not zero), or only fewer than
//! [`TORN_ZEROS_MIN`] bytes of its last sector, or that tore inside a
//! sector, is reported as `Corrupt` (the replica rebuilds from its peers)
//! rather than guessed at. A wrong answer there costs a rebuild, never an
//! acknowledged write. The damage that can still pass as a torn tail needs
//! two things wrong in the last record: a length field and payload damaged
//! together, or a payload damaged where the record already held a
//! sector's run of at least [`TORN_ZEROS_MIN`] zero bytes (a message text
//! of NUL characters, say).
//!
//! # Rewriting (compaction of the file)
//!
//! A batch's `compact_through` removes entries from the state at once, but
//! their bytes stay in the segment until it is rewritten. After a `persist`,
//! once the segment is longer than both [`REWRITE_BYTES_MIN`] and twice its
//! last checkpoint, and no rewrite is running, the store starts one in a
//! background thread, so the caller never waits for a whole segment to be
//! read and written:
//!
//! 1. the thread reads the live segment `n` up to `X`, its length when the
//!    rewrite started (everything up to `X` is durable, and only ever
//!    appended to), one record at a time, and replays it (so it holds the
//!    replayed state, never the whole segment);
//! 2. it writes the header and one checkpoint of that state to
//!    `wal-<n+1>.tmp` and fsyncs it. Meanwhile `persist` keeps appending
//!    records to `n`;
//! 3. it copies the records appended to `n` since `X`, verbatim, to the end
//!    of the `.tmp`: in rounds, each up to the length `persist` last
//!    published after its `fdatasync` (so only whole, durable records),
//!    until less than [`REWRITE_CATCH_UP_BYTES`] is left or after
//!    [`REWRITE_CATCH_UP_ROUNDS_MAX`] rounds; fsyncs the `.tmp` and ends,
//!    reporting `Y`, the end of what it copied;
//! 4. the first `persist` that finds the thread ended (after its own append
//!    and `fdatasync`), or [`WalStore::finish_rewrite`], copies the bytes of
//!    `n` from `Y` to its end the same way, and fsyncs the `.tmp`;
//! 5. renames it to `wal-<n+1>.log` and fsyncs the directory;
//! 6. appends later records to `n + 1`; removes `wal-<n>.log` in another
//!    background thread (unlinking a large file takes tens of
//!    milliseconds), whose error a later `persist` returns.
//!
//! Step 3 keeps the copy left to step 4, on the caller's thread, small
//! however long steps 1 and 2 took. If the thread fails, the `persist` (or
//! `finish_rewrite`) that finds out returns its error and the store stops,
//! like any failed write.
//!
//! A crash before step 5 leaves `n` in force, holding every record, and a
//! `.tmp` that the next open removes, whatever it holds. A crash after the
//! rename, whether or not the directory fsync finished, leaves `n + 1`
//! complete (or not yet named): the checkpoint of the state at `X` and then
//! the records `n` holds after `X`, in the same order, which replays to
//! exactly the state of `n`. So either segment gives the same state; open
//! uses the newest `.log` and removes older ones, finishing step 6. Nothing
//! is appended to `n + 1` before its name is durable. Dropping the store
//! waits for its running threads to end (so nothing writes in the
//! directory once its lock is released) and leaves a `.tmp` to the next
//! open.
//!
//! Disk use is bounded by about twice the live state, or
//! [`REWRITE_BYTES_MIN`] plus the largest record, plus what is appended
//! while one rewrite runs, plus the `.tmp`'s checkpoint, plus less than
//! [`PREALLOCATE_BYTES`] of zeros after the records.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use chorus_paxos::{Ballot, DurableState, Entry, Incarnations, Slot, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{assert_entry_well_formed, LogStore, StoreError, ENTRY_BYTES_MAX};

/// Version of the segment layout, and of the proposals in its entries,
/// that this build writes and reads; a segment with another version is
/// refused as [`StoreError::WrongFormat`]. Version 2: a proposal carries
/// an optional read position (`read_through`).
pub const WAL_FORMAT_VERSION: u32 = 2;

/// Bytes of a segment's header.
pub const HEADER_BYTES: usize = 28;

/// Bytes before each record's payload: its length and its checksum.
pub const RECORD_PREFIX_BYTES: usize = 8;

/// Largest payload of one record, in bytes. A checkpoint holds the whole
/// live log, so this is also the largest live state the store can rewrite.
pub const RECORD_BYTES_MAX: usize = 1 << 30;

/// A segment shorter than this is never rewritten, in bytes.
pub const REWRITE_BYTES_MIN: u64 = 64 * 1024 * 1024;

/// A rewrite's thread stops copying records to the new segment once fewer
/// than this many bytes are left (the `persist` that installs it copies
/// those), in bytes.
pub const REWRITE_CATCH_UP_BYTES: u64 = 1024 * 1024;

/// Most rounds of copying records a rewrite's thread makes before it ends,
/// however far behind it still is.
pub const REWRITE_CATCH_UP_ROUNDS_MAX: u32 = 16;

/// The live segment's file is extended this many bytes at a time, with
/// zeros, ahead of its records (see "Durability order" above).
pub const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// The unit a disk writes whole, in bytes: a crash can leave some of a
/// write's sectors written and others not, but not part of one sector.
pub const SECTOR_BYTES: usize = 512;

/// Fewest bytes of a record, within one sector, that must all be zero for a
/// record failing its checksum to count as torn (rule 4's exception): fewer
/// zeros could be the record's own contents.
pub const TORN_ZEROS_MIN: usize = 16;

/// Zeros written when the live segment is extended.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Bytes read at a time when a rewrite replays a segment.
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// Name of the lock file held while a store is open.
pub const LOCK_FILE_NAME: &str = "wal.lock";

/// The store file of builds before the log (redb); a directory holding
/// one is refused, not converted.
const REDB_FILE_NAME: &str = "chorus.redb";

const MAGIC: &[u8; 8] = b"CHORUSWL";
const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// The durable state of one acceptor, as a log of records in `dir`.
pub struct WalStore {
    /// The data directory.
    dir: PathBuf,
    /// The owning replica, as recorded in every segment's header.
    replica: u8,
    /// Held locked (against another process opening the same directory)
    /// until the store is dropped.
    _lock: File,
    /// The live segment, opened for writing, its cursor at `segment_bytes`.
    segment: File,
    /// Sequence number of the live segment.
    sequence: u64,
    /// End of the live segment's records: where the next record goes.
    segment_bytes: u64,
    /// Length of the live segment's file: `segment_bytes` and then zeros.
    allocated_bytes: u64,
    /// Length of the live segment's header and checkpoint record.
    checkpoint_bytes: u64,
    /// Segment length (in bytes) below which the store does not rewrite.
    rewrite_bytes_min: u64,
    /// Bytes a rewrite's thread leaves for the `persist` that installs it to
    /// copy ([`REWRITE_CATCH_UP_BYTES`] unless a test sets it).
    rewrite_catch_up_bytes: u64,
    /// Reused across `persist` calls: the record being written.
    encode_buffer: Vec<u8>,
    /// The rewrite running in the background, if any; at most one.
    rewrite: Option<RewriteJob>,
    /// Removes the segment the last rewrite replaced, in the background:
    /// unlinking a large file takes tens of milliseconds.
    removal: Option<JoinHandle<Result<(), StoreError>>>,
    /// The state open replayed, until the first `load` takes it or a
    /// `persist` makes it stale: so opening and loading read the segment
    /// once.
    opened_state: Option<DurableState>,
    /// Set by the first failed `persist`. Afterwards the file may end in a
    /// partial record and the page cache may disagree with the disk, so
    /// the store refuses every later write.
    failure: Option<String>,
}

/// A rewrite started in the background: steps 1 to 3 of the module
/// documentation run in `thread`; the store does the rest.
struct RewriteJob {
    /// Length of the old segment up to which every byte is durable: set by
    /// `append` after each `fdatasync`, read by the thread to copy records.
    durable_bytes: Arc<AtomicU64>,
    /// Returns once `wal-<n+1>.tmp` is written and fsynced.
    thread: JoinHandle<Result<Rewritten, StoreError>>,
}

/// What a rewrite's thread wrote to `wal-<n+1>.tmp`.
struct Rewritten {
    /// Bytes of its header and checkpoint record.
    checkpoint_bytes: u64,
    /// Length of the `.tmp`: header, checkpoint and the records copied.
    temporary_bytes: u64,
    /// Bytes of the old segment the `.tmp` holds the state of: the rest is
    /// still to be copied.
    through_bytes: u64,
}

/// The first record of every segment: the whole durable state.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    promised: Ballot,
    /// In strictly increasing slot order, every slot above `compacted_through`.
    entries: Vec<(Slot, Entry)>,
    chosen_through: Slot,
    compacted_through: Slot,
    incarnations: Incarnations,
    recovering: bool,
}

/// One record as written. Must list its variants in the order of [`Record`]:
/// postcard encodes a variant by its index.
#[derive(Serialize)]
enum RecordOut<'a> {
    Checkpoint(&'a Checkpoint),
    Persist(&'a [WriteBatch]),
}

/// One record as read back.
#[derive(Deserialize)]
enum Record {
    Checkpoint(Checkpoint),
    Persist(Vec<WriteBatch>),
}

/// The identity a segment's header records.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    format_version: u32,
    replica: u8,
    sequence: u64,
}

/// A segment read back and replayed.
struct Replayed {
    state: DurableState,
    /// Bytes of the header and the checkpoint record.
    checkpoint_bytes: u64,
    /// Bytes up to the end of the last whole record: where a torn tail, if
    /// any, begins.
    valid_bytes: u64,
}

impl WalStore {
    /// Opens or creates the log in `dir`, creating `dir` if needed. On first
    /// open records `replica`; a later open with a different replica id is
    /// `Err(WrongReplica)`, and changes nothing on disk.
    ///
    /// Reads and replays the whole live segment once, so a damaged one is
    /// `Err(Corrupt)` here (before anything on disk is changed); then cuts
    /// off a torn last record. Takes time proportional to the segment. The
    /// first `load` returns the replayed state without reading it again.
    ///
    /// A store this call creates is *not* a voter: it belongs to a replica
    /// that lost its disk (or was given a new one) and must rebuild from its
    /// peers before it votes. Founding members are created with
    /// [`WalStore::open_founding`].
    pub fn open(dir: &Path, replica: u8) -> Result<Self, StoreError> {
        Self::open_as(dir, replica, false)
    }

    /// Like [`WalStore::open`], but a store this call creates belongs to a
    /// founding member of a new cluster, which votes from the start (it
    /// cannot have promised or accepted anything yet). An existing store is
    /// opened unchanged.
    pub fn open_founding(dir: &Path, replica: u8) -> Result<Self, StoreError> {
        Self::open_as(dir, replica, true)
    }

    /// Sets the segment length below which the store never rewrites its
    /// segment ([`REWRITE_BYTES_MIN`] by default). For tests and benchmarks.
    pub fn set_rewrite_bytes_min(&mut self, bytes: u64) {
        self.rewrite_bytes_min = bytes;
    }

    /// Sets how many bytes of records appended during a rewrite its thread
    /// leaves to the `persist` that puts it in force
    /// ([`REWRITE_CATCH_UP_BYTES`] by default; 0 makes the thread copy
    /// whatever it finds). For tests, so that small runs cross both copies.
    pub fn set_rewrite_catch_up_bytes(&mut self, bytes: u64) {
        self.rewrite_catch_up_bytes = bytes;
    }

    /// Sequence number of the live segment: 1 for a new store, one more
    /// after each rewrite.
    pub fn segment_sequence(&self) -> u64 {
        self.sequence
    }

    /// End of the live segment's records, in bytes: where the next record
    /// goes. The file itself is longer (zeros preallocated after them).
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Path of the live segment.
    pub fn segment_path(&self) -> PathBuf {
        segment_path(&self.dir, self.sequence, SEGMENT_SUFFIX)
    }

    /// Waits for the rewrite running in the background, if any, and puts
    /// its segment in force (steps 4 to 6 of the module documentation).
    /// Does not start one. For tests and benchmarks: `persist` finishes a
    /// rewrite on its own once the thread has ended. Also waits for the old
    /// segment to be removed.
    ///
    /// An error stops the store, as from `persist`.
    pub fn finish_rewrite(&mut self) -> Result<(), StoreError> {
        self.check_not_failed()?;
        let result = self.install_rewrite().and_then(|()| self.finish_removal());
        self.record_failure(&result);
        result
    }

    /// Whether a rewrite is running in the background or waiting to be put
    /// in force.
    pub fn rewrite_in_progress(&self) -> bool {
        self.rewrite.is_some()
    }

    fn open_as(dir: &Path, replica: u8, founding: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| io_error("creating", dir, error))?;
        let lock = lock_directory(dir)?;
        if dir.join(REDB_FILE_NAME).exists() {
            return Err(StoreError::Engine(format!(
                "{} holds a redb store ({}) written by an earlier build; this build keeps an append-only log \
                 and does not convert one: start the cluster in a new directory",
                dir.display(),
                REDB_FILE_NAME
            )));
        }
        let (segments, temporaries) = list_segments(dir)?;
        let (sequence, replayed) = match segments.last() {
            // Read and check everything first: a refused open must change
            // nothing.
            Some(&newest) => {
                (newest, replay(&read_file(&segment_path(dir, newest, SEGMENT_SUFFIX))?, replica, newest)?)
            }
            None => (1, create_first_segment(dir, replica, founding)?),
        };
        // Left by a rewrite (or a creation) that crashed before its rename:
        // never in force. Then the segments a finished rewrite replaced.
        remove_files(dir, &temporaries, TEMPORARY_SUFFIX)?;
        let older: Vec<u64> = segments.iter().copied().filter(|&older| older < sequence).collect();
        remove_files(dir, &older, SEGMENT_SUFFIX)?;
        let path = segment_path(dir, sequence, SEGMENT_SUFFIX);
        let mut segment =
            OpenOptions::new().write(true).open(&path).map_err(|error| io_error("opening", &path, error))?;
        cut_torn_tail(&mut segment, &path, replayed.valid_bytes)?;
        seek(&mut segment, &path, replayed.valid_bytes)?;
        // The segment is durable; make its name durable too, every time: a
        // previous run may have crashed before its directory fsync.
        sync_directory(dir)?;
        sync_directory(parent_directory(dir))?;
        Ok(WalStore {
            dir: dir.to_path_buf(),
            replica,
            _lock: lock,
            segment,
            sequence,
            segment_bytes: replayed.valid_bytes,
            allocated_bytes: replayed.valid_bytes,
            checkpoint_bytes: replayed.checkpoint_bytes,
            rewrite_bytes_min: REWRITE_BYTES_MIN,
            rewrite_catch_up_bytes: REWRITE_CATCH_UP_BYTES,
            encode_buffer: Vec::new(),
            rewrite: None,
            removal: None,
            opened_state: Some(replayed.state),
            failure: None,
        })
    }

    /// Appends one record holding every batch (extending the file first if
    /// it has no room), then one `fdatasync`.
    fn append(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        for batch in batches {
            for (slot, entry) in &batch.entries {
                assert_entry_well_formed(*slot, crate::mem::encoded_bytes(entry));
            }
        }
        encode_record(&mut self.encode_buffer, &RecordOut::Persist(batches))?;
        let path = self.segment_path();
        let end = self.segment_bytes + self.encode_buffer.len() as u64;
        if end > self.allocated_bytes {
            self.preallocate(end, &path)?;
        }
        self.segment.write_all(&self.encode_buffer).map_err(|error| io_error("appending to", &path, error))?;
        self.segment.sync_data().map_err(|error| io_error("fdatasyncing", &path, error))?;
        self.segment_bytes = end;
        if let Some(job) = &self.rewrite {
            job.durable_bytes.store(self.segment_bytes, Ordering::Release);
        }
        Ok(())
    }

    /// Extends the live segment's file with zeros to cover `through`, in
    /// whole [`PREALLOCATE_BYTES`], and puts the cursor back at the end of
    /// the records. The `fdatasync` that follows makes it durable.
    fn preallocate(&mut self, through: u64, path: &Path) -> Result<(), StoreError> {
        let target = through.next_multiple_of(PREALLOCATE_BYTES);
        seek(&mut self.segment, path, self.allocated_bytes)?;
        let mut left = target - self.allocated_bytes;
        while left > 0 {
            let chunk = &ZEROS[..ZEROS.len().min(left as usize)];
            self.segment.write_all(chunk).map_err(|error| io_error("extending", path, error))?;
            left -= chunk.len() as u64;
        }
        self.allocated_bytes = target;
        seek(&mut self.segment, path, self.segment_bytes)
    }

    fn rewrite_due(&self) -> bool {
        self.segment_bytes > self.rewrite_bytes_min.max(self.checkpoint_bytes.saturating_mul(2))
    }

    /// After a durable append: puts a rewrite whose thread has ended in
    /// force, then starts one if the segment has outgrown its checkpoint.
    fn advance_rewrite(&mut self) -> Result<(), StoreError> {
        if self.removal.as_ref().is_some_and(JoinHandle::is_finished) {
            self.finish_removal()?;
        }
        if self.rewrite.as_ref().is_some_and(|job| job.thread.is_finished()) {
            self.install_rewrite()?;
        }
        if self.rewrite.is_none() && self.rewrite_due() {
            self.start_rewrite()?;
        }
        Ok(())
    }

    /// Starts steps 1 to 3 of a rewrite in a background thread.
    fn start_rewrite(&mut self) -> Result<(), StoreError> {
        assert!(self.rewrite.is_none(), "a second rewrite started while one runs");
        let (dir, replica, sequence) = (self.dir.clone(), self.replica, self.sequence);
        let catch_up_bytes = self.rewrite_catch_up_bytes;
        let durable_bytes = Arc::new(AtomicU64::new(self.segment_bytes));
        let shared = Arc::clone(&durable_bytes);
        let thread = std::thread::Builder::new()
            .name(format!("wal-rewrite-{}", sequence + 1))
            .spawn(move || write_rewritten_segment(&dir, replica, sequence, &shared, catch_up_bytes))
            .map_err(|error| StoreError::Engine(format!("starting a rewrite thread: {error}")))?;
        self.rewrite = Some(RewriteJob { durable_bytes, thread });
        Ok(())
    }

    /// Waits for the running rewrite's thread, if any, then does steps 4 to
    /// 6: the records after `Y` to the `.tmp`, fsync, rename, fsync of the
    /// directory, and the new segment in force.
    fn install_rewrite(&mut self) -> Result<(), StoreError> {
        let Some(job) = self.rewrite.take() else { return Ok(()) };
        let rewritten = match job.thread.join() {
            Ok(result) => result?,
            // A panic there is a bug here: stop the same way.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        assert!(rewritten.through_bytes <= self.segment_bytes, "a rewrite copied bytes never written");
        let sequence = self.sequence + 1;
        let temporary = segment_path(&self.dir, sequence, TEMPORARY_SUFFIX);
        let mut segment =
            OpenOptions::new().append(true).open(&temporary).map_err(|error| io_error("opening", &temporary, error))?;
        check_length(&segment, &temporary, rewritten.temporary_bytes)?;
        let tail_bytes = self.segment_bytes - rewritten.through_bytes;
        let old_path = self.segment_path();
        copy_range(&old_path, rewritten.through_bytes, tail_bytes, &mut segment, &temporary)?;
        segment.sync_all().map_err(|error| io_error("fsyncing", &temporary, error))?;
        check_length(&segment, &temporary, rewritten.temporary_bytes + tail_bytes)?;
        drop(segment);
        rename_into_place(&self.dir, sequence)?;
        let bytes = rewritten.temporary_bytes + tail_bytes;
        let path = segment_path(&self.dir, sequence, SEGMENT_SUFFIX);
        let mut segment =
            OpenOptions::new().write(true).open(&path).map_err(|error| io_error("opening", &path, error))?;
        seek(&mut segment, &path, bytes)?;
        self.segment = segment;
        self.sequence = sequence;
        self.segment_bytes = bytes;
        self.allocated_bytes = bytes;
        self.checkpoint_bytes = rewritten.checkpoint_bytes;
        self.start_removal(old_path)
    }

    /// Starts removing the replaced segment at `old_path` in a background
    /// thread, once the previous removal (if any) has ended.
    fn start_removal(&mut self, old_path: PathBuf) -> Result<(), StoreError> {
        self.finish_removal()?;
        // Not fsyncing the directory again: if the removal is lost, the next
        // open removes the old segment.
        let thread = std::thread::Builder::new()
            .name("wal-remove".to_string())
            .spawn(move || std::fs::remove_file(&old_path).map_err(|error| io_error("removing", &old_path, error)))
            .map_err(|error| StoreError::Engine(format!("starting a removal thread: {error}")))?;
        self.removal = Some(thread);
        Ok(())
    }

    /// Waits for the removal of a replaced segment, if one runs.
    fn finish_removal(&mut self) -> Result<(), StoreError> {
        match self.removal.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    fn check_not_failed(&self) -> Result<(), StoreError> {
        match &self.failure {
            Some(failure) => Err(StoreError::Engine(format!("store stopped after an earlier failure: {failure}"))),
            None => Ok(()),
        }
    }

    /// Stops the store if `result` is an error: every later write is refused.
    fn record_failure(&mut self, result: &Result<(), StoreError>) {
        if let Err(error) = result {
            self.failure = Some(error.to_string());
        }
    }
}

impl Drop for WalStore {
    /// Waits for a running rewrite thread and a running removal, so that
    /// nothing writes in the directory once its lock is released. A
    /// rewrite's `.tmp` is left for the next open to remove; an error, or
    /// panic, is dropped with the store.
    fn drop(&mut self) {
        if let Some(job) = self.rewrite.take() {
            let _ = job.thread.join();
        }
        if let Some(removal) = self.removal.take() {
            let _ = removal.join();
        }
    }
}

impl LogStore for WalStore {
    /// The first call returns the state open replayed (unless a `persist`
    /// came first); later calls read the segment again.
    fn load(&mut self) -> Result<DurableState, StoreError> {
        if let Some(state) = self.opened_state.take() {
            return Ok(state);
        }
        let replayed = replay(&read_file(&self.segment_path())?, self.replica, self.sequence)?;
        Ok(replayed.state)
    }

    fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        self.check_not_failed()?;
        if batches.iter().all(WriteBatch::is_empty) {
            return Ok(());
        }
        self.opened_state = None;
        // The record is durable once `append` returns; a failed rewrite
        // still stops the replica, which the contract allows.
        let result = self.append(batches).and_then(|()| self.advance_rewrite());
        self.record_failure(&result);
        result
    }
}

/// Encodes `record` with its length and checksum into `buffer`.
fn encode_record(buffer: &mut Vec<u8>, record: &RecordOut<'_>) -> Result<(), StoreError> {
    buffer.clear();
    buffer.extend_from_slice(&[0; RECORD_PREFIX_BYTES]);
    postcard::to_io(record, &mut *buffer).map_err(|error| StoreError::Engine(format!("encoding a record: {error}")))?;
    let payload_bytes = buffer.len() - RECORD_PREFIX_BYTES;
    if payload_bytes > RECORD_BYTES_MAX {
        return Err(StoreError::Engine(format!("a record of {payload_bytes} bytes is over RECORD_BYTES_MAX")));
    }
    assert!(payload_bytes > 0, "a record encodes to nothing");
    let crc = crc32fast::hash(&buffer[RECORD_PREFIX_BYTES..]);
    buffer[..4].copy_from_slice(&(payload_bytes as u32).to_le_bytes());
    buffer[4..RECORD_PREFIX_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Writes the first segment of a new store (an empty state, recovering
/// unless `founding`) and returns it as replayed.
fn create_first_segment(dir: &Path, replica: u8, founding: bool) -> Result<Replayed, StoreError> {
    let state = DurableState { recovering: !founding, ..DurableState::default() };
    let checkpoint_bytes = write_temporary_segment(dir, 1, replica, state.clone())?;
    rename_into_place(dir, 1)?;
    Ok(Replayed { state, checkpoint_bytes, valid_bytes: checkpoint_bytes })
}

/// Steps 1 to 3 of a rewrite, run in its thread: replays segment
/// `sequence` up to `durable_bytes` (`X`, its length when the rewrite
/// started), writes one checkpoint of that state to `wal-<sequence + 1>.tmp`,
/// then copies the records appended since and fsyncs it.
fn write_rewritten_segment(
    dir: &Path,
    replica: u8,
    sequence: u64,
    durable_bytes: &AtomicU64,
    catch_up_bytes: u64,
) -> Result<Rewritten, StoreError> {
    let through_bytes = durable_bytes.load(Ordering::Acquire);
    let path = segment_path(dir, sequence, SEGMENT_SUFFIX);
    let state = replay_durable_prefix(&path, replica, sequence, through_bytes)?;
    let checkpoint_bytes = write_temporary_segment(dir, sequence + 1, replica, state)?;
    let rewritten = Rewritten { checkpoint_bytes, temporary_bytes: checkpoint_bytes, through_bytes };
    catch_up(dir, sequence, durable_bytes, catch_up_bytes, rewritten)
}

/// Step 3 of a rewrite: copies the records appended to segment `sequence`
/// since `rewritten` was made, verbatim, to `wal-<sequence + 1>.tmp`, in
/// rounds until less than `catch_up_bytes` is left (or nothing), then fsyncs
/// it. Every byte copied is whole, durable records: `append` publishes a
/// length only after its `fdatasync`.
fn catch_up(
    dir: &Path,
    sequence: u64,
    durable_bytes: &AtomicU64,
    catch_up_bytes: u64,
    mut rewritten: Rewritten,
) -> Result<Rewritten, StoreError> {
    let (old_path, temporary) =
        (segment_path(dir, sequence, SEGMENT_SUFFIX), segment_path(dir, sequence + 1, TEMPORARY_SUFFIX));
    let mut file =
        OpenOptions::new().append(true).open(&temporary).map_err(|error| io_error("opening", &temporary, error))?;
    for _ in 0..REWRITE_CATCH_UP_ROUNDS_MAX {
        let durable = durable_bytes.load(Ordering::Acquire);
        assert!(durable >= rewritten.through_bytes, "the old segment shrank under a rewrite");
        let bytes = durable - rewritten.through_bytes;
        if bytes == 0 || bytes < catch_up_bytes {
            break;
        }
        copy_range(&old_path, rewritten.through_bytes, bytes, &mut file, &temporary)?;
        rewritten.through_bytes = durable;
        rewritten.temporary_bytes += bytes;
    }
    if rewritten.temporary_bytes > rewritten.checkpoint_bytes {
        file.sync_all().map_err(|error| io_error("fsyncing", &temporary, error))?;
    }
    check_length(&file, &temporary, rewritten.temporary_bytes)?;
    Ok(rewritten)
}

/// Writes segment `sequence` (header and one checkpoint of `state`) under
/// its temporary name and fsyncs it. Returns its length.
fn write_temporary_segment(dir: &Path, sequence: u64, replica: u8, state: DurableState) -> Result<u64, StoreError> {
    let checkpoint = Checkpoint {
        promised: state.promised,
        entries: state.entries.into_iter().collect(),
        chosen_through: state.chosen_through,
        compacted_through: state.compacted_through,
        incarnations: state.incarnations,
        recovering: state.recovering,
    };
    let mut bytes = encode_header(&Header { format_version: WAL_FORMAT_VERSION, replica, sequence }).to_vec();
    let mut record = Vec::new();
    encode_record(&mut record, &RecordOut::Checkpoint(&checkpoint))?;
    bytes.extend_from_slice(&record);
    let temporary = segment_path(dir, sequence, TEMPORARY_SUFFIX);
    let mut file = File::create(&temporary).map_err(|error| io_error("creating", &temporary, error))?;
    file.write_all(&bytes).map_err(|error| io_error("writing", &temporary, error))?;
    file.sync_all().map_err(|error| io_error("fsyncing", &temporary, error))?;
    Ok(bytes.len() as u64)
}

/// Renames segment `sequence` from its temporary name to its live one and
/// fsyncs `dir`, so the name is durable.
fn rename_into_place(dir: &Path, sequence: u64) -> Result<(), StoreError> {
    let temporary = segment_path(dir, sequence, TEMPORARY_SUFFIX);
    let path = segment_path(dir, sequence, SEGMENT_SUFFIX);
    std::fs::rename(&temporary, &path).map_err(|error| io_error("renaming", &temporary, error))?;
    sync_directory(dir)
}

/// Appends `bytes` bytes of the file at `source`, from `offset` on, to
/// `destination` (the file at `destination_path`), verbatim.
fn copy_range(
    source: &Path,
    offset: u64,
    bytes: u64,
    destination: &mut File,
    destination_path: &Path,
) -> Result<(), StoreError> {
    let mut file = File::open(source).map_err(|error| io_error("opening", source, error))?;
    file.seek(SeekFrom::Start(offset)).map_err(|error| io_error("seeking in", source, error))?;
    let copied = std::io::copy(&mut file.take(bytes), destination)
        .map_err(|error| io_error("copying records to", destination_path, error))?;
    if copied != bytes {
        return Err(StoreError::Io(format!("{} shrank under a rewrite: {copied} of {bytes} bytes", source.display())));
    }
    Ok(())
}

/// The file at `path` is `bytes` long, or it changed under the store.
fn check_length(file: &File, path: &Path, bytes: u64) -> Result<(), StoreError> {
    let length = file.metadata().map_err(|error| io_error("reading", path, error))?.len();
    if length != bytes {
        return Err(StoreError::Io(format!("{} is {length} bytes, {bytes} written", path.display())));
    }
    Ok(())
}

fn encode_header(header: &Header) -> [u8; HEADER_BYTES] {
    let mut bytes = [0_u8; HEADER_BYTES];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..12].copy_from_slice(&header.format_version.to_le_bytes());
    bytes[12] = header.replica;
    bytes[16..24].copy_from_slice(&header.sequence.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a header, checking its magic, checksum and padding (not yet its
/// version: a wrong replica is reported before a wrong version).
fn decode_header(bytes: &[u8]) -> Result<Header, StoreError> {
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(format!("segment is {} bytes, shorter than its header", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("segment does not start with the magic CHORUSWL"));
    }
    let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[..24]) {
        return Err(corrupt("segment header fails its checksum"));
    }
    if bytes[13..16] != [0, 0, 0] {
        return Err(corrupt("segment header padding is not zero"));
    }
    Ok(Header {
        format_version: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
        replica: bytes[12],
        sequence: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
    })
}

/// Checks the header of segment `sequence` belongs to `replica` and this
/// format version.
fn check_header(bytes: &[u8], replica: u8, sequence: u64) -> Result<(), StoreError> {
    let header = decode_header(bytes)?;
    if header.replica != replica {
        return Err(StoreError::WrongReplica { expected: replica, found: header.replica });
    }
    if header.format_version != WAL_FORMAT_VERSION {
        return Err(StoreError::WrongFormat { found: header.format_version, reads: WAL_FORMAT_VERSION });
    }
    if header.sequence != sequence {
        return Err(corrupt(format!("segment {sequence} has sequence {} in its header", header.sequence)));
    }
    Ok(())
}

/// Replays a whole segment: header, checkpoint, then every whole record.
fn replay(bytes: &[u8], replica: u8, sequence: u64) -> Result<Replayed, StoreError> {
    check_header(bytes, replica, sequence)?;
    let mut state = None;
    let Some((checkpoint, mut offset)) = read_record(bytes, HEADER_BYTES)? else {
        return Err(corrupt("segment's checkpoint is incomplete"));
    };
    apply_record(&mut state, checkpoint, HEADER_BYTES as u64)?;
    let checkpoint_bytes = offset as u64;
    while let Some((record, next)) = read_record(bytes, offset)? {
        apply_record(&mut state, record, offset as u64)?;
        offset = next;
    }
    Ok(Replayed { state: checked_replay(state)?, checkpoint_bytes, valid_bytes: offset as u64 })
}

/// Replays the first `through_bytes` of segment `sequence`, all of them
/// whole records (what `persist` made durable), reading one record at a
/// time: a rewrite's thread holds the replayed state, never the segment.
fn replay_durable_prefix(
    path: &Path,
    replica: u8,
    sequence: u64,
    through_bytes: u64,
) -> Result<DurableState, StoreError> {
    let file = File::open(path).map_err(|error| io_error("opening", path, error))?;
    let mut reader = std::io::BufReader::with_capacity(READ_BUFFER_BYTES, file.take(through_bytes));
    let mut read_exact =
        |buffer: &mut [u8]| reader.read_exact(buffer).map_err(|error| io_error("reading", path, error));
    let mut header = [0_u8; HEADER_BYTES];
    read_exact(&mut header)?;
    check_header(&header, replica, sequence)?;
    let (mut state, mut offset, mut payload) = (None, HEADER_BYTES as u64, Vec::new());
    while offset < through_bytes {
        let mut prefix = [0_u8; RECORD_PREFIX_BYTES];
        read_exact(&mut prefix)?;
        let (length, crc) = decode_prefix(&prefix);
        if length == 0 || length > RECORD_BYTES_MAX {
            return Err(corrupt(format!("record at byte {offset} has length {length}")));
        }
        payload.resize(length, 0);
        read_exact(&mut payload)?;
        apply_record(&mut state, decode_payload(&payload, crc, offset)?, offset)?;
        offset += (RECORD_PREFIX_BYTES + length) as u64;
    }
    checked_replay(state)
}

/// Folds the record at byte `offset` into the state replayed so far: the
/// first record must be the checkpoint, every later one a persist.
fn apply_record(state: &mut Option<DurableState>, record: Record, offset: u64) -> Result<(), StoreError> {
    match (state.as_mut(), record) {
        (None, Record::Checkpoint(checkpoint)) => *state = Some(from_checkpoint(checkpoint)?),
        (None, Record::Persist(_)) => return Err(corrupt("segment does not start with a checkpoint")),
        (Some(state), Record::Persist(batches)) => {
            for batch in &batches {
                check_batch(batch)?;
                state.apply(batch);
            }
        }
        (Some(_), Record::Checkpoint(_)) => return Err(corrupt(format!("a second checkpoint at byte {offset}"))),
    }
    Ok(())
}

/// The state a whole replay ends with, checked: it had a checkpoint, and
/// no entry lies at or below the compaction mark.
fn checked_replay(state: Option<DurableState>) -> Result<DurableState, StoreError> {
    let state = state.ok_or_else(|| corrupt("segment's checkpoint is incomplete"))?;
    if let Some((&slot, _)) = state.entries.first_key_value() {
        if slot <= state.compacted_through {
            return Err(corrupt(format!("log holds slot {slot}, compacted through {}", state.compacted_through)));
        }
    }
    Ok(state)
}

/// A record's length and checksum, from its prefix.
fn decode_prefix(prefix: &[u8]) -> (usize, u32) {
    let length = u32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(prefix[4..RECORD_PREFIX_BYTES].try_into().expect("4 bytes"));
    (length, crc)
}

/// Rule 4: the payload of a complete record (at byte `offset`) must match
/// its checksum and decode to exactly one record.
fn decode_payload(payload: &[u8], crc: u32, offset: u64) -> Result<Record, StoreError> {
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(format!("record at byte {offset} fails its checksum")));
    }
    decode_record(payload, offset)
}

/// A payload that matched its checksum must decode to exactly one record.
fn decode_record(payload: &[u8], offset: u64) -> Result<Record, StoreError> {
    match postcard::take_from_bytes::<Record>(payload) {
        Ok((record, [])) => Ok(record),
        Ok((_, unread)) => Err(corrupt(format!("record at byte {offset} has {} trailing bytes", unread.len()))),
        Err(error) => Err(corrupt(format!("record at byte {offset} does not decode: {error}"))),
    }
}

/// Reads the record at `offset`: `Some((record, next offset))`, `None` for
/// the end of the file or a torn tail, `Err(Corrupt)` for damage. The rules
/// are in the module documentation.
fn read_record(bytes: &[u8], offset: usize) -> Result<Option<(Record, usize)>, StoreError> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_PREFIX_BYTES {
        return Ok(None); // Rule 1 (or the clean end of the file).
    }
    let (length, crc) = decode_prefix(rest);
    let available = &rest[RECORD_PREFIX_BYTES..];
    if length == 0 || length > RECORD_BYTES_MAX {
        if rest.iter().all(|&byte| byte == 0) {
            return Ok(None); // Rule 2: a zero-filled tail.
        }
        return Err(corrupt(format!("record at byte {offset} has length {length}")));
    }
    if length > available.len() {
        return torn_unless_whole(available, crc, offset, length); // Rule 3.
    }
    let end = offset + RECORD_PREFIX_BYTES + length;
    let payload = &available[..length];
    if crc32fast::hash(payload) != crc {
        if torn_in_preallocated(bytes, offset, end) {
            return torn_unless_whole(available, crc, offset, length); // Rule 4's exception.
        }
        return Err(corrupt(format!("record at byte {offset} fails its checksum")));
    }
    Ok(Some((decode_record(payload, offset as u64)?, end)))
}

/// A torn tail (`None`), unless the bytes from the payload of the record at
/// `offset` on decode as one whole record matching `crc`: then its length
/// field is damaged, which is `Corrupt`.
fn torn_unless_whole(
    available: &[u8],
    crc: u32,
    offset: usize,
    length: usize,
) -> Result<Option<(Record, usize)>, StoreError> {
    if let Ok((_, unread)) = postcard::take_from_bytes::<Record>(available) {
        let whole = available.len() - unread.len();
        if crc32fast::hash(&available[..whole]) == crc {
            return Err(corrupt(format!(
                "record at byte {offset} is whole ({whole} bytes) but its length says {length}"
            )));
        }
    }
    Ok(None)
}

/// Rule 4's exception, for the record in `bytes[offset..end]` that fails
/// its checksum: every byte after it is zero, and some sector holds at
/// least [`TORN_ZEROS_MIN`] bytes of it, all zero.
fn torn_in_preallocated(bytes: &[u8], offset: usize, end: usize) -> bool {
    if bytes[end..].iter().any(|&byte| byte != 0) {
        return false;
    }
    let mut start = offset;
    while start < end {
        let sector_end = (start / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let part = &bytes[start..sector_end.min(end)];
        if part.len() >= TORN_ZEROS_MIN && part.iter().all(|&byte| byte == 0) {
            return true;
        }
        start = sector_end;
    }
    false
}

fn from_checkpoint(checkpoint: Checkpoint) -> Result<DurableState, StoreError> {
    let mut entries = std::collections::BTreeMap::new();
    let mut previous = checkpoint.compacted_through;
    for (slot, entry) in checkpoint.entries {
        if slot <= previous {
            return Err(corrupt(format!("checkpoint holds slot {slot} after slot {previous}")));
        }
        check_entry(slot, &entry)?;
        entries.insert(slot, entry);
        previous = slot;
    }
    Ok(DurableState {
        promised: checkpoint.promised,
        entries,
        chosen_through: checkpoint.chosen_through,
        compacted_through: checkpoint.compacted_through,
        incarnations: checkpoint.incarnations,
        recovering: checkpoint.recovering,
    })
}

/// What `persist` would have refused to write, read back, is corruption.
fn check_batch(batch: &WriteBatch) -> Result<(), StoreError> {
    batch.entries.iter().try_for_each(|(slot, entry)| check_entry(*slot, entry))
}

fn check_entry(slot: Slot, entry: &Entry) -> Result<(), StoreError> {
    if slot == 0 {
        return Err(corrupt("log holds an entry for slot 0"));
    }
    let bytes = crate::mem::encoded_bytes(entry);
    if bytes > ENTRY_BYTES_MAX {
        return Err(corrupt(format!("log entry for slot {slot} is {bytes} bytes, over ENTRY_BYTES_MAX")));
    }
    Ok(())
}

/// Cuts the segment back to `valid_bytes` if it is longer (a torn tail; see
/// the module documentation for why that is safe), durably.
fn cut_torn_tail(segment: &mut File, path: &Path, valid_bytes: u64) -> Result<(), StoreError> {
    let length = segment.metadata().map_err(|error| io_error("reading", path, error))?.len();
    if length < valid_bytes {
        return Err(StoreError::Io(format!("{} shrank while it was opened", path.display())));
    }
    if length > valid_bytes {
        segment.set_len(valid_bytes).map_err(|error| io_error("truncating", path, error))?;
        segment.sync_data().map_err(|error| io_error("fdatasyncing", path, error))?;
    }
    Ok(())
}

/// Moves `file`'s cursor to byte `offset`.
fn seek(file: &mut File, path: &Path, offset: u64) -> Result<(), StoreError> {
    file.seek(SeekFrom::Start(offset)).map(drop).map_err(|error| io_error("seeking in", path, error))
}

/// Every `.log` and every `.tmp` segment's sequence number, each sorted.
fn list_segments(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
    let mut segments = Vec::new();
    let mut temporaries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|error| io_error("listing", dir, error))? {
        let item = item.map_err(|error| io_error("listing", dir, error))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(SEGMENT_PREFIX) else { continue };
        if let Some(number) = rest.strip_suffix(SEGMENT_SUFFIX) {
            segments.push(parse_sequence(number, name)?);
        } else if let Some(number) = rest.strip_suffix(TEMPORARY_SUFFIX) {
            temporaries.push(parse_sequence(number, name)?);
        }
    }
    segments.sort_unstable();
    temporaries.sort_unstable();
    Ok((segments, temporaries))
}

fn parse_sequence(number: &str, name: &str) -> Result<u64, StoreError> {
    match number.parse::<u64>() {
        Ok(sequence) if number.len() == 20 && sequence >= 1 => Ok(sequence),
        _ => Err(corrupt(format!("segment file name {name} is not one this store writes"))),
    }
}

fn segment_path(dir: &Path, sequence: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{sequence:020}{suffix}"))
}

/// Removes the segment files `sequences` with `suffix`.
fn remove_files(dir: &Path, sequences: &[u64], suffix: &str) -> Result<(), StoreError> {
    for &sequence in sequences {
        let path = segment_path(dir, sequence, suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("removing", &path, error)),
        }
    }
    Ok(())
}

fn lock_directory(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| io_error("opening", &path, error))?;
    lock.try_lock().map_err(|error| StoreError::Engine(format!("locking {}: {error}", path.display())))?;
    Ok(lock)
}

fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|error| io_error("reading", path, error))
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io(format!("{action} {}: {error}", path.display()))
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt(message.into())
}

/// The directory holding `dir`; `.` for a single relative component.
fn parent_directory(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes the names inside `dir` durable (fsync of the directory itself).
#[cfg(unix)]
fn sync_directory(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).map_err(|error| io_error("opening", dir, error))?;
    handle.sync_all().map_err(|error| io_error("fsyncing", dir, error))
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Suffix a damaged segment gets when it is set aside.
const SET_ASIDE_SUFFIX: &str = ".corrupt";

impl WalStore {
    /// The `.log` segments in `dir`, oldest first (normally one; two only
    /// while a crashed rewrite awaits the next open). None for a directory
    /// that holds no store yet.
    pub fn segment_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let (segments, _) = list_segments(dir)?;
        Ok(segments.iter().map(|&sequence| segment_path(dir, sequence, SEGMENT_SUFFIX)).collect())
    }

    /// Bytes on disk of the segments in `dir` (0 when there are none or
    /// they cannot be listed).
    pub fn disk_bytes(dir: &Path) -> u64 {
        let segments = Self::segment_files(dir).unwrap_or_default();
        segments.iter().filter_map(|path| std::fs::metadata(path).ok()).map(|meta| meta.len()).sum()
    }

    /// Renames every segment in `dir` to `<name>.corrupt` (replacing one set
    /// aside before) and makes the renames durable, so the next open starts
    /// an empty store while the damaged files stay for inspection. Returns
    /// the new names. Must not be called while a store is open on `dir`.
    pub fn set_aside(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        let mut moved = Vec::new();
        for from in Self::segment_files(dir)? {
            let mut to = from.clone().into_os_string();
            to.push(SET_ASIDE_SUFFIX);
            std::fs::rename(&from, &to).map_err(|error| io_error("moving aside", &from, error))?;
            moved.push(PathBuf::from(to));
        }
        sync_directory(dir)?;
        Ok(moved)
    }
}
