//! Where the daemon's files live and what its settings are, merged from every source with the
//! precedence of SPEC.md §2: command-line flag > environment (`CLAUDEMESH_*`) > `daemon.toml`
//! > built-in default.
//!
//! Owns the filesystem and environment edges; the parsing and validation themselves are the
//! engine's (`claudemesh_actors::settings`). The environment is always passed in as a lookup
//! closure, so tests never read the real environment or `~/.claudemesh`.
//!
//! Invariants of a loaded [`DaemonSettings`]: at least one mesh is selected, every `--mesh`
//! slug was joined, and `default_mesh` is one of the selected slugs.

use std::path::{Path, PathBuf};

use claudemesh_actors::settings::{
    parse_config_json, parse_daemon_toml, ClaudemeshConfig, ClonePolicy, JoinedMesh, SettingsError,
    Tuning,
};

/// The variable overriding the config dir (`~/.claudemesh`).
pub const CONFIG_DIR_ENV: &str = "CLAUDEMESH_CONFIG_DIR";
/// The variable overriding the daemon dir (`<config dir>/daemon`).
pub const DAEMON_DIR_ENV: &str = "CLAUDEMESH_DAEMON_DIR";
/// The tuning variable for the TCP port; setting it counts as an explicit port request.
const TCP_PORT_ENV: &str = "CLAUDEMESH_IPC_TCP_PORT";

/// The two directories the daemon uses and the files inside them (SPEC.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Holds the claudemesh CLI's `config.json` (read only for the daemon).
    pub config_dir: PathBuf,
    /// Holds everything the daemon writes: socket, lock, token, databases (mode 0700).
    pub daemon_dir: PathBuf,
}

impl Dirs {
    /// `<config dir>/config.json`: the joined meshes.
    pub fn config_json(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }
    /// `<daemon dir>/daemon.toml`: optional tuning.
    pub fn daemon_toml(&self) -> PathBuf {
        self.daemon_dir.join("daemon.toml")
    }
    /// `<daemon dir>/daemon.sock`: the HTTP API's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.daemon_dir.join("daemon.sock")
    }
    /// `<daemon dir>/daemon.lock`: held with `flock` while the daemon runs.
    pub fn lock(&self) -> PathBuf {
        self.daemon_dir.join("daemon.lock")
    }
    /// `<daemon dir>/daemon.pid`: the running daemon's pid.
    pub fn pid_file(&self) -> PathBuf {
        self.daemon_dir.join("daemon.pid")
    }
    /// `<daemon dir>/tcp.port`: the TCP port actually bound.
    pub fn tcp_port_file(&self) -> PathBuf {
        self.daemon_dir.join("tcp.port")
    }
    /// `<daemon dir>/local-token`: the bearer token of the TCP API.
    pub fn token(&self) -> PathBuf {
        self.daemon_dir.join("local-token")
    }
    /// `<daemon dir>/session-id`: the stable broker session id (SPEC §5.6).
    pub fn session_id(&self) -> PathBuf {
        self.daemon_dir.join("session-id")
    }
    /// `<daemon dir>/outbox.db`.
    pub fn outbox_db(&self) -> PathBuf {
        self.daemon_dir.join("outbox.db")
    }
    /// `<daemon dir>/inbox.db`.
    pub fn inbox_db(&self) -> PathBuf {
        self.daemon_dir.join("inbox.db")
    }
    /// `<daemon dir>/host_fingerprint.json`: the clone check's stored fingerprint.
    pub fn host_fingerprint(&self) -> PathBuf {
        self.daemon_dir.join("host_fingerprint.json")
    }
    /// `<daemon dir>/daemon.log`: stderr of a `--detach`ed daemon.
    pub fn log_file(&self) -> PathBuf {
        self.daemon_dir.join("daemon.log")
    }
}

/// Non-empty value of `name`, or `None`.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// Resolves the directories: config dir = `$CLAUDEMESH_CONFIG_DIR` or `$HOME/.claudemesh`;
/// daemon dir = `$CLAUDEMESH_DAEMON_DIR` or `<config dir>/daemon`. Empty variables count as
/// unset. Nothing is created or checked on disk.
pub fn resolve_dirs(env: &dyn Fn(&str) -> Option<String>) -> Result<Dirs, SettingsError> {
    let config_dir = match var(env, CONFIG_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(var(env, "HOME").ok_or(SettingsError::NoHome)?).join(".claudemesh"),
    };
    let daemon_dir = var(env, DAEMON_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| config_dir.join("daemon"));
    Ok(Dirs {
        config_dir,
        daemon_dir,
    })
}

/// The settings flags of `claudemeshd up`, as the CLI parsed them. `false`/`None`/empty means
/// "not given": the environment, `daemon.toml` or the default decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpFlags {
    /// `--mesh SLUG` (repeatable): attach to these meshes only; empty = every joined mesh.
    pub meshes: Vec<String>,
    /// `--name NAME`: display name, overriding `config.json`'s `displayName`.
    pub name: Option<String>,
    /// `--no-tcp`: serve the Unix socket only.
    pub no_tcp: bool,
    /// `--tcp-port N` (0 = any free port).
    pub tcp_port: Option<u16>,
    /// `--public-health`: `/v1/health` on TCP without the token.
    pub public_health: bool,
    /// `--clone-policy refuse|warn|allow`.
    pub clone_policy: Option<ClonePolicy>,
}

/// Everything the daemon needs to start, merged from all sources.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Where the files are.
    pub dirs: Dirs,
    /// `config.json` as read (every joined mesh).
    pub config: ClaudemeshConfig,
    /// The meshes this daemon attaches to: all joined ones, or the `--mesh` ones in flag
    /// order. Never empty.
    pub meshes: Vec<JoinedMesh>,
    /// Slug of the mesh used when a send names none; one of `meshes`.
    pub default_mesh: String,
    /// The display name: `--name`, else `config.json`'s `displayName`.
    pub display_name: Option<String>,
    /// Tuning after file, environment and flags.
    pub tuning: Tuning,
    /// The TCP port was chosen by the user (flag, environment or `daemon.toml`) rather than
    /// defaulted: if it is taken, startup fails instead of falling back to socket-only.
    pub tcp_port_explicit: bool,
}

/// Reads `path`; `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SettingsError::Read {
            file: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether the `daemon.toml` text sets `[ipc] tcp_port` (the text is already known to parse).
fn file_sets_tcp_port(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| {
        t.get("ipc")
            .and_then(toml::Value::as_table)
            .is_some_and(|ipc| ipc.contains_key("tcp_port"))
    })
}

/// Loads the settings for `claudemeshd up` (and for a SIGHUP reload): `config.json`, then
/// `daemon.toml` if present, then the `CLAUDEMESH_*` environment, then `flags`.
///
/// Errors (all exit code 2): no `config.json` or no mesh in it (the message says to run
/// `claudemesh join <invite>`), a malformed file or variable, an unknown `--mesh` (the message
/// lists the joined slugs), a `default_mesh` outside the selected meshes.
pub fn load(
    flags: &UpFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DaemonSettings, SettingsError> {
    let dirs = resolve_dirs(env)?;

    let config_path = dirs.config_json();
    let text = read_optional(&config_path)?.ok_or_else(|| SettingsError::NoConfig {
        file: config_path.clone(),
    })?;
    let config = parse_config_json(&text, &config_path)?;
    if config.meshes.is_empty() {
        return Err(SettingsError::NoMeshes { file: config_path });
    }

    let toml_path = dirs.daemon_toml();
    let (mut tuning, file_port) = match read_optional(&toml_path)? {
        Some(text) => (
            parse_daemon_toml(&text, &toml_path)?,
            file_sets_tcp_port(&text),
        ),
        None => (Tuning::default(), false),
    };
    tuning.apply_env(env)?;
    if flags.no_tcp {
        tuning.ipc.tcp_enabled = false;
    }
    if let Some(port) = flags.tcp_port {
        tuning.ipc.tcp_port = port;
    }
    if flags.public_health {
        tuning.ipc.public_health = true;
    }
    if let Some(policy) = flags.clone_policy {
        tuning.clone.policy = policy;
    }
    // Each source was checked as it was read; this guards the merged result as a whole.
    tuning
        .validate()
        .map_err(|(key, reason)| SettingsError::OutOfRange { key, reason })?;
    let tcp_port_explicit =
        flags.tcp_port.is_some() || var(env, TCP_PORT_ENV).is_some() || file_port;

    let meshes = select_meshes(&config, &flags.meshes)?;
    let default_mesh = match &tuning.default_mesh {
        Some(slug) if meshes.iter().any(|m| &m.slug == slug) => slug.clone(),
        Some(slug) => {
            return Err(SettingsError::DefaultMeshNotSelected {
                slug: slug.clone(),
                selected: meshes.iter().map(|m| m.slug.clone()).collect(),
            })
        }
        // `meshes` is never empty: config has ≥ 1 mesh and `--mesh` only picks joined ones.
        None => meshes
            .first()
            .map(|m| m.slug.clone())
            .ok_or_else(|| SettingsError::NoMeshes {
                file: dirs.config_json(),
            })?,
    };
    let display_name = flags.name.clone().or_else(|| config.display_name.clone());

    Ok(DaemonSettings {
        dirs,
        config,
        meshes,
        default_mesh,
        display_name,
        tuning,
        tcp_port_explicit,
    })
}

/// Every joined mesh when `wanted` is empty; else the `wanted` slugs in order, once each.
fn select_meshes(
    config: &ClaudemeshConfig,
    wanted: &[String],
) -> Result<Vec<JoinedMesh>, SettingsError> {
    if wanted.is_empty() {
        return Ok(config.meshes.clone());
    }
    let mut selected: Vec<JoinedMesh> = Vec::new();
    for slug in wanted {
        if selected.iter().any(|m| &m.slug == slug) {
            continue;
        }
        let mesh = config
            .meshes
            .iter()
            .find(|m| &m.slug == slug)
            .ok_or_else(|| SettingsError::UnknownMesh {
                slug: slug.clone(),
                joined: config.meshes.iter().map(|m| m.slug.clone()).collect(),
            })?;
        selected.push(mesh.clone());
    }
    Ok(selected)
}

#[cfg(test)]
mod tests;
