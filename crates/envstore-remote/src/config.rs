//! The remotes a store uses and the keys it trusts: `<store>/remotes`, a small text file.
//!
//! ```text
//! envstore-remotes 1
//! remote <name> <url> create-if-absent=<yes|no>
//! trusted-key <name>:<64 hex digits of an ed25519 public key>
//! ```
//! Remotes are searched in the order listed. Unknown lines are kept out of the way: readers
//! ignore them (a newer envstore may add some).

use std::fmt::Write as _;

use crate::{RemoteUrl, sign::PublicKey};

const HEADER: &str = "envstore-remotes 1";

/// One configured remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub name: String,
    pub url: RemoteUrl,
    /// What the probe found when the remote was added.
    pub create_if_absent: bool,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub remotes: Vec<RemoteEntry>,
    pub trusted_keys: Vec<PublicKey>,
}

/// A line of the file that could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ConfigError {
    pub line: usize,
    pub reason: String,
}

pub use crate::valid_name;

impl Config {
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => {
                return Err(ConfigError {
                    line: 1,
                    reason: format!("expected {HEADER:?}"),
                });
            }
        }
        let mut config = Config::default();
        for (i, line) in lines {
            let err = |reason: String| ConfigError {
                line: i + 1,
                reason,
            };
            let mut words = line.split(' ');
            match words.next() {
                Some("remote") => {
                    let (Some(name), Some(url)) = (words.next(), words.next()) else {
                        return Err(err("expected: remote NAME URL".into()));
                    };
                    if !valid_name(name) {
                        return Err(err(format!("invalid remote name {name:?}")));
                    }
                    let url = url
                        .parse()
                        .map_err(|e: crate::UrlError| err(e.to_string()))?;
                    let create_if_absent = words.any(|w| w == "create-if-absent=yes");
                    config.remotes.push(RemoteEntry {
                        name: name.to_owned(),
                        url,
                        create_if_absent,
                    });
                }
                Some("trusted-key") => {
                    let key = words.next().unwrap_or("");
                    config.trusted_keys.push(
                        key.parse()
                            .map_err(|e: crate::sign::KeyError| err(e.to_string()))?,
                    );
                }
                _ => {}
            }
        }
        Ok(config)
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for r in &self.remotes {
            let _ = writeln!(
                out,
                "remote {} {} create-if-absent={}",
                r.name,
                r.url.to_config_string(),
                if r.create_if_absent { "yes" } else { "no" }
            );
        }
        for k in &self.trusted_keys {
            let _ = writeln!(out, "trusted-key {k}");
        }
        out
    }

    pub fn remote(&self, name: &str) -> Option<&RemoteEntry> {
        self.remotes.iter().find(|r| r.name == name)
    }
}

/// The `key = value` pairs of section `[section]` of an INI file (the AWS files' format).
pub fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let text = "envstore-remotes 1\nremote ci s3://bucket/envs create-if-absent=yes\nremote dav http://u:p@127.0.0.1:8099/x create-if-absent=no\nfuture line\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.remotes.len(), 2);
        assert!(c.remotes[0].create_if_absent && !c.remotes[1].create_if_absent);
        assert_eq!(Config::parse(&c.to_text()).unwrap(), c);
        assert!(Config::parse("nope\n").is_err());
        assert!(Config::parse("envstore-remotes 1\nremote ../x s3://bucket\n").is_err());
    }

    #[test]
    fn reads_ini_sections() {
        let ini = "[default]\naws_access_key_id = A\n[profile x]\nregion=eu\n";
        assert_eq!(
            ini_section(ini, "default"),
            vec![("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            ini_section(ini, "profile x"),
            vec![("region".into(), "eu".into())]
        );
    }
}
