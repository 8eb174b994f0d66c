//! Everything for humans goes to stderr; stdout carries only data (a path, an id, JSON).

use std::io::Write;

use crate::cli::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug)]
pub struct Printer {
    level: Level,
    json: bool,
}

impl Printer {
    pub fn new(cli: &Cli) -> Self {
        let level = if cli.quiet {
            Level::Quiet
        } else if cli.verbose {
            Level::Verbose
        } else {
            Level::Normal
        };
        Printer {
            level,
            json: cli.json,
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// One line of data on stdout.
    pub fn data(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    pub fn json_value(&self, value: &serde_json::Value) {
        self.data(&value.to_string());
    }

    /// A status line on stderr, unless --quiet.
    pub fn info(&self, message: impl std::fmt::Display) {
        if self.level >= Level::Normal {
            eprintln!("envstore: {message}");
        }
    }

    /// Detail on stderr, only with --verbose.
    pub fn detail(&self, message: impl std::fmt::Display) {
        if self.level >= Level::Verbose {
            eprintln!("envstore: {message}");
        }
    }

    /// A warning on stderr, unless --quiet.
    pub fn warn(&self, message: impl std::fmt::Display) {
        if self.level >= Level::Normal {
            eprintln!("envstore: warning: {message}");
        }
    }

    /// The final error. Library errors already carry their cause in the message, so the chain
    /// is printed only where anyhow added context.
    pub fn error(&self, err: &anyhow::Error) {
        eprintln!("envstore: error: {err}");
    }
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
