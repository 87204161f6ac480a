//! Install/uninstall against a recording fake manager, in a temp HOME.

use std::cell::RefCell;

use super::*;

#[derive(Default)]
struct Fake {
    disabled: Option<String>,
    fail_on: Option<&'static str>,
    ran: RefCell<Vec<String>>,
}

impl ServiceManager for Fake {
    fn disabled_reason(&self, _program: &str) -> Option<String> {
        self.disabled.clone()
    }
    fn run(&self, argv: &[String]) -> Result<(), String> {
        let cmd = argv.join(" ");
        self.ran.borrow_mut().push(cmd.clone());
        match self.fail_on {
            Some(word) if cmd.contains(word) => Err(format!("{word} failed")),
            _ => Ok(()),
        }
    }
}

fn spec(home: &Path, format: ServiceFormat) -> ServiceSpec {
    ServiceSpec {
        format,
        binary: PathBuf::from("/usr/local/bin/claudemeshd"),
        meshes: vec![],
        config_dir: home.join(".claudemesh"),
        daemon_dir: home.join(".claudemesh/daemon"),
        environment: vec![],
    }
}

fn opts() -> InstallOptions {
    InstallOptions {
        dry_run: false,
        ci: false,
        allow_ci_persistent: false,
    }
}

#[test]
fn reinstall_stops_rewrites_reloads_and_starts() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let s = spec(home.path(), ServiceFormat::Systemd);
    let first = install(&s, home.path(), &opts(), &fake).unwrap();
    assert!(!first.existed);
    assert_eq!(
        fake.ran.take(),
        vec![
            "systemctl --user daemon-reload",
            "systemctl --user enable claudemeshd.service",
            "systemctl --user start claudemeshd.service"
        ]
    );
    let again = install(&s, home.path(), &opts(), &fake).unwrap();
    assert!(again.existed);
    assert_eq!(
        fake.ran.take(),
        vec![
            "systemctl --user stop claudemeshd.service",
            "systemctl --user daemon-reload",
            "systemctl --user enable claudemeshd.service",
            "systemctl --user start claudemeshd.service"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(ServiceFormat::Systemd.path(home.path())).unwrap(),
        render(&s).unwrap()
    );
}

#[test]
fn a_failing_start_is_an_error_naming_the_command_but_a_failing_stop_is_not() {
    let home = tempfile::tempdir().unwrap();
    let s = spec(home.path(), ServiceFormat::Systemd);
    let fake = Fake {
        fail_on: Some("stop"),
        ..Default::default()
    };
    install(&s, home.path(), &opts(), &fake).unwrap();
    let r = install(&s, home.path(), &opts(), &fake).unwrap();
    assert_eq!(r.commands[0].error.as_deref(), Some("stop failed"));
    let failing = Fake {
        fail_on: Some("start"),
        ..Default::default()
    };
    match install(&s, home.path(), &opts(), &failing) {
        Err(ServiceError::Manager { command, .. }) => {
            assert_eq!(command, "systemctl --user start claudemeshd.service")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn disabled_manager_writes_the_file_and_runs_nothing() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake {
        disabled: Some("off".into()),
        ..Default::default()
    };
    let r = install(
        &spec(home.path(), ServiceFormat::Launchd),
        home.path(),
        &opts(),
        &fake,
    )
    .unwrap();
    assert_eq!(r.manager_skipped.as_deref(), Some("off"));
    assert!(r.path.exists());
    assert!(home.path().join(".claudemesh/daemon").is_dir());
    assert!(fake.ran.borrow().is_empty());
}

#[test]
fn dry_run_writes_and_runs_nothing_even_under_ci() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let o = InstallOptions {
        dry_run: true,
        ci: true,
        ..opts()
    };
    let r = install(
        &spec(home.path(), ServiceFormat::Systemd),
        home.path(),
        &o,
        &fake,
    )
    .unwrap();
    assert!(r.content.unwrap().contains("ExecStart="));
    assert!(!r.path.exists());
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
    assert!(fake.ran.borrow().is_empty());
}

#[test]
fn ci_refuses_unless_allowed() {
    let home = tempfile::tempdir().unwrap();
    let s = spec(home.path(), ServiceFormat::Systemd);
    let fake = Fake::default();
    let ci = InstallOptions { ci: true, ..opts() };
    assert!(matches!(
        install(&s, home.path(), &ci, &fake),
        Err(ServiceError::RefusedInCi)
    ));
    assert!(!ServiceFormat::Systemd.path(home.path()).exists());
    let allowed = InstallOptions {
        allow_ci_persistent: true,
        ..ci
    };
    install(&s, home.path(), &allowed, &fake).unwrap();
    assert!(ServiceFormat::Systemd.path(home.path()).exists());
}

#[test]
fn uninstall_removes_only_our_file_and_refuses_foreign_ones() {
    let home = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let s = spec(home.path(), ServiceFormat::Systemd);
    install(&s, home.path(), &opts(), &fake).unwrap();
    let dir = home.path().join(".config/systemd/user");
    std::fs::write(dir.join("other.service"), "[Service]\n").unwrap();
    fake.ran.take();
    uninstall(ServiceFormat::Systemd, home.path(), false, &fake).unwrap();
    assert_eq!(
        fake.ran.take(),
        vec![
            "systemctl --user disable --now claudemeshd.service",
            "systemctl --user daemon-reload"
        ]
    );
    assert!(!s.format.path(home.path()).exists());
    assert!(dir.join("other.service").exists());
    assert!(matches!(
        uninstall(ServiceFormat::Systemd, home.path(), false, &fake),
        Err(ServiceError::NotInstalled { .. })
    ));
    std::fs::write(
        s.format.path(home.path()),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    assert!(matches!(
        uninstall(ServiceFormat::Systemd, home.path(), false, &fake),
        Err(ServiceError::NotOurs { .. })
    ));
    assert!(s.format.path(home.path()).exists());
}
