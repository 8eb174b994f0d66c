use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::WalkError;

/// Excluded unless `--no-default-excludes`: Python's bytecode caches differ on every run
/// (timestamps in the header, `co_filename`), so keeping them would give every build env a new id.
pub const DEFAULT_EXCLUDES: &[&str] = &["__pycache__", "*.pyc"];

/// Which entries the walk leaves out. A pattern without `/` matches an entry's name at any depth
/// (`*.pyc`); a pattern with `/` matches the path relative to the root (`share/doc/**`).
/// `*` never crosses a `/`.
#[derive(Debug, Clone)]
pub struct Filter {
    names: GlobSet,
    paths: GlobSet,
    patterns: Vec<String>,
    relocate: bool,
}

impl Filter {
    pub fn new(default_excludes: bool, extra: &[String]) -> Result<Filter, WalkError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let defaults = DEFAULT_EXCLUDES
            .iter()
            .filter(|_| default_excludes)
            .map(|s| s.to_string());
        let patterns: Vec<String> = defaults.chain(extra.iter().cloned()).collect();
        for pattern in &patterns {
            let trimmed = pattern.trim_start_matches('/');
            let glob = GlobBuilder::new(trimmed)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| WalkError::BadPattern {
                    pattern: pattern.clone(),
                    source,
                })?;
            if pattern.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|source| WalkError::BadPattern {
                pattern: patterns.join(" "),
                source,
            })
        };
        Ok(Filter {
            names: build(names)?,
            paths: build(paths)?,
            patterns,
            relocate: false,
        })
    }

    /// Makes the walk relocatable (see the `relocate` module): the root's own path in small
    /// text files and symlink targets is stored as a placeholder.
    pub fn relocating(mut self, relocate: bool) -> Filter {
        self.relocate = relocate;
        self
    }

    pub fn relocates(&self) -> bool {
        self.relocate
    }

    /// The patterns in force, defaults first.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn excludes(&self, parent: &Path, name: &OsStr, _is_dir: bool) -> bool {
        if !self.names.is_empty() && self.names.is_match_candidate(&Candidate::new(name)) {
            return true;
        }
        if self.paths.is_empty() {
            return false;
        }
        let rel = parent.join(name);
        self.paths
            .is_match_candidate(&Candidate::new(OsStr::from_bytes(
                rel.as_os_str().as_bytes(),
            )))
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter::new(true, &[]).expect("default patterns are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(filter: &Filter, rel: &str) -> bool {
        let path = Path::new(rel);
        let parent = path.parent().unwrap_or(Path::new(""));
        filter.excludes(parent, path.file_name().unwrap(), false)
    }

    #[test]
    fn default_excludes_bytecode_at_any_depth() {
        let f = Filter::default();
        assert!(excluded(&f, "__pycache__"));
        assert!(excluded(&f, "lib/python3.11/site-packages/x/__pycache__"));
        assert!(excluded(&f, "a/b/mod.cpython-311.pyc"));
        assert!(!excluded(&f, "a/b/mod.py"));
        assert!(!excluded(&f, "a/b/pyc"));
    }

    #[test]
    fn no_default_excludes_keeps_bytecode() {
        let f = Filter::new(false, &[]).unwrap();
        assert!(!excluded(&f, "x/__pycache__"));
        assert!(!excluded(&f, "x.pyc"));
    }

    #[test]
    fn path_patterns_are_anchored_at_the_root() {
        let f = Filter::new(false, &["share/doc/**".into(), "*.a".into()]).unwrap();
        assert!(excluded(&f, "share/doc/readme"));
        assert!(!excluded(&f, "x/share/doc/readme"));
        assert!(excluded(&f, "deep/lib/libfoo.a"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(matches!(
            Filter::new(true, &["[".into()]),
            Err(WalkError::BadPattern { .. })
        ));
    }
}
