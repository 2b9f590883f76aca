//! Snapshot transfer between replicas, without I/O of its own: the
//! receiving side is a [`Fetch`] state machine, the sending side the
//! function [`serve`]. Both work on a [`Snapshots`] over any
//! [`Blobs`], so the tokio runtime and the simulator run this same code.
//!
//! The receiver pulls: it asks for one chunk at a time and asks for the
//! next only once the previous one is written, so one chunk (at most
//! `SNAPSHOT_CHUNK_BYTES`) is in flight per transfer and neither side
//! buffers more. Each chunk carries a CRC-32 checked on arrival; the
//! whole file's checksum is checked before the snapshot is renamed into
//! place. A transfer interrupted by a crash resumes from the partial file.

use chorus_limits as limits;
use chorus_paxos::{ReplicaId, Slot, SnapshotWanted};
use chorus_proto::{FetchProgress, Transfer};
use chorus_store::{Blobs, SnapshotInfo, Snapshots, StoreError};

/// What the runtime must do after feeding a [`Fetch`].
#[derive(Debug, PartialEq, Eq)]
pub enum FetchStep {
    /// Send this to the peer the fetch pulls from.
    Send(Transfer),
    /// Nothing to do until the next message or tick.
    Wait,
    /// The snapshot is complete, verified and durable.
    Done(SnapshotInfo),
    /// The fetch gave up; the core will ask again.
    Failed(String),
}

/// One snapshot transfer into this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    from: ReplicaId,
    /// The snapshot must cover at least this slot.
    covering: Slot,
    /// Slot of the snapshot being received (0 until the sender names it).
    slot: Slot,
    /// Size of its file, once known.
    total: u64,
    /// Bytes received so far (the partial file's length).
    offset: u64,
    /// Ticks since the last request went out.
    waited_ticks: u64,
    /// Requests that went unanswered in a row.
    retries: u32,
}

impl Fetch {
    /// Starts fetching what `wanted` asks for, resuming a partial transfer
    /// left on disk when it covers enough. Returns the first request.
    pub fn start<B: Blobs>(
        wanted: SnapshotWanted,
        snapshots: &mut Snapshots<B>,
    ) -> Result<(Fetch, Transfer), StoreError> {
        let (slot, offset) = match snapshots.partial()? {
            Some((slot, bytes)) if slot >= wanted.covering => (slot, bytes),
            _ => (0, 0),
        };
        let fetch =
            Fetch { from: wanted.from, covering: wanted.covering, slot, total: 0, offset, waited_ticks: 0, retries: 0 };
        let request = fetch.request();
        Ok((fetch, request))
    }

    /// The peer this fetch pulls from.
    pub fn from(&self) -> ReplicaId {
        self.from
    }

    /// How far the transfer got, for status.
    pub fn progress(&self) -> FetchProgress {
        FetchProgress { from: self.from, slot: self.slot, received_bytes: self.offset, total_bytes: self.total }
    }

    fn request(&self) -> Transfer {
        Transfer::Request { covering: self.covering, slot: self.slot, offset: self.offset }
    }

    /// Handles an answer from the peer.
    pub fn on_message<B: Blobs>(&mut self, message: Transfer, snapshots: &mut Snapshots<B>) -> FetchStep {
        match message {
            Transfer::Chunk { slot, total, offset, crc, bytes } => {
                self.on_chunk(slot, total, offset, crc, &bytes, snapshots)
            }
            Transfer::Unavailable { slot, .. } if slot == self.slot && slot != 0 => {
                // Replaced by a newer snapshot: start over with the newest.
                self.restart();
                FetchStep::Send(self.request())
            }
            Transfer::Unavailable { .. } => FetchStep::Failed(format!("replica {} has no snapshot to send", self.from)),
            Transfer::Request { .. } => FetchStep::Wait,
        }
    }

    fn restart(&mut self) {
        (self.slot, self.total, self.offset) = (0, 0, 0);
    }

    fn on_chunk<B: Blobs>(
        &mut self,
        slot: Slot,
        total: u64,
        offset: u64,
        crc: u32,
        bytes: &[u8],
        snapshots: &mut Snapshots<B>,
    ) -> FetchStep {
        let expected = self.slot == 0 || slot == self.slot;
        if !expected || offset != self.offset || slot < self.covering {
            return FetchStep::Wait; // a stale or duplicated answer
        }
        if crc32fast::hash(bytes) != crc || bytes.is_empty() || offset + bytes.len() as u64 > total {
            return FetchStep::Failed(format!("replica {} sent a damaged chunk", self.from));
        }
        (self.slot, self.total, self.waited_ticks, self.retries) = (slot, total, 0, 0);
        match self.write(bytes, snapshots) {
            Ok(step) => step,
            Err(error) => {
                self.restart();
                FetchStep::Failed(format!("snapshot {slot} from replica {}: {error}", self.from))
            }
        }
    }

    fn write<B: Blobs>(&mut self, bytes: &[u8], snapshots: &mut Snapshots<B>) -> Result<FetchStep, StoreError> {
        let held = snapshots.incoming(self.slot)?; // drops partial files of other slots
        if held != self.offset {
            self.offset = held; // the partial file is elsewhere: continue from it
            return Ok(FetchStep::Send(self.request()));
        }
        self.offset = snapshots.append_incoming(self.slot, self.offset, bytes)?;
        if self.offset < self.total {
            return Ok(FetchStep::Send(self.request()));
        }
        snapshots.finish_incoming(self.slot).map(FetchStep::Done)
    }

    /// One tick passed: asks again after a silence, gives up after several.
    pub fn on_tick(&mut self) -> FetchStep {
        self.waited_ticks += 1;
        if self.waited_ticks < limits::SNAPSHOT_FETCH_RETRY_TICKS {
            return FetchStep::Wait;
        }
        self.waited_ticks = 0;
        self.retries += 1;
        if self.retries > limits::SNAPSHOT_FETCH_RETRIES_MAX {
            return FetchStep::Failed(format!("replica {} stopped answering", self.from));
        }
        FetchStep::Send(self.request())
    }
}

/// Answers a peer's request from this replica's snapshots: the chunk it
/// asked for (at most `chunk_bytes`; the runtime uses
/// `SNAPSHOT_CHUNK_BYTES`, the simulator smaller ones), or `Unavailable`.
/// `None` when `request` is not a request.
pub fn serve<B: Blobs>(request: &Transfer, snapshots: &Snapshots<B>, chunk_bytes: usize) -> Option<Transfer> {
    let Transfer::Request { covering, slot, offset } = *request else {
        return None;
    };
    let unavailable = Transfer::Unavailable { covering, slot };
    let listed = match snapshots.list() {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(%error, "cannot list snapshots to serve a peer");
            return Some(unavailable);
        }
    };
    let found = match slot {
        0 => listed.last().filter(|info| info.slot >= covering),
        slot => listed.iter().find(|info| info.slot == slot),
    };
    let Some(info) = found.copied() else {
        return Some(unavailable);
    };
    match snapshots.read_chunk(info.slot, offset, chunk_bytes.clamp(1, limits::SNAPSHOT_CHUNK_BYTES)) {
        Ok(bytes) if !bytes.is_empty() => {
            let crc = crc32fast::hash(&bytes);
            Some(Transfer::Chunk { slot: info.slot, total: info.bytes, offset, crc, bytes })
        }
        Ok(_) => Some(unavailable),
        Err(error) => {
            tracing::warn!(%error, slot = info.slot, "cannot read a snapshot chunk for a peer");
            Some(unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_store::MemBlobs;
    use std::io::Write;

    fn snapshots_with(slot: Slot, bytes: usize) -> Snapshots<MemBlobs> {
        let mut snapshots = Snapshots::open(MemBlobs::new()).unwrap();
        let mut writer = snapshots.writer(slot).unwrap();
        writer.write_all(&vec![7; bytes]).unwrap();
        writer.finish().unwrap();
        snapshots
    }

    /// Runs a fetch against `sender` until it ends, delivering at most
    /// `limit` answers; returns the last step.
    fn drive(
        fetch: &mut Fetch,
        first: Transfer,
        sender: &Snapshots<MemBlobs>,
        receiver: &mut Snapshots<MemBlobs>,
        limit: usize,
    ) -> FetchStep {
        let mut request = first;
        for _ in 0..limit {
            let answer = serve(&request, sender, limits::SNAPSHOT_CHUNK_BYTES).expect("a request gets an answer");
            match fetch.on_message(answer, receiver) {
                FetchStep::Send(next) => request = next,
                other => return other,
            }
        }
        FetchStep::Wait
    }

    fn wanted(covering: Slot) -> SnapshotWanted {
        SnapshotWanted { from: 2, covering }
    }

    #[test]
    fn a_fetch_copies_the_newest_snapshot_in_chunks() {
        let sender = snapshots_with(40, 3 * limits::SNAPSHOT_CHUNK_BYTES + 5);
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        assert_eq!(first, Transfer::Request { covering: 30, slot: 0, offset: 0 });
        let done = drive(&mut fetch, first, &sender, &mut receiver, 10);
        assert_eq!(done, FetchStep::Done(sender.newest().unwrap().unwrap()));
        assert_eq!(receiver.newest().unwrap(), sender.newest().unwrap());
    }

    #[test]
    fn an_interrupted_fetch_resumes_from_the_partial_file() {
        let sender = snapshots_with(40, 3 * limits::SNAPSHOT_CHUNK_BYTES);
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        assert_eq!(drive(&mut fetch, first, &sender, &mut receiver, 2), FetchStep::Wait);
        // The receiver restarts; its partial file survived (synced by a real disk or not, it is checked in full at the end).
        let mut receiver = Snapshots::open(receiver.blobs().clone()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        let offset = 2 * limits::SNAPSHOT_CHUNK_BYTES as u64;
        assert_eq!(first, Transfer::Request { covering: 30, slot: 40, offset });
        assert!(matches!(drive(&mut fetch, first, &sender, &mut receiver, 10), FetchStep::Done(_)));
    }

    #[test]
    fn a_replaced_snapshot_restarts_the_fetch_with_the_newest() {
        let mut sender = snapshots_with(40, 2 * limits::SNAPSHOT_CHUNK_BYTES);
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        assert_eq!(drive(&mut fetch, first, &sender, &mut receiver, 1), FetchStep::Wait);
        let mut writer = sender.writer(50).unwrap();
        writer.write_all(b"newer").unwrap();
        writer.finish().unwrap();
        sender.prune(50).unwrap();
        let request = Transfer::Request { covering: 30, slot: 40, offset: limits::SNAPSHOT_CHUNK_BYTES as u64 };
        let done = drive(&mut fetch, request, &sender, &mut receiver, 10);
        assert_eq!(done, FetchStep::Done(SnapshotInfo { slot: 50, bytes: 45 }));
    }

    #[test]
    fn stale_and_damaged_chunks() {
        let sender = snapshots_with(40, 100);
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        let Some(Transfer::Chunk { slot, total, crc, bytes, .. }) =
            serve(&first, &sender, limits::SNAPSHOT_CHUNK_BYTES)
        else {
            panic!("a chunk")
        };
        let stale = Transfer::Chunk { slot, total, offset: 50, crc, bytes: bytes.clone() };
        assert_eq!(fetch.on_message(stale, &mut receiver), FetchStep::Wait, "a chunk at the wrong offset is ignored");
        let damaged = Transfer::Chunk { slot, total, offset: 0, crc: crc ^ 1, bytes };
        assert!(matches!(fetch.on_message(damaged, &mut receiver), FetchStep::Failed(_)));
    }

    #[test]
    fn nothing_to_serve_fails_the_fetch() {
        let sender = snapshots_with(20, 10);
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        let answer = serve(&first, &sender, limits::SNAPSHOT_CHUNK_BYTES).unwrap();
        assert_eq!(answer, Transfer::Unavailable { covering: 30, slot: 0 });
        assert!(matches!(fetch.on_message(answer, &mut receiver), FetchStep::Failed(_)));
    }

    #[test]
    fn silence_is_retried_then_given_up() {
        let mut receiver = Snapshots::open(MemBlobs::new()).unwrap();
        let (mut fetch, first) = Fetch::start(wanted(30), &mut receiver).unwrap();
        let mut resent = 0;
        loop {
            match fetch.on_tick() {
                FetchStep::Wait => {}
                FetchStep::Send(request) => {
                    assert_eq!(request, first);
                    resent += 1;
                }
                FetchStep::Failed(_) => break,
                FetchStep::Done(_) => panic!("nothing arrived"),
            }
        }
        assert_eq!(resent, limits::SNAPSHOT_FETCH_RETRIES_MAX);
    }
}
