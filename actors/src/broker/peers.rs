//! Peer-list cache and name resolution (SPEC §5.5). Pure: the connection actor feeds it
//! `peers_list` entries and asks it to resolve names and hex prefixes.
//!
//! Everything here is broker input: entries whose `pubkey` (or `memberPubkey`, when present)
//! is not 64 lowercase hex are dropped on arrival (logged once per cache), and no broker
//! string is ever sliced by byte index (`get(..n)` only), so a hostile or broken list can
//! neither panic the resolver nor poison a row's target.

use serde_json::Value;

use super::msg::Resolution;

/// The last `peers_list` a connection received.
#[derive(Debug, Default, Clone)]
pub struct PeerCache {
    /// Entries verbatim.
    pub peers: Vec<Value>,
    /// Unix ms of receipt; `None` until the first list arrives.
    pub fetched_at: Option<i64>,
    /// A malformed entry was already logged (once per cache, not once per list).
    warned_malformed: bool,
}

/// True when `peer` has a well-formed `pubkey` and, if it names one, `memberPubkey`.
fn well_formed(peer: &Value) -> bool {
    let member_ok = match peer.get("memberPubkey") {
        None | Some(Value::Null) => true,
        Some(v) => v.as_str().is_some_and(is_pubkey),
    };
    field(peer, "pubkey").is_some_and(is_pubkey) && member_ok
}

fn field<'a>(peer: &'a Value, name: &str) -> Option<&'a str> {
    peer.get(name).and_then(Value::as_str)
}

/// True when `s` is exactly 64 lowercase hex characters (a full pubkey, used as-is).
pub fn is_pubkey(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// True when `s` looks like a pubkey prefix (16–63 hex characters, either case).
pub fn is_hex_prefix(s: &str) -> bool {
    (16..=63).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit())
}

impl PeerCache {
    /// Replaces the list, keeping only well-formed entries (see the module docs).
    pub fn replace(&mut self, peers: Vec<Value>, now_ms: i64) {
        let total = peers.len();
        self.peers = peers.into_iter().filter(well_formed).collect();
        let dropped = total - self.peers.len();
        if dropped > 0 && !self.warned_malformed {
            self.warned_malformed = true;
            log::warn!(
                "broker peers_list: dropped {dropped} of {total} entries whose pubkey or \
                 memberPubkey is not 64 lowercase hex (logged once)"
            );
        }
        self.fetched_at = Some(now_ms);
    }

    /// True when a list newer than `max_age_ms` is cached.
    pub fn is_fresh(&self, now_ms: i64, max_age_ms: i64) -> bool {
        self.fetched_at.is_some_and(|t| now_ms - t <= max_age_ms)
    }

    /// Resolves a display name (case-insensitive) or a hex prefix of `pubkey`/`memberPubkey`
    /// to one peer `pubkey`, ignoring every entry that is ourselves (`own_pubkey`).
    pub fn resolve(&self, name: &str, own_pubkey: &str) -> Resolution {
        if self.fetched_at.is_none() {
            return Resolution::Unavailable;
        }
        let prefix = is_hex_prefix(name).then(|| name.to_ascii_lowercase());
        let mut found: Vec<(String, String)> = Vec::new();
        for peer in &self.peers {
            let Some(pubkey) = field(peer, "pubkey") else {
                continue;
            };
            let member = field(peer, "memberPubkey").unwrap_or("");
            if pubkey == own_pubkey || member == own_pubkey {
                continue;
            }
            let display = field(peer, "displayName").unwrap_or("");
            let by_name = display.eq_ignore_ascii_case(name);
            let by_prefix = prefix.as_deref().is_some_and(|p| {
                pubkey.starts_with(p) || (!member.is_empty() && member.starts_with(p))
            });
            if (by_name || by_prefix) && !found.iter().any(|(k, _)| k == pubkey) {
                found.push((pubkey.to_string(), display.to_string()));
            }
        }
        match found.len() {
            0 => Resolution::NotFound,
            1 => Resolution::Found {
                pubkey: found.remove(0).0,
            },
            _ => Resolution::Ambiguous {
                candidates: found
                    .into_iter()
                    .map(|(k, d)| format!("{d} ({})", k.get(..16).unwrap_or(&k)))
                    .collect(),
            },
        }
    }

    /// Every `pubkey` and `memberPubkey` of the entries whose `pubkey` or `memberPubkey` is
    /// `key` (a peer_joined event names one key; rows may target the other).
    pub fn keys_related_to(&self, key: &str) -> Vec<String> {
        let mut out = vec![key.to_string()];
        for peer in &self.peers {
            let pubkey = field(peer, "pubkey").unwrap_or("");
            let member = field(peer, "memberPubkey").unwrap_or("");
            if pubkey == key || member == key {
                for k in [pubkey, member] {
                    if !k.is_empty() && !out.iter().any(|o| o == k) {
                        out.push(k.to_string());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
    const BOB_SESSION: &str = "5e55000000000000000000000000000000000000000000000000000000000000";
    const CAROL: &str = "ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca201ca20";

    fn cache() -> PeerCache {
        let mut c = PeerCache::default();
        c.replace(
            vec![
                json!({"pubkey": ME, "memberPubkey": ME, "displayName": "bob"}),
                json!({"pubkey": BOB_SESSION, "memberPubkey": BOB, "displayName": "Bob"}),
                json!({"pubkey": CAROL, "memberPubkey": CAROL, "displayName": "carol"}),
                json!({"pubkey": CAROL, "memberPubkey": CAROL, "displayName": "carol"}),
            ],
            1000,
        );
        c
    }

    #[test]
    fn name_matches_case_insensitively_and_skips_ourselves() {
        assert_eq!(
            cache().resolve("BOB", ME),
            Resolution::Found {
                pubkey: BOB_SESSION.into()
            }
        );
    }

    #[test]
    fn duplicate_presences_of_one_key_are_not_ambiguous() {
        assert_eq!(
            cache().resolve("carol", ME),
            Resolution::Found {
                pubkey: CAROL.into()
            }
        );
    }

    #[test]
    fn prefix_matches_member_pubkey_and_yields_pubkey() {
        assert_eq!(
            cache().resolve(&BOB[..20], ME),
            Resolution::Found {
                pubkey: BOB_SESSION.into()
            }
        );
        assert_eq!(cache().resolve("dave", ME), Resolution::NotFound);
        assert_eq!(
            PeerCache::default().resolve("bob", ME),
            Resolution::Unavailable
        );
    }

    #[test]
    fn two_different_peers_with_one_name_are_ambiguous() {
        let mut c = cache();
        c.peers
            .push(json!({"pubkey": "ab".repeat(32), "displayName": "carol"}));
        match c.resolve("carol", ME) {
            Resolution::Ambiguous { candidates } => assert_eq!(candidates.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 13 item 3: the ambiguous-name candidates sliced `pubkey[..16]` by bytes; a
    /// broker's non-ASCII pubkey with a character across byte 16 panicked the resolver (and,
    /// with `panic = "abort"`, the daemon, in a loop).
    #[test]
    fn a_malformed_pubkey_from_the_broker_never_panics_and_is_dropped() {
        let bad = format!("{}é{}", "a".repeat(15), "b".repeat(47));
        let mut c = PeerCache::default();
        c.replace(
            vec![
                json!({"pubkey": bad, "displayName": "carol"}),
                json!({"pubkey": CAROL, "memberPubkey": CAROL, "displayName": "carol"}),
            ],
            1000,
        );
        assert_eq!(
            c.resolve("carol", ME),
            Resolution::Found {
                pubkey: CAROL.into()
            }
        );
        assert_eq!(c.peers.len(), 1);
    }

    #[test]
    fn entries_without_64_lowercase_hex_keys_are_dropped() {
        let upper = CAROL.to_ascii_uppercase();
        let mut c = PeerCache::default();
        c.replace(
            vec![
                json!({"pubkey": upper, "displayName": "a"}),
                json!({"pubkey": &CAROL[..63], "displayName": "b"}),
                json!({"pubkey": 7, "displayName": "c"}),
                json!({"displayName": "d"}),
                json!({"pubkey": CAROL, "memberPubkey": "zz", "displayName": "e"}),
                json!({"pubkey": CAROL, "memberPubkey": null, "displayName": "f"}),
                json!({"pubkey": BOB_SESSION, "memberPubkey": BOB, "displayName": "g"}),
                json!("not an object"),
            ],
            1000,
        );
        let names: Vec<&str> = c
            .peers
            .iter()
            .filter_map(|p| field(p, "displayName"))
            .collect();
        assert_eq!(names, ["f", "g"]);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Strings a broker might put in a key field: valid keys, near misses, and anything.
        fn key() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::from(CAROL)),
                Just(Value::from(BOB)),
                Just(Value::from(ME)),
                "[0-9a-fA-F]{0,70}".prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                "\\PC{14,20}".prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                Just(Value::Null),
            ]
        }

        fn peer() -> impl Strategy<Value = Value> {
            (
                key(),
                proptest::option::of(key()),
                prop_oneof![
                    Just(Value::from("carol")),
                    any::<String>().prop_map(Value::from)
                ],
            )
                .prop_map(|(pubkey, member, name)| {
                    let mut m = serde_json::Map::new();
                    m.insert("pubkey".into(), pubkey);
                    if let Some(member) = member {
                        m.insert("memberPubkey".into(), member);
                    }
                    m.insert("displayName".into(), name);
                    Value::Object(m)
                })
        }

        proptest! {
            /// Arbitrary `peers_list` frames, through the frame classifier, the cache and
            /// the resolver: nothing panics, and only well-formed entries are kept.
            #[test]
            fn arbitrary_peer_lists_never_panic_the_cache_or_the_resolver(
                peers in proptest::collection::vec(peer(), 0..8),
                names in proptest::collection::vec(any::<String>(), 0..4),
            ) {
                let frame = json!({"type": "peers_list", "peers": peers}).to_string();
                let list = match crate::broker::frames::classify(&frame, ME) {
                    crate::broker::frames::Inbound::Peers(list) => list,
                    _ => peers.clone(),
                };
                for list in [list, peers.clone()] {
                    let mut c = PeerCache::default();
                    c.replace(list, 1);
                    for p in &c.peers {
                        prop_assert!(field(p, "pubkey").is_some_and(is_pubkey));
                    }
                    let mut asked: Vec<String> = names.clone();
                    asked.extend(["carol".to_string(), CAROL[..20].to_string()]);
                    for p in &peers {
                        if let Some(k) = field(p, "pubkey") {
                            asked.push(k.to_string());
                            asked.extend(k.get(..17).map(str::to_string));
                        }
                    }
                    for name in &asked {
                        let _ = c.resolve(name, ME);
                        let _ = c.keys_related_to(name);
                    }
                }
            }
        }
    }

    #[test]
    fn related_keys_include_member_and_session_keys() {
        let keys = cache().keys_related_to(BOB_SESSION);
        assert!(keys.contains(&BOB.to_string()) && keys.contains(&BOB_SESSION.to_string()));
        assert!(is_pubkey(BOB) && !is_pubkey(&BOB[..63]) && is_hex_prefix(&BOB[..16]));
    }
}
