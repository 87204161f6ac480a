//! Commands about the daemon process itself: `up` (foreground, or `--detach`: re-exec in the
//! background with logs in `<daemon dir>/daemon.log`, return once `/v1/health` answers),
//! `down`, `status`, `version`, `accept-host`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use claudemesh_actors::settings::ClonePolicy;
use claudemesh_actors::time::now_ms;
use claudemesh_actors::{files, host, procs};
use serde_json::json;

use super::args::UpArgs;
use super::error::CliError;
use super::output::{human, Report};
use super::{call, env, report, Ctx, Target};
use crate::client::ClientError;
use crate::daemon::{self, DaemonError};
use crate::settings::{self, Dirs, UpFlags};

/// How long `down` waits for the daemon to exit.
const DOWN_WAIT: Duration = Duration::from_secs(5);

/// `up`.
pub fn up(ctx: &Ctx, args: UpArgs) -> Result<Report, CliError> {
    if args.detach {
        return detach(ctx, &args);
    }
    let clone_policy = args
        .clone_policy
        .as_deref()
        .map(|s| s.parse::<ClonePolicy>())
        .transpose()?;
    let flags = UpFlags {
        meshes: args.meshes,
        name: args.name,
        no_tcp: args.no_tcp,
        tcp_port: args.tcp_port,
        public_health: args.public_health,
        clone_policy,
    };
    let settings = settings::load(&flags, &env)?;
    // SIGHUP re-reads config.json, daemon.toml and the environment under the same flags.
    let reload: daemon::Reload = Box::new(move || settings::load(&flags, &env));
    daemon::run(settings, daemon::signals(), Some(reload))?;
    Ok(Report::silent())
}

/// The `up` flags to hand to the background process.
fn forwarded(args: &UpArgs, log: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["up".into()];
    for m in &args.meshes {
        out.extend(["--mesh".into(), m.into()]);
    }
    if let Some(n) = &args.name {
        out.extend(["--name".into(), n.into()]);
    }
    if args.no_tcp {
        out.push("--no-tcp".into());
    }
    if let Some(p) = args.tcp_port {
        out.extend(["--tcp-port".into(), p.to_string().into()]);
    }
    if args.public_health {
        out.push("--public-health".into());
    }
    if let Some(c) = &args.clone_policy {
        out.extend(["--clone-policy".into(), c.into()]);
    }
    out.extend(["--log-file".into(), log.as_os_str().to_os_string()]);
    out
}

/// The last non-empty line of a (possibly large) log file.
fn last_line(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut tail = String::new();
    let _ = f.read_to_string(&mut tail);
    tail.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

fn spawn_background(args: &UpArgs, log: &Path) -> Result<Child, CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let spawn_err = |source| CliError::DetachSpawn { source };
    let exe = std::env::current_exe().map_err(spawn_err)?;
    // stderr of the child is the log too: anything printed outside the logger (the one-line
    // startup failure, a panic) lands next to the log records.
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(spawn_err)?;
    let mut cmd = Process::new(exe);
    cmd.args(forwarded(args, log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: setsid is async-signal-safe; the child leaves our session so a closing
    // terminal does not signal it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(spawn_err)
}

/// `up --detach`.
fn detach(ctx: &Ctx, args: &UpArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let socket = dirs.socket();
    if files::socket_answers(&socket) {
        return Err(DaemonError::AlreadyRunning {
            pid: files::read_pid_file(&dirs.pid_file()),
        }
        .into());
    }
    files::ensure_private_dir(&dirs.daemon_dir)?;
    let log = args.log_file.clone().unwrap_or_else(|| dirs.log_file());
    let mut child = spawn_background(args, &log)?;
    let pid = child.id();
    let started = Instant::now();
    let limit = Duration::from_secs(args.detach_timeout);
    let target = Target::Socket(socket.clone());
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::DetachExited {
                code: status.code().unwrap_or(1),
                last_line: last_line(&log),
                log,
            });
        }
        if let Ok((_, h)) = call(&target, "health", "GET", "/v1/health", None) {
            if h["pid"].as_u64() == Some(u64::from(pid)) {
                let v = json!({
                    "detached": true,
                    "pid": pid,
                    "socket": socket.display().to_string(),
                    "log": log.display().to_string(),
                });
                return Ok(report(v, human::detached));
            }
        }
        if started.elapsed() >= limit {
            return Err(CliError::DetachTimeout {
                pid,
                secs: args.detach_timeout,
                log,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `down`.
pub fn down(ctx: &Ctx) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let pid_file = dirs.pid_file();
    let not_running = |reason: String| CliError::NotRunning {
        reason,
        socket: dirs.socket(),
    };
    let pid = files::read_pid_file(&pid_file)
        .ok_or_else(|| not_running(format!("no pid in {}", pid_file.display())))?;
    match procs::pid_owner(pid) {
        procs::PidOwner::Daemon => {}
        procs::PidOwner::Dead => {
            return Err(not_running(format!(
                "pid {pid} from {} is not alive",
                pid_file.display()
            )))
        }
        // A stale pid file whose pid was reused: never signal a stranger.
        procs::PidOwner::Other { name } => {
            return Err(not_running(format!(
                "pid {pid} from {} is {name:?}, not a claudemesh daemon (stale pid file)",
                pid_file.display()
            )))
        }
    }
    let raw = libc::pid_t::try_from(pid).map_err(|_| not_running(format!("bad pid {pid}")))?;
    // SAFETY: sending SIGTERM to the pid of our own daemon's pid file.
    if unsafe { libc::kill(raw, libc::SIGTERM) } != 0 {
        return Err(CliError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let started = Instant::now();
    while started.elapsed() < DOWN_WAIT {
        if !files::pid_alive(pid) {
            return Ok(report(json!({"stopped": true, "pid": pid}), human::down));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(CliError::StillRunning {
        pid,
        secs: DOWN_WAIT.as_secs(),
    })
}

/// `status`.
pub fn status(ctx: &Ctx) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    let target = ctx.target(&dirs).map_err(|e| match e {
        CliError::NoTcpPort { path } => CliError::NotRunning {
            reason: format!("{} is missing", path.display()),
            socket: dirs.socket(),
        },
        e @ CliError::TcpNotDaemon { .. } => CliError::NotRunning {
            reason: e.to_string(),
            socket: dirs.socket(),
        },
        other => other,
    })?;
    let (_, mut h) = call(&target, "health", "GET", "/v1/health", None).map_err(|e| match e {
        CliError::Client(c @ ClientError::Unreachable { .. }) => CliError::NotRunning {
            reason: c.to_string(),
            socket: dirs.socket(),
        },
        other => other,
    })?;
    h["running"] = true.into();
    Ok(report(h, human::status))
}

/// `version`: never fails because the daemon is absent (it says so instead).
pub fn version(ctx: &Ctx) -> Result<Report, CliError> {
    let cli_version = env!("CARGO_PKG_VERSION");
    let dirs = ctx.dirs()?;
    let answer = ctx
        .target(&dirs)
        .and_then(|t| call(&t, "version", "GET", "/v1/version", None));
    let mut v = json!({"cli_version": cli_version, "daemon_version": null});
    match answer {
        Ok((_, d)) => {
            v["daemon_version"] = d["daemon_version"].clone();
            v["ipc_api"] = d["ipc_api"].clone();
            v["schema_version"] = d["schema_version"].clone();
        }
        Err(
            e @ (CliError::Client(ClientError::Unreachable { .. }) | CliError::NoTcpPort { .. }),
        ) => {
            v["daemon_error"] = e.to_string().into();
        }
        Err(e) => return Err(e),
    }
    let differs = v["daemon_version"]
        .as_str()
        .is_some_and(|d| d != cli_version);
    v["versions_differ"] = differs.into();
    let mut r = report(v.clone(), human::version);
    if differs {
        r = r.warn(format!(
            "the daemon runs version {} but this CLI is {cli_version}; restart the daemon (claudemeshd down && claudemeshd up --detach)",
            v["daemon_version"].as_str().unwrap_or("?")
        ));
    }
    Ok(r)
}

/// `accept-host`.
pub fn accept_host(ctx: &Ctx) -> Result<Report, CliError> {
    let dirs: Dirs = ctx.dirs()?;
    files::ensure_private_dir(&dirs.daemon_dir)?;
    let path: PathBuf = dirs.host_fingerprint();
    let previous = host::load(&path)?;
    let identity = host::read_identity(Path::new("/"));
    let matched = previous
        .as_ref()
        .map(|p| host::check(Some(p), &identity) == host::HostCheck::Match);
    let written = host::write(&path, &identity, now_ms())?;
    let v = json!({
        "path": path.display().to_string(),
        "fingerprint": written.fingerprint,
        "host_id": written.host_id,
        "stable_mac": written.stable_mac,
        "previous_fingerprint": previous.map(|p| p.fingerprint),
        "previously_matched": matched,
    });
    Ok(report(v, human::accept_host))
}
