//! The storage thread: group commit of write batches, one fsync per commit.

use crate::node::Input;
use chorus_paxos::WriteBatch;
use chorus_store::LogStore;
use tokio::sync::mpsc;

/// Most batches folded into one transaction.
const BATCHES_PER_COMMIT_MAX: usize = 1024;

/// Starts the thread. It takes batches from `writes` in order, commits all
/// that are queued in one transaction, and reports `Input::Persisted` with
/// the last id (or `Input::StorageFailed`, after which it stops).
pub fn spawn<S: LogStore + 'static>(
    mut store: S,
    mut writes: mpsc::Receiver<WriteBatch>,
    inbox: mpsc::Sender<Input>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("chorus-storage".into())
        .spawn(move || {
            let mut batches = Vec::new();
            while let Some(first) = writes.blocking_recv() {
                batches.clear();
                batches.push(first);
                while batches.len() < BATCHES_PER_COMMIT_MAX {
                    match writes.try_recv() {
                        Ok(batch) => batches.push(batch),
                        Err(_) => break,
                    }
                }
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
