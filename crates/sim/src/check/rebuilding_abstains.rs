//! A replica rebuilding after a disk loss abstains: while its role is
//! `Recovering` it sends no Promise, no Accepted, no HeartbeatAck and no
//! granted PreVoteReply. Each of those vouches for state (promises,
//! accepts, a leader's lease or a log fit to lead) that the lost disk held
//! and the empty one does not.

use super::Violation;
use chorus_paxos::{Envelope, Message};

/// Checks one message replica `replica` sent; `rebuilding`: it was
/// `Recovering` when it produced the message.
pub fn sent(replica: usize, rebuilding: bool, envelope: &Envelope) -> Result<(), Violation> {
    if !rebuilding || !is_vote(&envelope.message) {
        return Ok(());
    }
    Err(Violation::new(
        "rebuilding-abstains",
        format!("replica {replica} sent {:?} to {} while rebuilding", envelope.message, envelope.to),
    ))
}

/// The messages a rebuilding replica must not send.
fn is_vote(message: &Message) -> bool {
    matches!(
        message,
        Message::Promise { .. }
            | Message::Accepted { .. }
            | Message::HeartbeatAck { .. }
            | Message::PreVoteReply { granted: true, .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_paxos::{Ballot, Incarnations};

    fn envelope(message: Message) -> Envelope {
        Envelope { from: 0, to: 1, message }
    }

    #[test]
    fn only_votes_while_rebuilding_are_refused() {
        let accepted = envelope(Message::Accepted {
            ballot: Ballot::new(2, 1),
            slots: vec![1],
            chosen_through: 0,
            incarnations: Incarnations::default(),
        });
        let recover = envelope(Message::Recover { incarnation: 1, nonce: 7 });
        assert_eq!(sent(0, true, &accepted).unwrap_err().check, "rebuilding-abstains");
        assert_eq!(sent(0, false, &accepted), Ok(()));
        assert_eq!(sent(0, true, &recover), Ok(()));
    }
}
