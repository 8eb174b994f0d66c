//! Everything for humans goes to stderr; stdout carries only data (a path, an id, JSON).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envstore::Progress;
use indicatif::{ProgressBar, ProgressStyle};

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
    /// The progress display on stderr, only when stderr is a terminal and not --quiet.
    bar: Option<ProgressBar>,
    /// The first failure to write stdout (a closed pipe, a full disk): data lost must not end
    /// in exit code 0, and a closed pipe ends the command quietly.
    stdout_error: Mutex<Option<std::io::Error>>,
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
        let bar = (level >= Level::Normal && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
            );
            bar
        });
        Printer {
            level,
            json: cli.json,
            bar,
            stdout_error: Mutex::new(None),
        }
    }

    /// A progress sink for the store, drawing on stderr; None in pipes, CI and with -q.
    pub fn progress(&self) -> Option<Box<envstore::ProgressFn>> {
        let bar = self.bar.clone()?;
        let (files, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        Some(Box::new(move |event| {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            match event {
                Progress::Hashed { bytes: b } => {
                    let n = files.fetch_add(1, Ordering::Relaxed) + 1;
                    let total = bytes.fetch_add(b, Ordering::Relaxed) + b;
                    bar.set_message(format!("hashing: {n} files, {}", human_bytes(total)));
                }
                Progress::Storing {
                    objects,
                    bytes: total,
                } => {
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} storing {msg} [{bar:30}] {bytes}/{total_bytes}",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_message(format!("{objects} files"));
                    bar.set_length(total);
                    bar.set_position(0);
                }
                Progress::Stored { bytes: b } => bar.inc(b),
                Progress::LayingOut { .. } => {
                    files.store(0, Ordering::Relaxed);
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
                    );
                    bar.set_message("laying out");
                }
                Progress::Linked => {
                    let n = files.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 64 == 0 {
                        bar.set_message(format!("laying out: {n} files"));
                    }
                }
            }
        }))
    }

    /// Removes the progress display (before the final messages).
    pub fn finish_progress(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// One line of data on stdout.
    pub fn data(&self, line: &str) {
        self.raw(&format!("{line}\n"));
    }

    /// Text on stdout as it is (a table ends in its own newline). After a failed write nothing
    /// more is written; [`Printer::stdout_error`] tells the failure at the end.
    pub fn raw(&self, text: &str) {
        let mut failed = self.stdout_error.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_some() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            *failed = Some(e);
        }
    }

    /// The first failure to write stdout, if any.
    pub fn stdout_error(&self) -> Option<std::io::Error> {
        self.stdout_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn json_value(&self, value: &serde_json::Value) {
        self.data(&value.to_string());
    }

    /// A status line on stderr, unless --quiet.
    pub fn info(&self, message: impl std::fmt::Display) {
        if self.level >= Level::Normal {
            self.finish_progress();
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
            self.finish_progress();
            eprintln!("envstore: warning: {message}");
        }
    }

    /// What to do about the warning or error just printed.
    pub fn hint(&self, hint: &envstore::Hint) {
        let words = crate::hints::word(hint);
        if self.level >= Level::Normal && !words.is_empty() {
            eprintln!("envstore: hint: {words}");
        }
    }

    /// The final error. Library errors already carry their cause in the message, so the chain
    /// is printed only where anyhow added context.
    pub fn error(&self, err: &anyhow::Error) {
        self.finish_progress();
        eprintln!("envstore: error: {err}");
        if let Some(hint) = full_disk_hint(err) {
            eprintln!("envstore: hint: {hint}");
        }
        let library = err
            .chain()
            .find_map(|e| e.downcast_ref::<envstore::Error>());
        if let Some(hint) = library.and_then(envstore::Error::hint) {
            let words = crate::hints::word(&hint);
            if !words.is_empty() {
                eprintln!("envstore: hint: {words}");
            }
        }
    }
}

/// What to do after a write failed for lack of space: the store's own space is freed by
/// prune (what a failed run stored is unreferenced, and goes first), an output's is not.
fn full_disk_hint(err: &anyhow::Error) -> Option<&'static str> {
    let full = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        })
    });
    if !full {
        return None;
    }
    let output = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<envstore::Error>(),
            Some(envstore::Error::Output { .. })
        )
    });
    Some(if output {
        "the output's file system is full; free space there (nothing in the store was changed)"
    } else {
        "the store's file system is full; `envstore prune` removes what this failed run stored, \
         with anything unused, and `envstore stats` shows what the store holds"
    })
}

/// A name or path from an environment, made safe for a terminal the way GNU `ls` quotes: as is
/// when it is plain printable text, else in `$'...'` with escapes for control bytes (newlines,
/// terminal escapes) and bytes that are not UTF-8.
pub fn quote(bytes: &[u8]) -> String {
    let plain = std::str::from_utf8(bytes)
        .is_ok_and(|s| !s.chars().any(|c| c.is_control() || c == '\'' || c == '\\'));
    if plain {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
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

/// Unix seconds as `2026-11-21 10:05` (UTC).
pub fn utc_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Unix seconds as "5m ago", "3d ago".
pub fn ago(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = now.saturating_sub(secs);
    match d {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{}m ago", d / 60),
        3600..86_400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Prints rows as left-aligned columns (the last column unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00");
        assert_eq!(utc_time(315_619_200), "1980-01-02 00:00");
        assert_eq!(utc_time(1_795_255_500), "2026-11-21 10:05");
    }

    #[test]
    fn names_are_quoted_only_when_they_need_it() {
        assert_eq!(quote(b"lib/python3.11/site.py"), "lib/python3.11/site.py");
        assert_eq!(quote(b"a\nb"), "$'a\\nb'");
        assert_eq!(quote(b"\x1b[31mred"), "$'\\x1b[31mred'");
        assert_eq!(quote(b"caf\xe9.txt"), "$'caf\\xe9.txt'");
        assert_eq!(quote("café".as_bytes()), "café");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(150 << 20), "150.0 MiB");
    }
}
