//! Password hashing and checking (argon2id), the slow work the core hands
//! off: a [`PasswordJob`] leaves the machine in its effects, runs on a
//! blocking thread (or inline in the simulator), and its
//! [`PasswordOutcome`] comes back to the core.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chorus_limits as limits;

/// Names one job of one machine.
pub type JobId = u64;

/// Work for the runtime.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordJob {
    pub id: JobId,
    pub work: PasswordWork,
}

/// Hash a new password, or check one against a stored hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordWork {
    Hash { password: String },
    Verify { password: String, hash: String },
}

impl std::fmt::Debug for PasswordJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password.
        let kind = match self.work {
            PasswordWork::Hash { .. } => "hash",
            PasswordWork::Verify { .. } => "verify",
        };
        write!(f, "PasswordJob({}, {kind})", self.id)
    }
}

/// What a job found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// The PHC string of the new hash, or why hashing failed.
    Hashed(Result<String, String>),
    /// Whether the password matched.
    Verified(bool),
}

/// How costly new hashes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// argon2id memory, in KiB.
    pub memory_kib: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost { memory_kib: limits::PASSWORD_HASH_MEMORY_KIB_DEFAULT }
    }
}

/// Runs one job; `salt` is used only by a hash.
pub fn run(work: &PasswordWork, cost: HashCost, salt: [u8; 16]) -> PasswordOutcome {
    match work {
        PasswordWork::Hash { password } => PasswordOutcome::Hashed(hash(password, cost, salt)),
        PasswordWork::Verify { password, hash } => PasswordOutcome::Verified(verify(password, hash)),
    }
}

/// The argon2id PHC string of `password` under `salt`.
pub fn hash(password: &str, cost: HashCost, salt: [u8; 16]) -> Result<String, String> {
    let memory_kib = cost.memory_kib.max(limits::PASSWORD_HASH_MEMORY_KIB_MIN);
    let params = Params::new(memory_kib, limits::PASSWORD_HASH_ITERATIONS, 1, None).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = hasher.hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?;
    Ok(hash.to_string())
}

/// True when `password` matches the PHC string `hash` (with the cost
/// recorded in the hash itself).
pub fn verify(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Checks a password's length before any work is spent on it.
pub fn check_length(password: &str) -> Result<(), String> {
    let bytes = password.len();
    if bytes < limits::PASSWORD_BYTES_MIN {
        return Err(format!("a password needs at least {} bytes", limits::PASSWORD_BYTES_MIN));
    }
    if bytes > limits::PASSWORD_BYTES_MAX {
        return Err(format!("a password may hold at most {} bytes", limits::PASSWORD_BYTES_MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost { memory_kib: 64 };

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse", CHEAP, [7; 16]).expect("hashes");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=2,p=1$"), "{hash}");
        assert!(chorus_chat::validate_password_hash(&hash).is_ok());
        assert!(verify("correct horse", &hash));
        assert!(!verify("correct horsE", &hash));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn the_salt_makes_equal_passwords_hash_differently() {
        let one = hash("correct horse", CHEAP, [1; 16]).expect("hashes");
        let two = hash("correct horse", CHEAP, [2; 16]).expect("hashes");
        assert_ne!(one, two);
        assert!(verify("correct horse", &one) && verify("correct horse", &two));
    }

    #[test]
    fn the_default_cost_is_the_owasp_minimum_and_fits_the_stored_limit() {
        let hash = hash("correct horse", HashCost::default(), [3; 16]).expect("hashes");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hash.len() <= limits::PASSWORD_HASH_BYTES_MAX);
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(check_length("short").is_err());
        assert!(check_length("long enough").is_ok());
        assert!(check_length(&"x".repeat(limits::PASSWORD_BYTES_MAX + 1)).is_err());
    }
}
