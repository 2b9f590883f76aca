//! Durable state of one Paxos acceptor: the promised ballot, the log of
//! accepted entries and the chosen prefix; and the snapshots that let the
//! log be compacted.
//!
//! # Main types
//!
//! - [`Snapshots`]: snapshot files (checksummed, written in the background,
//!   renamed into place when complete, received from peers in resumable
//!   chunks), over any [`Blobs`]: [`DirBlobs`] (a real directory, fsync) or
//!   [`MemBlobs`] (the simulator's twin, which loses unsynced bytes on a
//!   crash).
//! - [`LogStore`]: the contract the server (and the simulator) program
//!   against. The core hands out [`WriteBatch`]es; the caller passes every
//!   batch that queued up to [`LogStore::persist`], and only once it returns
//!   `Ok` may the core hear `Event::Persisted` for them.
//! - [`WalStore`]: the real store, an append-only log of checksummed
//!   records in the data directory: one record and one `fdatasync` per
//!   `persist` (written over zeros preallocated ahead of the records), a
//!   torn last record cut off on open, the file rewritten in the background
//!   once it outgrows its live state.
//! - [`MemStore`]: the in-memory twin for the simulator; same contract,
//!   nothing on disk. A simulated crash keeps [`MemStore::durable`] and
//!   nothing else.
//! - [`StoreError`]: what the world can do to a store (I/O failure,
//!   corruption, engine error, a data directory handed to the wrong
//!   replica). Every error from `persist` stops the replica.
//!
//! # The contract
//!
//! 1. [`LogStore::load`] returns exactly the state of every `persist` that
//!    returned `Ok`, and possibly of the one that failed or was cut off by a
//!    crash (all of it or none of it: a `persist` is one transaction). A
//!    record that fails its checksum or does not decode is
//!    [`StoreError::Corrupt`], never skipped, unless it is the torn record
//!    of that last `persist` (told by the rules in the `wal` module).
//! 2. [`LogStore::persist`] applies its batches in order, later batches
//!    overriding earlier ones field by field (`promised`, each entry by
//!    slot, `chosen_through`); a field a batch leaves unset keeps its value.
//!    A batch's `compact_through` deletes every entry at or below it (after
//!    the batch's own entries) and raises the compaction mark, which never
//!    falls; the core never writes an entry at or below that mark.
//! 3. `persist` returns `Ok` only once everything it was given is durable.
//!    After an `Err` nothing it was given may be assumed durable *or*
//!    absent; the caller stops the replica and never retries.
//!
//! # Durability order ([`WalStore`])
//!
//! `persist` encodes its batches as one record, writes it after the last
//! one with one write (over zeros the file was extended with ahead of time,
//! [`PREALLOCATE_BYTES`] at a time) and returns after the `fdatasync` that
//! follows. Opening replays the newest segment: a torn last record (a
//! `persist` that never returned) is cut off; any other record that fails
//! its checksum is `Corrupt`. The
//! module documentation of `wal` gives the layout and every crash point of
//! a rewrite.
//!
//! A slice of batches that carry nothing writes nothing and issues no fsync.

mod blobs;
mod mem;
mod snapshot;
mod wal;

pub use blobs::{Blobs, DirBlobs, MemBlobs};
use chorus_paxos::{DurableState, Slot, WriteBatch};
pub use mem::MemStore;
pub use snapshot::{SnapshotInfo, SnapshotReader, SnapshotWriter, Snapshots, SNAPSHOT_FORMAT};
pub use wal::{
    WalStore, HEADER_BYTES, LOCK_FILE_NAME, PREALLOCATE_BYTES, RECORD_BYTES_MAX, RECORD_PREFIX_BYTES,
    REWRITE_BYTES_MIN, REWRITE_CATCH_UP_BYTES, REWRITE_CATCH_UP_ROUNDS_MAX, SECTOR_BYTES, TORN_ZEROS_MIN,
    WAL_FORMAT_VERSION,
};

/// Largest encoded size of one log entry, in bytes. One entry's value must
/// fit in one Accept message, so an entry never exceeds it; a larger record
/// on disk is corruption, and a larger entry handed to `persist` is a bug.
pub const ENTRY_BYTES_MAX: usize = chorus_limits::ACCEPT_BYTES_MAX;

// A full slot (every command at its largest framing) must fit in one entry.
const _: () = assert!(
    ENTRY_BYTES_MAX
        >= chorus_limits::BATCH_BYTES_MAX + chorus_limits::BATCH_COMMANDS_MAX * chorus_limits::VALUE_OVERHEAD_BYTES
);

/// Durable storage of one acceptor. See the crate documentation for the
/// full contract and the order of writes.
pub trait LogStore: Send {
    /// Reads back everything made durable so far. Called once at start-up.
    ///
    /// A checksum failure or undecodable record is `Err(StoreError::Corrupt)`,
    /// never silently skipped.
    fn load(&mut self) -> Result<DurableState, StoreError>;

    /// Applies `batches` in order (later batches override earlier ones field
    /// by field: `promised`, each entry by slot, `chosen_through`) in ONE
    /// transaction, and returns only once that transaction is durable
    /// (fsync). On `Err` nothing may be assumed durable; the caller stops the
    /// replica.
    ///
    /// # Panics
    ///
    /// On a caller bug: an entry for slot 0 (slots start at 1), or an entry
    /// that encodes to more than [`ENTRY_BYTES_MAX`] bytes.
    fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError>;
}

/// What can go wrong with durable storage. None of these is a bug in the
/// caller; all of them stop the replica.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused a read, write, fsync or directory
    /// operation (full disk, failing device, permissions).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The stored data fails a checksum, does not decode, or breaks the
    /// layout this crate writes. Never skipped or repaired silently.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The storage engine reported an error that is neither I/O nor
    /// corruption (the file is locked by another process, a transaction
    /// could not start, the store already failed once).
    #[error("storage engine failed: {0}")]
    Engine(String),
    /// The data was written in a format version this build does not read
    /// (an older or newer build wrote it). Not damage: nothing is set
    /// aside or rebuilt; run the build that wrote it.
    #[error("stored data has format version {found}; this build reads version {reads} (formats are not converted)")]
    WrongFormat {
        /// The version found in the data.
        found: u32,
        /// The version this build reads and writes.
        reads: u32,
    },
    /// The data directory belongs to another replica.
    #[error("data directory belongs to replica {found}, not replica {expected}")]
    WrongReplica {
        /// The replica id this process was started as.
        expected: u8,
        /// The replica id recorded in the data directory.
        found: u8,
    },
}

/// Stops the process on a caller bug in one entry handed to `persist`.
/// Shared by both stores so the simulator panics where the server would.
fn assert_entry_well_formed(slot: Slot, entry_bytes: usize) {
    assert!(slot >= 1, "persist was handed an entry for slot 0");
    assert!(
        entry_bytes <= ENTRY_BYTES_MAX,
        "entry for slot {slot} encodes to {entry_bytes} bytes, over ENTRY_BYTES_MAX"
    );
}
