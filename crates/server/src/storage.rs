//! Opening the local state (and setting damaged state aside), and the
//! storage thread: group commit of write batches, one fsync per commit.

use crate::node::Input;
use crate::snapshotting::{self, Uncovered};
use anyhow::Context;
use chorus_chat::ChatState;
use chorus_paxos::{DurableState, Slot, WriteBatch};
use chorus_store::{LogStore, StoreError, WalStore};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a replica starts from: its store, the state loaded from it, and
/// the newest intact snapshot (slot and chat state).
pub type LocalState = (WalStore, DurableState, Slot, ChatState);

/// Opens the store in `data_dir` and the newest intact snapshot in
/// `snapshot_dir`. Damaged local data (a store failing its checksums or not
/// decoding, or a compacted log that no intact snapshot covers) is never
/// served: the log's segment files are renamed `*.corrupt` and the replica
/// starts on an empty, non-founding store, so it rebuilds from its peers
/// exactly as after a disk loss (docs/ARCHITECTURE.md, "Disk loss").
pub fn open_local_state(data_dir: &Path, snapshot_dir: &Path, id: u8) -> anyhow::Result<LocalState> {
    match try_open(data_dir, snapshot_dir, id) {
        Ok(local) => Ok(local),
        Err(error) if is_damage(&error) => {
            let aside = set_store_aside(data_dir)?;
            tracing::error!(
                error = format!("{error:#}"),
                moved_to = %aside.display(),
                "local data is damaged; moved it aside and rebuilding from the peers before voting"
            );
            try_open(data_dir, snapshot_dir, id)
        }
        Err(error) => Err(error),
    }
}

fn try_open(data_dir: &Path, snapshot_dir: &Path, id: u8) -> anyhow::Result<LocalState> {
    let mut store =
        WalStore::open(data_dir, id).with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let durable = store.load().context("loading the store")?;
    let (slot, chat) = snapshotting::load_newest_in_dir(snapshot_dir, durable.compacted_through)?;
    Ok((store, durable, slot, chat))
}

/// Corruption of the store, or snapshots too damaged to cover its log.
fn is_damage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(cause.downcast_ref::<StoreError>(), Some(StoreError::Corrupt(_))) || cause.is::<Uncovered>()
    })
}

/// Renames the store's files aside (replacing any set aside earlier) and
/// makes the renames durable; returns where the first one went.
fn set_store_aside(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let moved =
        WalStore::set_aside(data_dir).with_context(|| format!("moving the log in {} aside", data_dir.display()))?;
    Ok(moved.into_iter().next().unwrap_or_else(|| data_dir.to_path_buf()))
}

/// Most batches folded into one transaction.
const BATCHES_PER_COMMIT_MAX: usize = 1024;

/// How long a busy storage thread waits after the first batch before it
/// commits, so that the batches arriving meanwhile share one fsync.
const LINGER: Duration = Duration::from_micros(400);

/// The thread lingers only when at least this many more batches are
/// expected during [`LINGER`], at the recent arrival rate...
const LINGER_WHEN_EXPECTING: f64 = 1.0;

/// ...and recent commits have found, on average, at least this many
/// batches waiting. A lone client has one request in flight, so each
/// commit finds its one batch (and, now and then, a read position that
/// came with it): however fast it goes, lingering would only delay it.
const LINGER_WHEN_BATCHES_PER_COMMIT: f64 = 1.25;

/// Weight of the newest commit in the averages.
const RATE_WEIGHT: f64 = 0.2;

/// Decides whether to wait for more batches before a commit, from the rate
/// at which batches have been arriving (batches per second) and how many
/// each commit found waiting, both averaged over recent commits.
struct Pacer {
    rate: f64,
    batches_per_commit: f64,
    last_commit: Instant,
}

impl Pacer {
    fn new(now: Instant) -> Self {
        Pacer { rate: 0.0, batches_per_commit: 1.0, last_commit: now }
    }

    /// True when more batches are likely to arrive within [`LINGER`], from
    /// more than one source.
    fn should_linger(&self) -> bool {
        self.rate * LINGER.as_secs_f64() >= LINGER_WHEN_EXPECTING
            && self.batches_per_commit >= LINGER_WHEN_BATCHES_PER_COMMIT
    }

    /// Records a commit of `batches` batches starting at `now`.
    fn committing(&mut self, batches: usize, now: Instant) {
        let elapsed = now.duration_since(self.last_commit).as_secs_f64().max(1e-6);
        self.rate = RATE_WEIGHT * (batches as f64 / elapsed) + (1.0 - RATE_WEIGHT) * self.rate;
        self.batches_per_commit = RATE_WEIGHT * batches as f64 + (1.0 - RATE_WEIGHT) * self.batches_per_commit;
        self.last_commit = now;
    }
}

/// Starts the thread. It takes batches from `writes` in order, commits all
/// that are queued in one transaction (after lingering briefly when
/// batches arrive fast), and reports `Input::Persisted` with the last id
/// (or `Input::StorageFailed`, after which it stops).
pub fn spawn<S: LogStore + 'static>(
    mut store: S,
    mut writes: mpsc::Receiver<WriteBatch>,
    inbox: mpsc::Sender<Input>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("chorus-storage".into())
        .spawn(move || {
            let mut batches = Vec::new();
            let mut pacer = Pacer::new(Instant::now());
            while let Some(first) = writes.blocking_recv() {
                if pacer.should_linger() {
                    std::thread::sleep(LINGER);
                }
                batches.clear();
                batches.push(first);
                while batches.len() < BATCHES_PER_COMMIT_MAX {
                    match writes.try_recv() {
                        Ok(batch) => batches.push(batch),
                        Err(_) => break,
                    }
                }
                pacer.committing(batches.len(), Instant::now());
                let last = batches.last().expect("one batch at least").id;
                let report = match store.persist(&batches) {
                    Ok(()) => Input::Persisted(last),
                    Err(error) => Input::StorageFailed(error.to_string()),
                };
                let failed = matches!(report, Input::StorageFailed(_));
                if inbox.blocking_send(report).is_err() || failed {
                    return;
                }
            }
        })
        .expect("spawning the storage thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_another_format_is_refused_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (data, snapshots) = (dir.path().join("data"), dir.path().join("snapshots"));
        drop(open_local_state(&data, &snapshots, 1).expect("a new store opens"));
        let mut paths = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path());
        let segment = paths.find(|p| p.extension().is_some_and(|e| e == "log")).expect("a segment");
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let header = chorus_store::HEADER_BYTES;
        let crc = crc32fast::hash(&bytes[..header - 4]);
        bytes[header - 4..header].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&segment, &bytes).unwrap();
        let refused = open_local_state(&data, &snapshots, 1).err().expect("refused");
        let wrong = StoreError::WrongFormat { found: 1, reads: chorus_store::WAL_FORMAT_VERSION };
        assert_eq!(refused.chain().find_map(|c| c.downcast_ref::<StoreError>()), Some(&wrong));
        assert_eq!(std::fs::read(&segment).unwrap(), bytes, "left where it was, unchanged");
    }

    /// A pacer after `commits` commits of `batches` each, `gap` apart.
    fn paced(commits: usize, batches: usize, gap: Duration) -> (Pacer, Instant) {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(now);
        for _ in 0..commits {
            now += gap;
            pacer.committing(batches, now);
        }
        (pacer, now)
    }

    #[test]
    fn a_lone_client_never_waits() {
        assert!(!Pacer::new(Instant::now()).should_linger(), "nothing seen yet");
        // One batch per round trip of ~600 µs: under one expected per LINGER.
        let (pacer, _) = paced(50, 1, Duration::from_micros(600));
        assert!(!pacer.should_linger(), "rate {}", pacer.rate);
        // Even at a round trip of 250 µs (1.6 expected per LINGER), with a
        // second batch (a read position) in one commit of every 20.
        let (mut pacer, mut now) = paced(50, 1, Duration::from_micros(250));
        for commit in 0..200 {
            now += Duration::from_micros(250);
            pacer.committing(if commit % 20 == 0 { 2 } else { 1 }, now);
            assert!(!pacer.should_linger(), "commit {commit}: {} per commit", pacer.batches_per_commit);
        }
        assert!(pacer.rate * LINGER.as_secs_f64() > 1.5, "rate {}", pacer.rate);
    }

    #[test]
    fn two_clients_at_a_lone_clients_pace_make_it_linger() {
        let (pacer, _) = paced(50, 2, Duration::from_micros(500));
        assert!(pacer.should_linger(), "rate {}, {} per commit", pacer.rate, pacer.batches_per_commit);
    }

    #[test]
    fn batches_arriving_fast_make_it_linger_and_a_lull_stops_it() {
        // Eight batches per 500 µs commit: about 6 expected within LINGER.
        let (mut pacer, mut now) = paced(20, 8, Duration::from_micros(500));
        assert!(pacer.should_linger(), "rate {}", pacer.rate);
        // Then single batches 10 ms apart: the average decays below one.
        for _ in 0..20 {
            now += Duration::from_millis(10);
            pacer.committing(1, now);
        }
        assert!(!pacer.should_linger(), "rate {}", pacer.rate);
    }
}
