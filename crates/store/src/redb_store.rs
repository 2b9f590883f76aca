//! [`RedbStore`]: the acceptor's state in one redb file.
//!
//! Layout:
//! - table `meta`, `&str -> &[u8]`:
//!   - `format_version`: u64, 8 bytes little-endian ([`FORMAT_VERSION`]);
//!   - `replica`: the owning replica id, 1 byte;
//!   - `promised`: postcard([`Ballot`]), absent until first promised;
//!   - `chosen_through`: u64, 8 bytes little-endian, absent until first set;
//!   - `compacted_through`: u64, 8 bytes little-endian, absent until the
//!     first compaction; the log holds no slot at or below it;
//!   - `voter`: one byte, 1, present once this replica may vote: written
//!     when a founding member's store is created, or when a replica that
//!     lost its disk finished rebuilding. Absent, the replica rebuilds;
//!   - `incarnations`: postcard([`Incarnations`]), absent until first set.
//! - table `log`, `u64 -> &[u8]`: slot -> postcard([`Entry`]).

use std::collections::BTreeMap;
use std::path::Path;

use chorus_paxos::{Ballot, DurableState, Entry, Incarnations, Slot, WriteBatch};
use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;

use crate::{assert_entry_well_formed, LogStore, StoreError, ENTRY_BYTES_MAX};

/// Name of the database file inside a replica's data directory.
pub const DATABASE_FILE_NAME: &str = "chorus.redb";

/// Version of the on-disk layout this build writes and reads. A file with
/// another version is refused as [`StoreError::Corrupt`].
pub const FORMAT_VERSION: u64 = 4;

/// Most bytes redb may keep in its page cache. The whole log is read into
/// memory once at start-up and only appended to afterwards, so a large cache
/// buys nothing; a 64 MiB cache filled up with written pages and cost
/// resident memory (docs/BENCHMARKS.md, "Memory").
const CACHE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// redb's 2-phase commit costs a second fsync per commit. Off: the 1-phase
/// commit is crash-safe through its checksummed commit slots.
const TWO_PHASE_COMMIT: bool = false;

const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

const KEY_FORMAT_VERSION: &str = "format_version";
const KEY_REPLICA: &str = "replica";
const KEY_PROMISED: &str = "promised";
const KEY_CHOSEN_THROUGH: &str = "chosen_through";
const KEY_COMPACTED_THROUGH: &str = "compacted_through";
const KEY_VOTER: &str = "voter";
const KEY_INCARNATIONS: &str = "incarnations";

/// Longest postcard encoding of an [`Incarnations`] table: a length, then
/// per replica a one-byte id and a varint u64.
const INCARNATIONS_BYTES_MAX: usize = 1 + chorus_limits::REPLICAS_MAX * 11;

/// Longest postcard encoding of a [`Ballot`]: a varint u64 and a u8.
const BALLOT_BYTES_MAX: usize = 11;

/// The durable state of one acceptor in `dir/chorus.redb`.
///
/// Holds the file open (and locked against other processes) until dropped.
pub struct RedbStore {
    /// The open database; every `persist` is one write transaction on it.
    database: Database,
    /// Reused across `persist` calls so encoding an entry does not allocate
    /// once the buffer has grown to the largest entry seen.
    encode_buffer: Vec<u8>,
    /// Set by the first failed `persist`. A store that failed once refuses
    /// every later write: after a failed commit redb's state is unknown, and
    /// the replica must stop rather than retry and acknowledge.
    failure: Option<String>,
}

impl RedbStore {
    /// Opens or creates `dir/chorus.redb`, creating `dir` if needed. On
    /// first open records `replica` in the database; a later open with a
    /// different replica id is `Err(WrongReplica)` (catches a data dir
    /// handed to the wrong replica).
    ///
    /// Every open verifies the checksums of the whole file, so a damaged
    /// file is `Err(Corrupt)` here. Takes time proportional to the file.
    ///
    /// A store this call creates is *not* a voter: it belongs to a replica
    /// that lost its disk (or was given a new one) and must rebuild from its
    /// peers before it votes. Founding members are created with
    /// [`RedbStore::open_founding`].
    pub fn open(dir: &Path, replica: u8) -> Result<Self, StoreError> {
        Self::open_as(dir, replica, false)
    }

    /// Like [`RedbStore::open`], but a store this call creates belongs to a
    /// founding member of a new cluster, which votes from the start (it
    /// cannot have promised or accepted anything yet). An existing store is
    /// opened unchanged.
    pub fn open_founding(dir: &Path, replica: u8) -> Result<Self, StoreError> {
        Self::open_as(dir, replica, true)
    }

    fn open_as(dir: &Path, replica: u8, founding: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| io_error("creating", dir, error))?;
        let path = dir.join(DATABASE_FILE_NAME);
        let store = unless_the_engine_panics(|| {
            let database = Builder::new()
                .set_cache_size(CACHE_BYTES_MAX)
                .set_check_integrity_on_open(true)
                .create(&path)
                .map_err(from_redb)?;
            let store = RedbStore { database, encode_buffer: Vec::new(), failure: None };
            store.check_or_record_identity(replica, founding)?;
            Ok(store)
        })?;
        // The file is durable; now make its name durable, always, since a
        // previous run may have crashed between creating it and this point.
        sync_directory(dir)?;
        sync_directory(parent_directory(dir))?;
        Ok(store)
    }

    /// Records `replica` and the format version in a new database (and
    /// marks a founding member a voter), or checks them in an existing one.
    fn check_or_record_identity(&self, replica: u8, founding: bool) -> Result<(), StoreError> {
        let transaction = self.begin_durable_write()?;
        {
            // Creates the log table too, so `load` finds both tables.
            transaction.open_table(LOG_TABLE).map_err(from_redb)?;
            let mut meta = transaction.open_table(META_TABLE).map_err(from_redb)?;
            let found = match meta.get(KEY_REPLICA).map_err(from_redb)? {
                Some(record) => Some(decode_replica(record.value())?),
                None => None,
            };
            match found {
                None => {
                    meta.insert(KEY_REPLICA, [replica].as_slice()).map_err(from_redb)?;
                    meta.insert(KEY_FORMAT_VERSION, FORMAT_VERSION.to_le_bytes().as_slice()).map_err(from_redb)?;
                    if founding {
                        meta.insert(KEY_VOTER, [1_u8].as_slice()).map_err(from_redb)?;
                    }
                }
                Some(found) if found != replica => {
                    return Err(StoreError::WrongReplica { expected: replica, found });
                }
                Some(_) => {
                    let version = match meta.get(KEY_FORMAT_VERSION).map_err(from_redb)? {
                        Some(record) => decode_u64(record.value(), KEY_FORMAT_VERSION)?,
                        None => return Err(corrupt("meta has a replica id but no format version")),
                    };
                    if version != FORMAT_VERSION {
                        return Err(corrupt(format!(
                            "format version {version}; this build reads version {FORMAT_VERSION}"
                        )));
                    }
                }
            }
        }
        transaction.commit().map_err(from_redb)
    }

    /// Starts a write transaction that fsyncs on commit, whatever redb's
    /// defaults are.
    fn begin_durable_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut transaction = self.database.begin_write().map_err(from_redb)?;
        transaction.set_durability(Durability::Immediate).map_err(from_redb)?;
        transaction.set_two_phase_commit(TWO_PHASE_COMMIT);
        Ok(transaction)
    }

    /// One transaction holding every batch, committed with one fsync.
    fn write_batches(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        let transaction = self.begin_durable_write()?;
        {
            let mut log = transaction.open_table(LOG_TABLE).map_err(from_redb)?;
            for batch in batches {
                for (slot, entry) in &batch.entries {
                    self.encode_buffer.clear();
                    postcard::to_io(entry, &mut self.encode_buffer)
                        .map_err(|error| StoreError::Engine(format!("encoding slot {slot}: {error}")))?;
                    assert_entry_well_formed(*slot, self.encode_buffer.len());
                    log.insert(*slot, self.encode_buffer.as_slice()).map_err(from_redb)?;
                }
                if let Some(through) = batch.compact_through {
                    log.retain_in(..=through, |_, _| false).map_err(from_redb)?;
                }
            }
        }
        let promised = batches.iter().rev().find_map(|batch| batch.promised);
        let chosen_through = batches.iter().rev().find_map(|batch| batch.chosen_through);
        let compacted_through = batches.iter().filter_map(|batch| batch.compact_through).max();
        if let Some(slot) = compacted_through {
            let mut meta = transaction.open_table(META_TABLE).map_err(from_redb)?;
            let held = match meta.get(KEY_COMPACTED_THROUGH).map_err(from_redb)? {
                Some(record) => decode_u64(record.value(), KEY_COMPACTED_THROUGH)?,
                None => 0,
            };
            meta.insert(KEY_COMPACTED_THROUGH, slot.max(held).to_le_bytes().as_slice()).map_err(from_redb)?;
        }
        let incarnations = batches.iter().rev().find_map(|batch| batch.incarnations.as_ref());
        let recovered = batches.iter().any(|batch| batch.recovered);
        if incarnations.is_some() || recovered {
            let mut meta = transaction.open_table(META_TABLE).map_err(from_redb)?;
            if let Some(table) = incarnations {
                let mut buffer = [0_u8; INCARNATIONS_BYTES_MAX];
                let encoded = postcard::to_slice(table, &mut buffer)
                    .map_err(|error| StoreError::Engine(format!("encoding incarnations: {error}")))?;
                meta.insert(KEY_INCARNATIONS, &*encoded).map_err(from_redb)?;
            }
            if recovered {
                meta.insert(KEY_VOTER, [1_u8].as_slice()).map_err(from_redb)?;
            }
        }
        if promised.is_some() || chosen_through.is_some() {
            let mut meta = transaction.open_table(META_TABLE).map_err(from_redb)?;
            if let Some(ballot) = promised {
                let mut buffer = [0_u8; BALLOT_BYTES_MAX];
                let encoded = postcard::to_slice(&ballot, &mut buffer)
                    .map_err(|error| StoreError::Engine(format!("encoding promised: {error}")))?;
                meta.insert(KEY_PROMISED, &*encoded).map_err(from_redb)?;
            }
            if let Some(slot) = chosen_through {
                meta.insert(KEY_CHOSEN_THROUGH, slot.to_le_bytes().as_slice()).map_err(from_redb)?;
            }
        }
        transaction.commit().map_err(from_redb)
    }

    /// Reads and decodes both tables in one read transaction.
    fn read_state(&self) -> Result<DurableState, StoreError> {
        let transaction = self.database.begin_read().map_err(from_redb)?;
        let meta = transaction.open_table(META_TABLE).map_err(from_redb)?;
        let promised = match meta.get(KEY_PROMISED).map_err(from_redb)? {
            Some(record) => decode_exact::<Ballot>(record.value(), KEY_PROMISED)?,
            None => Ballot::ZERO,
        };
        let chosen_through = read_u64_or_zero(&meta, KEY_CHOSEN_THROUGH)?;
        let compacted_through = read_u64_or_zero(&meta, KEY_COMPACTED_THROUGH)?;
        let incarnations = match meta.get(KEY_INCARNATIONS).map_err(from_redb)? {
            Some(record) if record.value().len() > INCARNATIONS_BYTES_MAX => {
                return Err(corrupt("incarnations record is over its largest size"));
            }
            Some(record) => decode_exact::<Incarnations>(record.value(), KEY_INCARNATIONS)?,
            None => Incarnations::default(),
        };
        let recovering = match meta.get(KEY_VOTER).map_err(from_redb)? {
            Some(record) if record.value() == [1_u8] => false,
            Some(_) => return Err(corrupt("voter record is not the byte 1")),
            None => true,
        };
        let log = transaction.open_table(LOG_TABLE).map_err(from_redb)?;
        let mut entries: BTreeMap<Slot, Entry> = BTreeMap::new();
        for row in log.iter().map_err(from_redb)? {
            let (slot, record) = row.map_err(from_redb)?;
            let slot = slot.value();
            let record = record.value();
            if slot <= compacted_through {
                return Err(corrupt(format!("log holds slot {slot}, compacted through {compacted_through}")));
            }
            if record.len() > ENTRY_BYTES_MAX {
                return Err(corrupt(format!(
                    "log entry for slot {slot} is {} bytes, over ENTRY_BYTES_MAX",
                    record.len()
                )));
            }
            entries.insert(slot, decode_exact::<Entry>(record, "log entry")?);
        }
        Ok(DurableState { promised, entries, chosen_through, compacted_through, incarnations, recovering })
    }
}

impl LogStore for RedbStore {
    fn load(&mut self) -> Result<DurableState, StoreError> {
        unless_the_engine_panics(|| self.read_state())
    }

    fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        if let Some(failure) = &self.failure {
            return Err(StoreError::Engine(format!("store stopped after an earlier failure: {failure}")));
        }
        if batches.iter().all(WriteBatch::is_empty) {
            return Ok(());
        }
        let result = self.write_batches(batches);
        if let Err(error) = &result {
            self.failure = Some(error.to_string());
        }
        result
    }
}

/// Runs `reading` (opening or reading a file that may be damaged) and turns
/// a panic inside the engine into `Corrupt`: a damaged file must cost the
/// replica its local data (it rebuilds from its peers), never the process.
/// The fuzz target `store_recovery` found a file that makes redb's debug
/// assertions fire on open.
fn unless_the_engine_panics<T>(reading: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(reading)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(corrupt(format!("the storage engine panicked reading this file: {message}")))
    })
}

/// Sorts a redb error into the store's error kinds.
fn from_redb(error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Corrupted(message) => StoreError::Corrupt(message),
        redb::Error::Io(error) => StoreError::Io(error.to_string()),
        other => StoreError::Engine(other.to_string()),
    }
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io(format!("{action} {}: {error}", path.display()))
}

fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Corrupt(message.into())
}

/// Decodes one postcard record, refusing trailing bytes.
fn decode_exact<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|error| corrupt(format!("{what} does not decode: {error}")))?;
    if !rest.is_empty() {
        return Err(corrupt(format!("{what} has {} trailing bytes", rest.len())));
    }
    Ok(value)
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let array: [u8; 8] =
        bytes.try_into().map_err(|_| corrupt(format!("{what} is {} bytes, expected 8", bytes.len())))?;
    Ok(u64::from_le_bytes(array))
}

/// A u64 record of `meta`, 0 when absent.
fn read_u64_or_zero(meta: &redb::ReadOnlyTable<&str, &[u8]>, key: &str) -> Result<u64, StoreError> {
    match meta.get(key).map_err(from_redb)? {
        Some(record) => decode_u64(record.value(), key),
        None => Ok(0),
    }
}

fn decode_replica(bytes: &[u8]) -> Result<u8, StoreError> {
    match bytes {
        [replica] => Ok(*replica),
        _ => Err(corrupt(format!("replica id is {} bytes, expected 1", bytes.len()))),
    }
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
    let handle = std::fs::File::open(dir).map_err(|error| io_error("opening", dir, error))?;
    handle.sync_all().map_err(|error| io_error("fsyncing", dir, error))
}

/// Directories cannot be opened for fsync here; the platform's file system
/// is trusted to keep the name of a file whose contents were fsynced.
#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}
