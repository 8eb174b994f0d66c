//! The `envstore` binary: parse, call the library, print. Exit codes: 0 success, 1 a check
//! failed, 2 bad usage or bad input (every error).

mod cli;
mod commands;
mod hints;
mod printer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let printer = printer::Printer::new(&cli);
    let result = commands::run(cli, &printer);
    printer.finish_progress();
    // Data that did not reach stdout: a closed pipe (`envstore ls | head -1`) ends quietly,
    // like other Unix tools; any other failure (a full disk) is an error, never exit 0.
    if let Some(e) = printer.stdout_error() {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
        printer.error(&anyhow::anyhow!("cannot write to stdout: {e}"));
        return ExitCode::from(2);
    }
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            printer.error(&err);
            ExitCode::from(2)
        }
    }
}

/// Whether `err` is a closed stdout (an export to `-` whose reader stopped reading).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<envstore::Error>(),
            Some(envstore::Error::Output { source }) if source.kind() == std::io::ErrorKind::BrokenPipe
        )
    })
}
