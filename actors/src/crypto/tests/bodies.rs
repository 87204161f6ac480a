//! DM sealing and opening, and plain bodies, against the vectors and hostile input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{flip_bit, keys_of, text, vectors, OFF_CURVE};
use crate::crypto::*;

fn fixture_nonce() -> [u8; NONCE_LEN] {
    std::array::from_fn(|i| i as u8)
}

#[test]
fn dm_with_fixed_nonce_reproduces_libsodium_box_easy() {
    let v = vectors();
    let (a, b) = (keys_of(&v, "A"), keys_of(&v, "B"));
    let plaintext = text(&v, "/dm/plaintext_utf8");
    let sealed = seal_dm_with_nonce(&a, &b.pubkey_hex(), plaintext.as_bytes(), fixture_nonce())
        .expect("seal");
    assert_eq!(sealed.nonce_b64, text(&v, "/dm/nonce_b64"));
    assert_eq!(sealed.ciphertext_b64, text(&v, "/dm/ciphertext_b64"));
    let len = STANDARD.decode(&sealed.ciphertext_b64).expect("b64").len();
    assert_eq!(len as u64, v["dm"]["ciphertext_len"].as_u64().expect("len"));
    assert_eq!(len, plaintext.len() + MAC_LEN);
}

#[test]
fn recipient_opens_fixture_dm() {
    let v = vectors();
    let (a, b) = (keys_of(&v, "A"), keys_of(&v, "B"));
    let opened = open_dm(
        &b,
        &a.pubkey_hex(),
        text(&v, "/dm/nonce_b64"),
        text(&v, "/dm/ciphertext_b64"),
    )
    .expect("open fixture dm");
    assert_eq!(opened, text(&v, "/dm/plaintext_utf8").as_bytes());
}

#[test]
fn dm_round_trips_with_random_nonces_that_differ() {
    let (a, b) = (MemberKeys::generate(), MemberKeys::generate());
    let first = seal_dm(&a, &b.pubkey_hex(), "résumé ☃".as_bytes()).expect("seal");
    let second = seal_dm(&a, &b.pubkey_hex(), "résumé ☃".as_bytes()).expect("seal");
    assert_ne!(first.nonce_b64, second.nonce_b64);
    assert_eq!(
        STANDARD.decode(&first.nonce_b64).expect("b64").len(),
        NONCE_LEN
    );
    let opened = open_dm(&b, &a.pubkey_hex(), &first.nonce_b64, &first.ciphertext_b64);
    assert_eq!(opened.expect("open"), "résumé ☃".as_bytes());
}

#[test]
fn one_bit_flip_anywhere_in_dm_ciphertext_or_nonce_fails_to_open() {
    let v = vectors();
    let (a, b) = (keys_of(&v, "A"), keys_of(&v, "B"));
    let nonce = text(&v, "/dm/nonce_b64");
    let ciphertext = text(&v, "/dm/ciphertext_b64");
    for byte in 0..28 {
        let result = open_dm(&b, &a.pubkey_hex(), nonce, &flip_bit(ciphertext, byte));
        assert!(
            matches!(result, Err(CryptoError::Decrypt)),
            "byte {byte}: {result:?}"
        );
    }
    let result = open_dm(&b, &a.pubkey_hex(), &flip_bit(nonce, 5), ciphertext);
    assert!(matches!(result, Err(CryptoError::Decrypt)), "{result:?}");
}

#[test]
fn dm_fails_to_open_with_wrong_recipient_or_sender_key() {
    let v = vectors();
    let (a, b, s) = (keys_of(&v, "A"), keys_of(&v, "B"), keys_of(&v, "A_session"));
    let nonce = text(&v, "/dm/nonce_b64");
    let ciphertext = text(&v, "/dm/ciphertext_b64");
    let wrong_recipient = open_dm(&s, &a.pubkey_hex(), nonce, ciphertext);
    assert!(
        matches!(wrong_recipient, Err(CryptoError::Decrypt)),
        "{wrong_recipient:?}"
    );
    let wrong_sender = open_dm(&b, &s.pubkey_hex(), nonce, ciphertext);
    assert!(
        matches!(wrong_sender, Err(CryptoError::Decrypt)),
        "{wrong_sender:?}"
    );
}

#[test]
fn truncated_dm_ciphertext_fails_to_open() {
    let v = vectors();
    let (a, b) = (keys_of(&v, "A"), keys_of(&v, "B"));
    let nonce = text(&v, "/dm/nonce_b64");
    let full = STANDARD
        .decode(text(&v, "/dm/ciphertext_b64"))
        .expect("b64");
    for len in [0, 1, 15] {
        let result = open_dm(&b, &a.pubkey_hex(), nonce, &STANDARD.encode(&full[..len]));
        assert!(
            matches!(result, Err(CryptoError::Malformed { .. })),
            "{len}: {result:?}"
        );
    }
    for len in [16, 27] {
        let result = open_dm(&b, &a.pubkey_hex(), nonce, &STANDARD.encode(&full[..len]));
        assert!(
            matches!(result, Err(CryptoError::Decrypt)),
            "{len}: {result:?}"
        );
    }
}

#[test]
fn dm_with_bad_base64_wrong_nonce_length_or_bad_key_is_rejected() {
    let v = vectors();
    let (a, b) = (keys_of(&v, "A"), keys_of(&v, "B"));
    let nonce = text(&v, "/dm/nonce_b64");
    let ciphertext = text(&v, "/dm/ciphertext_b64");
    let bad_ct = open_dm(&b, &a.pubkey_hex(), nonce, "not base64!");
    assert!(
        matches!(bad_ct, Err(CryptoError::Base64 { .. })),
        "{bad_ct:?}"
    );
    let unpadded = ciphertext.trim_end_matches('=');
    let bad_pad = open_dm(&b, &a.pubkey_hex(), nonce, unpadded);
    assert!(
        matches!(bad_pad, Err(CryptoError::Base64 { .. })),
        "{bad_pad:?}"
    );
    let bad_nonce = open_dm(&b, &a.pubkey_hex(), "%%%%", ciphertext);
    assert!(
        matches!(bad_nonce, Err(CryptoError::Base64 { .. })),
        "{bad_nonce:?}"
    );
    let short_nonce = open_dm(&b, &a.pubkey_hex(), &STANDARD.encode([0u8; 23]), ciphertext);
    assert!(
        matches!(short_nonce, Err(CryptoError::Malformed { .. })),
        "{short_nonce:?}"
    );
    let bad_sender = open_dm(&b, &hex::encode(OFF_CURVE), nonce, ciphertext);
    assert!(
        matches!(bad_sender, Err(CryptoError::Malformed { .. })),
        "{bad_sender:?}"
    );
    let bad_recipient = seal_dm(&a, "xyz", b"hi");
    assert!(
        matches!(bad_recipient, Err(CryptoError::Malformed { .. })),
        "{bad_recipient:?}"
    );
}

#[test]
fn broadcast_body_is_base64_of_utf8_with_a_random_24_byte_nonce() {
    let v = vectors();
    let body = encode_plain(text(&v, "/broadcast/plaintext_utf8"));
    assert_eq!(body.ciphertext_b64, text(&v, "/broadcast/ciphertext_b64"));
    assert_eq!(
        STANDARD.decode(&body.nonce_b64).expect("b64").len(),
        NONCE_LEN
    );
    assert_eq!(body.nonce_b64.len(), 32);
    assert_ne!(body.nonce_b64, encode_plain("hi all").nonce_b64);
    assert_eq!(
        decode_plain(&body.ciphertext_b64).expect("decode"),
        "hi all"
    );
    assert_eq!(
        decode_plain(&encode_plain("☃ x").ciphertext_b64).expect("decode"),
        "☃ x"
    );
}

#[test]
fn decode_plain_rejects_bad_base64_and_invalid_utf8() {
    let bad_b64 = decode_plain("aGkgYWxs!");
    assert!(
        matches!(bad_b64, Err(CryptoError::Base64 { .. })),
        "{bad_b64:?}"
    );
    let bad_utf8 = decode_plain(&STANDARD.encode([0xff, 0xfe, 0x41]));
    assert!(
        matches!(bad_utf8, Err(CryptoError::Utf8 { .. })),
        "{bad_utf8:?}"
    );
}

/// The shared-key cache reproduces the known answer, sealing and opening, and keeps each
/// pair of keys apart: after A→B is cached, the session key's DMs to B are sealed under its
/// own exchange, and B opens each only with its true sender.
#[test]
fn the_dm_key_cache_reproduces_the_fixture_and_keeps_key_pairs_apart() {
    let v = vectors();
    let (a, b, s) = (keys_of(&v, "A"), keys_of(&v, "B"), keys_of(&v, "A_session"));
    let plaintext = text(&v, "/dm/plaintext_utf8");
    let mut boxes = DmBoxes::default();
    for _ in 0..2 {
        let sealed = boxes
            .seal_with_nonce(&a, &b.pubkey_hex(), plaintext.as_bytes(), fixture_nonce())
            .expect("seal");
        assert_eq!(sealed.ciphertext_b64, text(&v, "/dm/ciphertext_b64"));
    }
    let from_session = boxes
        .seal_with_nonce(&s, &b.pubkey_hex().to_uppercase(), b"hi", fixture_nonce())
        .expect("seal");
    assert_eq!(
        from_session,
        seal_dm_with_nonce(&s, &b.pubkey_hex(), b"hi", fixture_nonce()).expect("seal")
    );
    let mut opener = DmBoxes::default();
    let (nonce, ct) = (&from_session.nonce_b64, &from_session.ciphertext_b64);
    assert_eq!(
        opener.open(&b, &s.pubkey_hex(), nonce, ct).expect("open"),
        b"hi"
    );
    assert!(matches!(
        opener.open(&b, &a.pubkey_hex(), nonce, ct),
        Err(CryptoError::Decrypt)
    ));
    let fixture = opener
        .open(
            &b,
            &a.pubkey_hex(),
            text(&v, "/dm/nonce_b64"),
            text(&v, "/dm/ciphertext_b64"),
        )
        .expect("open fixture dm");
    assert_eq!(fixture, plaintext.as_bytes());
    assert_eq!((boxes.len(), opener.len()), (2, 2));
    assert!(opener.open(&b, &hex::encode(OFF_CURVE), nonce, ct).is_err());
}

#[test]
fn the_dm_key_cache_never_holds_more_than_its_bound() {
    let a = MemberKeys::generate();
    let mut boxes = DmBoxes::default();
    for _ in 0..DmBoxes::MAX + 10 {
        boxes
            .seal(&a, &MemberKeys::generate().pubkey_hex(), b"x")
            .expect("seal");
        assert!(boxes.len() <= DmBoxes::MAX);
    }
    assert!(!boxes.is_empty());
}
