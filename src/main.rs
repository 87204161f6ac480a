//! The `claudemeshd` binary: parse, init logging, dispatch.

use clap::Parser;

fn main() {
    let cli = claudemeshd::cli::Cli::parse();
    claudemeshd::cli::init_logging(&cli);
    claudemeshd::install_crypto_provider();
    std::process::exit(claudemeshd::cli::run(cli));
}
