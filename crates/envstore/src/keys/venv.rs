//! The recipe of `envstore venv`: a virtualenv with the given requirements, keyed on the
//! requirement files, the interpreter and the installer. It defines a persistent key, so it
//! lives here and not in a front end: the CLI, the Python API (which runs the CLI) and any
//! embedder compute one key for one environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use envstore_link::LinkPolicy;

use crate::keys::build::run_build_command;
use crate::keys::ensure::EnsureSpec;
use crate::{Error, Result};

/// What `venv` builds, and how.
#[derive(Debug, Clone)]
pub struct VenvRecipe {
    /// The key's inputs (requirement files, interpreter identity, installer) and the layout.
    pub spec: EnsureSpec,
    /// The installer and its version (`uv 0.9.2 (...)`), or `venv+pip`.
    pub installer: String,
    requirements: Vec<PathBuf>,
    /// The base interpreter's real path, as it reported it (venvs are made from it).
    executable: PathBuf,
    uv: Option<PathBuf>,
}

/// The recipe's version: part of every venv key, so a change of recipe is a new key. (2: keyed
/// on the resolved base interpreter, not on how it was spelled.)
const RECIPE: &str = "envstore-venv-2";

/// What the interpreter is, whatever it was called (`python3` through a pyenv shim, a venv's
/// `bin/python`, `/usr/bin/python3.11`): the real path of the base interpreter (a venv's is
/// the one it was made from), its version, implementation and ABI. One interpreter, one key.
const IDENTITY: &str = "import os, sys, sysconfig\n\
    base = getattr(sys, '_base_executable', None) or sys.executable\n\
    print(os.path.realpath(base))\n\
    print(sys.version.replace(chr(10), ' '))\n\
    print(sys.implementation.cache_tag)\n\
    print(sysconfig.get_config_var('SOABI'))";

/// The recipe for a venv of `requirements` made with `python` (default `python3` from PATH).
/// Runs the interpreter once to learn what it is (`-I -S`: no site import, most of its
/// start-up), and `uv --version` when uv is on PATH.
pub fn venv_recipe(
    requirements: &[PathBuf],
    python: Option<&Path>,
    name: Option<String>,
    policy: LinkPolicy,
) -> Result<VenvRecipe> {
    let python = python.unwrap_or(Path::new("python3"));
    let failed = |reason: String| Error::Interpreter {
        python: python.to_owned(),
        reason,
    };
    let probe = Command::new(python)
        .args(["-I", "-S", "-c", IDENTITY])
        .output()
        .map_err(|e| failed(format!("it cannot be run: {e}")))?;
    if !probe.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&probe.stderr).trim().to_owned(),
        ));
    }
    let identity = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    let executable = PathBuf::from(identity.lines().next().unwrap_or_default());
    let uv = which("uv");
    let installer = match &uv {
        // `uv 0.13.9 (...)`: the version is part of the key.
        Some(uv) => Command::new(uv).arg("--version").output().map_or_else(
            |_| "uv".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        ),
        None => "venv+pip".to_owned(),
    };
    let spec = EnsureSpec {
        key_files: requirements.to_vec(),
        texts: vec![RECIPE.to_owned(), identity, installer.clone()],
        argv: vec!["envstore".into(), "venv".into()],
        name,
        relocate: true,
        policy,
        ..EnsureSpec::default()
    };
    Ok(VenvRecipe {
        spec,
        installer,
        requirements: requirements.to_vec(),
        executable,
        uv,
    })
}

impl VenvRecipe {
    /// Builds the venv into `out` (with uv when it is on PATH, else `python -m venv` and pip).
    pub fn build(&self, out: &Path) -> Result<()> {
        let python = out.join("bin/python");
        // Make the venv, then install into it: with uv when it is on PATH, else venv and pip.
        let (create, mut install): (Vec<OsString>, Vec<OsString>) = match &self.uv {
            Some(uv) => (
                vec![
                    uv.into(),
                    "venv".into(),
                    "--quiet".into(),
                    "--python".into(),
                    self.executable.clone().into(),
                    out.into(),
                ],
                vec![
                    uv.into(),
                    "pip".into(),
                    "install".into(),
                    "--quiet".into(),
                    "--python".into(),
                    python.into(),
                ],
            ),
            None => (
                vec![
                    self.executable.clone().into(),
                    "-m".into(),
                    "venv".into(),
                    out.into(),
                ],
                vec![
                    python.into(),
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--quiet".into(),
                ],
            ),
        };
        run_build_command(&create, out)?;
        if self.requirements.is_empty() {
            return Ok(());
        }
        install.extend(
            self.requirements
                .iter()
                .flat_map(|r| ["-r".into(), r.as_os_str().to_owned()]),
        );
        run_build_command(&install, out)
    }
}

/// A program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
