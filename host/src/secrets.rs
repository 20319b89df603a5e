//! Random secrets and their hashes, for web authentication and out-of-process adapters: API
//! tokens (`cpt_…`), adapter tokens (`cpa_…`), session cookies, CSRF tokens and login links (`cpl_…`), each 32 bytes from the system's random source, hex.
//! [`hash`] is what the central DB keeps (`sha256:<hex>`); [`same`] compares in constant
//! time.
//!
//! A plain SHA-256 is enough here (no salt, no slow hash): these are 256 random bits, not a
//! password a person chose, so there is nothing to guess from their hash.

use ring::rand::{SecureRandom, SystemRandom};
use std::fmt::Write;

/// What every API token starts with, so one found in a log or a config is recognisable.
pub const TOKEN_PREFIX: &str = "cpt_";

/// What every login link's token starts with.
pub const LINK_PREFIX: &str = "cpl_";

/// The system's random source failed. Retryable in principle; it does not happen on a
/// working Linux.
#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed")]
pub struct RandomError;

/// 32 fresh random bytes.
pub fn random_bytes() -> Result<[u8; 32], RandomError> {
    let mut bytes = [0_u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(bytes)
}

/// A fresh secret: `prefix` then 64 hex digits.
pub fn generate(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}{}", hex(&random_bytes()?)))
}

/// What the central DB keeps of a secret.
pub fn hash(secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    format!("sha256:{}", hex(digest.as_ref()))
}

/// Whether two strings are equal, taking the same time whatever the first differing byte is
/// (only the lengths may show).
pub fn same(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    if presented.len() != expected.len() {
        return false;
    }
    let difference = presented
        .iter()
        .zip(expected)
        .fold(0_u8, |difference, (a, b)| difference | (a ^ b));
    std::hint::black_box(difference) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_hashed_without_their_text() {
        let first = generate(TOKEN_PREFIX).unwrap();
        let second = generate(TOKEN_PREFIX).unwrap();
        assert_ne!(first, second);
        assert!(
            first.starts_with("cpt_") && first.len() == 4 + 64,
            "{first}"
        );
        let stored = hash(&first);
        assert!(stored.starts_with("sha256:") && stored.len() == 7 + 64);
        assert!(!stored.contains(&first[4..]));
        assert_eq!(hash(&first), stored);
        assert_ne!(hash(&second), stored);
    }

    #[test]
    fn same_compares_whole_strings() {
        let check = |a: &str, b: &str, want: bool| assert_eq!(same(a, b), want, "{a:?} {b:?}");
        check("abc", "abc", true);
        check("", "", true);
        check("abc", "abd", false);
        check("abc", "xbc", false);
        check("abc", "ab", false);
        check("ab", "abc", false);
        check("", "a", false);
    }
}
