//! The `envstore` binary: parse, call the library, print. Exit codes: 0 success, 1 a check
//! failed, 2 bad usage or bad input (every error).

mod cli;
mod commands;
mod hints;
mod printer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    bound_malloc();
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

/// glibc's malloc raises its mmap threshold to the largest block freed so far (up to 32 MiB),
/// after which large, short-lived buffers (a pack index, a decompressed block, a sort buffer)
/// come from its arenas and are kept there once freed: a pull of a million files peaked at
/// 74 MiB while at most 23 MiB was ever allocated at once. A fixed threshold returns such
/// buffers to the system when freed (37 MiB). Other C libraries do not need this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn bound_malloc() {
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; it is called before
    // any other thread exists, and a refused value (return 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc() {}

/// Whether `err` is a closed stdout (an export to `-` whose reader stopped reading).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<envstore::Error>(),
            Some(envstore::Error::Output { source }) if source.kind() == std::io::ErrorKind::BrokenPipe
        )
    })
}
