//! Session tokens: proof, checkable by any replica, that a client signed
//! in as an account.
//!
//! A [`SessionToken`] names the account, the account's creation number and
//! an expiry time, and carries an HMAC-SHA256 over those, keyed with the
//! account's stored password hash. Every replica holds that hash in its
//! replicated state, so any replica can check a token after a failover
//! without asking for the password again; no client ever sees the hash,
//! so no client can make one. A token stops working when it expires, when
//! the account is deleted (even if the name is created again: the creation
//! number differs) and, were passwords ever changed, with the password.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::state::ChatState;
use crate::types::Millis;

/// A signed-in session, as handed to the client.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionToken {
    /// The account signed in.
    pub name: String,
    /// The account's creation number when the token was issued.
    pub created: u64,
    /// Milliseconds since the Unix epoch after which the token is refused.
    pub expires_at_millis: Millis,
    /// HMAC-SHA256 of the fields above under the account's password hash.
    pub mac: [u8; 32],
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The MAC is a credential: keep it out of logs.
        f.debug_struct("SessionToken")
            .field("name", &self.name)
            .field("created", &self.created)
            .field("expires_at_millis", &self.expires_at_millis)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its expiry time.
    #[error("the session has expired; sign in again")]
    Expired,
    /// The account is gone, was created again, or the MAC does not match.
    #[error("the session is not valid; sign in again")]
    Invalid,
}

/// The MAC of a token's fields under `key`.
fn mac_of(key: &str, name: &str, created: u64, expires_at_millis: Millis) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"chorus session token v1\0");
    mac.update(&(name.len() as u64).to_le_bytes());
    mac.update(name.as_bytes());
    mac.update(&created.to_le_bytes());
    mac.update(&expires_at_millis.to_le_bytes());
    mac
}

impl ChatState {
    /// A token for `name` valid until `expires_at_millis`, if the account exists.
    pub fn issue_token(&self, name: &str, expires_at_millis: Millis) -> Option<SessionToken> {
        let (hash, created) = self.credentials(name)?;
        let mac = mac_of(hash, name, created, expires_at_millis).finalize().into_bytes().into();
        Some(SessionToken { name: name.to_string(), created, expires_at_millis, mac })
    }

    /// Checks `token` against this state at time `now`.
    pub fn check_token(&self, token: &SessionToken, now: Millis) -> Result<(), TokenError> {
        let (hash, created) = self.credentials(&token.name).ok_or(TokenError::Invalid)?;
        if created != token.created {
            return Err(TokenError::Invalid);
        }
        // Constant-time comparison of the MAC.
        mac_of(hash, &token.name, created, token.expires_at_millis)
            .verify_slice(&token.mac)
            .map_err(|_| TokenError::Invalid)?;
        if now >= token.expires_at_millis {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}
