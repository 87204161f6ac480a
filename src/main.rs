//! The `claudemeshd` binary: parse, init logging, dispatch.

use clap::Parser;

fn main() {
    let cli = claudemeshd::cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    claudemeshd::install_crypto_provider();
    std::process::exit(claudemeshd::cli::run(cli));
}
