//! Tests of directory resolution and settings precedence, on temp dirs with a fake environment.

use std::collections::HashMap;
use std::fs;

use serde_json::json;
use tempfile::TempDir;

use super::*;

/// A temp config dir holding a `config.json` with the given mesh slugs.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(slugs: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let meshes: Vec<_> = slugs
            .iter()
            .map(|s| {
                json!({"meshId": format!("mesh_{s}"), "memberId": format!("m_{s}"), "slug": s,
                       "name": s, "pubkey": "ab".repeat(32), "secretKey": "cd".repeat(64),
                       "brokerUrl": "ws://127.0.0.1:7900/ws", "joinedAt": "2026-05-03T12:00:00Z"})
            })
            .collect();
        let cfg = json!({"version": 1, "displayName": "from-config", "meshes": meshes});
        fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
        Fixture { dir }
    }

    fn daemon_toml(&self, text: &str) {
        let daemon = self.dir.path().join("daemon");
        fs::create_dir_all(&daemon).unwrap();
        fs::write(daemon.join("daemon.toml"), text).unwrap();
    }

    /// A fake environment: the config dir plus `pairs`.
    fn env(&self, pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert(
            CONFIG_DIR_ENV.into(),
            self.dir.path().to_string_lossy().into(),
        );
        move |k| map.get(k).cloned()
    }

    fn load(
        &self,
        flags: &UpFlags,
        pairs: &[(&str, &str)],
    ) -> Result<DaemonSettings, SettingsError> {
        load(flags, &self.env(pairs))
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn config_dir_defaults_to_home_dot_claudemesh_and_daemon_dir_inside_it() {
    let dirs = resolve_dirs(&env_of(&[("HOME", "/home/u")])).unwrap();
    assert_eq!(dirs.config_dir, PathBuf::from("/home/u/.claudemesh"));
    assert_eq!(dirs.daemon_dir, PathBuf::from("/home/u/.claudemesh/daemon"));
    assert_eq!(
        dirs.config_json(),
        PathBuf::from("/home/u/.claudemesh/config.json")
    );
}

#[test]
fn dir_variables_override_home_and_empty_ones_are_ignored() {
    let dirs = resolve_dirs(&env_of(&[("HOME", "/home/u"), (CONFIG_DIR_ENV, "/c")])).unwrap();
    assert_eq!(
        (dirs.config_dir.as_path(), dirs.daemon_dir.as_path()),
        (Path::new("/c"), Path::new("/c/daemon"))
    );
    let dirs = resolve_dirs(&env_of(&[(CONFIG_DIR_ENV, "/c"), (DAEMON_DIR_ENV, "/d")])).unwrap();
    assert_eq!(dirs.daemon_dir, PathBuf::from("/d"));
    let dirs = resolve_dirs(&env_of(&[
        ("HOME", "/h"),
        (CONFIG_DIR_ENV, ""),
        (DAEMON_DIR_ENV, ""),
    ]))
    .unwrap();
    assert_eq!(dirs.daemon_dir, PathBuf::from("/h/.claudemesh/daemon"));
    assert!(matches!(
        resolve_dirs(&env_of(&[])),
        Err(SettingsError::NoHome)
    ));
}

#[test]
fn daemon_files_live_in_the_daemon_dir_under_their_spec_names() {
    let dirs = Dirs {
        config_dir: "/c".into(),
        daemon_dir: "/d".into(),
    };
    let names = [
        (dirs.daemon_toml(), "daemon.toml"),
        (dirs.socket(), "daemon.sock"),
        (dirs.lock(), "daemon.lock"),
        (dirs.pid_file(), "daemon.pid"),
        (dirs.tcp_port_file(), "tcp.port"),
        (dirs.token(), "local-token"),
        (dirs.outbox_db(), "outbox.db"),
        (dirs.inbox_db(), "inbox.db"),
        (dirs.host_fingerprint(), "host_fingerprint.json"),
        (dirs.log_file(), "daemon.log"),
    ];
    for (path, name) in names {
        assert_eq!(path, Path::new("/d").join(name));
    }
}

#[test]
fn missing_config_is_an_error_naming_the_file_and_how_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(&[(CONFIG_DIR_ENV, dir.path().to_str().unwrap())]);
    let msg = load(&UpFlags::default(), &env).unwrap_err().to_string();
    assert!(
        msg.contains(&dir.path().join("config.json").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("claudemesh join <invite>"), "{msg}");
}

#[test]
fn config_without_meshes_is_an_error_naming_the_file_and_how_to_join() {
    let fx = Fixture::new(&[]);
    let msg = fx.load(&UpFlags::default(), &[]).unwrap_err().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("claudemesh join"),
        "{msg}"
    );
}

#[test]
fn absent_daemon_toml_means_defaults_and_every_mesh() {
    let fx = Fixture::new(&["a", "b"]);
    let s = fx.load(&UpFlags::default(), &[]).unwrap();
    assert_eq!(s.tuning, Tuning::default());
    assert!(!s.tcp_port_explicit);
    let slugs: Vec<_> = s.meshes.iter().map(|m| m.slug.as_str()).collect();
    assert_eq!(slugs, ["a", "b"]);
    assert_eq!(s.default_mesh, "a");
    assert_eq!(s.display_name.as_deref(), Some("from-config"));
    assert_eq!(s.dirs.daemon_dir, fx.dir.path().join("daemon"));
}

#[test]
fn tcp_port_precedence_is_flag_then_env_then_file_then_default() {
    let fx = Fixture::new(&["a"]);
    let none = UpFlags::default();
    assert_eq!(fx.load(&none, &[]).unwrap().tuning.ipc.tcp_port, 47823);
    fx.daemon_toml("[ipc]\ntcp_port = 40001\n");
    let s = fx.load(&none, &[]).unwrap();
    assert_eq!(s.tuning.ipc.tcp_port, 40001);
    assert!(s.tcp_port_explicit, "a port set in daemon.toml is explicit");
    let env = [("CLAUDEMESH_IPC_TCP_PORT", "40002")];
    assert_eq!(fx.load(&none, &env).unwrap().tuning.ipc.tcp_port, 40002);
    let flag = UpFlags {
        tcp_port: Some(0),
        ..UpFlags::default()
    };
    let s = fx.load(&flag, &env).unwrap();
    assert_eq!(s.tuning.ipc.tcp_port, 0);
    assert!(s.tcp_port_explicit);
}

#[test]
fn env_tcp_port_alone_is_explicit_but_other_ipc_keys_are_not() {
    let fx = Fixture::new(&["a"]);
    fx.daemon_toml("[ipc]\nmax_inflight = 8\n");
    let s = fx.load(&UpFlags::default(), &[]).unwrap();
    assert!(!s.tcp_port_explicit);
    let s = fx
        .load(&UpFlags::default(), &[("CLAUDEMESH_IPC_TCP_PORT", "47823")])
        .unwrap();
    assert!(s.tcp_port_explicit);
}

#[test]
fn clone_policy_and_ipc_switches_follow_the_same_precedence() {
    let fx = Fixture::new(&["a"]);
    fx.daemon_toml(
        "[clone]\npolicy = \"warn\"\n[ipc]\ntcp_enabled = true\npublic_health = false\n",
    );
    let none = UpFlags::default();
    assert_eq!(
        fx.load(&none, &[]).unwrap().tuning.clone.policy,
        ClonePolicy::Warn
    );
    let env = [
        ("CLAUDEMESH_CLONE_POLICY", "allow"),
        ("CLAUDEMESH_IPC_PUBLIC_HEALTH", "true"),
    ];
    let s = fx.load(&none, &env).unwrap();
    assert_eq!(s.tuning.clone.policy, ClonePolicy::Allow);
    assert!(s.tuning.ipc.public_health);
    let flags = UpFlags {
        clone_policy: Some(ClonePolicy::Refuse),
        no_tcp: true,
        ..UpFlags::default()
    };
    let s = fx
        .load(&flags, &[("CLAUDEMESH_IPC_TCP_ENABLED", "true"), env[0]])
        .unwrap();
    assert_eq!(s.tuning.clone.policy, ClonePolicy::Refuse);
    assert!(!s.tuning.ipc.tcp_enabled, "--no-tcp beats the environment");
    let flags = UpFlags {
        public_health: true,
        ..UpFlags::default()
    };
    assert!(fx.load(&flags, &[]).unwrap().tuning.ipc.public_health);
}

#[test]
fn mesh_flags_restrict_in_flag_order_and_set_the_default() {
    let fx = Fixture::new(&["a", "b", "c"]);
    let flags = UpFlags {
        meshes: vec!["c".into(), "a".into(), "c".into()],
        ..UpFlags::default()
    };
    let s = fx.load(&flags, &[]).unwrap();
    let slugs: Vec<_> = s.meshes.iter().map(|m| m.slug.as_str()).collect();
    assert_eq!(slugs, ["c", "a"]);
    assert_eq!(s.default_mesh, "c");
    assert_eq!(s.config.meshes.len(), 3, "the full config stays available");
}

#[test]
fn unknown_mesh_flag_is_an_error_listing_the_joined_slugs() {
    let fx = Fixture::new(&["a", "b"]);
    let flags = UpFlags {
        meshes: vec!["zz".into()],
        ..UpFlags::default()
    };
    let msg = fx.load(&flags, &[]).unwrap_err().to_string();
    assert_eq!(msg, "unknown mesh \"zz\"; joined meshes: a, b");
}

#[test]
fn default_mesh_must_be_among_the_selected_meshes() {
    let fx = Fixture::new(&["a", "b"]);
    fx.daemon_toml("default_mesh = \"b\"\n");
    assert_eq!(fx.load(&UpFlags::default(), &[]).unwrap().default_mesh, "b");
    let s = fx
        .load(&UpFlags::default(), &[("CLAUDEMESH_DEFAULT_MESH", "a")])
        .unwrap();
    assert_eq!(s.default_mesh, "a", "env beats file");
    let only_a = UpFlags {
        meshes: vec!["a".into()],
        ..UpFlags::default()
    };
    let msg = fx.load(&only_a, &[]).unwrap_err().to_string();
    assert_eq!(
        msg,
        "default_mesh \"b\" is not among the selected meshes: a"
    );
}

#[test]
fn name_flag_beats_the_config_display_name() {
    let fx = Fixture::new(&["a"]);
    let flags = UpFlags {
        name: Some("flagged".into()),
        ..UpFlags::default()
    };
    assert_eq!(
        fx.load(&flags, &[]).unwrap().display_name.as_deref(),
        Some("flagged")
    );
}

#[test]
fn malformed_daemon_toml_or_env_fails_the_load_naming_the_culprit() {
    let fx = Fixture::new(&["a"]);
    fx.daemon_toml("[outbox]\nbogus = 1\n");
    let msg = fx.load(&UpFlags::default(), &[]).unwrap_err().to_string();
    assert!(
        msg.contains("daemon.toml") && msg.contains("bogus"),
        "{msg}"
    );
    fx.daemon_toml("");
    let msg = fx
        .load(
            &UpFlags::default(),
            &[("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS", "many")],
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("CLAUDEMESH_OUTBOX_MAX_ATTEMPTS"), "{msg}");
}
