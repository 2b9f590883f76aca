//! Replicas that applied slot k have identical chat states at k.

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
}
