//! Passwords of web users: argon2id ([`hash`], with the crate's default cost: 19 MiB, 2
//! passes) in PHC strings, checked by [`verify`]. [`verify_or_dummy`] checks against a fixed
//! dummy hash when the user has none, so a failed login takes the same time whether the user
//! exists or not. Both are CPU-heavy: call them off the async workers (`spawn_blocking`).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::OnceLock;

/// The shortest password accepted.
pub const MIN_CHARS: usize = 8;

/// The longest password accepted (argon2 takes more, but a longer one is a mistake).
pub const MAX_BYTES: usize = 1024;

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Not retryable: choose another password.
    #[error("the password must be at least {MIN_CHARS} characters (got {0})")]
    TooShort(usize),
    /// Not retryable: choose another password.
    #[error("the password must be at most {MAX_BYTES} bytes")]
    TooLong,
    /// Retryable in principle: the random source or the hasher failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks the rules, then hashes with a fresh 16-byte salt from the system's random source.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if password.len() > MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, PasswordError> {
    let bytes = super::secrets::random_bytes().map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt =
        SaltString::encode_b64(&bytes[..16]).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string; a malformed one never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`verify`] against the stored hash, or, when there is none, against a dummy hash of the
/// same cost (and then `false`), so both cases take about as long.
pub fn verify_or_dummy(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(stored) => verify(password, stored),
        None => {
            static DUMMY: OnceLock<String> = OnceLock::new();
            let dummy =
                DUMMY.get_or_init(|| hash_unchecked("crabpot dummy password").unwrap_or_default());
            let _ = verify(password, dummy);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify_only_their_password() {
        let first = hash("correct horse").unwrap();
        let second = hash("correct horse").unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify("correct horse", &first));
        assert!(verify("correct horse", &second));
        assert!(!verify("correct horsE", &first));
        assert!(!verify("", &first));
        assert!(!verify("correct horse", "not a phc string"));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(matches!(hash("1234567"), Err(PasswordError::TooShort(7))));
        // Characters, not bytes: eight of them is enough.
        assert!(hash("ééééééée").is_ok());
        assert!(matches!(
            hash(&"x".repeat(MAX_BYTES + 1)),
            Err(PasswordError::TooLong)
        ));
    }

    #[test]
    fn the_dummy_never_matches() {
        assert!(!verify_or_dummy("crabpot dummy password", None));
        let stored = hash("a good password").unwrap();
        assert!(verify_or_dummy("a good password", Some(&stored)));
    }
}
