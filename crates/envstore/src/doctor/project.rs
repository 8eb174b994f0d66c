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
    /// The requirement on envstore in `[build-system] requires`, as written.
    pub requirement: Option<String>,
    /// `[tool.uv.sources]` names where envstore comes from (an index, a path, a URL).
    pub uv_source: bool,
}

impl Project {
    /// Whether the requirement on envstore fixes what is fetched: an exact version (`==`,
    /// `===`) or a direct reference (`envstore @ URL`). A bare or ranged name makes pip and uv
    /// ask the public index and take its highest version.
    pub fn pinned(&self) -> bool {
        self.requirement
            .as_deref()
            .is_none_or(|r| r.contains("==") || r.contains('@'))
    }
}

/// The distribution name a PEP 508 requirement starts with, normalized.
fn requirement_name(requirement: &str) -> String {
    requirement
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .replace(['_', '.'], "-")
}

/// The quoted strings in a TOML array's text (`["a", 'b>=1']`).
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['"', '\'']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    out
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
        requirement: None,
        uv_source: false,
    };
    // `requires = [` may span lines: its text is gathered until the closing bracket.
    let mut requires: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(gathered) = requires.as_mut() {
            gathered.push_str(line);
            gathered.push('\n');
            if line.contains(']') {
                let text = requires.take().unwrap_or_default();
                project.requirement = quoted(&text)
                    .into_iter()
                    .find(|r| requirement_name(r) == "envstore");
            }
            continue;
        }
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
            "build-system"
                if line
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim() == "requires") =>
            {
                let value = line.split_once('=').map_or("", |(_, v)| v);
                requires = Some(format!("{value}\n"));
                if value.contains(']') {
                    project.requirement = quoted(value)
                        .into_iter()
                        .find(|r| requirement_name(r) == "envstore");
                    requires = None;
                }
            }
            "tool.uv.sources"
                if line.split_once('=').is_some_and(|(k, _)| {
                    requirement_name(k.trim().trim_matches('"')) == "envstore"
                }) =>
            {
                project.uv_source = true;
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
        assert!(stock.pinned(), "no requirement on envstore: nothing to pin");
    }

    #[test]
    fn finds_the_requirement_on_envstore_and_whether_it_is_pinned() {
        let p = parse("[build-system]\nrequires = [\"envstore\", \"scikit-build-core\"]\n");
        assert_eq!(p.requirement.as_deref(), Some("envstore"));
        assert!(!p.pinned());
        let p = parse(
            "[build-system]\nrequires = [\n  'scikit-build-core>=0.10',\n  \"envstore==0.1.0\",\n]\nbuild-backend = \"envstore.build\"\n",
        );
        assert_eq!(p.requirement.as_deref(), Some("envstore==0.1.0"));
        assert!(p.pinned() && p.hook, "{p:?}");
        let p = parse("[build-system]\nrequires = [\"envstore>=0.1\", \"envstore-extra==1\"]\n");
        assert_eq!(p.requirement.as_deref(), Some("envstore>=0.1"));
        assert!(!p.pinned());
        let p = parse(
            "[build-system]\nrequires = [\"envstore @ file:///wheels/envstore-0.1.0.whl\"]\n",
        );
        assert!(p.pinned());
        let p = parse(
            "[build-system]\nrequires = [\"envstore\"]\n[tool.uv.sources]\nenvstore = { index = \"ours\" }\n",
        );
        assert!(p.uv_source && !p.pinned());
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
