//! Linearizable reads without a log write (read index): the leader notes
//! the last slot it has proposed, confirms with a majority that it still
//! leads, and answers once the state machine has applied that slot.

use crate::ready::{NotLeader, ProposeError, ReadId};
use crate::replica::{PendingRead, Replica};
use chorus_limits as limits;

impl Replica {
    /// Starts a linearizable read; it completes in a later `Ready::reads`.
    pub fn read(&mut self, id: ReadId) -> Result<(), ProposeError> {
        let not_leader = NotLeader { leader: self.leader };
        let Some(leader) = self.leader_state() else {
            return Err(not_leader.into());
        };
        if leader.reads.len() >= limits::READS_PENDING_MAX {
            return Err(ProposeError::Busy);
        }
        let slot = leader.next_slot - 1;
        let round = leader.read_round + 1;
        leader.reads.push_back(PendingRead { id, slot, round });
        leader.read_round_needed = true;
        Ok(())
    }

    /// Sends one heartbeat round for every read that arrived since the last.
    pub(crate) fn start_read_round(&mut self) {
        let Some(leader) = self.leader_state() else {
            return;
        };
        if leader.read_round_needed {
            leader.read_round += 1;
            leader.read_round_needed = false;
            self.send_heartbeat();
        }
        self.finish_reads();
    }

    /// Completes reads whose round a majority acknowledged and whose slot
    /// is chosen (and so applied before the caller serves the read).
    fn finish_reads(&mut self) {
        let quorum = self.config.quorum();
        let chosen_through = self.chosen_through;
        let Some(leader) = self.leader_state() else {
            return;
        };
        let mut rounds: Vec<u64> = leader.read_acks.values().copied().collect();
        rounds.push(u64::MAX); // the leader agrees with itself
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = rounds.get(quorum - 1).copied().unwrap_or(0);
        let mut done = Vec::new();
        while let Some(read) = leader.reads.front() {
            if read.round > confirmed || read.slot > chosen_through {
                break;
            }
            done.push(leader.reads.pop_front().expect("front exists").id);
        }
        self.reads_done.extend(done.into_iter().map(|id| (id, Ok(()))));
    }
}
