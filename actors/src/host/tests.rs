//! Unit tests of [`crate::host`].

use super::*;

/// Builds a fake root: machine-id files and `sys/class/net/<name>/{address,flags}`.
fn fake_root(
    machine_id: Option<&str>,
    dbus_id: Option<&str>,
    ifaces: &[(&str, &str, &str)],
) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    if let Some(id) = machine_id {
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/machine-id"), id).unwrap();
    }
    if let Some(id) = dbus_id {
        fs::create_dir_all(root.path().join("var/lib/dbus")).unwrap();
        fs::write(root.path().join("var/lib/dbus/machine-id"), id).unwrap();
    }
    for (name, mac, flags) in ifaces {
        let dir = root.path().join("sys/class/net").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
        fs::write(dir.join("flags"), format!("{flags}\n")).unwrap();
    }
    root
}

#[test]
fn host_id_is_first_non_empty_machine_id_trimmed() {
    let root = fake_root(Some("abc123\n"), Some("dbus999"), &[]);
    assert_eq!(read_identity(root.path()).host_id, "linux:abc123");
    let root = fake_root(Some("  \n"), Some(" dbus999\n"), &[]);
    assert_eq!(read_identity(root.path()).host_id, "linux:dbus999");
    let root = fake_root(None, None, &[]);
    assert_eq!(
        read_identity(root.path()),
        HostIdentity {
            host_id: String::new(),
            stable_mac: String::new()
        }
    );
}

#[test]
fn stable_mac_skips_internal_virtual_and_zero_interfaces_and_lowercases() {
    let root = fake_root(
        Some("m"),
        None,
        &[
            ("lo", "00:00:00:00:00:00", "0x9"),
            ("Docker0", "02:42:ac:11:00:02", "0x1003"),
            ("br-1234", "02:42:00:00:00:01", "0x1003"),
            ("veth0a", "aa:aa:aa:aa:aa:aa", "0x1003"),
            ("tailscale0", "bb:bb:bb:bb:bb:bb", "0x1003"),
            ("WG0", "cc:cc:cc:cc:cc:cc", "0x1003"),
            ("aaa-loop", "dd:dd:dd:dd:dd:dd", "0x9"),
            ("bond0", "00:00:00:00:00:00", "0x1003"),
            ("eth1", "11:22:33:44:55:67", "0x1003"),
            ("eth0", "11:22:33:44:55:AA", "0x1003"),
        ],
    );
    assert_eq!(read_identity(root.path()).stable_mac, "11:22:33:44:55:aa");
}

#[test]
fn interface_order_follows_the_ts_name_mac_string_sort() {
    // "eth10::" sorts before "eth1::" because '0' < ':'.
    let root = fake_root(
        Some("m"),
        None,
        &[
            ("eth1", "01:00:00:00:00:01", "0x1003"),
            ("eth10", "01:00:00:00:00:10", "0x1003"),
        ],
    );
    assert_eq!(read_identity(root.path()).stable_mac, "01:00:00:00:00:10");
}

#[test]
fn fingerprint_is_sha256_of_host_id_nul_mac() {
    let expected = hex::encode(Sha256::digest(b"linux:abc\x0011:22:33:44:55:66"));
    assert_eq!(fingerprint_hex("linux:abc", "11:22:33:44:55:66"), expected);
    assert_ne!(fingerprint_hex("linux:ab", "c11:22:33:44:55:66"), expected);
}

fn ident(host_id: &str, mac: &str) -> HostIdentity {
    HostIdentity {
        host_id: host_id.into(),
        stable_mac: mac.into(),
    }
}

fn stored(host_id: &str, mac: &str) -> HostFingerprintFile {
    HostFingerprintFile {
        schema_version: 1,
        fingerprint: fingerprint_hex(host_id, mac),
        host_id: host_id.into(),
        stable_mac: mac.into(),
        written_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

#[test]
fn check_rules_first_run_match_and_mismatch() {
    let me = ident("linux:a", "11:11:11:11:11:11");
    assert_eq!(check(None, &me), HostCheck::FirstRun);
    assert_eq!(
        check(Some(&stored("linux:a", "11:11:11:11:11:11")), &me),
        HostCheck::Match
    );
    // Changed MAC, same host id: still this host.
    assert_eq!(
        check(Some(&stored("linux:a", "22:22:22:22:22:22")), &me),
        HostCheck::Match
    );
    // Another machine-id: a clone or another host.
    assert_eq!(
        check(Some(&stored("linux:b", "11:11:11:11:11:11")), &me),
        HostCheck::Mismatch
    );
    // Empty host ids match only by fingerprint.
    let no_id = ident("", "11:11:11:11:11:11");
    assert_eq!(
        check(Some(&stored("", "11:11:11:11:11:11")), &no_id),
        HostCheck::Match
    );
    assert_eq!(
        check(Some(&stored("", "22:22:22:22:22:22")), &no_id),
        HostCheck::Mismatch
    );
}

#[test]
fn decision_applies_policy_only_to_mismatch() {
    for policy in [ClonePolicy::Refuse, ClonePolicy::Warn, ClonePolicy::Allow] {
        assert_eq!(decide(HostCheck::FirstRun, policy), HostDecision::Proceed);
        assert_eq!(decide(HostCheck::Match, policy), HostDecision::Proceed);
    }
    assert_eq!(
        decide(HostCheck::Mismatch, ClonePolicy::Refuse),
        HostDecision::Refuse
    );
    assert_eq!(
        decide(HostCheck::Mismatch, ClonePolicy::Warn),
        HostDecision::ProceedWithWarning
    );
    assert_eq!(
        decide(HostCheck::Mismatch, ClonePolicy::Allow),
        HostDecision::Proceed
    );
}

#[test]
fn clone_policy_parses_and_displays_its_three_names() {
    for (s, p) in [
        ("refuse", ClonePolicy::Refuse),
        ("warn", ClonePolicy::Warn),
        ("allow", ClonePolicy::Allow),
    ] {
        assert_eq!(s.parse::<ClonePolicy>().unwrap(), p);
        assert_eq!(p.to_string(), s);
    }
    assert!(matches!(
        "Refuse".parse::<ClonePolicy>(),
        Err(crate::settings::SettingsError::UnknownChoice { .. })
    ));
    assert_eq!(ClonePolicy::default(), ClonePolicy::Refuse);
}

#[test]
fn written_file_is_0600_with_ts_field_names_and_loads_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host_fingerprint.json");
    assert_eq!(load(&path).unwrap(), None);
    let me = ident("linux:a", "11:11:11:11:11:11");
    let written = write(&path, &me, 1_714_700_000_000).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let raw: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        raw,
        serde_json::json!({
            "schema_version": 1,
            "fingerprint": fingerprint_hex("linux:a", "11:11:11:11:11:11"),
            "host_id": "linux:a",
            "stable_mac": "11:11:11:11:11:11",
            "written_at": "2024-05-03T01:33:20.000Z",
        })
    );
    assert_eq!(load(&path).unwrap(), Some(written));
}

#[test]
fn ts_daemon_file_is_read_as_is_and_matches_by_host_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host_fingerprint.json");
    // A TS v2 file: fingerprint hashes a "v2" prefix, MAC since changed, extra field.
    fs::write(
        &path,
        r#"{
  "schema_version": 2,
  "fingerprint": "5f1c0e0b7ad0a1f0e29c43f8bd6b0c1d2e3f405162738495a6b7c8d9e0f1a2b3",
  "host_id": "linux:0123456789abcdef",
  "stable_mac": "de:ad:be:ef:00:01",
  "written_at": "2026-05-01T10:00:00.000Z",
  "note": "ignored"
}"#,
    )
    .unwrap();
    let file = load(&path).unwrap().unwrap();
    assert_eq!(file.schema_version, 2);
    assert_eq!(file.host_id, "linux:0123456789abcdef");
    let root = fake_root(
        Some("0123456789abcdef\n"),
        None,
        &[("eth0", "de:ad:be:ef:00:02", "0x1003")],
    );
    assert_eq!(
        check(Some(&file), &read_identity(root.path())),
        HostCheck::Match
    );
    let other = fake_root(
        Some("fedcba9876543210\n"),
        None,
        &[("eth0", "de:ad:be:ef:00:01", "0x1003")],
    );
    assert_eq!(
        check(Some(&file), &read_identity(other.path())),
        HostCheck::Mismatch
    );
}

#[test]
fn unparseable_file_is_a_parse_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host_fingerprint.json");
    fs::write(&path, "not json").unwrap();
    match load(&path) {
        Err(HostError::Parse { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Parse, got {other:?}"),
    }
}
