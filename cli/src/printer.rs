//! Everything for humans goes to stderr; stdout carries only data (a path, an id, JSON).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
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

    /// The final error. Library errors already carry their cause in the message, so the chain
    /// is printed only where anyhow added context.
    pub fn error(&self, err: &anyhow::Error) {
        self.finish_progress();
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
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(150 << 20), "150.0 MiB");
    }
}
