//! Keys: the inputs an environment is built from, hashed into the name of what was built.
//!
//! envstore names an environment by its content; a key names it by its *inputs*, so a tool can
//! find the environment for its current inputs without building anything (Nix's derivation ->
//! realisation, Bazel's action key -> output, uv's declared inputs -> cached environment). The
//! inputs are key files (their paths as given and their contents), free texts, environment
//! variables (set or not, and their values) and the build command's argv:
//!
//! ```text
//! key = blake3("envstore-key-1\0" || files sorted by path || texts || variables sorted by
//!              name || argv), each field length-prefixed (docs/format.md)
//! ```
//!
//! A [`KeyRecord`] (`<store>/keys/<key>`) maps a key to the snapshot built from it and keeps
//! the hashes of its inputs (never the values: a variable may hold a secret), so that
//! [`explain`] can say which input changed between two builds. This crate computes and
//! compares; the store reads and writes the files.

use std::fmt::Write as _;

use envstore_tree::{KeyId, SnapshotId};

const KEY_TAG: &[u8] = b"envstore-key-1\0";
const RECORD_HEADER: &str = "envstore-key 1";

/// A 32-byte blake3 digest of one input.
pub type Digest = [u8; 32];

/// The inputs of a key, with their values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Key files: the path as the user gave it, and the digest of the file's content.
    pub files: Vec<(String, Digest)>,
    /// Free texts (`--key TEXT`), in the order given.
    pub texts: Vec<String>,
    /// Environment variables by name: their value, or `None` when unset.
    pub env: Vec<(String, Option<Vec<u8>>)>,
    /// The build command and its arguments.
    pub argv: Vec<Vec<u8>>,
}

fn field(hasher: &mut blake3::Hasher, tag: u8, bytes: &[u8]) {
    hasher.update(&[tag]);
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

impl Inputs {
    /// The key: a hash over every input, each field tagged and length-prefixed so that no two
    /// different sets of inputs encode alike. Files and variables are sorted (their order on a
    /// command line does not matter); texts and argv keep their order (it does).
    pub fn key(&self) -> KeyId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(KEY_TAG);
        let mut files = self.files.clone();
        files.sort();
        for (path, digest) in &files {
            field(&mut hasher, b'f', path.as_bytes());
            field(&mut hasher, b'c', digest);
        }
        for text in &self.texts {
            field(&mut hasher, b't', text.as_bytes());
        }
        let mut env = self.env.clone();
        env.sort();
        for (name, value) in &env {
            field(&mut hasher, b'n', name.as_bytes());
            match value {
                Some(v) => field(&mut hasher, b'v', v),
                None => field(&mut hasher, b'u', b""),
            }
        }
        for arg in &self.argv {
            field(&mut hasher, b'a', arg);
        }
        KeyId::from(hasher.finalize())
    }

    /// What a record keeps of these inputs: names and digests, never values. Variables' values
    /// are hashed with `secret` (the store's own, see the facade): a record file readable by
    /// others must not let a weak value (a token, a password) be found by guessing, as a plain
    /// hash would. Records of one store compare with each other; that is all `explain` needs.
    pub fn recorded(&self, secret: &[u8; 32]) -> Recorded {
        let mut files = self.files.clone();
        files.sort();
        let mut env: Vec<(String, Option<Digest>)> = self
            .env
            .iter()
            .map(|(n, v)| {
                let digest = v
                    .as_ref()
                    .map(|v| *blake3::keyed_hash(secret, v).as_bytes());
                (n.clone(), digest)
            })
            .collect();
        env.sort();
        let mut argv = blake3::Hasher::new();
        for arg in &self.argv {
            field(&mut argv, b'a', arg);
        }
        Recorded {
            files,
            texts: self
                .texts
                .iter()
                .map(|t| *blake3::hash(t.as_bytes()).as_bytes())
                .collect(),
            env,
            argv: *argv.finalize().as_bytes(),
            command: self
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// What a key record keeps of its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    pub files: Vec<(String, Digest)>,
    pub texts: Vec<Digest>,
    pub env: Vec<(String, Option<Digest>)>,
    /// The digest of the argv, and the command line as text (for people; not compared).
    pub argv: Digest,
    pub command: String,
}

/// One key -> snapshot mapping, as stored in `keys/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: KeyId,
    pub snapshot: SnapshotId,
    /// Unix seconds when it was built.
    pub created: u64,
    /// The name given with `--name`, which keeps its newest record alive like a pin.
    pub name: Option<String>,
    pub inputs: Recorded,
}

/// Escapes a value for one line of a record: `%`, space, and control characters as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8"))
}

fn hex(d: &Digest) -> String {
    d.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    let id: KeyId = s.parse().map_err(|_| format!("`{s}` is not a digest"))?;
    Ok(*id.as_bytes())
}

impl KeyRecord {
    /// The record's text form (UTF-8 lines, documented in docs/format.md).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{RECORD_HEADER}\nkey {}\nsnapshot {}\ncreated {}\n",
            self.key, self.snapshot, self.created
        );
        if let Some(name) = &self.name {
            let _ = writeln!(out, "name {}", escape(name));
        }
        for (path, digest) in &self.inputs.files {
            let _ = writeln!(out, "file {} {}", hex(digest), escape(path));
        }
        for digest in &self.inputs.texts {
            let _ = writeln!(out, "text {}", hex(digest));
        }
        for (name, digest) in &self.inputs.env {
            let value = digest.as_ref().map_or_else(|| "unset".to_owned(), hex);
            let _ = writeln!(out, "env {value} {}", escape(name));
        }
        let _ = writeln!(
            out,
            "argv {} {}",
            hex(&self.inputs.argv),
            escape(&self.inputs.command)
        );
        out
    }

    /// Parses a record; anything malformed is an error saying what.
    pub fn from_text(text: &str) -> Result<KeyRecord, String> {
        let mut lines = text.lines();
        if lines.next() != Some(RECORD_HEADER) {
            return Err(format!("does not start with `{RECORD_HEADER}`"));
        }
        let (mut key, mut snapshot, mut created, mut name) = (None, None, None, None);
        let mut inputs = Recorded::default();
        for line in lines {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            let two = || {
                rest.split_once(' ')
                    .ok_or_else(|| format!("bad line `{line}`"))
            };
            match tag {
                "key" => key = Some(rest.parse().map_err(|_| format!("bad key `{rest}`"))?),
                "snapshot" => {
                    snapshot = Some(rest.parse().map_err(|_| format!("bad snapshot `{rest}`"))?)
                }
                "created" => {
                    created = Some(rest.parse().map_err(|_| format!("bad time `{rest}`"))?)
                }
                "name" => name = Some(unescape(rest)?),
                "file" => {
                    let (digest, path) = two()?;
                    inputs.files.push((unescape(path)?, parse_digest(digest)?));
                }
                "text" => inputs.texts.push(parse_digest(rest)?),
                "env" => {
                    let (value, var) = two()?;
                    let digest = match value {
                        "unset" => None,
                        d => Some(parse_digest(d)?),
                    };
                    inputs.env.push((unescape(var)?, digest));
                }
                "argv" => {
                    let (digest, command) = rest.split_once(' ').unwrap_or((rest, ""));
                    inputs.argv = parse_digest(digest)?;
                    inputs.command = unescape(command)?;
                }
                _ => {} // newer versions may add lines
            }
        }
        Ok(KeyRecord {
            key: key.ok_or("no key line")?,
            snapshot: snapshot.ok_or("no snapshot line")?,
            created: created.ok_or("no created line")?,
            name,
            inputs,
        })
    }
}

/// How one input differs between two builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    FileChanged(String),
    FileAdded(String),
    FileRemoved(String),
    FileUnchanged(String),
    EnvChanged(String),
    EnvUnchanged(String),
    TextsChanged,
    CommandChanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::FileChanged(p) => write!(f, "{p} changed"),
            Change::FileAdded(p) => write!(f, "{p} added as a key file"),
            Change::FileRemoved(p) => write!(f, "{p} no longer a key file"),
            Change::FileUnchanged(p) => write!(f, "{p} unchanged"),
            Change::EnvChanged(n) => write!(f, "{n} changed"),
            Change::EnvUnchanged(n) => write!(f, "{n} unchanged"),
            Change::TextsChanged => write!(f, "the --key texts changed"),
            Change::CommandChanged => write!(f, "the build command changed"),
        }
    }
}

/// Which inputs differ from `old` to `new` (and which key files and variables did not).
pub fn explain(old: &Recorded, new: &Recorded) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, digest) in &new.files {
        match old.files.iter().find(|(p, _)| p == path) {
            Some((_, d)) if d == digest => out.push(Change::FileUnchanged(path.clone())),
            Some(_) => out.push(Change::FileChanged(path.clone())),
            None => out.push(Change::FileAdded(path.clone())),
        }
    }
    for (path, _) in &old.files {
        if !new.files.iter().any(|(p, _)| p == path) {
            out.push(Change::FileRemoved(path.clone()));
        }
    }
    for (name, value) in &new.env {
        match old.env.iter().find(|(n, _)| n == name) {
            Some((_, v)) if v == value => out.push(Change::EnvUnchanged(name.clone())),
            _ => out.push(Change::EnvChanged(name.clone())),
        }
    }
    for (name, _) in &old.env {
        if !new.env.iter().any(|(n, _)| n == name) {
            out.push(Change::EnvChanged(name.clone()));
        }
    }
    if old.texts != new.texts {
        out.push(Change::TextsChanged);
    }
    if old.argv != new.argv {
        out.push(Change::CommandChanged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            files: vec![
                ("requirements.txt".into(), [1; 32]),
                ("b c.txt".into(), [2; 32]),
            ],
            texts: vec!["py3.11".into()],
            env: vec![
                ("PYTHON_VERSION".into(), Some(b"3.11".to_vec())),
                ("UNSET".into(), None),
            ],
            argv: vec![b"pip".to_vec(), b"install".to_vec()],
        }
    }

    #[test]
    fn the_key_depends_on_every_input_and_not_on_file_or_variable_order() {
        let base = inputs();
        let mut reordered = base.clone();
        reordered.files.reverse();
        reordered.env.reverse();
        assert_eq!(base.key(), reordered.key());
        let variants: Vec<Inputs> = vec![
            Inputs {
                files: vec![("requirements.txt".into(), [9; 32])],
                ..base.clone()
            },
            Inputs {
                texts: vec!["py3.12".into()],
                ..base.clone()
            },
            Inputs {
                env: vec![("PYTHON_VERSION".into(), None)],
                ..base.clone()
            },
            Inputs {
                argv: vec![b"pip install".to_vec()],
                ..base.clone()
            },
            // Length prefixes: moving a byte between two fields changes the key.
            Inputs {
                texts: vec!["py3".into(), ".11".into()],
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.key(), base.key(), "{v:?}");
        }
    }

    #[test]
    fn records_round_trip_and_keep_no_values() {
        let inputs = inputs();
        let record = KeyRecord {
            key: inputs.key(),
            snapshot: SnapshotId::from_bytes([7; 32]),
            created: 1_800_000_000,
            name: Some("my env".into()),
            inputs: inputs.recorded(&[9; 32]),
        };
        let text = record.to_text();
        assert!(!text.contains("3.11\n"), "values are not recorded: {text}");
        // Nor their plain hash: a guess of a weak value cannot be checked against the file.
        assert!(
            !text.contains(&blake3::hash(b"3.11").to_hex().to_string()),
            "{text}"
        );
        assert_eq!(KeyRecord::from_text(&text).unwrap(), record);
        assert!(KeyRecord::from_text("garbage").is_err());
        assert!(KeyRecord::from_text("envstore-key 1\nkey zz\n").is_err());
    }

    #[test]
    fn explain_names_what_changed_and_what_did_not() {
        let old = inputs();
        let mut new = old.clone();
        new.files[0].1 = [3; 32];
        let changes: Vec<String> = explain(&old.recorded(&[9; 32]), &new.recorded(&[9; 32]))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            changes.contains(&"requirements.txt changed".to_owned()),
            "{changes:?}"
        );
        assert!(
            changes.contains(&"b c.txt unchanged".to_owned()),
            "{changes:?}"
        );
        assert!(
            changes.contains(&"PYTHON_VERSION unchanged".to_owned()),
            "{changes:?}"
        );
    }
}
