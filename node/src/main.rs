//! The `kairan` binary: parse the command line, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kairan_node::cli::Cli::parse();
    match kairan_node::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kairan: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
