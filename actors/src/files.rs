//! Daemon-dir files (SPEC §2, §3 step 1, §5.6, §9): the private directory, the `local-token`,
//! the stable broker `session-id`, atomic private writes, the `flock` singleton lock, pid files
//! and the private Unix socket.
//!
//! Invariants this module keeps:
//! - Nothing it creates is ever wider than 0600 (files, socket) or 0700 (the daemon dir), and
//!   never for a moment: modes are given at creation (`O_CREAT|O_EXCL` with a mode), never
//!   fixed afterwards by relying on the process umask.
//! - The socket is bound under a temporary name inside the 0700 dir, chmod-ed to 0600 and
//!   only then renamed onto its public name, so `daemon.sock` never exists with a wider mode.
//! - The lock is held by an open file description (`flock`), so it dies with the process; the
//!   lock file is never deleted (deleting it would let two processes lock two different inodes).
//! - Nothing in the daemon dir is trusted blindly (issue 13 item 9): the dir must be owned by
//!   our effective uid ([`FilesError::NotOwned`]); every file we open in it is opened with
//!   `O_NOFOLLOW` and checked with `fstat` (a regular file, owned by us, one link) before it
//!   is read, written or truncated ([`open_owned`]), so a `daemon.lock -> victim` planted while
//!   the dir was world-writable is refused, never followed.
//!
//! Pure std + libc; no actix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use rand::RngCore as _;

/// Longest Unix socket path the OS accepts (`sun_path` minus its terminating NUL).
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH: usize = 107;
/// Longest Unix socket path the OS accepts (`sun_path` minus its terminating NUL).
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH: usize = 103;

/// Errors of the daemon-dir files, each naming the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// An I/O operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`create dir`, `read`, `rename`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A secret file or private directory exists with a mode wider than allowed.
    #[error("{path} has mode {mode:04o}, wider than allowed; fix it with: chmod 600 {path}")]
    InsecureMode {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The token file exists but holds no token.
    #[error("{path} is empty or not a token; delete it to mint a new one")]
    InvalidToken {
        /// The token file.
        path: PathBuf,
    },
    /// Another process holds the daemon lock.
    #[error("already running{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The holder's pid, when the lock or pid file names one.
        pid: Option<u32>,
    },
    /// The daemon dir, or a file in it, belongs to another user.
    #[error("{path} is owned by uid {owner}, not by us (uid {ours}); refusing to use it: remove it or set CLAUDEMESH_DAEMON_DIR to a directory of our own")]
    NotOwned {
        /// The directory or file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        ours: u32,
    },
    /// A file in the daemon dir is a symbolic link, a hard link or not a regular file: it
    /// may have been planted to make us write elsewhere.
    #[error("{path} is {what}; refusing to open it (something planted it there?): remove it and start again")]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// `a symbolic link`, `a file with 2 hard links`, `not a regular file`.
        what: String,
    },
    /// A socket path exceeds what `sockaddr_un` can hold.
    #[error("socket path {path} is {len} bytes, longer than the OS limit of {MAX_SOCKET_PATH}; set CLAUDEMESH_DAEMON_DIR to a shorter directory")]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FilesError + 'a {
    move |source| FilesError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`ensure_private_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// The directory did not exist and was created 0700.
    Created,
    /// It existed with group/other bits set and was tightened to 0700 (the caller logs it).
    Tightened {
        /// The permission bits it had.
        old_mode: u32,
    },
    /// It existed with no group/other bits.
    AlreadyPrivate,
}

/// Creates `path` (and missing parents) as a 0700 directory, or tightens an existing one
/// (SPEC §3 step 1). An existing directory owned by another uid is refused
/// ([`FilesError::NotOwned`]): tightening someone else's directory would not make it ours.
pub fn ensure_private_dir(path: &Path) -> Result<DirState, FilesError> {
    match fs::metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            if meta.uid() != our_uid() {
                return Err(FilesError::NotOwned {
                    path: path.to_path_buf(),
                    owner: meta.uid(),
                    ours: our_uid(),
                });
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                return Ok(DirState::AlreadyPrivate);
            }
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", path))?;
            Ok(DirState::Tightened { old_mode: mode })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_err("create dir", path))?;
            // The umask may have narrowed 0700 further; make it exact.
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", path))?;
            Ok(DirState::Created)
        }
        Err(e) => Err(io_err("stat", path)(e)),
    }
}

/// Reads the bearer token at `path`, or mints one (32 random bytes, base64url without padding,
/// newline-terminated, created 0600 with `O_EXCL`). Returns the token without its newline.
/// An existing file with any bit beyond 0600 is refused ([`FilesError::InsecureMode`]).
pub fn load_or_create_token(path: &Path) -> Result<String, FilesError> {
    loop {
        match open_owned(path, OpenOptions::new().read(true)) {
            Ok(mut file) => {
                let meta = file.metadata().map_err(io_err("stat", path))?;
                let mode = meta.permissions().mode() & 0o7777;
                if mode & !0o600 != 0 {
                    return Err(FilesError::InsecureMode {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
                let mut text = String::new();
                file.read_to_string(&mut text)
                    .map_err(io_err("read", path))?;
                let token = text.trim();
                if token.is_empty() || token.contains(char::is_whitespace) {
                    return Err(FilesError::InvalidToken {
                        path: path.to_path_buf(),
                    });
                }
                return Ok(token.to_string());
            }
            Err(FilesError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(mut file) => {
                file.write_all(format!("{token}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("write", path))?;
                return Ok(token);
            }
            // Another process minted it between our open and create: read theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", path)(e)),
        }
    }
}

/// Replaces `path` atomically with `contents`: a temporary file in the same directory is
/// created 0600, written, fsync-ed and renamed over `path`.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), FilesError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename", path))
    })();
    if result.is_err() {
        // Best effort: the temp file is ours and useless now.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Persist the rename itself; failure here only weakens durability, not correctness.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The daemon's singleton lock: an exclusive `flock` on `daemon.lock`, held as long as this
/// value lives (drop it, or let the process exit, to release). The file holds our pid.
#[derive(Debug)]
pub struct DaemonLock {
    /// The open lock file; closing it releases the `flock`.
    file: File,
    /// Where the lock file lives.
    path: PathBuf,
}

impl DaemonLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRawFd for DaemonLock {
    /// The descriptor holding the lock (e.g. to keep it open across `exec`).
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.file.as_raw_fd()
    }
}

/// Takes the daemon lock at `path` (created 0600) with `flock(LOCK_EX|LOCK_NB)` and writes our
/// pid into it. If another open file description holds it → [`FilesError::AlreadyRunning`] with
/// the pid read from the lock file, else from `daemon.pid` beside it.
///
/// The file is opened with `O_NOFOLLOW` and checked with `fstat` before it is truncated: a
/// symbolic link, a hard link or a file of another user there is refused
/// ([`FilesError::Untrusted`], [`FilesError::NotOwned`]) and the file it points to is never
/// touched.
pub fn acquire_lock(path: &Path) -> Result<DaemonLock, FilesError> {
    let mut file = open_owned(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
    )?;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for this call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let pid =
                read_pid_file(path).or_else(|| read_pid_file(&parent_dir(path).join("daemon.pid")));
            return Err(FilesError::AlreadyRunning { pid });
        }
        return Err(io_err("flock", path)(err));
    }
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))?;
    Ok(DaemonLock {
        file,
        path: path.to_path_buf(),
    })
}

/// True when a process with this pid exists (`kill(pid, 0)` succeeds or fails with `EPERM`).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid written in a pid (or lock) file: its first line as a positive integer.
/// The file is opened with `O_NOFOLLOW`; a link or another user's file reads as no pid.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    let mut text = String::new();
    open_owned(path, OpenOptions::new().read(true))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

/// Refuses socket paths longer than [`MAX_SOCKET_PATH`] bytes.
pub fn check_socket_path(path: &Path) -> Result<(), FilesError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(FilesError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}

/// True when something accepts a connection on the Unix socket at `path`.
pub fn socket_answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Binds a listening Unix socket at `dir/name` with mode 0600 and no window where it is wider:
/// binds a temporary name (`.~` + `name` less two characters) in `dir`, chmods it 0600, then renames it onto `name` (replacing
/// a stale socket: the caller has already checked that no live daemon answers there). `dir`
/// must not be group/other accessible ([`FilesError::InsecureMode`] otherwise).
pub fn bind_private_socket(dir: &Path, name: &str) -> Result<UnixListener, FilesError> {
    let final_path = dir.join(name);
    check_socket_path(&final_path)?;
    // The temporary name is no longer than `name` (a fixed `.~` prefix on a shortened name),
    // so a final path within the OS limit never fails on its temporary one. One binder at a
    // time: the caller holds the daemon lock.
    let short: String = name
        .chars()
        .take(name.chars().count().saturating_sub(2).max(1))
        .collect();
    let tmp = dir.join(format!(".~{short}"));
    let dir_mode = fs::metadata(dir)
        .map_err(io_err("stat", dir))?
        .permissions()
        .mode()
        & 0o7777;
    if dir_mode & 0o077 != 0 {
        return Err(FilesError::InsecureMode {
            path: dir.to_path_buf(),
            mode: dir_mode,
        });
    }
    // A leftover of a previous process that had our pid; nothing can be using it.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &tmp)(e)),
    }
    let listener = UnixListener::bind(&tmp).map_err(io_err("bind", &tmp))?;
    let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", &tmp))
        .and_then(|()| fs::rename(&tmp, &final_path).map_err(io_err("rename", &final_path)));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

mod session;
pub use session::{
    is_session_id, load_or_create_session_id, new_session_id, SessionIdState, SESSION_ID_PREFIX,
};

mod owned;
pub use owned::{check_entry, open_owned, our_uid};

#[cfg(test)]
mod tests;
