//! Rendering of the service files from the templates in `config/` (compiled in with
//! `include_str!`): the systemd user unit and the launchd agent plist (SPEC §10).
//!
//! Pure string work. Invariants: every value placed in a file is escaped for that file's
//! syntax (systemd quoting with `%` doubled, and `$` doubled in arguments but not in the
//! executable word, which systemd does not expand; XML entities), so a path with spaces or
//! quotes cannot change the meaning of the file; a value holding a control character is
//! refused, never written; the rendered text always carries
//! [`MARKER`], which is how `uninstall-service` recognises a file it wrote.

use std::path::{Path, PathBuf};

use super::ServiceError;

/// The systemd user unit template.
pub const SYSTEMD_TEMPLATE: &str = include_str!("../../config/claudemeshd.service");
/// The launchd agent template.
pub const LAUNCHD_TEMPLATE: &str = include_str!("../../config/com.claudemesh.daemon.plist");
/// Text every file we write contains; `uninstall-service` removes only files that have it.
pub const MARKER: &str = "Written by `claudemeshd install-service`";
/// The systemd unit name.
pub const SYSTEMD_UNIT: &str = "claudemeshd.service";
/// The launchd label.
pub const LAUNCHD_LABEL: &str = "com.claudemesh.daemon";

/// Which service manager the file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceFormat {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent (macOS).
    Launchd,
}

impl ServiceFormat {
    /// launchd on macOS, systemd everywhere else.
    pub fn for_this_os() -> Self {
        if cfg!(target_os = "macos") {
            ServiceFormat::Launchd
        } else {
            ServiceFormat::Systemd
        }
    }

    /// `systemd` or `launchd`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceFormat::Systemd => "systemd",
            ServiceFormat::Launchd => "launchd",
        }
    }

    /// Where the file goes below `home`: `~/.config/systemd/user/claudemeshd.service` or
    /// `~/Library/LaunchAgents/com.claudemesh.daemon.plist`.
    pub fn path(self, home: &Path) -> PathBuf {
        match self {
            ServiceFormat::Systemd => home.join(".config/systemd/user").join(SYSTEMD_UNIT),
            ServiceFormat::Launchd => home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        }
    }
}

/// Everything a service file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Which file.
    pub format: ServiceFormat,
    /// Absolute path of the `claudemeshd` binary, pinned into the file.
    pub binary: PathBuf,
    /// `--mesh` slugs passed to `up`; empty = every joined mesh.
    pub meshes: Vec<String>,
    /// The claudemesh config dir (`ReadWritePaths=` of the hardening lines).
    pub config_dir: PathBuf,
    /// The daemon dir (launchd log paths).
    pub daemon_dir: PathBuf,
    /// Variables pinned into the file (the `CLAUDEMESH_CONFIG_DIR`/`CLAUDEMESH_DAEMON_DIR`
    /// in effect at install time), in order.
    pub environment: Vec<(String, String)>,
}

impl ServiceSpec {
    /// The daemon's log file under launchd (`up --log-file`, rotated).
    pub fn launchd_log(&self) -> PathBuf {
        self.daemon_dir.join("daemon.log")
    }

    /// Where launchd sends the process's own stdout/stderr (early errors, panics).
    pub fn launchd_stdio(&self) -> PathBuf {
        self.daemon_dir.join("launchd.log")
    }

    /// The daemon's command line: `<binary> up [--log-file …] [--mesh …]`.
    pub fn arguments(&self) -> Vec<String> {
        let mut args = vec![self.binary.display().to_string(), "up".to_string()];
        if self.format == ServiceFormat::Launchd {
            args.push("--log-file".into());
            args.push(self.launchd_log().display().to_string());
        }
        for m in &self.meshes {
            args.push("--mesh".into());
            args.push(m.clone());
        }
        args
    }
}

/// Refuses any value that holds a control character (`\n` would start a new directive in a
/// unit; XML 1.0 cannot carry most of them at all).
fn check_values(spec: &ServiceSpec) -> Result<(), ServiceError> {
    let mut values: Vec<(String, String)> = vec![
        ("the binary path".into(), spec.binary.display().to_string()),
        (
            "the config dir".into(),
            spec.config_dir.display().to_string(),
        ),
        (
            "the daemon dir".into(),
            spec.daemon_dir.display().to_string(),
        ),
    ];
    values.extend(
        spec.meshes
            .iter()
            .map(|m| ("--mesh".to_string(), m.clone())),
    );
    for (k, v) in &spec.environment {
        values.push((format!("environment variable {k:?}"), k.clone()));
        values.push((format!("environment variable {k:?}"), v.clone()));
    }
    match values
        .into_iter()
        .find(|(_, v)| v.chars().any(char::is_control))
    {
        Some((what, value)) => Err(ServiceError::ControlCharacter {
            what,
            value: format!("{value:?}"),
        }),
        None => Ok(()),
    }
}

/// Renders the file for `spec`; refuses values with control characters.
pub fn render(spec: &ServiceSpec) -> Result<String, ServiceError> {
    check_values(spec)?;
    let version = format!("claudemeshd {}", env!("CARGO_PKG_VERSION"));
    Ok(match spec.format {
        ServiceFormat::Systemd => {
            // systemd expands `$VAR` in arguments (so `$` is doubled there) but takes the
            // executable word literally: a doubled `$` would name another file.
            let exec: Vec<String> = spec
                .arguments()
                .iter()
                .enumerate()
                .map(|(i, a)| systemd_quote(a, i > 0))
                .collect();
            let env: String = spec
                .environment
                .iter()
                .map(|(k, v)| {
                    format!(
                        "Environment={}\n",
                        systemd_quote(&format!("{k}={v}"), false)
                    )
                })
                .collect();
            SYSTEMD_TEMPLATE
                .replace("{{version}}", &version)
                .replace("{{exec_start}}", &exec.join(" "))
                .replace("{{environment}}", &env)
                .replace(
                    "{{claudemesh_dir}}",
                    &systemd_quote(&spec.config_dir.display().to_string(), false),
                )
        }
        ServiceFormat::Launchd => {
            let args: String = spec
                .arguments()
                .iter()
                .map(|a| format!("\t\t<string>{}</string>\n", xml_escape(a)))
                .collect();
            let env = if spec.environment.is_empty() {
                String::new()
            } else {
                let mut s = String::from("\t<key>EnvironmentVariables</key>\n\t<dict>\n");
                for (k, v) in &spec.environment {
                    s.push_str(&format!(
                        "\t\t<key>{}</key>\n\t\t<string>{}</string>\n",
                        xml_escape(k),
                        xml_escape(v)
                    ));
                }
                s.push_str("\t</dict>\n");
                s
            };
            LAUNCHD_TEMPLATE
                .replace("{{version}}", &xml_escape(&version))
                .replace("{{program_arguments}}", &args)
                .replace("{{environment}}", &env)
                .replace(
                    "{{stdout_path}}",
                    &xml_escape(&spec.launchd_stdio().display().to_string()),
                )
                .replace(
                    "{{stderr_path}}",
                    &xml_escape(&spec.launchd_stdio().display().to_string()),
                )
        }
    })
}

/// Quotes one word for a systemd unit: `%` is always doubled (specifiers), `$` too when
/// `dollar` (command lines expand `$VAR`); words with other than plain path characters are
/// wrapped in double quotes with `\` and `"` escaped.
pub fn systemd_quote(word: &str, dollar: bool) -> String {
    let mut escaped = word.replace('%', "%%");
    if dollar {
        escaped = escaped.replace('$', "$$");
    }
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._:=@+,-%$".contains(&b));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Escapes text for XML character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: ServiceFormat) -> ServiceSpec {
        ServiceSpec {
            format,
            binary: PathBuf::from("/opt/claude mesh/bin/claudemeshd"),
            meshes: vec!["work".into(), "a&b".into()],
            config_dir: PathBuf::from("/home/u/.claudemesh"),
            daemon_dir: PathBuf::from("/home/u/.claudemesh/daemon"),
            environment: vec![("CLAUDEMESH_CONFIG_DIR".into(), "/home/u/.claudemesh".into())],
        }
    }

    #[test]
    fn systemd_unit_pins_the_binary_and_every_directive() {
        let unit = render(&spec(ServiceFormat::Systemd)).unwrap();
        assert!(unit.contains(
            "ExecStart=\"/opt/claude mesh/bin/claudemeshd\" up --mesh work --mesh \"a&b\"\n"
        ));
        for line in [
            "Restart=on-failure",
            "RestartSec=5",
            "NoNewPrivileges=yes",
            "LimitNOFILE=4096",
            "MemoryMax=256M",
            "#PrivateTmp=yes",
            "#ProtectSystem=strict",
            "#ProtectHome=read-only",
            "#ReadWritePaths=/home/u/.claudemesh",
            "Environment=CLAUDEMESH_CONFIG_DIR=/home/u/.claudemesh",
            "WantedBy=default.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} missing in\n{unit}");
        }
        assert!(unit.contains(MARKER));
        assert!(!unit.contains("{{"), "{unit}");
    }

    #[test]
    fn launchd_plist_escapes_xml_and_logs_to_the_daemon_dir() {
        let plist = render(&spec(ServiceFormat::Launchd)).unwrap();
        assert!(plist.contains("<string>/opt/claude mesh/bin/claudemeshd</string>"));
        assert!(plist.contains("<string>a&amp;b</string>"));
        assert!(plist.contains("<string>--log-file</string>"));
        assert!(plist.contains("<string>/home/u/.claudemesh/daemon/launchd.log</string>"));
        assert!(plist.contains("<key>EnvironmentVariables</key>"));
        assert!(plist.contains(MARKER));
        assert!(!plist.contains("{{"), "{plist}");
    }

    #[test]
    fn systemd_quoting_escapes_specifiers_variables_and_quotes() {
        assert_eq!(systemd_quote("/usr/bin/x", true), "/usr/bin/x");
        assert_eq!(systemd_quote("100%", true), "100%%");
        assert_eq!(systemd_quote("$HOME", true), "$$HOME");
        assert_eq!(systemd_quote("$HOME", false), "$HOME");
        assert_eq!(systemd_quote("a \"b\"\\", true), "\"a \\\"b\\\"\\\\\"");
        assert_eq!(systemd_quote("", true), "\"\"");
    }

    #[test]
    fn the_executable_word_keeps_its_dollar_and_arguments_double_it() {
        let mut s = spec(ServiceFormat::Systemd);
        s.binary = PathBuf::from("/opt/a$b/100%/claudemeshd");
        s.meshes = vec!["$HOME".into()];
        let unit = render(&s).unwrap();
        assert!(
            unit.contains("ExecStart=/opt/a$b/100%%/claudemeshd up --mesh $$HOME\n"),
            "{unit}"
        );
    }

    #[test]
    fn control_characters_in_any_value_are_refused() {
        for format in [ServiceFormat::Systemd, ServiceFormat::Launchd] {
            let mut s = spec(format);
            s.binary = PathBuf::from("/opt/x\nExecStartPre=/bin/evil");
            assert!(matches!(
                render(&s),
                Err(ServiceError::ControlCharacter { .. })
            ));
            let mut s = spec(format);
            s.meshes = vec!["work\r".into()];
            assert!(render(&s).is_err());
            let mut s = spec(format);
            s.environment = vec![("CLAUDEMESH_CONFIG_DIR".into(), "/a\u{7f}".into())];
            assert!(render(&s).is_err());
            let mut s = spec(format);
            s.config_dir = PathBuf::from("/a\tb");
            assert!(render(&s).is_err());
        }
    }

    #[test]
    fn paths_follow_the_format() {
        let home = Path::new("/h");
        assert_eq!(
            ServiceFormat::Systemd.path(home),
            PathBuf::from("/h/.config/systemd/user/claudemeshd.service")
        );
        assert_eq!(
            ServiceFormat::Launchd.path(home),
            PathBuf::from("/h/Library/LaunchAgents/com.claudemesh.daemon.plist")
        );
    }
}
