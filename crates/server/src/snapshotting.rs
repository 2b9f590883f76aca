//! The runtime's snapshot threads, so no snapshot work runs on the core
//! task: one writes local snapshots (the core hands it a structurally
//! shared copy of the state), one serves snapshot chunks to peers, and one
//! per transfer fetches a peer's snapshot (the logic is [`crate::transfer`]).
//! Also loads the newest usable snapshot at start-up.

use crate::machine::SnapshotJob;
use crate::node::Input;
use crate::transfer::{serve, Fetch, FetchStep};
use anyhow::Context;
use chorus_chat::ChatState;
use chorus_paxos::{ReplicaId, Slot, SnapshotWanted};
use chorus_proto::{PeerFrame, Transfer};
use chorus_store::{Blobs, DirBlobs, Snapshots};
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;
use tokio::sync::mpsc;

/// Name of the snapshot directory inside a replica's data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";
/// Requests from peers waiting to be served; more are dropped (the
/// fetching peer asks again).
const SERVE_QUEUE_MAX: usize = 16;
/// Answers waiting for the fetch thread.
const FETCH_QUEUE_MAX: usize = 16;
/// Read buffer when decoding a snapshot.
const READ_BUFFER_BYTES: usize = 1024 * 1024;

/// Where the snapshots of the replica with data directory `data_dir` live.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR_NAME)
}

/// Loads the newest snapshot in `dir` that verifies and covers the
/// compacted log: [`load_newest`] over the real directory, after removing
/// snapshots a crash left half-written.
pub fn load_newest_in_dir(dir: &Path, compacted_through: Slot) -> anyhow::Result<(Slot, ChatState)> {
    let mut snapshots = Snapshots::open(DirBlobs::open(dir)?)?;
    load_newest(&mut snapshots, compacted_through).with_context(|| format!("snapshots in {}", dir.display()))
}

/// Loads the newest snapshot that verifies and covers the compacted log
/// (a damaged one is renamed aside, and an older one tried). Returns slot
/// 0 and an empty state when there is none and the log was never compacted.
/// The runtime and the simulator start a replica through this same code.
pub fn load_newest<B: Blobs>(
    snapshots: &mut Snapshots<B>,
    compacted_through: Slot,
) -> anyhow::Result<(Slot, ChatState)> {
    for info in snapshots.list()?.into_iter().rev() {
        if info.slot < compacted_through {
            break;
        }
        match read_state(snapshots, info.slot) {
            Ok(state) => return Ok((info.slot, state)),
            Err(error) => {
                tracing::error!(slot = info.slot, %error, "snapshot fails verification; setting it aside");
                snapshots.quarantine(info.slot)?;
            }
        }
    }
    if compacted_through == 0 {
        return Ok((0, ChatState::new()));
    }
    Err(Uncovered { compacted_through }.into())
}

/// No intact snapshot covers the compacted log: the replica's local data
/// is damaged (it never serves from it).
#[derive(Debug, thiserror::Error)]
#[error(
    "no intact snapshot covers the log, which was compacted through slot {compacted_through}: \
     this replica's data is damaged and it will not serve from it"
)]
pub struct Uncovered {
    pub compacted_through: Slot,
}

/// Decodes snapshot `slot`, checking its checksum.
pub fn read_state<B: Blobs>(snapshots: &Snapshots<B>, slot: Slot) -> anyhow::Result<ChatState> {
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, snapshots.reader(slot)?);
    ChatState::read_snapshot(reader).with_context(|| format!("snapshot {slot}"))
}

/// Bytes on disk of the log's segments and of the snapshot directory.
pub fn disk_usage(data_dir: &Path) -> (u64, u64) {
    let log = chorus_store::WalStore::disk_bytes(data_dir);
    let snapshots = DirBlobs::open(&snapshot_dir(data_dir))
        .map(Snapshots::attach)
        .and_then(|snapshots| snapshots.disk_bytes())
        .unwrap_or(0);
    (log, snapshots)
}

/// Handles to the snapshot threads.
pub struct SnapshotThreads {
    dir: PathBuf,
    me: ReplicaId,
    peers: BTreeMap<ReplicaId, mpsc::Sender<PeerFrame>>,
    inbox: mpsc::Sender<Input>,
    jobs: SyncSender<SnapshotJob>,
    requests: SyncSender<(ReplicaId, Transfer)>,
    /// The running fetch: its peer and the queue of that peer's answers.
    fetch: Option<(ReplicaId, SyncSender<Transfer>)>,
}

impl SnapshotThreads {
    /// Starts the writer and the server threads.
    pub fn start(
        dir: PathBuf,
        me: ReplicaId,
        peers: BTreeMap<ReplicaId, mpsc::Sender<PeerFrame>>,
        inbox: mpsc::Sender<Input>,
    ) -> anyhow::Result<Self> {
        let (jobs, job_rx) = sync_channel(1);
        let (requests, request_rx) = sync_channel(SERVE_QUEUE_MAX);
        let newest = Snapshots::attach(DirBlobs::open(&dir)?).newest()?.map_or(0, |info| info.slot);
        let (writer_dir, writer_inbox) = (dir.clone(), inbox.clone());
        spawn("chorus-snapshot", move || write_loop(&writer_dir, newest, job_rx, &writer_inbox))?;
        let (server_dir, server_peers) = (dir.clone(), peers.clone());
        spawn("chorus-snapserve", move || serve_loop(&server_dir, me, request_rx, &server_peers))?;
        Ok(SnapshotThreads { dir, me, peers, inbox, jobs, requests, fetch: None })
    }

    /// Hands a snapshot to the writer (the machine runs one at a time).
    pub fn write(&self, job: SnapshotJob) {
        if self.jobs.try_send(job).is_err() {
            tracing::error!("the snapshot writer is busy or gone; skipping a snapshot");
        }
    }

    /// Routes a transfer message from peer `from`.
    pub fn received(&mut self, from: ReplicaId, message: Transfer) {
        if matches!(message, Transfer::Request { .. }) {
            let _ = self.requests.try_send((from, message)); // full: the peer asks again
            return;
        }
        if let Some((peer, answers)) = &self.fetch {
            if *peer == from {
                let _ = answers.try_send(message);
            }
        }
    }

    /// Starts fetching a snapshot as `wanted` says.
    pub fn fetch(&mut self, wanted: SnapshotWanted) {
        let (answers, answer_rx) = sync_channel(FETCH_QUEUE_MAX);
        self.fetch = Some((wanted.from, answers));
        let Some(peer) = self.peers.get(&wanted.from).cloned() else {
            let error = format!("replica {} is not a peer", wanted.from);
            let _ = self.inbox.try_send(Input::SnapshotFetched(Err(error)));
            return;
        };
        let (dir, me, inbox) = (self.dir.clone(), self.me, self.inbox.clone());
        let started = spawn("chorus-fetch", move || {
            let result = fetch_loop(&dir, me, wanted, &answer_rx, &peer, &inbox).map_err(|e| format!("{e:#}"));
            let _ = inbox.blocking_send(Input::SnapshotFetched(result.map(|(slot, state)| (slot, Box::new(state)))));
        });
        if let Err(error) = started {
            let _ = self.inbox.try_send(Input::SnapshotFetched(Err(error.to_string())));
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(body).map(drop).context("spawning a snapshot thread")
}

/// Writes each job's snapshot, keeps the newest two, reports back.
fn write_loop(dir: &Path, mut newest: Slot, jobs: Receiver<SnapshotJob>, inbox: &mpsc::Sender<Input>) {
    for job in jobs {
        let result = write_one(dir, &job, newest).map_err(|error| format!("{error:#}"));
        if result.is_ok() {
            newest = job.slot;
        }
        if inbox.blocking_send(Input::SnapshotWritten(result.map(|()| job.slot))).is_err() {
            return;
        }
    }
}

fn write_one(dir: &Path, job: &SnapshotJob, previous: Slot) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut snapshots = Snapshots::attach(DirBlobs::open(dir)?);
    let mut writer = snapshots.writer(job.slot)?;
    job.state.write_snapshot(&mut writer).context("encoding the state")?;
    let info = writer.finish()?;
    snapshots.prune(previous)?;
    tracing::info!(
        slot = info.slot,
        bytes = info.bytes,
        millis = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}

/// Answers peers' chunk requests.
fn serve_loop(
    dir: &Path,
    me: ReplicaId,
    requests: Receiver<(ReplicaId, Transfer)>,
    peers: &BTreeMap<ReplicaId, mpsc::Sender<PeerFrame>>,
) {
    let snapshots = match DirBlobs::open(dir) {
        Ok(blobs) => Snapshots::attach(blobs),
        Err(error) => return tracing::error!(%error, "cannot serve snapshots"),
    };
    for (from, request) in requests {
        if let (Some(answer), Some(peer)) =
            (serve(&request, &snapshots, chorus_limits::SNAPSHOT_CHUNK_BYTES), peers.get(&from))
        {
            let _ = peer.try_send(PeerFrame::Transfer { from: me, to: from, message: answer });
        }
    }
}

/// Runs one fetch to its end; returns the decoded snapshot.
fn fetch_loop(
    dir: &Path,
    me: ReplicaId,
    wanted: SnapshotWanted,
    answers: &Receiver<Transfer>,
    peer: &mpsc::Sender<PeerFrame>,
    inbox: &mpsc::Sender<Input>,
) -> anyhow::Result<(Slot, ChatState)> {
    let mut snapshots = Snapshots::attach(DirBlobs::open(dir)?);
    let (mut fetch, first) = Fetch::start(wanted, &mut snapshots)?;
    let send = |message| peer.try_send(PeerFrame::Transfer { from: me, to: wanted.from, message });
    let _ = send(first);
    tracing::info!(from = wanted.from, covering = wanted.covering, "fetching a snapshot");
    let tick = Duration::from_millis(chorus_limits::TICK_MILLIS);
    loop {
        let step = match answers.recv_timeout(tick) {
            Ok(message) => fetch.on_message(message, &mut snapshots),
            Err(RecvTimeoutError::Timeout) => fetch.on_tick(),
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the replica is stopping"),
        };
        match step {
            FetchStep::Send(message) => {
                let _ = send(message); // full: resent after a silence
                let _ = inbox.try_send(Input::FetchProgress(fetch.progress()));
            }
            FetchStep::Wait => {}
            FetchStep::Done(info) => return Ok((info.slot, read_state(&snapshots, info.slot)?)),
            FetchStep::Failed(error) => anyhow::bail!(error),
        }
    }
}
