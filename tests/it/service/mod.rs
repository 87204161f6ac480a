//! `install-service` / `uninstall-service` as real processes in a temp HOME (SPEC §10). The
//! service manager is never run: every run sets CLAUDEMESHD_SERVICE_NO_MANAGER=1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::cli::Run;
use crate::harness::BIN;
use plist::{Plist, Xml};

mod plist;

/// Runs claudemeshd with HOME and the claudemesh dirs inside `home`, no CI, no manager.
fn svc(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("HOME", home)
        .env("CLAUDEMESHD_SERVICE_NO_MANAGER", "1")
        .env_remove("CLAUDEMESH_CONFIG_DIR")
        .env_remove("CLAUDEMESH_DAEMON_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CI")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(cmd)
}

fn unit_path(home: &Path) -> PathBuf {
    home.join(".config/systemd/user/claudemeshd.service")
}

fn plist_path(home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents/com.claudemesh.daemon.plist")
}

fn bin() -> String {
    std::fs::canonicalize(BIN).unwrap().display().to_string()
}

/// Every file below `dir`, relative.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// A systemd unit as sections of (key, value) directives; comment lines are kept apart.
struct Unit {
    sections: HashMap<String, Vec<(String, String)>>,
    comments: Vec<String>,
}

fn parse_unit(text: &str) -> Unit {
    let mut sections: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut comments = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if l.starts_with('#') || l.starts_with(';') {
            comments.push(l.to_string());
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {l}", n + 1));
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
        sections
            .get_mut(&section)
            .unwrap()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Unit { sections, comments }
}

impl Unit {
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[test]
fn systemd_unit_has_every_directive_and_pins_the_binary() {
    let home = tempfile::tempdir().unwrap();
    let r = svc(
        home.path(),
        &["install-service", "--format", "systemd"],
        &[],
    );
    r.expect(0);
    assert!(r.stdout.contains("wrote "), "{}", r.stdout);
    assert!(
        r.stdout.contains("systemctl --user daemon-reload"),
        "{}",
        r.stdout
    );
    let text = std::fs::read_to_string(unit_path(home.path())).expect("unit written");
    let unit = parse_unit(&text);
    let exec = unit.get("Service", "ExecStart").expect("ExecStart");
    assert_eq!(exec, format!("{} up", bin()));
    for (k, v) in [
        ("Restart", "on-failure"),
        ("RestartSec", "5"),
        ("NoNewPrivileges", "yes"),
        ("LimitNOFILE", "4096"),
        ("MemoryMax", "256M"),
    ] {
        assert_eq!(unit.get("Service", k), Some(v), "{k}");
    }
    assert_eq!(unit.get("Install", "WantedBy"), Some("default.target"));
    let claudemesh = home.path().join(".claudemesh").display().to_string();
    for hardening in [
        "#PrivateTmp=yes".to_string(),
        "#ProtectSystem=strict".into(),
        "#ProtectHome=read-only".into(),
        format!("#ReadWritePaths={claudemesh}"),
    ] {
        assert!(unit.comments.contains(&hardening), "{hardening} in\n{text}");
        let key = hardening.trim_start_matches('#').split('=').next().unwrap();
        assert_eq!(
            unit.get("Service", key),
            None,
            "{key} must stay commented out"
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(unit_path(home.path()))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);

    systemd_analyze_verify(home.path());
}

/// Runs `systemd-analyze verify` on the unit installed under `home` (when the tool exists):
/// no complaint about our unit (an executable that does not exist is one).
fn systemd_analyze_verify(home: &Path) {
    if !(Path::new("/usr/bin/systemd-analyze").exists() || which("systemd-analyze")) {
        eprintln!("systemd-analyze not installed: unit not verified");
        return;
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit_path(home))
        .env("HOME", home)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&o.stderr);
    let relevant: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("claudemeshd.service"))
        .collect();
    assert!(
        o.status.success() && relevant.is_empty(),
        "systemd-analyze verify: {err}"
    );
}

#[test]
fn a_dollar_in_the_binary_path_stays_literal_in_the_executable_word() {
    // A copy of the binary (a hard link where possible) under a directory with `$` and `%`.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = scratch.path().join("bin$HOME%x");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("claudemeshd");
    if std::fs::hard_link(std::fs::canonicalize(BIN).unwrap(), &exe).is_err() {
        std::fs::copy(BIN, &exe).unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join(".claudemesh");
    std::fs::create_dir_all(&cfg).unwrap();
    let keys = claudemesh_actors::crypto::MemberKeys::generate();
    let config = json!({"version": 1, "meshes": [{
        "meshId": "m1", "memberId": "u1", "slug": "$USER", "name": "Dollar",
        "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
        "brokerUrl": "ws://127.0.0.1:9/ws", "joinedAt": "2026-01-01T00:00:00Z"}]});
    std::fs::write(cfg.join("config.json"), config.to_string()).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["install-service", "--format", "systemd", "--mesh", "$USER"])
        .env("HOME", home.path())
        .env("CLAUDEMESHD_SERVICE_NO_MANAGER", "1")
        .env_remove("CLAUDEMESH_CONFIG_DIR")
        .env_remove("CLAUDEMESH_DAEMON_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CI")
        .stdin(Stdio::null());
    Run::of(cmd).expect(0);
    let text = std::fs::read_to_string(unit_path(home.path())).expect("unit written");
    let unit = parse_unit(&text);
    let exe_word = exe.display().to_string().replace('%', "%%");
    assert_eq!(
        unit.get("Service", "ExecStart"),
        Some(format!("{exe_word} up --mesh $$USER").as_str()),
        "{text}"
    );
    systemd_analyze_verify(home.path());
}

fn which(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| Path::new(d).join(program).is_file())
}

#[test]
fn reinstall_rewrites_meshes_and_pinned_dirs_into_the_unit() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("cm");
    std::fs::create_dir_all(&cfg).unwrap();
    let keys = claudemesh_actors::crypto::MemberKeys::generate();
    let config = json!({"version": 1, "meshes": [{
        "meshId": "m1", "memberId": "u1", "slug": "work", "name": "Work",
        "pubkey": keys.pubkey_hex(), "secretKey": keys.secret_hex(),
        "brokerUrl": "ws://127.0.0.1:9/ws", "joinedAt": "2026-01-01T00:00:00Z"}]});
    std::fs::write(cfg.join("config.json"), config.to_string()).unwrap();
    let env = [("CLAUDEMESH_CONFIG_DIR", cfg.to_str().unwrap())];
    svc(
        home.path(),
        &["install-service", "--format", "systemd"],
        &env,
    )
    .expect(0);
    let again = svc(
        home.path(),
        &[
            "install-service",
            "--format",
            "systemd",
            "--mesh",
            "work",
            "--json",
        ],
        &env,
    );
    again.expect(0);
    let v = again.json();
    assert_eq!(v["existed"], true);
    assert_eq!(
        v["manager_skipped"],
        "CLAUDEMESHD_SERVICE_NO_MANAGER is set"
    );
    let unit = parse_unit(&std::fs::read_to_string(unit_path(home.path())).unwrap());
    assert_eq!(
        unit.get("Service", "ExecStart"),
        Some(format!("{} up --mesh work", bin()).as_str())
    );
    assert_eq!(
        unit.get("Service", "Environment"),
        Some(format!("CLAUDEMESH_CONFIG_DIR={}", cfg.display()).as_str())
    );
    let unknown = svc(
        home.path(),
        &["install-service", "--format", "systemd", "--mesh", "play"],
        &env,
    );
    unknown.expect(2);
    assert!(unknown.one_line_error().contains("play"));
}

#[test]
fn launchd_plist_is_a_valid_property_list_with_the_expected_keys() {
    let home = tempfile::tempdir().unwrap();
    let r = svc(
        home.path(),
        &["install-service", "--format", "launchd", "--json"],
        &[],
    );
    r.expect(0);
    assert_eq!(r.json()["format"], "launchd");
    let text = std::fs::read_to_string(plist_path(home.path())).expect("plist written");
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let Plist::Dict(entries) = Xml::document(&text) else {
        panic!("root is not a dict");
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("Label"),
        Some(Plist::String("com.claudemesh.daemon".into()))
    );
    assert_eq!(get("RunAtLoad"), Some(Plist::Bool(true)));
    assert!(matches!(
        get("KeepAlive"),
        Some(Plist::Dict(_) | Plist::Bool(true))
    ));
    let daemon_dir = home.path().join(".claudemesh/daemon");
    let Some(Plist::Array(args)) = get("ProgramArguments") else {
        panic!("ProgramArguments");
    };
    let log = daemon_dir.join("daemon.log").display().to_string();
    assert_eq!(
        args,
        vec![
            Plist::String(bin()),
            Plist::String("up".into()),
            Plist::String("--log-file".into()),
            Plist::String(log),
        ]
    );
    let stdio = Plist::String(daemon_dir.join("launchd.log").display().to_string());
    assert_eq!(get("StandardOutPath"), Some(stdio.clone()));
    assert_eq!(get("StandardErrorPath"), Some(stdio));
    assert!(daemon_dir.is_dir(), "the log directory exists for launchd");
}

#[test]
fn dry_run_prints_the_file_and_writes_nothing() {
    let home = tempfile::tempdir().unwrap();
    for format in ["systemd", "launchd"] {
        let r = svc(
            home.path(),
            &["install-service", "--format", format, "--dry-run"],
            &[("CI", "1")],
        );
        r.expect(0);
        assert!(
            r.stdout.contains("dry run: nothing written"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains(&bin()), "{}", r.stdout);
    }
    let j = svc(
        home.path(),
        &["install-service", "--dry-run", "--json"],
        &[],
    );
    j.expect(0);
    assert!(j.json()["content"]
        .as_str()
        .is_some_and(|c| c.contains(&bin())));
    assert_eq!(j.json()["dry_run"], true);
    assert!(
        files_below(home.path()).is_empty(),
        "{:?}",
        files_below(home.path())
    );
}

#[test]
fn ci_refuses_a_persistent_install_unless_allowed() {
    let home = tempfile::tempdir().unwrap();
    let refused = svc(
        home.path(),
        &["install-service", "--format", "systemd"],
        &[("CI", "true")],
    );
    refused.expect(2);
    assert!(refused.one_line_error().contains("--allow-ci-persistent"));
    assert!(files_below(home.path()).is_empty());
    let j = svc(
        home.path(),
        &["install-service", "--json"],
        &[("CI", "true")],
    );
    j.expect(2);
    assert_eq!(j.json()["error"], "service");
    svc(
        home.path(),
        &[
            "install-service",
            "--format",
            "systemd",
            "--allow-ci-persistent",
        ],
        &[("CI", "true")],
    )
    .expect(0);
    assert!(unit_path(home.path()).exists());
}

#[test]
fn uninstall_removes_only_the_file_install_wrote() {
    let home = tempfile::tempdir().unwrap();
    for format in ["systemd", "launchd"] {
        svc(home.path(), &["install-service", "--format", format], &[]).expect(0);
    }
    let neighbour = home.path().join(".config/systemd/user/other.service");
    std::fs::write(&neighbour, "[Service]\nExecStart=/bin/true\n").unwrap();
    let before = files_below(home.path());

    let dry = svc(
        home.path(),
        &["uninstall-service", "--format", "systemd", "--dry-run"],
        &[],
    );
    dry.expect(0);
    assert_eq!(files_below(home.path()), before);

    let r = svc(
        home.path(),
        &["uninstall-service", "--format", "systemd"],
        &[],
    );
    r.expect(0);
    assert!(r.stdout.contains("removed "), "{}", r.stdout);
    let after = files_below(home.path());
    let gone: Vec<&PathBuf> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        gone,
        vec![&PathBuf::from(".config/systemd/user/claudemeshd.service")]
    );
    assert!(plist_path(home.path()).exists() && neighbour.exists());

    let again = svc(
        home.path(),
        &["uninstall-service", "--format", "systemd"],
        &[],
    );
    again.expect(1);
    assert!(again
        .one_line_error()
        .contains("no claudemeshd service installed"));

    std::fs::write(
        unit_path(home.path()),
        "[Service]\nExecStart=/usr/bin/something\n",
    )
    .unwrap();
    let foreign = svc(
        home.path(),
        &["uninstall-service", "--format", "systemd"],
        &[],
    );
    foreign.expect(1);
    assert!(foreign.one_line_error().contains("not written by"));
    assert!(unit_path(home.path()).exists());

    svc(
        home.path(),
        &["uninstall-service", "--format", "launchd", "--json"],
        &[],
    )
    .expect(0);
    assert!(!plist_path(home.path()).exists());
}
