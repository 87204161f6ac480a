//! Generated documents stay true to the CLI: the man page, completions, README commands.

use std::path::Path;

use super::cli;

#[test]
fn man_page_in_docs_is_generated_from_the_current_cli() {
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/claudemeshd.1"))
        .unwrap_or_default();
    let generated = claudemeshd::cli::setup::man_page();
    assert!(
        committed == generated,
        "docs/claudemeshd.1 is out of date with the clap definitions; regenerate it with:\n    cargo run -q -- man > docs/claudemeshd.1"
    );
    let from_binary = cli(Path::new("/nonexistent"), &["man"]);
    from_binary.expect(0);
    assert_eq!(from_binary.stdout.as_bytes(), generated.as_slice());
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let r = cli(Path::new("/nonexistent"), &["completions", shell]);
        r.expect(0);
        assert!(r.stdout.contains("claudemeshd"), "{shell}");
        assert!(r.stdout.contains("install-service"), "{shell}");
    }
}

/// Splits a README command line like a shell would for simple quoting.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[test]
fn every_claudemeshd_command_in_the_readme_parses() {
    use clap::Parser;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut in_code = false;
    let mut checked = 0;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let code = line.split(" #").next().unwrap_or("").trim();
        let Some(pos) = code.find("claudemeshd ") else {
            continue;
        };
        // Only invocations: the binary name at the start, after env assignments or a path.
        let before = &code[..pos];
        if !(before.is_empty()
            || before.ends_with('/')
            || before.ends_with("= ")
            || before.split_whitespace().all(|w| w.contains('=')))
        {
            continue;
        }
        let rest = &code[pos..];
        let cmd = rest
            .split(['|', ';', '&', '>', '<'])
            .next()
            .unwrap_or("")
            .trim();
        let words = shell_words(cmd);
        if words.iter().any(|w| w.contains('$')) && !words.iter().any(|w| w == "send") {
            continue;
        }
        if let Err(e) = claudemeshd::cli::Cli::try_parse_from(&words) {
            if !matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                panic!("README command does not parse: {cmd}\n{e}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} README commands found");
}
