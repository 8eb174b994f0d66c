//! Build files below a project directory: the ones that still name a temporary build
//! environment (a configure without the hook), and where CMake believes a build directory is.
//! Reads are bounded and never block (envstore_fs::read_input).

use std::path::{Path, PathBuf};

/// Build files larger than this are not looked into.
const MAX_BUILD_FILE: u64 = 256 << 20;
/// Markers of the temporary environments of pip, uv and build.
const TEMPORARY: &[&str] = &["/pip-build-env-", "/builds-v0/.tmp", "/build-env-"];

/// The first path of a temporary build environment in `dir`'s CMakeCache.txt or build.ninja,
/// as `FILE: path`.
fn temporary_env(dir: &Path) -> Option<String> {
    for name in ["CMakeCache.txt", "build.ninja"] {
        let Ok(bytes) = envstore_fs::read_input(&dir.join(name), MAX_BUILD_FILE) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for marker in TEMPORARY {
            if let Some(at) = text.find(marker) {
                let start = text[..at]
                    .rfind(|c: char| c.is_whitespace() || c == '=' || c == ';')
                    .map_or(0, |i| i + 1);
                let end = text[at..]
                    .find(|c: char| c.is_whitespace() || c == ';')
                    .map_or(text.len(), |i| at + i);
                return Some(format!("{name}: {}", &text[start..end]));
            }
        }
    }
    None
}

/// Directories below `dir` (to `depth` levels, hidden ones skipped, links not followed) whose
/// build files name a temporary build environment.
pub(super) fn temporary_envs(dir: &Path, depth: usize) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_owned(), 0)];
    while let Some((d, level)) = stack.pop() {
        if let Some(what) = temporary_env(&d) {
            found.push((d.clone(), what));
        }
        if level < depth
            && let Ok(entries) = std::fs::read_dir(&d)
        {
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with('.')
                    && e.file_type().is_ok_and(|t| t.is_dir())
                {
                    stack.push((e.path(), level + 1));
                }
            }
        }
    }
    found.sort();
    found
}

/// Where CMake believes its build directory is (it moved if this is elsewhere).
pub(super) fn cmake_home(dir: &Path) -> Option<PathBuf> {
    let bytes = envstore_fs::read_input(&dir.join("CMakeCache.txt"), MAX_BUILD_FILE).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_CACHEFILE_DIR:INTERNAL="))
        .map(PathBuf::from)
}
