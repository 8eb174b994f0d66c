//! The `envstore` binary: parse, call the library, print. Exit codes: 0 success, 1 a check
//! failed, 2 bad usage or bad input (every error).

mod cli;
mod commands;
mod printer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let printer = printer::Printer::new(&cli);
    match commands::run(cli, &printer) {
        Ok(code) => {
            printer.finish_progress();
            code
        }
        Err(err) => {
            printer.error(&err);
            ExitCode::from(2)
        }
    }
}
