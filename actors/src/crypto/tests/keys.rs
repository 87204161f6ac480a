//! Key loading, hello signatures, verification and X25519 conversion against the vectors.

use curve25519_dalek::edwards::CompressedEdwardsY;

use super::{keys_of, seed_of, text, vectors, OFF_CURVE};
use crate::crypto::*;

#[test]
fn seeds_reproduce_fixture_pubkeys_and_libsodium_secret_keys() {
    let v = vectors();
    for key in ["A", "B", "A_session"] {
        let keys = keys_of(&v, key);
        let pubkey = text(&v, &format!("/keys/{key}/pubkey_hex"));
        let secret = text(&v, &format!("/keys/{key}/secretKey_hex_64B"));
        assert_eq!(keys.pubkey_hex(), pubkey, "{key} pubkey");
        assert_eq!(keys.secret_hex(), secret, "{key} secret key");
        let loaded = MemberKeys::from_hex(pubkey, secret).expect("fixture keys load");
        assert_eq!(loaded.seed(), seed_of(&v, key), "{key} seed");
        assert_eq!(loaded.pubkey_hex(), pubkey, "{key} loaded pubkey");
    }
}

#[test]
fn x25519_conversions_match_libsodium() {
    let v = vectors();
    for key in ["A", "B"] {
        let keys = keys_of(&v, key);
        let x_pub = ed25519_pk_to_x25519(&keys.pubkey_bytes()).expect("valid pubkey");
        assert_eq!(
            hex::encode(x_pub),
            text(&v, &format!("/keys/{key}/x25519_pub_hex"))
        );
        let x_sec = ed25519_seed_to_x25519_secret(&keys.seed());
        assert_eq!(
            hex::encode(x_sec),
            text(&v, &format!("/keys/{key}/x25519_sec_hex"))
        );
        assert_eq!(keys.x25519_secret(), x_sec);
        // The converted secret and public key form one X25519 pair.
        let derived = crypto_box::SecretKey::from(x_sec).public_key().to_bytes();
        assert_eq!(derived, x_pub, "{key} X25519 pair");
    }
}

#[test]
fn hello_canonical_and_signature_match_fixture() {
    let v = vectors();
    let a = keys_of(&v, "A");
    let timestamp = v["hello"]["timestamp"].as_i64().expect("timestamp");
    let canonical = hello_canonical(
        text(&v, "/hello/meshId"),
        text(&v, "/hello/memberId"),
        text(&v, "/hello/pubkey"),
        timestamp,
    );
    assert_eq!(canonical, text(&v, "/hello/canonical"));
    let expected = text(&v, "/hello/signature_hex");
    assert_eq!(a.sign_hex(canonical.as_bytes()), expected);
    assert_eq!(
        a.sign_hello(
            text(&v, "/hello/meshId"),
            text(&v, "/hello/memberId"),
            timestamp
        ),
        expected
    );
    verify_hex(&a.pubkey_hex(), canonical.as_bytes(), expected).expect("fixture signature");
}

#[test]
fn verify_rejects_one_bit_flip_of_signature_or_message() {
    let v = vectors();
    let pubkey = text(&v, "/hello/pubkey");
    let canonical = text(&v, "/hello/canonical");
    let sig = hex::decode(text(&v, "/hello/signature_hex")).expect("sig hex");
    for byte in [0, 31, 32, 63] {
        let mut flipped = sig.clone();
        flipped[byte] ^= 0x01;
        let result = verify_hex(pubkey, canonical.as_bytes(), &hex::encode(flipped));
        assert!(
            matches!(result, Err(CryptoError::BadSignature)),
            "byte {byte}: {result:?}"
        );
    }
    let mut msg = canonical.as_bytes().to_vec();
    msg[0] ^= 0x01;
    let result = verify_hex(pubkey, &msg, text(&v, "/hello/signature_hex"));
    assert!(
        matches!(result, Err(CryptoError::BadSignature)),
        "{result:?}"
    );
}

#[test]
fn verify_accepts_uppercase_hex_pubkey_and_signature() {
    let v = vectors();
    let pubkey = text(&v, "/hello/pubkey").to_uppercase();
    let sig = text(&v, "/hello/signature_hex").to_uppercase();
    verify_hex(&pubkey, text(&v, "/hello/canonical").as_bytes(), &sig).expect("uppercase hex");
}

#[test]
fn verify_reports_bad_shapes_as_malformed() {
    let v = vectors();
    let pubkey = text(&v, "/hello/pubkey");
    let msg = text(&v, "/hello/canonical").as_bytes();
    let sig = text(&v, "/hello/signature_hex");
    let non_hex_sig = format!("zz{}", &sig[2..]);
    let cases = [
        (pubkey, &sig[..126]),
        (pubkey, non_hex_sig.as_str()),
        (&pubkey[..62], sig),
        ("", sig),
    ];
    for (pk, s) in cases {
        let result = verify_hex(pk, msg, s);
        assert!(
            matches!(result, Err(CryptoError::Malformed { .. })),
            "{pk} {s}: {result:?}"
        );
    }
}

#[test]
fn verify_treats_an_off_curve_pubkey_like_libsodium_as_bad_signature() {
    assert!(CompressedEdwardsY(OFF_CURVE).decompress().is_none());
    let v = vectors();
    let result = verify_hex(
        &hex::encode(OFF_CURVE),
        text(&v, "/hello/canonical").as_bytes(),
        text(&v, "/hello/signature_hex"),
    );
    assert!(
        matches!(result, Err(CryptoError::BadSignature)),
        "{result:?}"
    );
}

#[test]
fn pk_to_x25519_rejects_off_curve_and_small_order_points() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for pk in [OFF_CURVE, identity] {
        let result = ed25519_pk_to_x25519(&pk);
        assert!(
            matches!(result, Err(CryptoError::Malformed { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn session_hello_signatures_match_fixture() {
    let v = vectors();
    let attestation = text(&v, "/session_hello/attestation_canonical");
    assert_eq!(
        keys_of(&v, "A").sign_hex(attestation.as_bytes()),
        text(&v, "/session_hello/attestation_signature_hex_by_member_key")
    );
    let hello = text(&v, "/session_hello/hello_canonical");
    let session = keys_of(&v, "A_session");
    let expected = text(&v, "/session_hello/hello_signature_hex_by_session_key");
    assert_eq!(session.sign_hex(hello.as_bytes()), expected);
    verify_hex(&session.pubkey_hex(), hello.as_bytes(), expected).expect("session signature");
}

#[test]
fn from_hex_rejects_inconsistent_key_pairs() {
    let v = vectors();
    let a_pub = text(&v, "/keys/A/pubkey_hex");
    let a_secret = text(&v, "/keys/A/secretKey_hex_64B");
    let b_pub = text(&v, "/keys/B/pubkey_hex");
    // A's seed followed by B's pubkey: the second half is not the seed's public key.
    let spliced = format!("{}{}", &a_secret[..64], b_pub);
    let spliced_result = MemberKeys::from_hex(b_pub, &spliced);
    assert!(matches!(
        spliced_result,
        Err(CryptoError::KeyMismatch { .. })
    ));
    let spliced_result = MemberKeys::from_hex(a_pub, &spliced);
    assert!(matches!(
        spliced_result,
        Err(CryptoError::KeyMismatch { .. })
    ));
    // A consistent secret with somebody else's pubkey.
    let other_pub = MemberKeys::from_hex(b_pub, a_secret);
    assert!(
        matches!(other_pub, Err(CryptoError::KeyMismatch { .. })),
        "{other_pub:?}"
    );
}

#[test]
fn from_hex_rejects_non_hex_and_wrong_lengths_but_accepts_uppercase() {
    let v = vectors();
    let a_pub = text(&v, "/keys/A/pubkey_hex");
    let a_secret = text(&v, "/keys/A/secretKey_hex_64B");
    let non_hex = format!("g{}", &a_secret[1..]);
    let cases = [
        (a_pub, non_hex.as_str()),
        (a_pub, &a_secret[..126]),
        (a_pub, &a_secret[..64]),
        (&a_pub[..63], a_secret),
        ("", a_secret),
    ];
    for (pk, sk) in cases {
        let result = MemberKeys::from_hex(pk, sk);
        assert!(
            matches!(result, Err(CryptoError::Malformed { .. })),
            "{result:?}"
        );
    }
    let upper = MemberKeys::from_hex(&a_pub.to_uppercase(), &a_secret.to_uppercase());
    assert_eq!(upper.expect("uppercase hex").pubkey_hex(), a_pub);
}

#[test]
fn debug_shows_pubkey_but_never_the_secret() {
    let keys = MemberKeys::from_seed([0x11; 32]);
    let shown = format!("{keys:?}");
    assert!(shown.contains(&keys.pubkey_hex()), "{shown}");
    assert!(!shown.contains(&hex::encode(keys.seed())), "{shown}");
    assert!(!shown.contains("1111"), "{shown}");
}

#[test]
fn generated_keys_are_distinct_and_reload_from_their_hex() {
    let (first, second) = (MemberKeys::generate(), MemberKeys::generate());
    assert_ne!(first.pubkey_hex(), second.pubkey_hex());
    let reloaded = MemberKeys::from_hex(&first.pubkey_hex(), &first.secret_hex()).expect("reload");
    assert_eq!(reloaded.seed(), first.seed());
    assert_eq!(first.secret_hex().len(), 128);
    let sig = first.sign_hello("mesh", "member", 1);
    verify_hex(&first.pubkey_hex(), b"mesh|member|" as &[u8], &sig).expect_err("other bytes");
    let canonical = hello_canonical("mesh", "member", &first.pubkey_hex(), 1);
    verify_hex(&first.pubkey_hex(), canonical.as_bytes(), &sig).expect("own hello");
}

#[test]
fn hello_canonical_renders_timestamp_as_plain_decimal() {
    assert_eq!(
        hello_canonical("m", "u", "pk", 1_714_700_000_000),
        "m|u|pk|1714700000000"
    );
    assert_eq!(hello_canonical("m", "u", "pk", 0), "m|u|pk|0");
}
