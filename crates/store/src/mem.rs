//! [`MemStore`]: the in-memory twin of the write-ahead log, for the simulator.

use chorus_paxos::{DurableState, Entry, WriteBatch};

use crate::{assert_entry_well_formed, LogStore, StoreError};

/// In-memory twin of [`crate::WalStore`]: same contract, nothing on disk.
///
/// Everything `persist` accepted is "durable" at once. A simulated crash
/// keeps [`MemStore::durable`] (or a clone of the store) and drops the rest
/// of the replica; a restarted replica loads from it.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    /// The state every successful `persist` has written.
    state: DurableState,
}

impl MemStore {
    /// An empty store, as a founding member's fresh data directory.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// An empty store of a replica that lost its disk: it must rebuild from
    /// its peers before it votes.
    pub fn wiped() -> Self {
        MemStore { state: DurableState { recovering: true, ..DurableState::default() } }
    }

    /// True while the store is a lost disk's replacement whose rebuild is
    /// not yet durable (a `recovered` write clears it).
    pub fn recovering(&self) -> bool {
        self.state.recovering
    }

    /// A copy of everything persisted so far: what survives a crash.
    pub fn durable(&self) -> DurableState {
        self.state.clone()
    }
}

impl LogStore for MemStore {
    fn load(&mut self) -> Result<DurableState, StoreError> {
        Ok(self.state.clone())
    }

    fn persist(&mut self, batches: &[WriteBatch]) -> Result<(), StoreError> {
        for batch in batches {
            for (slot, entry) in &batch.entries {
                assert_entry_well_formed(*slot, encoded_bytes(entry));
            }
            self.state.apply(batch);
        }
        Ok(())
    }
}

/// Size of `entry` as the write-ahead log encodes it, so both stores refuse
/// the same oversized entries.
pub(crate) fn encoded_bytes(entry: &Entry) -> usize {
    let counter = postcard::to_io(entry, ByteCounter(0)).expect("encoding an entry into a counter cannot fail");
    counter.0
}

/// An `io::Write` sink that only counts bytes.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
