//! Message bodies as they travel in a `send` frame: `nonce` and `ciphertext`, both standard
//! padded base64.
//!
//! DMs are `crypto_box_easy` between the sender's X25519 secret (from its ed25519 seed) and
//! the recipient's X25519 key (from its ed25519 pubkey); `crypto_box` 0.9's `SalsaBox` already
//! emits libsodium's easy layout (16-byte Poly1305 MAC, then the XSalsa20 output), which the
//! known-answer test confirms. Broadcast, group and topic bodies are plain base64 of UTF-8.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_box::aead::Aead;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use rand::RngCore;

use super::keys::{ed25519_pk_to_x25519, MemberKeys};
use super::{decode_hex_array, CryptoError};

/// Length of a `crypto_box` nonce in bytes (`crypto_box_NONCEBYTES`).
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 MAC that prefixes every DM ciphertext (`crypto_box_MACBYTES`).
pub const MAC_LEN: usize = 16;

const PUBKEY_HEX: &str = "64 hex characters (32 bytes)";

/// The `nonce` and `ciphertext` fields of a `send` frame, standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBody {
    /// 24 bytes; the DM nonce, or meaningless random bytes for plain bodies.
    pub nonce_b64: String,
    /// The MAC-first `crypto_box` output of a DM, or the UTF-8 text of a plain body.
    pub ciphertext_b64: String,
}

/// Encrypts a DM from `sender` to the ed25519 pubkey `recipient_ed25519_pubkey_hex` (64 hex,
/// either case) under a fresh random nonce.
pub fn seal_dm(
    sender: &MemberKeys,
    recipient_ed25519_pubkey_hex: &str,
    plaintext: &[u8],
) -> Result<SealedBody, CryptoError> {
    seal_dm_with_nonce(
        sender,
        recipient_ed25519_pubkey_hex,
        plaintext,
        random_bytes(),
    )
}

/// [`seal_dm`] with a caller-chosen nonce. A nonce must never be reused with one key pair;
/// this exists for known-answer tests.
pub fn seal_dm_with_nonce(
    sender: &MemberKeys,
    recipient_ed25519_pubkey_hex: &str,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<SealedBody, CryptoError> {
    let dm_box = salsa_box(sender, recipient_ed25519_pubkey_hex, "recipient pubkey")?;
    seal_with(&dm_box, plaintext, nonce)
}

fn seal_with(
    dm_box: &SalsaBox,
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<SealedBody, CryptoError> {
    let ciphertext = dm_box
        .encrypt(&Nonce::from(nonce), plaintext)
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(SealedBody {
        nonce_b64: STANDARD.encode(nonce),
        ciphertext_b64: STANDARD.encode(ciphertext),
    })
}

/// Decrypts a DM addressed to `recipient` from the ed25519 pubkey `sender_ed25519_pubkey_hex`.
///
/// Fails (never panics) on bad base64, a nonce that is not 24 bytes, a ciphertext shorter than
/// its MAC, an unusable sender key, and any authentication failure (wrong key or nonce,
/// tampered bytes: [`CryptoError::Decrypt`]).
pub fn open_dm(
    recipient: &MemberKeys,
    sender_ed25519_pubkey_hex: &str,
    nonce_b64: &str,
    ciphertext_b64: &str,
) -> Result<Vec<u8>, CryptoError> {
    let (nonce, ciphertext) = dm_parts(nonce_b64, ciphertext_b64)?;
    let dm_box = salsa_box(recipient, sender_ed25519_pubkey_hex, "sender pubkey")?;
    open_with(&dm_box, nonce, &ciphertext)
}

/// The nonce and ciphertext of a DM, checked for length.
fn dm_parts(
    nonce_b64: &str,
    ciphertext_b64: &str,
) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let nonce_bytes = decode_b64(nonce_b64, "dm nonce")?;
    let nonce: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| CryptoError::Malformed {
        what: "dm nonce",
        expected: "24 bytes",
    })?;
    let ciphertext = decode_b64(ciphertext_b64, "dm ciphertext")?;
    if ciphertext.len() < MAC_LEN {
        return Err(CryptoError::Malformed {
            what: "dm ciphertext",
            expected: "at least 16 bytes (the MAC)",
        });
    }
    Ok((nonce, ciphertext))
}

fn open_with(
    dm_box: &SalsaBox,
    nonce: [u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    dm_box
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| CryptoError::Decrypt)
}

/// Shared DM keys by (own pubkey, peer pubkey): sealing or opening many DMs between the same
/// two keys costs one ed25519→X25519 conversion and X25519 exchange, not one per message
/// (~100 us each on the project's machine: the cost of a DM before this cache). Held by the
/// one actor that seals (the drainer) or opens (the inbox); emptied when it reaches
/// [`DmBoxes::MAX`] entries, so it never grows past that.
#[derive(Default)]
pub struct DmBoxes {
    boxes: HashMap<(String, String), SalsaBox>,
}

impl DmBoxes {
    /// Peers kept at most.
    pub const MAX: usize = 4096;

    /// [`seal_dm`], with the shared key of `sender` and the recipient kept.
    pub fn seal(
        &mut self,
        sender: &MemberKeys,
        recipient_ed25519_pubkey_hex: &str,
        plaintext: &[u8],
    ) -> Result<SealedBody, CryptoError> {
        self.seal_with_nonce(
            sender,
            recipient_ed25519_pubkey_hex,
            plaintext,
            random_bytes(),
        )
    }

    /// [`seal_dm_with_nonce`] through the cache (known-answer tests).
    pub fn seal_with_nonce(
        &mut self,
        sender: &MemberKeys,
        recipient_ed25519_pubkey_hex: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<SealedBody, CryptoError> {
        let dm_box = self.get(sender, recipient_ed25519_pubkey_hex, "recipient pubkey")?;
        seal_with(dm_box, plaintext, nonce)
    }

    /// [`open_dm`], with the shared key of `recipient` and the sender kept.
    pub fn open(
        &mut self,
        recipient: &MemberKeys,
        sender_ed25519_pubkey_hex: &str,
        nonce_b64: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let (nonce, ciphertext) = dm_parts(nonce_b64, ciphertext_b64)?;
        let dm_box = self.get(recipient, sender_ed25519_pubkey_hex, "sender pubkey")?;
        open_with(dm_box, nonce, &ciphertext)
    }

    /// Shared keys held.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    fn get(
        &mut self,
        own: &MemberKeys,
        peer_hex: &str,
        what: &'static str,
    ) -> Result<&SalsaBox, CryptoError> {
        let key = (own.pubkey_hex(), peer_hex.to_ascii_lowercase());
        if !self.boxes.contains_key(&key) {
            let dm_box = salsa_box(own, peer_hex, what)?;
            if self.boxes.len() >= Self::MAX {
                self.boxes.clear();
            }
            self.boxes.insert(key.clone(), dm_box);
        }
        self.boxes.get(&key).ok_or(CryptoError::Encrypt)
    }
}

/// A broadcast, group or topic body: `ciphertext` is base64 of the UTF-8 text, `nonce` is 24
/// random bytes that receivers ignore (BROKER-PROTOCOL §3.3).
pub fn encode_plain(text: &str) -> SealedBody {
    SealedBody {
        nonce_b64: random_nonce_b64(),
        ciphertext_b64: STANDARD.encode(text.as_bytes()),
    }
}

/// Reads a plain body back: the ciphertext must be standard padded base64 of valid UTF-8.
pub fn decode_plain(ciphertext_b64: &str) -> Result<String, CryptoError> {
    let bytes = decode_b64(ciphertext_b64, "plain ciphertext")?;
    String::from_utf8(bytes).map_err(|source| CryptoError::Utf8 {
        what: "plain ciphertext",
        source,
    })
}

/// 24 random bytes in standard padded base64 (32 characters).
pub fn random_nonce_b64() -> String {
    STANDARD.encode(random_bytes())
}

/// The `crypto_box` between `own`'s X25519 secret and the X25519 form of `peer_hex`.
fn salsa_box(
    own: &MemberKeys,
    peer_hex: &str,
    what: &'static str,
) -> Result<SalsaBox, CryptoError> {
    let peer: [u8; 32] = decode_hex_array(peer_hex, what, PUBKEY_HEX)?;
    let peer_x25519 = ed25519_pk_to_x25519(&peer)?;
    Ok(SalsaBox::new(
        &PublicKey::from(peer_x25519),
        &SecretKey::from(own.x25519_secret()),
    ))
}

fn decode_b64(value: &str, what: &'static str) -> Result<Vec<u8>, CryptoError> {
    STANDARD
        .decode(value)
        .map_err(|source| CryptoError::Base64 { what, source })
}

fn random_bytes() -> [u8; NONCE_LEN] {
    let mut out = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}
