//! Unit tests of [`crate::files`].

use super::*;

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn token_is_created_0600_and_stable_across_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local-token");
    let first = load_or_create_token(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(first.len(), 43, "32 bytes in base64url without padding");
    assert!(first
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{first}\n"));
    assert_eq!(load_or_create_token(&path).unwrap(), first);
    let other = load_or_create_token(&dir.path().join("other-token")).unwrap();
    assert_ne!(other, first);
}

#[test]
fn token_file_with_wider_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local-token");
    fs::write(&path, "abc\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    match load_or_create_token(&path) {
        Err(FilesError::InsecureMode { path: p, mode }) => {
            assert_eq!(p, path);
            assert_eq!(mode, 0o644);
        }
        other => panic!("expected InsecureMode, got {other:?}"),
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load_or_create_token(&path).unwrap(), "abc");
}

#[test]
fn empty_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local-token");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    assert!(matches!(
        load_or_create_token(&path),
        Err(FilesError::InvalidToken { .. })
    ));
}

#[test]
fn private_dir_is_created_0700_and_a_0755_dir_is_tightened() {
    let root = tempfile::tempdir().unwrap();
    let fresh = root.path().join("a/b/daemon");
    assert_eq!(ensure_private_dir(&fresh).unwrap(), DirState::Created);
    assert_eq!(mode_of(&fresh), 0o700);
    assert_eq!(
        ensure_private_dir(&fresh).unwrap(),
        DirState::AlreadyPrivate
    );

    let wide = root.path().join("wide");
    fs::create_dir(&wide).unwrap();
    fs::set_permissions(&wide, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        ensure_private_dir(&wide).unwrap(),
        DirState::Tightened { old_mode: 0o755 }
    );
    assert_eq!(mode_of(&wide), 0o700);
}

#[test]
fn private_file_write_is_0600_replaces_content_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp.port");
    write_private_file(&path, b"4711\n").unwrap();
    write_private_file(&path, b"4712\n").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "4712\n");
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn second_lock_on_another_fd_is_refused_with_our_pid_and_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.lock");
    let lock = acquire_lock(&path).unwrap();
    assert_eq!(lock.path(), path);
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(read_pid_file(&path), Some(std::process::id()));
    match acquire_lock(&path) {
        Err(FilesError::AlreadyRunning { pid }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    drop(lock);
    let again = acquire_lock(&path).unwrap();
    drop(again);
}

#[test]
fn held_lock_without_pid_falls_back_to_daemon_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.lock");
    let lock = acquire_lock(&path).unwrap();
    fs::write(&path, "").unwrap();
    fs::write(dir.path().join("daemon.pid"), "4242\n").unwrap();
    match acquire_lock(&path) {
        Err(FilesError::AlreadyRunning { pid }) => assert_eq!(pid, Some(4242)),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    drop(lock);
}

#[test]
fn pid_alive_sees_ourselves_and_rejects_impossible_pids() {
    assert!(pid_alive(std::process::id()));
    assert!(!pid_alive(0));
    assert!(!pid_alive(u32::MAX));
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("daemon.pid");
    fs::write(&pid, "garbage").unwrap();
    assert_eq!(read_pid_file(&pid), None);
    assert_eq!(read_pid_file(&dir.path().join("missing")), None);
}

#[test]
fn bound_socket_is_0600_at_final_name_without_temp_and_answers() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("daemon");
    ensure_private_dir(&dir).unwrap();
    let sock = dir.join("daemon.sock");
    assert!(!socket_answers(&sock));
    // A stale socket file from a dead daemon is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(!socket_answers(&sock));
    let listener = bind_private_socket(&dir, "daemon.sock").unwrap();
    let meta = fs::symlink_metadata(&sock).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["daemon.sock".to_string()]);
    assert!(socket_answers(&sock));
    drop(listener);
}

#[test]
fn socket_in_a_group_readable_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let res = bind_private_socket(dir.path(), "daemon.sock");
    assert!(matches!(
        res,
        Err(FilesError::InsecureMode { mode: 0o750, .. })
    ));
}

#[test]
fn too_long_socket_path_is_refused_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("d".repeat(MAX_SOCKET_PATH));
    match check_socket_path(&long.join("daemon.sock")) {
        Err(FilesError::SocketPathTooLong { len, .. }) => assert!(len > MAX_SOCKET_PATH),
        other => panic!("expected SocketPathTooLong, got {other:?}"),
    }
    let exact = PathBuf::from(format!("/{}", "s".repeat(MAX_SOCKET_PATH - 1)));
    assert!(check_socket_path(&exact).is_ok());
    assert!(matches!(
        bind_private_socket(&long, "daemon.sock"),
        Err(FilesError::SocketPathTooLong { .. })
    ));
}

/// Tests that chown to another uid need root; without it they must fail, not pass silently.
fn require_root(what: &str) {
    assert_eq!(
        our_uid(),
        0,
        "{what} needs root (it chowns files to uid 65534); run the tests as root, as CI does"
    );
}

#[test]
fn a_planted_lock_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let lock = dir.path().join("daemon.lock");
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    match acquire_lock(&lock) {
        Err(FilesError::Untrusted { path, what }) => {
            assert_eq!(path, lock);
            assert_eq!(what, "a symbolic link");
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    // A dangling link is not created through either.
    let dangling = dir.path().join("other.lock");
    std::os::unix::fs::symlink(dir.path().join("would-be-created"), &dangling).unwrap();
    assert!(acquire_lock(&dangling).is_err());
    assert!(!dir.path().join("would-be-created").exists());
}

#[test]
fn a_planted_hard_link_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let lock = dir.path().join("daemon.lock");
    fs::hard_link(&victim, &lock).unwrap();
    assert!(matches!(
        acquire_lock(&lock),
        Err(FilesError::Untrusted { .. })
    ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(matches!(
        check_entry(&lock),
        Err(FilesError::Untrusted { .. })
    ));
}

#[test]
fn a_token_symlink_is_refused_and_pid_links_read_as_no_pid() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    fs::write(&target, "stolen-token\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let token = dir.path().join("local-token");
    std::os::unix::fs::symlink(&target, &token).unwrap();
    assert!(matches!(
        load_or_create_token(&token),
        Err(FilesError::Untrusted { .. })
    ));
    fs::write(&target, "4242\n").unwrap();
    let pid = dir.path().join("daemon.pid");
    std::os::unix::fs::symlink(&target, &pid).unwrap();
    assert_eq!(read_pid_file(&pid), None);
    assert!(matches!(
        check_entry(&pid),
        Err(FilesError::Untrusted { .. })
    ));
    assert!(check_entry(&dir.path().join("absent")).is_ok());
}

#[test]
fn a_daemon_dir_or_lock_of_another_user_is_refused() {
    require_root("a_daemon_dir_or_lock_of_another_user_is_refused");
    let root = tempfile::tempdir().unwrap();
    let theirs = root.path().join("daemon");
    fs::create_dir(&theirs).unwrap();
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    match ensure_private_dir(&theirs) {
        Err(FilesError::NotOwned { owner, .. }) => assert_eq!(owner, 65534),
        other => panic!("expected NotOwned, got {other:?}"),
    }
    assert_eq!(mode_of(&theirs), 0o777, "someone else's dir is left alone");
    let ours = root.path().join("ours");
    ensure_private_dir(&ours).unwrap();
    let lock = ours.join("daemon.lock");
    fs::write(&lock, "theirs\n").unwrap();
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
    assert!(matches!(
        acquire_lock(&lock),
        Err(FilesError::NotOwned { owner: 65534, .. })
    ));
    assert_eq!(fs::read_to_string(&lock).unwrap(), "theirs\n");
}
