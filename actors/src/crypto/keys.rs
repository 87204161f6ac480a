//! The member's ed25519 identity: loading, signing, verifying, and the X25519 conversions.
//!
//! Signing is pure ed25519 over the 32-byte seed (libsodium `crypto_sign_detached`).
//! Verification follows `crypto_sign_verify_detached`: cofactorless, rejecting small-order
//! keys and `R`, and a non-canonical `S` (ed25519-dalek's `verify_strict`).

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha512};

use super::{decode_hex_array, CryptoError};

const PUBKEY_HEX: &str = "64 hex characters (32 bytes)";
const SECRET_HEX: &str = "128 hex characters (64 bytes: seed then pubkey)";
const SIGNATURE_HEX: &str = "128 hex characters (64 bytes)";

/// A mesh member's ed25519 key pair (libsodium `crypto_sign_keypair` format).
///
/// Invariant: the public key is always the one derived from the seed.
#[derive(Clone)]
pub struct MemberKeys {
    /// Holds the seed and its derived verifying key.
    signing: SigningKey,
}

impl MemberKeys {
    /// Loads the `config.json` hex forms: `pubkey_hex` (64 hex) and `secret_hex` (128 hex,
    /// the 32-byte seed followed by the 32-byte pubkey). Either hex case is accepted.
    ///
    /// Rejects ([`CryptoError::KeyMismatch`]) a secret whose second half is not the public key
    /// of its seed, and a `pubkey_hex` that differs from that public key.
    pub fn from_hex(pubkey_hex: &str, secret_hex: &str) -> Result<MemberKeys, CryptoError> {
        let pubkey: [u8; 32] = decode_hex_array(pubkey_hex, "member pubkey", PUBKEY_HEX)?;
        let secret: [u8; 64] = decode_hex_array(secret_hex, "member secret key", SECRET_HEX)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&secret[..32]);
        let keys = MemberKeys::from_seed(seed);
        let derived = keys.pubkey_bytes();
        if secret[32..] != derived {
            return Err(CryptoError::KeyMismatch {
                what: "the secret key's second half is not the public key of its seed",
            });
        }
        if pubkey != derived {
            return Err(CryptoError::KeyMismatch {
                what: "the pubkey is not the public key of the secret key",
            });
        }
        Ok(keys)
    }

    /// Builds the key pair of a 32-byte ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> MemberKeys {
        MemberKeys {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Generates a fresh key pair from the operating system's random source.
    pub fn generate() -> MemberKeys {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        MemberKeys::from_seed(seed)
    }

    /// The 32-byte ed25519 public key.
    pub fn pubkey_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key as 64 lowercase hex characters (what the hello carries).
    pub fn pubkey_hex(&self) -> String {
        hex::encode(self.pubkey_bytes())
    }

    /// The libsodium 64-byte secret key (seed ‖ pubkey) as 128 lowercase hex characters.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.signing.to_keypair_bytes())
    }

    /// The 32-byte ed25519 seed.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 secret of this identity, as `crypto_sign_ed25519_sk_to_curve25519` gives it.
    pub fn x25519_secret(&self) -> [u8; 32] {
        ed25519_seed_to_x25519_secret(&self.seed())
    }

    /// Signs `msg` (pure ed25519, detached); 128 lowercase hex characters.
    pub fn sign_hex(&self, msg: &[u8]) -> String {
        hex::encode(self.signing.sign(msg).to_bytes())
    }

    /// Signs the hello canonical string of this member's pubkey (BROKER-PROTOCOL §1.4).
    /// The same `timestamp_ms` must go into the hello's JSON `timestamp`.
    pub fn sign_hello(&self, mesh_id: &str, member_id: &str, timestamp_ms: i64) -> String {
        let canonical = hello_canonical(mesh_id, member_id, &self.pubkey_hex(), timestamp_ms);
        self.sign_hex(canonical.as_bytes())
    }
}

impl std::fmt::Debug for MemberKeys {
    /// Shows the public key only; the secret never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberKeys")
            .field("pubkey", &self.pubkey_hex())
            .finish_non_exhaustive()
    }
}

/// The signed bytes of a hello: `meshId|memberId|pubkey|timestamp`, the timestamp in plain
/// decimal as JavaScript renders an integer (BROKER-PROTOCOL §1.4). No trailing newline.
pub fn hello_canonical(
    mesh_id: &str,
    member_id: &str,
    pubkey_hex: &str,
    timestamp_ms: i64,
) -> String {
    format!("{mesh_id}|{member_id}|{pubkey_hex}|{timestamp_ms}")
}

/// Verifies a detached ed25519 signature given in hex (either case).
///
/// [`CryptoError::Malformed`] when the pubkey is not 64 hex or the signature not 128 hex
/// (the broker's `malformed`); [`CryptoError::BadSignature`] otherwise when it does not
/// verify (the broker's `bad_signature`). A 64-hex pubkey that is not a usable curve point
/// counts as a bad signature, as libsodium's `crypto_sign_verify_detached` returns a plain
/// failure for it rather than throwing.
pub fn verify_hex(pubkey_hex: &str, msg: &[u8], sig_hex: &str) -> Result<(), CryptoError> {
    let pubkey: [u8; 32] = decode_hex_array(pubkey_hex, "pubkey", PUBKEY_HEX)?;
    let sig: [u8; 64] = decode_hex_array(sig_hex, "signature", SIGNATURE_HEX)?;
    let key = VerifyingKey::from_bytes(&pubkey).map_err(|_| CryptoError::BadSignature)?;
    key.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| CryptoError::BadSignature)
}

/// Converts an ed25519 public key to X25519 (Edwards → Montgomery), like libsodium's
/// `crypto_sign_ed25519_pk_to_curve25519`: a key that does not decompress, has small order or
/// lies outside the prime-order subgroup is [`CryptoError::Malformed`].
pub fn ed25519_pk_to_x25519(pk: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
    let unusable = || CryptoError::Malformed {
        what: "ed25519 public key",
        expected: "a point of the prime-order subgroup",
    };
    let point = CompressedEdwardsY(*pk).decompress().ok_or_else(unusable)?;
    if point.is_small_order() || !point.is_torsion_free() {
        return Err(unusable());
    }
    Ok(point.to_montgomery().to_bytes())
}

/// Converts an ed25519 seed to its X25519 secret, like libsodium's
/// `crypto_sign_ed25519_sk_to_curve25519`: `sha512(seed)[..32]`, clamped.
pub fn ed25519_seed_to_x25519_secret(seed: &[u8; 32]) -> [u8; 32] {
    let digest = Sha512::digest(seed);
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32]);
    out[0] &= 248;
    out[31] &= 127;
    out[31] |= 64;
    out
}
