//! Identifier minting for the dev broker: broker row ids (`messageId`, `presenceId`, mesh and
//! member ids) are random 32-character strings over `[0-9A-Za-z]`, system-event `messageId`s
//! are UUID v4 — the two shapes the real broker uses (BROKER-PROTOCOL §0).
//!
//! Pure: no actix, no I/O beyond the thread-local random generator.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random 32-character id over `[0-9A-Za-z]`.
pub fn row_id() -> String {
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A random UUID v4 in its lowercase hyphenated form.
pub fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_are_32_alphanumeric_characters_and_differ() {
        let a = row_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, row_id());
    }

    #[test]
    fn uuid_v4_has_version_and_variant_bits() {
        let u = uuid_v4();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }
}
