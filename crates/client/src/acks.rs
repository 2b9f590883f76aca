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
        self.cursors.insert(name.to_string(), AckCursor { shown: id, acked: 0 });
        assert!(self.cursors.len() <= ACK_ACCOUNTS_MAX);
        true
    }

    /// The next acknowledgement to send: an account and its highest shown id.
    pub fn next(&self) -> Option<(String, MessageId)> {
        self.cursors.iter().find(|(_, c)| c.shown > c.acked).map(|(name, c)| (name.clone(), c.shown))
    }

    /// The highest id shown for `name` and not yet confirmed, if any: what
    /// a post from `name` may carry.
    pub fn unconfirmed(&self, name: &str) -> Option<MessageId> {
        self.cursors.get(name).filter(|c| c.shown > c.acked).map(|c| c.shown)
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
        assert_eq!(tracker.unconfirmed("bob"), None);
        tracker.shown("bob", 4);
        tracker.shown("carol", 2);
        assert_eq!(tracker.unconfirmed("bob"), Some(4));
        tracker.acked("bob", 4);
        assert_eq!(tracker.unconfirmed("bob"), None);
        assert_eq!(tracker.unconfirmed("carol"), Some(2));
    }
}
