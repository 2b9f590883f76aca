//! A simulated disk: log writes become durable after a latency; a crash
//! loses every write not yet durable. The durable log is the store crate's
//! in-memory twin, which passes the same conformance suite as redb; the
//! snapshot files are the store's real snapshot code over [`MemBlobs`],
//! which keeps only synced bytes across a crash.

use chorus_paxos::{DurableState, WriteBatch, WriteId};
use chorus_store::{Blobs, LogStore, MemBlobs, MemStore, Snapshots, StoreError};
use std::collections::VecDeque;

/// One replica's disk.
#[derive(Debug)]
pub struct Disk {
    /// What survives a crash.
    durable: MemStore,
    /// Writes handed out and not yet durable, with the tick each completes
    /// (non-decreasing: the disk completes writes in order).
    pending: VecDeque<(u64, WriteBatch)>,
    /// The replica's snapshot directory. Its file contents are durable up
    /// to their last sync; names change durably at once.
    pub snapshots: Snapshots<MemBlobs>,
}

impl Default for Disk {
    fn default() -> Self {
        let snapshots = Snapshots::open(MemBlobs::new()).expect("an empty in-memory directory opens");
        Disk { durable: MemStore::default(), pending: VecDeque::new(), snapshots }
    }
}

impl Disk {
    /// Queues a write that completes at `done_at` (or after the previous one).
    pub fn write(&mut self, batch: WriteBatch, done_at: u64) {
        let done_at = self.pending.back().map_or(done_at, |(last, _)| done_at.max(*last));
        self.pending.push_back((done_at, batch));
    }

    /// Makes every write due by `now` durable, in one group commit; returns
    /// the id to report as persisted.
    pub fn complete(&mut self, now: u64) -> Option<WriteId> {
        let due = self.pending.iter().take_while(|(at, _)| *at <= now).count();
        if due == 0 {
            return None;
        }
        let batches: Vec<WriteBatch> = self.pending.drain(..due).map(|(_, b)| b).collect();
        self.durable.persist(&batches).expect("the in-memory store does not fail");
        batches.last().map(|b| b.id)
    }

    /// A crash. The first `survivors` pending writes reached the disk
    /// (their fsync finished but the replica never heard); the rest are
    /// lost. A redb transaction is atomic, so a torn commit is a lost one.
    /// Snapshot files lose every byte not synced.
    pub fn crash(&mut self, survivors: usize) {
        let survivors = survivors.min(self.pending.len());
        let reached: Vec<WriteBatch> = self.pending.drain(..survivors).map(|(_, b)| b).collect();
        if !reached.is_empty() {
            self.durable.persist(&reached).expect("the in-memory store does not fail");
        }
        self.pending.clear();
        self.snapshots.blobs_mut().crash();
    }

    /// Opens the snapshot directory afresh, as a starting process does:
    /// forgets what the previous process held in memory and removes
    /// snapshots a crash left half-written. Returns how many it removed.
    pub fn reopen_snapshots(&mut self) -> Result<usize, StoreError> {
        let blobs = std::mem::take(self.snapshots.blobs_mut());
        let leftovers = half_written(&blobs)?;
        self.snapshots = Snapshots::open(blobs)?;
        assert_eq!(half_written(self.snapshots.blobs())?, 0, "opening removes half-written snapshots");
        Ok(leftovers)
    }

    /// Writes not yet durable.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// What a restarting replica reads back.
    pub fn load(&mut self) -> DurableState {
        self.durable.load().expect("the in-memory store does not fail")
    }
}

/// Snapshot files a crash left half-written (`.tmp`).
fn half_written(blobs: &MemBlobs) -> Result<usize, StoreError> {
    Ok(blobs.list()?.iter().filter(|(name, _)| name.ends_with(".tmp")).count())
}
