//! A simulated disk: log writes become durable after a latency; a crash
//! loses every write not yet durable. The durable log is the store crate's
//! in-memory twin, which passes the same conformance suite as the log; the
//! snapshot files are the store's real snapshot code over [`MemBlobs`],
//! which keeps only synced bytes across a crash. A disk can also be lost
//! outright ([`Disk::wipe`]): replaced by an empty one of a replica that
//! must rebuild from its peers before it votes.

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
    /// A founding member's empty disk.
    fn default() -> Self {
        Disk::empty(MemStore::new())
    }
}

impl Disk {
    fn empty(durable: MemStore) -> Self {
        let snapshots = Snapshots::open(MemBlobs::new()).expect("an empty in-memory directory opens");
        Disk { durable, pending: VecDeque::new(), snapshots }
    }

    /// The disk is lost and replaced by an empty one of a member that is
    /// not founding: log, promise, incarnations, snapshots, partly fetched
    /// snapshots and pending writes are all gone.
    pub fn wipe(&mut self) {
        *self = Disk::empty(MemStore::wiped());
        assert!(self.lost() && self.pending.is_empty(), "a wiped disk is empty and rebuilding");
        assert!(matches!(self.snapshots.newest(), Ok(None)), "a wiped disk holds no snapshot");
    }

    /// True from a wipe until the replica's rebuild is durable: the disk
    /// holds none of the promises and accepts this replica ever made.
    pub fn lost(&self) -> bool {
        self.durable.recovering()
    }

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
    /// lost. A commit is one checksummed record and a torn last record is cut
    /// off on open, so a torn commit is a lost one.
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
