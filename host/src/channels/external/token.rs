//! Adapter tokens: [`generate`] makes one (`cpa_` and 64 hex digits: 32 bytes from the
//! system's random source), [`hash`] is what the central DB stores (`sha256:<hex>`), and
//! [`verify`] checks a presented token against it in constant time.
//!
//! A plain SHA-256 is enough here (no salt, no slow hash): the token is 256 random bits, not
//! a password a person chose, so there is nothing to guess from its hash.

use crate::secrets;

/// What every token starts with, so one found in a log or a config is recognisable.
pub const PREFIX: &str = "cpa_";

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The system's random source failed. Retryable in principle; it does not happen on a
    /// working Linux.
    #[error("the system's random source failed")]
    Random,
}

/// A fresh token.
pub fn generate() -> Result<String, TokenError> {
    secrets::generate(PREFIX).map_err(|_| TokenError::Random)
}

/// What the central DB keeps of a token (`sha256:<hex>`).
pub fn hash(token: &str) -> String {
    secrets::hash(token)
}

/// Whether `token` is the one `stored` is the hash of, in constant time
/// ([`secrets::same`]), so the answer's timing says nothing about the stored hash.
pub fn verify(token: &str, stored: &str) -> bool {
    secrets::same(&secrets::hash(token), stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_check_against_their_hash_only() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert_ne!(first, second);
        assert!(
            first.starts_with(PREFIX) && first.len() == PREFIX.len() + 64,
            "{first}"
        );
        let stored = hash(&first);
        assert!(stored.starts_with("sha256:") && !stored.contains(&first[PREFIX.len()..]));
        assert!(verify(&first, &stored));
        assert!(!verify(&second, &stored));
        assert!(!verify("", &stored));
        assert!(!verify(&first, ""));
        assert!(!verify(&first, &stored[..stored.len() - 1]));
        let mut flipped = first.clone().into_bytes();
        flipped[10] ^= 1;
        assert!(!verify(&String::from_utf8(flipped).unwrap(), &stored));
    }

    #[test]
    fn the_hash_is_sha256() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
