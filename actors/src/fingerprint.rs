//! The request fingerprint of SPEC §5.2 and the `to` → destination mapping it hashes.
//!
//! Owns (pure, no actix): [`destination_for`], [`canonical_meta`], [`request_fingerprint`] and
//! [`prefix_hex`]. The fingerprint is computed once, at accept time, and stored with the outbox
//! row; a later request reusing the same `client_message_id` is compared against it.
//!
//! ```text
//! sha256( "1" 0x00 kind 0x00 ref 0x00 reply_to_id_or_empty 0x00 priority 0x00
//!         meta_canonical 0x00 sha256(message bytes) )
//! ```
//!
//! The inner digest is appended as 32 raw bytes. `meta_canonical` is `""` when meta is absent
//! or JSON `null`, else its RFC 8785 (JCS) canonical form, so `{}` gives `"{}"`.
//!
//! Invariants: the function is deterministic and every input byte reaches the digest
//! (changing any field, including one bit of the body, changes the result). Known answers:
//! `tests/fixtures/fingerprint-vectors.json`, produced by the reference TypeScript
//! implementation and reproduced in full by the tests below.
//!
//! **Divergence from the reference, on purpose.** The reference canonicalises meta by sorting
//! keys into a fresh JavaScript object; JS then enumerates *integer-like* keys (`"9"`, `"10"`)
//! first and in numeric order, whatever order they were inserted in. RFC 8785 sorts every key
//! by UTF-16 code units, so `{"10":1,"9":2}` canonicalises to `{"10":1,"9":2}` here and to
//! `{"9":2,"10":1}` in the reference. We follow RFC 8785 (via `serde_json_canonicalizer`); the
//! difference only affects meta objects with integer-like keys and is documented, not emulated.
//! Numbers follow RFC 8785 as well: every number is an IEEE double printed the ECMAScript way.

use sha2::{Digest, Sha256};

/// The envelope version, the first field of the fingerprint preimage.
const ENVELOPE_VERSION: &[u8] = b"1";

/// What kind of destination a send targets, as hashed in the fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    /// A direct message: to a pubkey, or to a name or prefix resolved later.
    Dm,
    /// A broadcast (`*`) or an `@group`.
    Topic,
}

impl DestinationKind {
    /// The label hashed into the fingerprint: `"dm"` or `"topic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Dm => "dm",
            DestinationKind::Topic => "topic",
        }
    }
}

/// The destination of a send as the fingerprint sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// `dm` or `topic`.
    pub kind: DestinationKind,
    /// The reference hashed with the kind: `*`, the group name without `@`, or `to` verbatim.
    pub reference: String,
}

/// Errors of fingerprint computation.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The meta value could not be written as RFC 8785 canonical JSON.
    #[error("cannot canonicalise meta as RFC 8785 JSON")]
    CanonicalMeta {
        /// The canonicaliser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Maps an (already trimmed) `to` to its fingerprint destination (SPEC §5.2): `*` →
/// (`topic`, `*`); `@x` → (`topic`, `x`), so `@all` is (`topic`, `all`); anything else,
/// `#topic` ids, pubkeys and names included, → (`dm`, `to` verbatim).
pub fn destination_for(to: &str) -> Destination {
    if to == "*" {
        Destination {
            kind: DestinationKind::Topic,
            reference: "*".to_owned(),
        }
    } else if let Some(group) = to.strip_prefix('@') {
        Destination {
            kind: DestinationKind::Topic,
            reference: group.to_owned(),
        }
    } else {
        Destination {
            kind: DestinationKind::Dm,
            reference: to.to_owned(),
        }
    }
}

/// The `meta_canonical` field: `""` for no meta or JSON `null`, else RFC 8785 canonical JSON.
pub fn canonical_meta(meta: Option<&serde_json::Value>) -> Result<String, FingerprintError> {
    match meta {
        None | Some(serde_json::Value::Null) => Ok(String::new()),
        Some(value) => serde_json_canonicalizer::to_string(value)
            .map_err(|source| FingerprintError::CanonicalMeta { source }),
    }
}

/// The request fingerprint of a send (SPEC §5.2). `reply_to_id` `None` hashes as `""`.
pub fn request_fingerprint(
    dest: &Destination,
    reply_to_id: Option<&str>,
    priority: &str,
    meta: Option<&serde_json::Value>,
    body: &[u8],
) -> Result<[u8; 32], FingerprintError> {
    let meta_canonical = canonical_meta(meta)?;
    Ok(fingerprint_of_fields(
        dest.kind.as_str(),
        &dest.reference,
        reply_to_id.unwrap_or(""),
        priority,
        &meta_canonical,
        body,
    ))
}

/// The fingerprint over already-rendered fields, for any destination kind label. The daemon
/// only produces `dm` and `topic` (use [`request_fingerprint`]); this form also covers the
/// reference's other kinds, which its known-answer vectors exercise.
pub fn fingerprint_of_fields(
    kind: &str,
    reference: &str,
    reply_to_id: &str,
    priority: &str,
    meta_canonical: &str,
    body: &[u8],
) -> [u8; 32] {
    let body_digest = Sha256::digest(body);
    let mut hasher = Sha256::new();
    for field in [
        ENVELOPE_VERSION,
        kind.as_bytes(),
        reference.as_bytes(),
        reply_to_id.as_bytes(),
        priority.as_bytes(),
        meta_canonical.as_bytes(),
    ] {
        hasher.update(field);
        hasher.update([0u8]);
    }
    hasher.update(body_digest);
    hasher.finalize().into()
}

/// The first 8 bytes of a fingerprint as 16 lowercase hex characters (the
/// `daemon_fingerprint_prefix` of a 409 body, SPEC §5.3).
pub fn prefix_hex(fp: &[u8; 32]) -> String {
    hex::encode(&fp[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/fingerprint-vectors.json"
    );

    fn cases() -> Vec<Value> {
        let text = std::fs::read_to_string(VECTORS).expect("read fingerprint-vectors.json");
        let parsed: Value = serde_json::from_str(&text).expect("parse fingerprint-vectors.json");
        parsed["cases"].as_array().expect("cases array").clone()
    }

    fn field<'a>(case: &'a Value, name: &str) -> &'a str {
        case[name]
            .as_str()
            .unwrap_or_else(|| panic!("string field {name}"))
    }

    #[test]
    fn every_fixture_case_reproduces_meta_fingerprint_and_prefix() {
        let cases = cases();
        assert!(cases.len() >= 9, "fixture has {} cases", cases.len());
        for case in &cases {
            let name = field(case, "name");
            assert_eq!(case["envelope_version"], json!(1), "{name}");
            let meta = case.get("meta");
            let meta_canonical = canonical_meta(meta).expect("canonical meta");
            assert_eq!(
                meta_canonical,
                field(case, "meta_canonical_json"),
                "{name} meta"
            );
            let kind = field(case, "destination_kind");
            let reference = field(case, "destination_ref");
            let reply_to_id = case["reply_to_id"].as_str();
            let priority = field(case, "priority");
            let body = field(case, "body").as_bytes();
            let fp = fingerprint_of_fields(
                kind,
                reference,
                reply_to_id.unwrap_or(""),
                priority,
                &meta_canonical,
                body,
            );
            assert_eq!(
                hex::encode(fp),
                field(case, "fingerprint_hex"),
                "{name} fingerprint"
            );
            assert_eq!(
                prefix_hex(&fp),
                field(case, "fingerprint_prefix_hex"),
                "{name} prefix"
            );
            let typed_kind = match kind {
                "dm" => Some(DestinationKind::Dm),
                "topic" => Some(DestinationKind::Topic),
                _ => None,
            };
            if let Some(kind) = typed_kind {
                let dest = Destination {
                    kind,
                    reference: reference.to_owned(),
                };
                let typed = request_fingerprint(&dest, reply_to_id, priority, meta, body)
                    .expect("fingerprint");
                assert_eq!(typed, fp, "{name} via request_fingerprint");
            }
        }
    }

    #[test]
    fn fixture_destinations_come_from_the_matching_to_forms() {
        let pubkey = "a09aa5f47a6759802ff955f8dc2d2a14a5c99d23be97f864127ff9383455a4f0";
        for (to, kind, reference) in [
            ("alice", DestinationKind::Dm, "alice"),
            (pubkey, DestinationKind::Dm, pubkey),
            ("*", DestinationKind::Topic, "*"),
            ("@ops", DestinationKind::Topic, "ops"),
        ] {
            let dest = destination_for(to);
            assert_eq!(
                (dest.kind, dest.reference.as_str()),
                (kind, reference),
                "{to}"
            );
        }
    }

    #[test]
    fn destination_for_maps_every_to_form_per_spec() {
        for (to, kind, reference) in [
            ("@all", DestinationKind::Topic, "all"),
            ("@", DestinationKind::Topic, ""),
            ("#topic-123", DestinationKind::Dm, "#topic-123"),
            ("a09aa5f47a675980", DestinationKind::Dm, "a09aa5f47a675980"),
            ("**", DestinationKind::Dm, "**"),
            ("Alice Smith", DestinationKind::Dm, "Alice Smith"),
        ] {
            let dest = destination_for(to);
            assert_eq!(
                (dest.kind, dest.reference.as_str()),
                (kind, reference),
                "{to}"
            );
        }
        assert_eq!(DestinationKind::Dm.as_str(), "dm");
        assert_eq!(DestinationKind::Topic.as_str(), "topic");
    }

    #[test]
    fn canonical_meta_is_empty_for_absent_or_null_and_braces_for_empty_object() {
        assert_eq!(canonical_meta(None).expect("none"), "");
        assert_eq!(canonical_meta(Some(&Value::Null)).expect("null"), "");
        assert_eq!(canonical_meta(Some(&json!({}))).expect("empty"), "{}");
    }

    #[test]
    fn canonical_meta_sorts_integer_like_keys_as_strings_per_rfc_8785() {
        let meta = json!({"9": 2, "10": 1, "b": true});
        let canonical = canonical_meta(Some(&meta)).expect("canonical");
        assert_eq!(canonical, r#"{"10":1,"9":2,"b":true}"#);
    }

    fn base_fingerprint() -> [u8; 32] {
        let dest = destination_for("alice");
        let meta = json!({"k": "v"});
        request_fingerprint(&dest, Some("r1"), "next", Some(&meta), b"hello").expect("base")
    }

    #[test]
    fn changing_any_single_input_changes_the_fingerprint() {
        let base = base_fingerprint();
        assert_eq!(base, base_fingerprint(), "deterministic");
        let meta = json!({"k": "v"});
        let meta_flipped = json!({"k": "w"});
        let variants = [
            (
                "to",
                destination_for("alicd"),
                Some("r1"),
                "next",
                Some(&meta),
                &b"hello"[..],
            ),
            (
                "kind",
                destination_for("@alice"),
                Some("r1"),
                "next",
                Some(&meta),
                b"hello",
            ),
            (
                "reply",
                destination_for("alice"),
                Some("r0"),
                "next",
                Some(&meta),
                b"hello",
            ),
            (
                "no reply",
                destination_for("alice"),
                None,
                "next",
                Some(&meta),
                b"hello",
            ),
            (
                "priority",
                destination_for("alice"),
                Some("r1"),
                "now",
                Some(&meta),
                b"hello",
            ),
            (
                "meta",
                destination_for("alice"),
                Some("r1"),
                "next",
                Some(&meta_flipped),
                b"hello",
            ),
            (
                "no meta",
                destination_for("alice"),
                Some("r1"),
                "next",
                None,
                b"hello",
            ),
            (
                "body bit",
                destination_for("alice"),
                Some("r1"),
                "next",
                Some(&meta),
                b"hellm",
            ),
        ];
        for (label, dest, reply, priority, meta, body) in variants {
            let fp = request_fingerprint(&dest, reply, priority, meta, body).expect("fp");
            assert_ne!(fp, base, "{label}");
        }
    }

    #[test]
    fn field_separators_keep_shifted_boundaries_distinct() {
        let a = fingerprint_of_fields("dm", "ab", "", "next", "", b"x");
        let b = fingerprint_of_fields("dm", "a", "b", "next", "", b"x");
        assert_ne!(a, b);
    }

    #[test]
    fn prefix_is_the_first_eight_bytes_in_lowercase_hex() {
        let mut fp = [0xffu8; 32];
        fp[..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67]);
        assert_eq!(prefix_hex(&fp), "deadbeef01234567");
    }
}
