//! Unit tests of [`super`] (tuning.rs).
use super::*;

fn parse(text: &str) -> Result<Tuning, SettingsError> {
    parse_daemon_toml(text, Path::new("/etc/x/daemon.toml"))
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse("").unwrap(), Tuning::default());
}

#[test]
fn defaults_match_the_spec() {
    let t = Tuning::default();
    assert_eq!(t.default_mesh, None);
    assert!(t.ipc.tcp_enabled && !t.ipc.public_health);
    assert_eq!(t.ipc.tcp_port, 47823);
    assert_eq!((t.ipc.max_inflight, t.ipc.max_sse_streams), (64, 32));
    assert_eq!((t.ipc.send_body_limit, t.ipc.body_limit), (262_144, 16_384));
    assert_eq!(t.outbox.max_attempts, 25);
    assert_eq!(t.outbox.max_age_hours, 168);
    assert_eq!((t.outbox.window, t.outbox.destination_window), (32, 1));
    assert_eq!(t.outbox.durability, Durability::Normal);
    assert_eq!(t.outbox.payload_retention_days, 7);
    assert_eq!(t.broker.hello_timeout_ms, 5_000);
    assert_eq!(t.broker.ack_timeout_ms, 15_000);
    assert_eq!(t.broker.ping_interval_ms, 30_000);
    assert_eq!(t.broker.stale_after_ms, 75_000);
    assert_eq!((t.broker.rate_burst, t.broker.rate_per_sec), (10, 1));
    assert_eq!(t.broker.max_frame_bytes, 16 * 1024 * 1024);
    assert_eq!(t.broker.reconnect_cap_ms, 30_000);
    assert_eq!(t.broker.redelivery_nudge_ms, 47_000);
    assert_eq!(
        (t.inbox.retention_days, t.inbox.event_journal),
        (30, 10_000)
    );
    assert_eq!(t.clone.policy, ClonePolicy::Refuse);
}

#[test]
fn partial_sections_keep_defaults_for_other_keys() {
    let t = parse(
        "default_mesh = \"work\"\n[outbox]\nmax_attempts = 3\ndurability = \"full\"\n\
         [clone]\npolicy = \"warn\"\n",
    )
    .unwrap();
    assert_eq!(t.default_mesh.as_deref(), Some("work"));
    assert_eq!(t.outbox.max_attempts, 3);
    assert_eq!(t.outbox.durability, Durability::Full);
    assert_eq!(t.outbox.window, 32);
    assert_eq!(t.clone.policy, ClonePolicy::Warn);
    assert_eq!(t.ipc, IpcTuning::default());
}

#[test]
fn unknown_key_is_an_error_naming_the_key_and_the_file() {
    let msg = parse("[outbox]\nmax_attempts = 3\nmax_atempts = 4\n")
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("/etc/x/daemon.toml:3:1: "), "{msg}");
    assert!(msg.contains("max_atempts"), "{msg}");
    let msg = parse("[nope]\nx = 1\n").unwrap_err().to_string();
    assert!(msg.contains("nope") && msg.contains("daemon.toml"), "{msg}");
    let msg = parse("colour = 1\n").unwrap_err().to_string();
    assert!(msg.contains("colour"), "{msg}");
}

#[test]
fn wrong_type_or_unknown_choice_is_an_error() {
    let msg = parse("[ipc]\ntcp_port = 70000\n").unwrap_err().to_string();
    assert!(msg.starts_with("/etc/x/daemon.toml:2:"), "{msg}");
    let msg = parse("[clone]\npolicy = \"maybe\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("maybe"), "{msg}");
    assert!(parse("[ipc]\ntcp_enabled = \"yes\"\n").is_err());
}

#[test]
fn zero_where_zero_is_meaningless_is_rejected_naming_the_key() {
    let msg = parse("[outbox]\nwindow = 0\n").unwrap_err().to_string();
    assert_eq!(
        msg,
        "/etc/x/daemon.toml: outbox.window: must be in 1..=4096, got 0"
    );
    let t = parse("[ipc]\ntcp_port = 0\n[outbox]\npayload_retention_days = 0\n").unwrap();
    assert_eq!(t.ipc.tcp_port, 0, "port 0 means any free port");
}

/// Issue 13 item 2: a huge `max_age_hours` overflowed the drainer's hours → ms conversion
/// and killed every pending row; every tuning value now has a sane range.
#[test]
fn out_of_range_values_are_rejected_naming_the_key_and_the_range() {
    let msg = parse("[outbox]\nmax_age_hours = 3000000000000\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "/etc/x/daemon.toml: outbox.max_age_hours: must be in 1..=876000, got 3000000000000"
    );
    assert!(parse("[outbox]\nmax_age_hours = 876000\n").is_ok());
    let msg = parse("[broker]\nack_timeout_ms = 9223372036854775807\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("broker.ack_timeout_ms: must be in 1..="),
        "{msg}"
    );
}

#[test]
fn every_numeric_key_refuses_the_largest_toml_integer() {
    let defaults = toml::Table::try_from(Tuning::default()).unwrap();
    for (section, keys) in &defaults {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for (key, value) in keys {
            if !value.is_integer() {
                continue;
            }
            let text = format!("[{section}]\n{key} = 9223372036854775807\n");
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains("daemon.toml"), "{section}.{key}: {msg}");
        }
    }
}

#[test]
fn a_merged_tuning_is_validated_as_a_whole() {
    let mut t = Tuning::default();
    assert!(t.validate().is_ok());
    t.outbox.max_age_hours = u64::MAX;
    let (key, reason) = t.validate().unwrap_err();
    assert_eq!(key, "outbox.max_age_hours");
    assert!(reason.contains("1..=876000"), "{reason}");
}

#[test]
fn choice_words_round_trip_and_reject_others() {
    for p in [ClonePolicy::Refuse, ClonePolicy::Warn, ClonePolicy::Allow] {
        assert_eq!(p.as_str().parse::<ClonePolicy>().unwrap(), p);
    }
    assert_eq!("full".parse::<Durability>().unwrap(), Durability::Full);
    assert_eq!(
        "Refuse".parse::<ClonePolicy>().unwrap_err().to_string(),
        "\"Refuse\" is not one of refuse, warn, allow"
    );
}

#[test]
fn line_column_counts_from_one() {
    assert_eq!(line_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
}

#[test]
fn shipped_daemon_toml_parses_to_exactly_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/daemon.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        parse_daemon_toml(&text, Path::new(path)).unwrap(),
        Tuning::default()
    );
}

#[test]
fn shipped_daemon_toml_lists_every_key() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/daemon.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    let all = Tuning {
        default_mesh: Some("x".into()),
        ..Tuning::default()
    };
    let want: toml::Table = toml::Table::try_from(&all).unwrap();
    for (section, value) in &want {
        match value {
            toml::Value::Table(keys) => {
                for key in keys.keys() {
                    let present = file
                        .get(section)
                        .and_then(|s| s.as_table())
                        .is_some_and(|s| s.contains_key(key));
                    assert!(present, "config/daemon.toml lacks [{section}] {key}");
                }
            }
            // default_mesh has no default value, so the file documents it commented out.
            _ => assert!(text.contains(&format!("# {section} = ")), "{section}"),
        }
    }
}

#[test]
fn shipped_daemon_toml_documents_every_range() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/daemon.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // `(dotted key, the comment block right above it)`.
    let mut section = String::new();
    let mut comments = String::new();
    let mut documented: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            comments.clear();
        } else if line.starts_with('#') {
            comments.push_str(line);
            comments.push('\n');
        } else if let Some((key, _)) = line.split_once(" = ") {
            documented.push((format!("{section}.{key}"), std::mem::take(&mut comments)));
        }
    }
    for (key, lo, hi) in crate::settings::key_ranges() {
        let (_, name) = key.split_once('.').unwrap_or(("", &key));
        let block = documented
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| c.as_str())
            .unwrap_or_else(|| panic!("config/daemon.toml lacks {key}"));
        let single = format!("# Range: {lo}..={hi}");
        let shared = format!("{name} {lo}..={hi}");
        // rate_per_sec shares rate_burst's "# Ranges:" line, which sits above rate_burst.
        let all = &text;
        let ends = |rest: &str| rest.starts_with([' ', '.', ',']);
        assert!(
            block
                .lines()
                .any(|l| l.strip_prefix(&single).is_some_and(ends))
                || all.lines().any(|l| {
                    l.starts_with("# Ranges: ")
                        && l.split_once(&shared).is_some_and(|(_, rest)| ends(rest))
                }),
            "{key}: config/daemon.toml does not document {lo}..={hi}"
        );
    }
}
