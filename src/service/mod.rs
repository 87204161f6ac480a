//! `install-service` / `uninstall-service` (SPEC §10): writes the systemd user unit or the
//! launchd agent rendered by [`render`], and drives the service manager around the write.
//!
//! Install: refuse under `CI` unless allowed → render → (if a file is there and a manager is
//! usable) stop → write atomically (0644) → reload/enable/start. Re-running it is safe.
//! Uninstall: refuse a file without [`MARKER`] (someone else's) → stop/disable → remove that
//! one file → reload. Nothing else is touched.
//!
//! The service manager is behind [`ServiceManager`] so tests never run `systemctl` or
//! `launchctl`: [`SystemManager`] runs the real programs, and is disabled entirely when
//! [`NO_MANAGER_ENV`] is set (the integration tests set it).

pub mod render;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use render::{render, ServiceFormat, ServiceSpec, LAUNCHD_LABEL, MARKER, SYSTEMD_UNIT};

/// When set (to anything non-empty), no service manager command is ever run.
pub const NO_MANAGER_ENV: &str = "CLAUDEMESHD_SERVICE_NO_MANAGER";

/// Why a service could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `CI` is set and `--allow-ci-persistent` was not given.
    #[error("refusing to install a persistent service while CI is set (a CI job should not leave a daemon behind); pass --allow-ci-persistent to install it anyway")]
    RefusedInCi,
    /// `HOME` is unset or empty.
    #[error("HOME is not set; cannot locate the per-user service directory")]
    NoHome,
    /// `std::env::current_exe` failed.
    #[error("cannot locate the claudemeshd binary to pin into the service file: {source}")]
    CurrentExe {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading, writing or removing a file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `remove`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The daemon dir (launchd's log directory) could not be created.
    #[error(transparent)]
    DaemonDir {
        /// What the files module said (it names the path).
        source: claudemesh_actors::files::FilesError,
    },
    /// A service-manager command needed after the write failed.
    #[error("{path} is written, but `{command}` failed: {detail}")]
    Manager {
        /// The file that was written.
        path: PathBuf,
        /// The command line.
        command: String,
        /// Its stderr (or the spawn error).
        detail: String,
    },
    /// The file exists but was not written by `install-service`.
    #[error("{path} was not written by `claudemeshd install-service`; not removing it")]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// A value to be written into the file holds a control character (a newline would add
    /// a directive of its own); nothing is written.
    #[error("refusing to write a service file: {what} contains a control character ({value:?})")]
    ControlCharacter {
        /// Which value (`binary path`, `--mesh`, an environment variable).
        what: String,
        /// The value, debug-escaped.
        value: String,
    },
    /// Nothing to uninstall.
    #[error("no claudemeshd service installed at {path}")]
    NotInstalled {
        /// Where the file would be.
        path: PathBuf,
    },
}

impl ServiceError {
    /// The CLI exit code: 2 for the CI refusal and a missing HOME (fixable by flags or
    /// environment), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::RefusedInCi
            | ServiceError::NoHome
            | ServiceError::ControlCharacter { .. } => 2,
            _ => 1,
        }
    }
}

/// Runs service-manager commands.
pub trait ServiceManager {
    /// Why commands are not run at all, or `None` when they are.
    fn disabled_reason(&self, program: &str) -> Option<String>;
    /// Runs `argv`; the error is its stderr or the spawn error.
    fn run(&self, argv: &[String]) -> Result<(), String>;
}

/// The real `systemctl` / `launchctl`, looked up on `PATH`.
#[derive(Debug, Clone)]
pub struct SystemManager {
    /// `CLAUDEMESHD_SERVICE_NO_MANAGER` was set.
    pub no_manager: bool,
    /// `PATH` at startup.
    pub path: Option<String>,
}

impl ServiceManager for SystemManager {
    fn disabled_reason(&self, program: &str) -> Option<String> {
        if self.no_manager {
            return Some(format!("{NO_MANAGER_ENV} is set"));
        }
        let found = self
            .path
            .as_deref()
            .unwrap_or("")
            .split(':')
            .any(|dir| !dir.is_empty() && Path::new(dir).join(program).is_file());
        (!found).then(|| format!("{program} not found on PATH"))
    }

    fn run(&self, argv: &[String]) -> Result<(), String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; ");
            Err(if err.is_empty() {
                out.status.to_string()
            } else {
                err
            })
        }
    }
}

/// One service-manager command and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRun {
    /// The command line, space-joined.
    pub command: String,
    /// `None` = succeeded; `Some(error)` = failed (only tolerated for the stop steps).
    pub error: Option<String>,
}

/// What install or uninstall did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReport {
    /// The format used.
    pub format: ServiceFormat,
    /// The service file.
    pub path: PathBuf,
    /// The rendered file (install only).
    pub content: Option<String>,
    /// Nothing was written or run.
    pub dry_run: bool,
    /// Whether a file already existed (install: it was replaced; uninstall: it was removed).
    pub existed: bool,
    /// Manager commands run, in order.
    pub commands: Vec<CommandRun>,
    /// Why no manager command ran, when none did.
    pub manager_skipped: Option<String>,
    /// The commands that would start (install) or stop (uninstall) the service by hand.
    pub manual: Vec<String>,
}

/// Options of an install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Print, do not write or run anything.
    pub dry_run: bool,
    /// `CI` was set (non-empty) in the environment.
    pub ci: bool,
    /// `--allow-ci-persistent`.
    pub allow_ci_persistent: bool,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// (program, stop commands, start commands) for installing `format` at `path`.
fn install_plan(
    format: ServiceFormat,
    path: &Path,
) -> (&'static str, Vec<Vec<String>>, Vec<Vec<String>>) {
    match format {
        ServiceFormat::Systemd => (
            "systemctl",
            vec![argv(&["systemctl", "--user", "stop", SYSTEMD_UNIT])],
            vec![
                argv(&["systemctl", "--user", "daemon-reload"]),
                argv(&["systemctl", "--user", "enable", SYSTEMD_UNIT]),
                argv(&["systemctl", "--user", "start", SYSTEMD_UNIT]),
            ],
        ),
        ServiceFormat::Launchd => {
            let domain = format!("gui/{}", uid());
            let target = format!("{domain}/{LAUNCHD_LABEL}");
            (
                "launchctl",
                vec![argv(&["launchctl", "bootout", &target])],
                vec![
                    argv(&["launchctl", "enable", &target]),
                    vec![
                        "launchctl".into(),
                        "bootstrap".into(),
                        domain,
                        path.display().to_string(),
                    ],
                ],
            )
        }
    }
}

/// (program, stop commands, after-removal commands) for uninstalling `format`.
fn uninstall_plan(format: ServiceFormat) -> (&'static str, Vec<Vec<String>>, Vec<Vec<String>>) {
    match format {
        ServiceFormat::Systemd => (
            "systemctl",
            vec![argv(&[
                "systemctl",
                "--user",
                "disable",
                "--now",
                SYSTEMD_UNIT,
            ])],
            vec![argv(&["systemctl", "--user", "daemon-reload"])],
        ),
        ServiceFormat::Launchd => (
            "launchctl",
            vec![argv(&[
                "launchctl",
                "bootout",
                &format!("gui/{}/{LAUNCHD_LABEL}", uid()),
            ])],
            Vec::new(),
        ),
    }
}

fn run_all(
    manager: &dyn ServiceManager,
    cmds: &[Vec<String>],
    tolerate: bool,
    path: &Path,
    log: &mut Vec<CommandRun>,
) -> Result<(), ServiceError> {
    for cmd in cmds {
        let command = cmd.join(" ");
        match manager.run(cmd) {
            Ok(()) => log.push(CommandRun {
                command,
                error: None,
            }),
            Err(detail) if tolerate => log.push(CommandRun {
                command,
                error: Some(detail),
            }),
            Err(detail) => {
                return Err(ServiceError::Manager {
                    path: path.to_path_buf(),
                    command,
                    detail,
                })
            }
        }
    }
    Ok(())
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ServiceError {
    let path = path.to_path_buf();
    move |source| ServiceError::Io {
        action,
        path,
        source,
    }
}

/// Writes `content` to `path` atomically (temp file in the same dir, 0644, rename).
fn write_atomic(path: &Path, content: &str) -> Result<(), ServiceError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("service"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err("write", &tmp))?;
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("write", path))
}

/// Installs (or re-installs) the service described by `spec` under `home`.
pub fn install(
    spec: &ServiceSpec,
    home: &Path,
    opts: &InstallOptions,
    manager: &dyn ServiceManager,
) -> Result<ServiceReport, ServiceError> {
    if opts.ci && !opts.allow_ci_persistent && !opts.dry_run {
        return Err(ServiceError::RefusedInCi);
    }
    let path = spec.format.path(home);
    let content = render(spec)?;
    let existed = path.exists();
    let (program, stop, start) = install_plan(spec.format, &path);
    let manual: Vec<String> = start.iter().map(|c| c.join(" ")).collect();
    let skipped = if opts.dry_run {
        Some("dry run".to_string())
    } else {
        manager.disabled_reason(program)
    };
    let mut report = ServiceReport {
        format: spec.format,
        path: path.clone(),
        content: Some(content.clone()),
        dry_run: opts.dry_run,
        existed,
        commands: Vec::new(),
        manager_skipped: skipped.clone(),
        manual,
    };
    if opts.dry_run {
        return Ok(report);
    }
    if skipped.is_none() && existed {
        run_all(manager, &stop, true, &path, &mut report.commands)?;
    }
    if spec.format == ServiceFormat::Launchd {
        // launchd opens the log paths itself and fails if their directory is missing.
        claudemesh_actors::files::ensure_private_dir(&spec.daemon_dir)
            .map_err(|source| ServiceError::DaemonDir { source })?;
    }
    write_atomic(&path, &content)?;
    if skipped.is_none() {
        run_all(manager, &start, false, &path, &mut report.commands)?;
    }
    Ok(report)
}

/// Removes the service file of `format` under `home`, stopping the service first.
pub fn uninstall(
    format: ServiceFormat,
    home: &Path,
    dry_run: bool,
    manager: &dyn ServiceManager,
) -> Result<ServiceReport, ServiceError> {
    let path = format.path(home);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ServiceError::NotInstalled { path })
        }
        Err(source) => {
            return Err(ServiceError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    if !text.contains(MARKER) {
        return Err(ServiceError::NotOurs { path });
    }
    let (program, stop, after) = uninstall_plan(format);
    let skipped = if dry_run {
        Some("dry run".to_string())
    } else {
        manager.disabled_reason(program)
    };
    let mut report = ServiceReport {
        format,
        path: path.clone(),
        content: None,
        dry_run,
        existed: true,
        commands: Vec::new(),
        manager_skipped: skipped.clone(),
        manual: stop.iter().map(|c| c.join(" ")).collect(),
    };
    if dry_run {
        return Ok(report);
    }
    if skipped.is_none() {
        run_all(manager, &stop, true, &path, &mut report.commands)?;
    }
    std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
    if skipped.is_none() {
        run_all(manager, &after, true, &path, &mut report.commands)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
