//! What a project's pyproject.toml says about the hook, read line by line (enough for the keys
//! that matter), with a bounded, non-blocking read: a pyproject.toml that is a fifo or a
//! device is reported, never waited on.

use std::path::Path;

/// The part of pyproject.toml the doctor reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// `build-backend = "envstore.build"`.
    pub hook: bool,
    /// The backend the hook wraps (`[tool.envstore] backend`, default scikit-build-core).
    pub backend: String,
    /// `[tool.scikit-build] build-dir`, if set.
    pub build_dir: Option<String>,
}

/// What reading pyproject.toml gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectFile {
    Read(Project),
    Missing,
    /// It exists but cannot be read as text (a fifo, a device, too large, not UTF-8): why.
    Unreadable(String),
}

impl ProjectFile {
    pub fn project(&self) -> Option<&Project> {
        match self {
            ProjectFile::Read(p) => Some(p),
            _ => None,
        }
    }
}

/// A pyproject.toml larger than this is not one a person wrote.
const MAX_PYPROJECT: u64 = 4 << 20;

pub(crate) fn read(dir: &Path) -> ProjectFile {
    let path = dir.join("pyproject.toml");
    let bytes = match envstore_fs::read_input(&path, MAX_PYPROJECT) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ProjectFile::Missing,
        Err(e) => return ProjectFile::Unreadable(e.to_string()),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return ProjectFile::Unreadable("it is not UTF-8 text".to_owned());
    };
    ProjectFile::Read(parse(&text))
}

fn value_of(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
}

fn parse(text: &str) -> Project {
    let mut section = String::new();
    let mut project = Project {
        hook: false,
        backend: "scikit_build_core.build".into(),
        build_dir: None,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            continue;
        }
        match section.as_str() {
            "build-system"
                if value_of(line, "build-backend").as_deref() == Some("envstore.build") =>
            {
                project.hook = true;
            }
            "tool.envstore" => {
                if let Some(v) = value_of(line, "backend") {
                    project.backend = v;
                }
            }
            "tool.scikit-build" => {
                if let Some(v) = value_of(line, "build-dir") {
                    project.build_dir = Some(v);
                }
            }
            _ => {}
        }
    }
    project
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hook_the_backend_and_the_build_dir() {
        let p = parse(
            "[build-system]\nrequires = [\"envstore\"]\nbuild-backend = \"envstore.build\"\n\
             [tool.envstore]\nbackend = 'mesonpy'\n[tool.scikit-build]\nbuild-dir = \"build/{wheel_tag}\"\n",
        );
        assert!(p.hook);
        assert_eq!(p.backend, "mesonpy");
        assert_eq!(p.build_dir.as_deref(), Some("build/{wheel_tag}"));
        let stock = parse("[build-system]\nbuild-backend = \"scikit_build_core.build\"\n");
        assert!(!stock.hook && stock.build_dir.is_none());
    }

    #[test]
    fn a_fifo_is_reported_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pyproject.toml");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        match read(dir.path()) {
            ProjectFile::Unreadable(why) => assert!(why.contains("a fifo"), "{why}"),
            other => panic!("expected unreadable, got {other:?}"),
        }
        assert_eq!(read(&dir.path().join("nowhere")), ProjectFile::Missing);
    }
}
