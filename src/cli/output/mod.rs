//! The one place the CLI prints. Commands build a [`Report`] (a JSON document and its human
//! rendering, see [`human`]) or fail with a [`CliError`]; this module writes it: the human
//! text or the JSON document on stdout, warnings and the one-line failure reason on stderr
//! (prefixed `claudemeshd:`), and under `--json` a failure document on stdout as well.
//!
//! Invariant: stdout carries exactly one JSON document under `--json` (except `events`, which
//! writes one document per line); a closed stdout (`| head`) ends the command quietly
//! instead of panicking.

pub mod human;
pub mod mesh;

use std::io::{self, Write};

use serde_json::Value;

use super::error::CliError;
use crate::client::SseEvent;

/// What a successful command prints.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The `--json` document (`None`: nothing to print, e.g. a foreground `up`).
    pub json: Option<Value>,
    /// The human text.
    pub human: String,
    /// Printed on stderr in both modes.
    pub warnings: Vec<String>,
}

impl Report {
    /// A report of `json`, shown to humans as `human`.
    pub fn new(json: Value, human: String) -> Self {
        Report {
            json: Some(json),
            human,
            warnings: Vec::new(),
        }
    }

    /// Nothing to print.
    pub fn silent() -> Self {
        Report::default()
    }

    /// Adds a warning line.
    pub fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }
}

/// Makes a message one line (SPEC §3: every failure is one line on stderr).
pub fn one_line(text: &str) -> String {
    text.trim().replace('\n', "; ")
}

fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()
}

/// A warning on stderr.
pub fn warning(text: &str) {
    eprintln!("claudemeshd: warning: {}", one_line(text));
}

/// Prints the outcome of a command and returns the exit code.
pub fn finish(json_mode: bool, result: Result<Report, CliError>) -> i32 {
    match result {
        Ok(report) => {
            for w in &report.warnings {
                warning(w);
            }
            match (&report.json, json_mode) {
                (Some(v), true) => {
                    let _ = out(&v.to_string());
                }
                (Some(_), false) if !report.human.is_empty() => {
                    let _ = out(&report.human);
                }
                _ => {}
            }
            0
        }
        Err(e) => fail(json_mode, &e),
    }
}

/// Prints a failure: one line on stderr, and the JSON document under `--json`.
pub fn fail(json_mode: bool, e: &CliError) -> i32 {
    let message = one_line(&e.to_string());
    eprintln!("claudemeshd: {message}");
    if json_mode {
        let _ = out(&e.to_json(&message).to_string());
    }
    e.exit_code()
}

/// Prints raw text (completion scripts, the man page).
pub fn raw(text: &[u8]) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text).and_then(|()| stdout.flush());
}

/// Prints one streamed event; `Err` when stdout is gone (the reader went away).
pub fn event(json_mode: bool, ev: &SseEvent) -> io::Result<()> {
    if json_mode {
        out(&human::event_json(ev).to_string())
    } else {
        out(&human::event(ev))
    }
}
