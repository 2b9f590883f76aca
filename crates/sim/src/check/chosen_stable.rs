//! A chosen value never changes: a replica that restarts and replays its
//! log applies, at every slot, what it applied before the crash.

use super::Violation;
use chorus_chat::Proposal;
use chorus_paxos::Slot;
use chorus_server::machine::AppliedSlot;
use std::collections::BTreeMap;

/// Per replica, the commands it applied at each slot and in which incarnation.
#[derive(Debug, Default)]
pub struct ChosenStable {
    replicas: BTreeMap<usize, BTreeMap<Slot, (u64, Vec<Proposal>)>>,
}

impl ChosenStable {
    pub fn applied(&mut self, replica: usize, incarnation: u64, slot: &AppliedSlot) -> Result<(), Violation> {
        let commands: Vec<Proposal> = slot.commands.iter().map(|(p, _)| p.clone()).collect();
        let history = self.replicas.entry(replica).or_default();
        match history.get(&slot.slot) {
            None => {
                history.insert(slot.slot, (incarnation, commands));
                Ok(())
            }
            Some((_, held)) if *held == commands => Ok(()),
            Some((before, _)) => Err(Violation::new(
                "chosen-stable",
                format!(
                    "replica {replica} applied a different value at slot {} in incarnation {incarnation} than in incarnation {before}",
                    slot.slot
                ),
            )),
        }
    }
}
