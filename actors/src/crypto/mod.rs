//! Member identity and message-body cryptography, byte-compatible with libsodium.
//!
//! Owns (pure, no actix):
//! - [`MemberKeys`]: the mesh member's ed25519 identity, loaded from the libsodium hex forms
//!   of `config.json` (64-hex pubkey, 128-hex secret = seed ‖ pubkey), the hello canonical
//!   string and its signature (BROKER-PROTOCOL §1.3–1.4), and [`verify_hex`] for the dev broker.
//! - ed25519 → X25519 conversions ([`ed25519_pk_to_x25519`], [`ed25519_seed_to_x25519_secret`]),
//!   matching `crypto_sign_ed25519_pk_to_curve25519` / `crypto_sign_ed25519_sk_to_curve25519`.
//! - DM bodies ([`seal_dm`], [`open_dm`]): `crypto_box_easy` (X25519-XSalsa20-Poly1305) in
//!   libsodium's *easy* layout, the 16-byte MAC first, then the encrypted bytes.
//! - Broadcast, group and topic bodies ([`encode_plain`], [`decode_plain`]): base64 of the
//!   UTF-8 text with a meaningless random nonce (BROKER-PROTOCOL §3.3).
//!
//! Invariants:
//! - Every wire encoding is standard base64 **with** padding; hex is emitted lowercase and
//!   accepted in either case.
//! - A [`MemberKeys`] always holds a consistent key pair: loading rejects a secret whose second
//!   half is not the public key of its seed, and a pubkey that differs from it.
//! - Nothing here panics on hostile input: every malformed value is a [`CryptoError`].
//! - Secrets never reach `Debug` output: [`MemberKeys`]'s `Debug` prints the pubkey only.
//!
//! Known answers: `tests/fixtures/crypto-vectors.json` (libsodium-wrappers 0.7.15), reproduced
//! in full by this module's tests.

mod bodies;
mod keys;
#[cfg(test)]
mod tests;

pub use bodies::{
    decode_plain, encode_plain, open_dm, random_nonce_b64, seal_dm, seal_dm_with_nonce, DmBoxes,
    SealedBody, MAC_LEN, NONCE_LEN,
};
pub use keys::{
    ed25519_pk_to_x25519, ed25519_seed_to_x25519_secret, hello_canonical, verify_hex, MemberKeys,
};

/// Everything that can go wrong while loading keys, signing, verifying, sealing or opening.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// An input does not have the required shape (hex length or alphabet, byte length, or an
    /// ed25519 point that cannot be used). The dev broker maps this to `malformed`.
    #[error("malformed {what}: expected {expected}")]
    Malformed {
        /// Which input was rejected (e.g. `"signature"`, `"recipient pubkey"`).
        what: &'static str,
        /// What a well-formed value looks like.
        expected: &'static str,
    },
    /// A well-formed ed25519 signature does not verify. The dev broker maps this to
    /// `bad_signature`.
    #[error("ed25519 signature does not verify")]
    BadSignature,
    /// The halves of a key pair do not belong together.
    #[error("key mismatch: {what}")]
    KeyMismatch {
        /// Which pair of values disagrees.
        what: &'static str,
    },
    /// `crypto_box` refused to seal (the AEAD reported an error).
    #[error("crypto_box seal failed")]
    Encrypt,
    /// `crypto_box_open_easy` failed: wrong key, wrong nonce or tampered ciphertext.
    #[error("crypto_box open failed (wrong key, wrong nonce or tampered ciphertext)")]
    Decrypt,
    /// A field is not standard padded base64.
    #[error("{what} is not valid standard base64")]
    Base64 {
        /// Which field failed to decode.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// Decoded bytes that must be text are not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    Utf8 {
        /// Which field failed to decode.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: std::string::FromUtf8Error,
    },
}

/// Decodes exactly `N` bytes from hex of either case; anything else is [`CryptoError::Malformed`].
pub(crate) fn decode_hex_array<const N: usize>(
    hex_str: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_str, &mut out)
        .map_err(|_| CryptoError::Malformed { what, expected })?;
    Ok(out)
}
