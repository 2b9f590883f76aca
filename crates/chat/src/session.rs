//! Exactly-once client sessions, kept in the replicated state.
//!
//! A [`SessionTable`] maps each registered [`ClientId`] to its last executed
//! sequence number and the reply it produced, so a retried command gets the
//! cached reply instead of running twice. The table is bounded: registering
//! past the limit evicts the least recently used session, found through an
//! ordered index of `(last_used, client)` pairs. `last_used` is the state's
//! count of applied proposals, so eviction is the same on every replica.
//! Both are persistent (`imbl`) collections, so a clone of the table is O(1).

use chorus_limits::CLIENT_SESSIONS_MAX;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use crate::error::ChatError;
use crate::types::{ClientId, Outcome};

/// One client's exactly-once record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Highest sequence number executed for this client (0 right after registering).
    pub(crate) last_seq: u64,
    /// Reply produced by `last_seq`, returned again if the client retries it.
    pub(crate) last_reply: Result<Outcome, ChatError>,
    /// Applied-proposal count when the session was last used; orders eviction.
    pub(crate) last_used: u64,
}

/// Every open session plus the index that finds the least recently used one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionTable {
    /// The sessions, by client.
    #[serde(deserialize_with = "crate::bounded::ord_map::<_, _, _, CLIENT_SESSIONS_MAX>")]
    by_client: OrdMap<ClientId, Session>,
    /// `(last_used, client)` for every session; the first entry is evicted first.
    #[serde(deserialize_with = "crate::bounded::ord_set::<_, _, CLIENT_SESSIONS_MAX>")]
    by_last_used: OrdSet<(u64, ClientId)>,
}

impl SessionTable {
    /// The session of `client`, if it is open.
    pub(crate) fn get(&self, client: ClientId) -> Option<&Session> {
        self.by_client.get(&client)
    }

    /// Number of open sessions.
    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Opens a session for `client` (or just marks an existing one used),
    /// evicting least recently used sessions so at most `sessions_max` remain.
    pub(crate) fn register(&mut self, client: ClientId, now: u64, sessions_max: usize) {
        assert!(sessions_max >= 1, "the session limit must admit one session");
        if self.by_client.contains_key(&client) {
            self.touch(client, now);
            return;
        }
        while self.by_client.len() >= sessions_max {
            self.evict_least_recently_used();
        }
        let session = Session { last_seq: 0, last_reply: Ok(Outcome::Registered), last_used: now };
        self.by_client.insert(client, session);
        self.by_last_used.insert((now, client));
        assert!(self.by_client.len() <= sessions_max);
        assert_eq!(self.by_client.len(), self.by_last_used.len());
    }

    /// Marks the open session of `client` as used at `now`.
    pub(crate) fn touch(&mut self, client: ClientId, now: u64) {
        let session = self.by_client.get_mut(&client).expect("touch is only called for an open session");
        assert!(now >= session.last_used, "the applied count never goes back");
        let removed = self.by_last_used.remove(&(session.last_used, client));
        assert!(removed.is_some(), "every session is in the eviction index");
        session.last_used = now;
        self.by_last_used.insert((now, client));
    }

    /// Records that `client` executed `seq` with `reply`, at `now`.
    pub(crate) fn record(&mut self, client: ClientId, seq: u64, reply: Result<Outcome, ChatError>, now: u64) {
        self.touch(client, now);
        let session = self.by_client.get_mut(&client).expect("record is only called for an open session");
        assert!(seq > session.last_seq, "only a newer sequence number executes");
        session.last_seq = seq;
        session.last_reply = reply;
    }

    /// Checks that the index matches the table and the sessions fit the
    /// limit; used on snapshots read from outside.
    pub(crate) fn check(&self, sessions_max: usize, applied_count: u64) -> Result<(), &'static str> {
        if self.by_client.len() > sessions_max {
            return Err("more sessions than the session limit");
        }
        if self.by_client.len() != self.by_last_used.len() {
            return Err("session index and session table differ in size");
        }
        for (client, session) in &self.by_client {
            if !self.by_last_used.contains(&(session.last_used, *client)) {
                return Err("a session is missing from the eviction index");
            }
            if session.last_used > applied_count {
                return Err("a session was used after the last applied proposal");
            }
        }
        Ok(())
    }

    /// Drops the session used longest ago.
    fn evict_least_recently_used(&mut self) {
        let (_, client) = self.by_last_used.remove_min().expect("eviction only runs on a non-empty table");
        let removed = self.by_client.remove(&client);
        assert!(removed.is_some(), "the eviction index names only open sessions");
    }
}
