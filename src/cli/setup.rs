//! Commands that set the host up rather than talk to the daemon: `install-service`,
//! `uninstall-service`, `completions`, and the hidden `man` (the generated man page; the
//! committed `docs/claudemeshd.1` is checked against it by a test).

use std::path::PathBuf;

use clap::CommandFactory;
use serde_json::{json, Value};

use super::args::{Cli, CompletionsArgs, InstallServiceArgs, UninstallServiceArgs};
use super::error::CliError;
use super::output::{self, human, Report};
use super::{env, report, Ctx};
use crate::service::{
    self, InstallOptions, ServiceError, ServiceFormat, ServiceReport, ServiceSpec, SystemManager,
    NO_MANAGER_ENV,
};
use crate::settings::{self, CONFIG_DIR_ENV, DAEMON_DIR_ENV};

fn set(name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn home() -> Result<PathBuf, CliError> {
    set("HOME")
        .map(PathBuf::from)
        .ok_or(CliError::Service(ServiceError::NoHome))
}

fn manager() -> SystemManager {
    SystemManager {
        no_manager: set(NO_MANAGER_ENV).is_some(),
        path: env("PATH"),
    }
}

fn report_json(action: &str, r: &ServiceReport) -> Value {
    json!({
        "action": action,
        "format": r.format.as_str(),
        "path": r.path.display().to_string(),
        "dry_run": r.dry_run,
        "existed": r.existed,
        "content": r.content,
        "commands": r.commands.iter().map(|c| json!({"command": c.command, "error": c.error})).collect::<Vec<_>>(),
        "manager_skipped": r.manager_skipped,
        "manual": r.manual,
    })
}

/// `install-service`.
pub fn install_service(ctx: &Ctx, args: InstallServiceArgs) -> Result<Report, CliError> {
    let dirs = ctx.dirs()?;
    if !args.meshes.is_empty() {
        // Pinning a mesh that is not joined would make the service fail at every start.
        let flags = settings::UpFlags {
            meshes: args.meshes.clone(),
            ..Default::default()
        };
        settings::load(&flags, &env)?;
    }
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|source| ServiceError::CurrentExe { source })?;
    let environment = [CONFIG_DIR_ENV, DAEMON_DIR_ENV]
        .iter()
        .filter_map(|k| set(k).map(|v| (k.to_string(), v)))
        .collect();
    let spec = ServiceSpec {
        format: args.format.unwrap_or_else(ServiceFormat::for_this_os),
        binary,
        meshes: args.meshes,
        config_dir: dirs.config_dir,
        daemon_dir: dirs.daemon_dir,
        environment,
    };
    let opts = InstallOptions {
        dry_run: args.dry_run,
        ci: set("CI").is_some(),
        allow_ci_persistent: args.allow_ci_persistent,
    };
    let r = service::install(&spec, &home()?, &opts, &manager())?;
    Ok(report(report_json("install", &r), human::service))
}

/// `uninstall-service`.
pub fn uninstall_service(_ctx: &Ctx, args: UninstallServiceArgs) -> Result<Report, CliError> {
    let format = args.format.unwrap_or_else(ServiceFormat::for_this_os);
    let r = service::uninstall(format, &home()?, args.dry_run, &manager())?;
    Ok(report(report_json("uninstall", &r), human::service))
}

/// `completions <shell>`: the script on stdout.
pub fn completions(args: CompletionsArgs) -> Result<Report, CliError> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "claudemeshd", &mut buf);
    output::raw(&buf);
    Ok(Report::silent())
}

/// The man page, roff, generated from the clap definitions.
pub fn man_page() -> Vec<u8> {
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail on I/O; an empty page would fail the docs test.
    let _ = clap_mangen::Man::new(Cli::command()).render(&mut buf);
    buf
}

/// `man`: the man page on stdout.
pub fn man() -> Result<Report, CliError> {
    output::raw(&man_page());
    Ok(Report::silent())
}
