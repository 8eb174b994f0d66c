//! Running a build command for `ensure`: with `ENVSTORE_OUT` set to the output directory, its
//! stdout sent to stderr (a front end's stdout carries only data, the path).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Runs `argv` with `ENVSTORE_OUT=out`; a failure is [`Error::BuildFailed`] with its exit code.
pub fn run_build_command(argv: &[OsString], out: &Path) -> Result<()> {
    let command = argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |status: String, code| Error::BuildFailed {
        command: command.clone(),
        status,
        code,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(failed("it is empty".to_owned(), None));
    };
    let mut cmd = Command::new(program);
    cmd.args(args).env("ENVSTORE_OUT", out);
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
        cmd.stdout(Stdio::from(fd));
    }
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(failed(status.to_string(), status.code())),
        Err(e) => Err(failed(format!("it cannot be started: {e}"), None)),
    }
}
