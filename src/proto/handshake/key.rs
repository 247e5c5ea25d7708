//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 §4.2.2 and §4.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{RngCore, TryRngCore};
use sha1::{Digest, Sha1};

use crate::{Error, Result};

/// The GUID that RFC 6455 appends to the key before hashing it.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The longest `Sec-WebSocket-Key` a server accepts: base64 of 16 bytes is 24 characters
/// (Beast checks only this length).
pub const MAX_SEC_KEY_LEN: usize = 24;

/// Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: the base64 of the
/// SHA-1 of the key followed by the WebSocket GUID.
///
/// ```
/// use rbeast::proto::handshake::accept_key;
/// // The example of RFC 6455 §1.3.
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(sec_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(sec_key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Generates a fresh `Sec-WebSocket-Key`: the base64 of 16 bytes from the operating
/// system's secure random generator.
///
/// Fails with [`Error::Io`] only if the operating system cannot provide random bytes.
///
/// ```
/// let key = rbeast::proto::handshake::generate_key().unwrap();
/// assert_eq!(key.len(), 24);
/// assert_ne!(key, rbeast::proto::handshake::generate_key().unwrap());
/// ```
pub fn generate_key() -> Result<String> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::from(std::io::Error::other(e)))?;
    Ok(STANDARD.encode(bytes))
}

/// Generates a `Sec-WebSocket-Key` from the given generator (for tests and reproducible
/// runs; use [`generate_key`] for real connections).
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// let key = rbeast::proto::handshake::generate_key_with(&mut rng);
/// assert_eq!(key.len(), 24);
/// ```
pub fn generate_key_with<R: RngCore + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_matches_independent_sha1() {
        let key = "x3JJHMbDL1EzLkh9GBhXDw==";
        let mut sha = Sha1::new();
        sha.update(format!("{key}{WEBSOCKET_GUID}"));
        let want = STANDARD.encode(sha.finalize());
        assert_eq!(accept_key(key), want);
        assert_eq!(accept_key(key), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn keys_decode_to_16_bytes_and_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        for k in [a, b] {
            assert_eq!(k.len(), MAX_SEC_KEY_LEN);
            assert_eq!(STANDARD.decode(k).unwrap().len(), 16);
        }
    }
}
