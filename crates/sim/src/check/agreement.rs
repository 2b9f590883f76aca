//! At most one value is chosen per slot: every replica applies the same
//! commands at each slot.

use super::Violation;
use chorus_chat::Proposal;
use chorus_paxos::Slot;
use chorus_server::machine::AppliedSlot;
use std::collections::BTreeMap;

/// The commands of each slot, as first applied anywhere.
#[derive(Debug, Default)]
pub struct Agreement {
    slots: BTreeMap<Slot, (usize, Vec<Proposal>)>,
}

impl Agreement {
    /// Returns true when this is the first application of the slot anywhere.
    pub fn applied(&mut self, replica: usize, slot: &AppliedSlot) -> Result<bool, Violation> {
        let commands: Vec<Proposal> = slot.commands.iter().map(|(p, _)| p.clone()).collect();
        match self.slots.get(&slot.slot) {
            None => {
                self.slots.insert(slot.slot, (replica, commands));
                Ok(true)
            }
            Some((_, held)) if *held == commands => Ok(false),
            Some((first, held)) => Err(Violation::new(
                "agreement",
                format!(
                    "slot {}: replica {first} applied {} command(s) {:?}, replica {replica} applied {} command(s) {:?}",
                    slot.slot,
                    held.len(),
                    held.first(),
                    commands.len(),
                    commands.first()
                ),
            )),
        }
    }
}
