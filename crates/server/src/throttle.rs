//! [`SignInThrottle`]: failed sign-ins slow down further attempts, per
//! account and per address.
//!
//! The first `SIGN_IN_FAILURES_FREE` failures of a key (an account name or
//! a client address) cost nothing; after that each attempt must wait a
//! backoff that starts at `SIGN_IN_BACKOFF_MIN_MILLIS` and doubles with
//! each further failure up to `SIGN_IN_BACKOFF_MAX_MILLIS`. A success
//! clears the account's record (not the address's: one right password does
//! not excuse a thousand wrong ones for other accounts). Records are
//! forgotten `SIGN_IN_FAILURE_MEMORY_MILLIS` after their last failure, and
//! at most `SIGN_IN_RECORDS_MAX` are kept.
//!
//! The throttle lives in one replica's memory, not in the replicated
//! state: only the leader checks passwords, and a new leader starts with
//! an empty throttle (documented in docs/SECURITY.md).

use chorus_chat::Millis;
use chorus_limits::{
    SIGN_IN_BACKOFF_MAX_MILLIS, SIGN_IN_BACKOFF_MIN_MILLIS, SIGN_IN_FAILURES_FREE, SIGN_IN_FAILURE_MEMORY_MILLIS,
    SIGN_IN_RECORDS_MAX,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Account(String),
    Address(IpAddr),
}

/// Failures of one key.
#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    last_failure: Millis,
}

impl Record {
    /// When the next attempt may be made.
    fn allowed_at(&self) -> Millis {
        let Some(excess) = self.failures.checked_sub(SIGN_IN_FAILURES_FREE + 1) else {
            return 0;
        };
        let backoff = SIGN_IN_BACKOFF_MIN_MILLIS.saturating_mul(1u64 << excess.min(32));
        self.last_failure.saturating_add(backoff.min(SIGN_IN_BACKOFF_MAX_MILLIS))
    }

    fn forgotten(&self, now: Millis) -> bool {
        now.saturating_sub(self.last_failure) > SIGN_IN_FAILURE_MEMORY_MILLIS
    }
}

/// Failure records of one replica.
#[derive(Debug)]
pub struct SignInThrottle {
    records: BTreeMap<Key, Record>,
    /// Bound on `records` (a test can make it small).
    records_max: usize,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl SignInThrottle {
    pub fn new() -> Self {
        Self::with_capacity(SIGN_IN_RECORDS_MAX)
    }

    fn with_capacity(records_max: usize) -> Self {
        SignInThrottle { records: BTreeMap::new(), records_max }
    }

    /// `Err(milliseconds to wait)` if `name` or `address` must wait at `now`.
    pub fn check(&self, name: &str, address: IpAddr, now: Millis) -> Result<(), u64> {
        let keys = [Key::Account(name.to_string()), Key::Address(address)];
        let allowed_at = keys
            .iter()
            .filter_map(|key| self.records.get(key))
            .filter(|record| !record.forgotten(now))
            .map(Record::allowed_at)
            .max()
            .unwrap_or(0);
        if now < allowed_at {
            return Err(allowed_at - now);
        }
        Ok(())
    }

    /// Counts a failed sign-in as `name` from `address`.
    pub fn failed(&mut self, name: &str, address: IpAddr, now: Millis) {
        for key in [Key::Account(name.to_string()), Key::Address(address)] {
            if !self.records.contains_key(&key) {
                self.make_room(now);
            }
            let record = self.records.entry(key).or_insert(Record { failures: 0, last_failure: now });
            if record.forgotten(now) {
                record.failures = 0;
            }
            record.failures = record.failures.saturating_add(1);
            record.last_failure = now;
        }
        assert!(self.records.len() <= self.records_max);
    }

    /// A successful sign-in as `name` clears the account's record.
    pub fn succeeded(&mut self, name: &str) {
        self.records.remove(&Key::Account(name.to_string()));
    }

    /// Drops forgotten records, then the oldest ones, until one more fits.
    fn make_room(&mut self, now: Millis) {
        if self.records.len() < self.records_max {
            return;
        }
        self.records.retain(|_, record| !record.forgotten(now));
        while self.records.len() >= self.records_max {
            let oldest = self.records.iter().min_by_key(|(_, record)| record.last_failure).map(|(key, _)| key.clone());
            match oldest {
                Some(key) => self.records.remove(&key),
                None => break,
            };
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn fail(throttle: &mut SignInThrottle, name: &str, address: IpAddr, times: u32, now: Millis) {
        for _ in 0..times {
            throttle.failed(name, address, now);
        }
    }

    #[test]
    fn the_free_failures_cost_nothing_then_the_wait_doubles_to_its_cap() {
        let mut throttle = SignInThrottle::new();
        fail(&mut throttle, "alice", HOME, SIGN_IN_FAILURES_FREE, 1_000);
        assert_eq!(throttle.check("alice", HOME, 1_000), Ok(()));
        throttle.failed("alice", HOME, 1_000);
        assert_eq!(throttle.check("alice", HOME, 1_000), Err(SIGN_IN_BACKOFF_MIN_MILLIS));
        assert_eq!(throttle.check("alice", HOME, 1_000 + SIGN_IN_BACKOFF_MIN_MILLIS), Ok(()));
        throttle.failed("alice", HOME, 2_000);
        assert_eq!(throttle.check("alice", HOME, 2_000), Err(2 * SIGN_IN_BACKOFF_MIN_MILLIS));
        fail(&mut throttle, "alice", HOME, 60, 3_000);
        assert_eq!(throttle.check("alice", HOME, 3_000), Err(SIGN_IN_BACKOFF_MAX_MILLIS));
    }

    #[test]
    fn an_account_is_throttled_from_every_address_and_an_address_for_every_account() {
        let mut throttle = SignInThrottle::new();
        fail(&mut throttle, "alice", HOME, SIGN_IN_FAILURES_FREE + 1, 1_000);
        assert!(throttle.check("alice", AWAY, 1_000).is_err(), "the account waits wherever it is tried");
        assert!(throttle.check("bob", HOME, 1_000).is_err(), "the address waits whatever it tries");
        assert_eq!(throttle.check("bob", AWAY, 1_000), Ok(()));
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut throttle = SignInThrottle::new();
        fail(&mut throttle, "alice", HOME, SIGN_IN_FAILURES_FREE + 1, 1_000);
        throttle.succeeded("alice");
        assert_eq!(throttle.check("alice", AWAY, 1_000), Ok(()));
        assert!(throttle.check("alice", HOME, 1_000).is_err());
    }

    #[test]
    fn records_are_forgotten_after_a_while_and_bounded() {
        let mut throttle = SignInThrottle::new();
        fail(&mut throttle, "alice", HOME, SIGN_IN_FAILURES_FREE + 3, 1_000);
        let later = 1_000 + SIGN_IN_FAILURE_MEMORY_MILLIS + 1;
        assert_eq!(throttle.check("alice", HOME, later), Ok(()));
        throttle.failed("alice", HOME, later);
        assert_eq!(throttle.check("alice", HOME, later), Ok(()), "the count started again");

        let mut small = SignInThrottle::with_capacity(4);
        for i in 0..10u64 {
            small.failed(&format!("user{i}"), HOME, 1_000 + i);
            assert!(small.len() <= 4);
        }
        assert!(small.check("user9", AWAY, 1_010).is_ok(), "one failure is free");
    }
}
