//! [`AckTracker`]: which shown messages still need their read position
//! replicated. Pure bookkeeping; the background task in `client` sends the
//! acknowledgements.
//!
//! The rule it protects: the replicated read position never passes a
//! message the application did not report as shown.

use std::collections::BTreeMap;

use chorus_chat::MessageId;

use crate::limits::ACK_ACCOUNTS_MAX;

/// Read-position progress for one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AckCursor {
    /// Highest id the application reported as shown.
    shown: MessageId,
    /// Highest id the cluster confirmed as acknowledged.
    acked: MessageId,
    /// The position a post in flight carries (0: none); a lone
    /// acknowledgement would only repeat it.
    carried: MessageId,
}

/// Accounts with shown messages whose acknowledgement is not yet confirmed.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// At most `ACK_ACCOUNTS_MAX` entries; an entry leaves once `acked >= shown`.
    cursors: BTreeMap<String, AckCursor>,
}

impl AckTracker {
    /// Records that `id` was shown for `name`; true if there is new work.
    pub fn shown(&mut self, name: &str, id: MessageId) -> bool {
        if let Some(cursor) = self.cursors.get_mut(name) {
            if id <= cursor.shown {
                return false;
            }
            cursor.shown = id;
            return true;
        }
        if self.cursors.len() >= ACK_ACCOUNTS_MAX {
            // Not acknowledging only means the message may be delivered again.
            tracing::warn!(account = name, "too many accounts awaiting acknowledgement");
            return false;
        }
        self.cursors.insert(name.to_string(), AckCursor { shown: id, acked: 0, carried: 0 });
        assert!(self.cursors.len() <= ACK_ACCOUNTS_MAX);
        true
    }

    /// The next acknowledgement to send alone: an account and its highest
    /// shown id, unless a post in flight already carries that id.
    pub fn next(&self) -> Option<(String, MessageId)> {
        let wanted = |c: &AckCursor| c.shown > c.acked.max(c.carried);
        self.cursors.iter().find(|(_, c)| wanted(c)).map(|(name, c)| (name.clone(), c.shown))
    }

    /// A post from `name` is about to go: the highest id shown for `name`
    /// and not yet confirmed, if any, which the post then carries (and
    /// [`AckTracker::next`] leaves to it until [`AckTracker::post_ended`]).
    pub fn carry(&mut self, name: &str) -> Option<MessageId> {
        let cursor = self.cursors.get_mut(name).filter(|c| c.shown > c.acked)?;
        cursor.carried = cursor.shown;
        Some(cursor.shown)
    }

    /// The post that carried `through` for `name` ended: `applied` if its
    /// reply came from the state machine (the position is confirmed),
    /// otherwise a lone acknowledgement must cover it.
    pub fn post_ended(&mut self, name: &str, through: MessageId, applied: bool) {
        if applied {
            return self.acked(name, through);
        }
        if let Some(cursor) = self.cursors.get_mut(name) {
            cursor.carried = 0;
        }
    }

    /// The cluster confirmed the read position of `name` at `through`.
    pub fn acked(&mut self, name: &str, through: MessageId) {
        if let Some(cursor) = self.cursors.get_mut(name) {
            assert!(through <= cursor.shown, "only shown ids are acknowledged");
            cursor.acked = cursor.acked.max(through);
            if cursor.acked >= cursor.shown {
                self.cursors.remove(name);
            }
        }
    }

    /// The account is gone: nothing left to acknowledge for it.
    pub fn forget(&mut self, name: &str) {
        self.cursors.remove(name);
    }

    /// True while some shown message is not confirmed acknowledged.
    pub fn pending(&self) -> bool {
        self.cursors.values().any(|c| c.shown > c.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledges_only_the_highest_shown_id() {
        let mut tracker = AckTracker::default();
        assert_eq!(tracker.next(), None);
        assert!(tracker.shown("bob", 3));
        assert!(tracker.shown("bob", 5));
        assert!(!tracker.shown("bob", 4));
        assert_eq!(tracker.next(), Some(("bob".into(), 5)));
        tracker.acked("bob", 5);
        assert!(!tracker.pending());
        assert_eq!(tracker.next(), None);
    }

    #[test]
    fn a_newer_shown_id_during_an_ack_stays_pending() {
        let mut tracker = AckTracker::default();
        tracker.shown("bob", 2);
        let (name, through) = tracker.next().expect("work");
        tracker.shown("bob", 7);
        tracker.acked(&name, through);
        assert!(tracker.pending());
        assert_eq!(tracker.next(), Some(("bob".into(), 7)));
        tracker.forget("bob");
        assert!(!tracker.pending());
    }

    #[test]
    fn a_post_carries_the_unconfirmed_position_of_its_sender_only() {
        let mut tracker = AckTracker::default();
        assert_eq!(tracker.carry("bob"), None);
        tracker.shown("bob", 4);
        assert_eq!(tracker.carry("bob"), Some(4));
        assert_eq!(tracker.next(), None, "the post in flight carries it");
        assert!(tracker.pending(), "but it is not confirmed");
        tracker.shown("bob", 6);
        assert_eq!(tracker.next(), Some(("bob".into(), 6)), "a newer id is not carried");
        tracker.post_ended("bob", 4, true);
        assert_eq!(tracker.carry("bob"), Some(6));
        tracker.post_ended("bob", 6, true);
        assert!(!tracker.pending());
        assert_eq!(tracker.carry("bob"), None);
    }

    #[test]
    fn a_failed_post_leaves_its_position_to_a_lone_acknowledgement() {
        let mut tracker = AckTracker::default();
        tracker.shown("bob", 3);
        tracker.shown("carol", 2);
        assert_eq!(tracker.carry("bob"), Some(3));
        assert_eq!(tracker.next(), Some(("carol".into(), 2)), "another account's is not carried");
        tracker.acked("carol", 2);
        assert_eq!(tracker.next(), None);
        tracker.post_ended("bob", 3, false);
        assert_eq!(tracker.next(), Some(("bob".into(), 3)));
    }
}
