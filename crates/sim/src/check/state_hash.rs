//! Replicas that applied slot k have identical chat states at k, and a
//! replica that installs a snapshot of slot k (fetched from a peer, or
//! loaded from its own disk at a restart) gets that same state.

use super::Violation;
use chorus_paxos::Slot;
use chorus_server::machine::AppliedSlot;
use std::collections::BTreeMap;

/// The digest after each slot, as first seen.
#[derive(Debug, Default)]
pub struct StateHash {
    digests: BTreeMap<Slot, (usize, u64)>,
}

impl StateHash {
    pub fn applied(&mut self, replica: usize, slot: &AppliedSlot) -> Result<(), Violation> {
        match self.digests.get(&slot.slot) {
            None => {
                self.digests.insert(slot.slot, (replica, slot.digest));
                Ok(())
            }
            Some((_, digest)) if *digest == slot.digest => Ok(()),
            Some((first, digest)) => Err(Violation::new(
                "state-hash",
                format!(
                    "after slot {}: replica {first} has state {digest:#018x}, replica {replica} has {:#018x}",
                    slot.slot, slot.digest
                ),
            )),
        }
    }

    /// Replica `replica` installed a snapshot of `slot` whose state has
    /// `digest`. Every snapshot is taken from a state some replica reached
    /// by applying `slot`, so that digest is already known.
    pub fn installed(&self, replica: usize, slot: Slot, digest: u64) -> Result<(), Violation> {
        match self.digests.get(&slot) {
            Some((_, held)) if *held == digest => Ok(()),
            Some((first, held)) => Err(Violation::new(
                "state-hash",
                format!(
                    "replica {replica} installed a snapshot of slot {slot} with state {digest:#018x}; replica {first} applied it to {held:#018x}"
                ),
            )),
            None => Err(Violation::new(
                "state-hash",
                format!("replica {replica} installed a snapshot of slot {slot}, which no replica applied"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(slot: Slot, digest: u64) -> AppliedSlot {
        AppliedSlot { slot, commands: Vec::new(), digest }
    }

    #[test]
    fn an_install_must_match_the_applied_state() {
        let mut hash = StateHash::default();
        hash.applied(0, &slot(7, 0xaa)).unwrap();
        assert_eq!(hash.installed(1, 7, 0xaa), Ok(()));
        assert_eq!(hash.installed(1, 7, 0xbb).unwrap_err().check, "state-hash");
        assert_eq!(hash.installed(1, 8, 0xaa).unwrap_err().check, "state-hash", "nobody applied slot 8");
    }
}
