//! The write pipeline: state changes accumulate in one pending batch; work
//! that promises something about that state waits until it is durable.

use crate::types::{Ballot, Entry, Envelope, Incarnations, Slot, WriteBatch, WriteId};
use std::collections::VecDeque;

/// Something the core may only do once a write is durable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Deferred {
    /// A promise or accepted reply that reports durable state.
    Send(Envelope),
    /// The leader's own vote for slots it wrote under `ballot`.
    SelfAccept { ballot: Ballot, slots: Vec<Slot> },
    /// The candidate's own promise for `ballot`.
    SelfPromise { ballot: Ballot },
}

/// Tracks written, in-flight and durable batches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pipeline {
    /// The batch being assembled; becomes `Ready::write`.
    pending: WriteBatch,
    /// Id the pending batch will get.
    next_id: WriteId,
    /// Every batch with an id at or below this is durable.
    durable_through: WriteId,
    /// Work waiting on a batch, in id order.
    deferred: VecDeque<(WriteId, Deferred)>,
}

impl Pipeline {
    pub(crate) fn new() -> Self {
        Pipeline { pending: WriteBatch::default(), next_id: 1, durable_through: 0, deferred: VecDeque::new() }
    }

    pub(crate) fn set_promised(&mut self, ballot: Ballot) {
        self.pending.promised = Some(ballot);
    }

    pub(crate) fn put_entry(&mut self, slot: Slot, entry: Entry) {
        self.pending.entries.push((slot, entry));
    }

    pub(crate) fn set_chosen_through(&mut self, slot: Slot) {
        self.pending.chosen_through = Some(slot);
    }

    pub(crate) fn set_compact_through(&mut self, slot: Slot) {
        self.pending.compact_through = Some(slot);
    }

    pub(crate) fn set_incarnations(&mut self, incarnations: Incarnations) {
        self.pending.incarnations = Some(incarnations);
    }

    pub(crate) fn set_recovered(&mut self) {
        self.pending.recovered = true;
    }

    /// True when the pending batch carries only a new `chosen_through`.
    /// Such a batch is not handed out on its own: it rides with the next
    /// write. Nothing waits on it (what is chosen is a fact of the cluster,
    /// learnable again after a restart), and an fsync for it alone would
    /// double the commits of a lightly loaded replica.
    fn only_chosen(&self) -> bool {
        self.pending.is_only_chosen_mark()
    }

    /// The id of the newest write the current state depends on.
    fn barrier(&self) -> WriteId {
        if self.pending.is_empty() || self.only_chosen() {
            self.next_id - 1
        } else {
            self.next_id
        }
    }

    /// Queues `work` behind every write issued so far; returns it back when
    /// it may run at once.
    pub(crate) fn defer(&mut self, work: Deferred) -> Option<Deferred> {
        let barrier = self.barrier();
        if barrier <= self.durable_through {
            return Some(work);
        }
        self.deferred.push_back((barrier, work));
        None
    }

    /// Hands out the pending batch, if any.
    pub(crate) fn take_write(&mut self) -> Option<WriteBatch> {
        if self.pending.is_empty() || self.only_chosen() {
            return None;
        }
        let mut batch = std::mem::take(&mut self.pending);
        batch.id = self.next_id;
        self.next_id += 1;
        Some(batch)
    }

    /// Records that every batch through `id` is durable; returns the work
    /// that was waiting for it.
    pub(crate) fn persisted(&mut self, id: WriteId) -> Vec<Deferred> {
        assert!(id < self.next_id, "persisted({id}) for a batch never handed out");
        if id <= self.durable_through {
            return Vec::new();
        }
        self.durable_through = id;
        let mut ready = Vec::new();
        while let Some((barrier, _)) = self.deferred.front() {
            if *barrier > id {
                break;
            }
            let (_, work) = self.deferred.pop_front().expect("front exists");
            ready.push(work);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_work_waits_for_its_batch() {
        let mut pipeline = Pipeline::new();
        let work = Deferred::SelfPromise { ballot: Ballot::new(1, 0) };
        assert_eq!(pipeline.defer(work.clone()), Some(work.clone()));
        pipeline.set_promised(Ballot::new(1, 0));
        assert_eq!(pipeline.defer(work.clone()), None);
        let batch = pipeline.take_write().expect("a batch");
        assert_eq!(batch.id, 1);
        assert_eq!(pipeline.defer(work.clone()), None, "batch 1 is not durable yet");
        assert_eq!(pipeline.persisted(1), vec![work.clone(), work.clone()]);
        assert_eq!(pipeline.defer(work.clone()), Some(work));
        assert_eq!(pipeline.persisted(1), vec![]);
    }

    #[test]
    fn a_new_chosen_mark_alone_waits_for_the_next_write() {
        let mut pipeline = Pipeline::new();
        pipeline.set_chosen_through(5);
        assert_eq!(pipeline.take_write(), None, "no fsync for the chosen mark alone");
        let work = Deferred::SelfPromise { ballot: Ballot::new(1, 0) };
        assert_eq!(pipeline.defer(work.clone()), Some(work), "nothing waits on the chosen mark");
        pipeline.set_chosen_through(7);
        pipeline.set_promised(Ballot::new(2, 0));
        let batch = pipeline.take_write().expect("a batch");
        assert_eq!((batch.id, batch.chosen_through, batch.promised), (1, Some(7), Some(Ballot::new(2, 0))));
        assert_eq!(pipeline.take_write(), None);
    }
}
