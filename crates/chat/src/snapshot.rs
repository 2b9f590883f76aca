//! Snapshots and digests of [`ChatState`]. A snapshot is the postcard
//! encoding of the whole state, sessions included; the digest is FNV-1a over
//! those same bytes, so two replicas agree on the digest exactly when they
//! agree on the snapshot (up to hash collisions).

use chorus_limits::{ACCOUNTS_MAX, CLIENT_SESSIONS_MAX, MAILBOX_MESSAGES_MAX};

use crate::error::SnapshotError;
use crate::state::{Account, ChatState};
use crate::validate::validate_name;

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl ChatState {
    /// Deterministic 64-bit digest of the whole state (FNV-1a over the
    /// postcard encoding), for comparing replicas.
    pub fn digest(&self) -> u64 {
        fnv1a(&self.to_snapshot())
    }

    /// The whole state as postcard bytes, to install on a lagging replica.
    pub fn to_snapshot(&self) -> Vec<u8> {
        // Encoding maps, strings and integers into a Vec cannot fail.
        postcard::to_stdvec(self).expect("the chat state always encodes")
    }

    /// Reads a snapshot, refusing bytes that do not decode exactly or that
    /// decode to a state `apply` could never have produced.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (state, rest) = postcard::take_from_bytes::<ChatState>(bytes)
            .map_err(|error| SnapshotError::Malformed { reason: error.to_string() })?;
        if !rest.is_empty() {
            return Err(SnapshotError::TrailingBytes { bytes: rest.len() });
        }
        state.check().map_err(|reason| SnapshotError::Inconsistent { reason })?;
        Ok(state)
    }

    /// Checks the invariants `apply` maintains.
    fn check(&self) -> Result<(), &'static str> {
        if self.accounts.len() > ACCOUNTS_MAX {
            return Err("more accounts than the account limit");
        }
        for (name, account) in &self.accounts {
            if validate_name(name).is_err() {
                return Err("an account name breaks the naming rule");
            }
            check_account(name, account, self.last_message_id)?;
        }
        self.sessions.check(CLIENT_SESSIONS_MAX, self.applied_count)
    }
}

/// Checks one account's mailbox: bounded, addressed to it, ids increasing,
/// above its ack cursor and not past the last assigned id.
fn check_account(name: &str, account: &Account, last_message_id: u64) -> Result<(), &'static str> {
    if account.mailbox.len() > MAILBOX_MESSAGES_MAX {
        return Err("a mailbox holds more messages than the mailbox limit");
    }
    if account.acked_through > last_message_id {
        return Err("an ack cursor is past the last assigned message id");
    }
    let mut previous_id = account.acked_through;
    for message in &account.mailbox {
        if message.to != name {
            return Err("a queued message is addressed to another account");
        }
        if message.id <= previous_id || message.id > last_message_id {
            return Err("queued message ids are out of order or out of range");
        }
        previous_id = message.id;
    }
    Ok(())
}

/// FNV-1a, 64-bit: simple, fast, stable across platforms and releases.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME))
}
