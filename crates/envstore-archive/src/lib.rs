//! Snapshots as one file: deterministic tar and tar.zst export, and a strict streaming import.
//!
//! Export writes the same bytes for the same snapshot on any machine: entries in tree order
//! (each directory before its contents, names sorted as raw bytes), GNU headers, mtime fixed at
//! 1980-01-02, uid and gid 0, empty user and group names, modes 0644 / 0755 (directories 0755,
//! symlinks 0777), no PAX records except `ENVSTORE.relocated=1` before a relocated entry, and
//! zstd level 3 with fixed parameters.
//!
//! Import is where hostile input arrives. [`read`] validates every entry before the caller sees
//! it and refuses, with the entry's path: paths that escape (absolute, `..`), names that are
//! empty, too long or contain NUL, entries under a regular file or a symlink, duplicates, hard
//! links to anything not seen before in the archive, every entry type but file, directory,
//! symlink and in-archive hard link, truncated archives and data, garbage, corrupt zstd, and
//! archives that expand beyond a limit (stopped as soon as the limit is passed). It streams:
//! memory holds the archive's directory structure, never file contents.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use envstore_tree::{FIXED_MTIME_SECS, is_valid_name};
use tar::{EntryType, Header};

/// The PAX record that marks a relocated entry (see docs/format.md).
pub const RELOCATED_KEY: &str = "ENVSTORE.relocated";
/// zstd level of exports; part of the format (changing it changes the bytes).
pub const ZSTD_LEVEL: i32 = 3;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Longest name and path a file system is expected to take.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;

/// tar, or tar compressed with zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarZst,
}

impl Format {
    /// `.tar.zst` and `.tzst` mean zstd; anything else plain tar.
    pub fn from_path(path: &Path) -> Format {
        let name = path.as_os_str().as_bytes();
        if name.ends_with(b".tar.zst") || name.ends_with(b".tzst") {
            Format::TarZst
        } else {
            Format::Tar
        }
    }
}

/// One entry to export.
#[allow(missing_debug_implementations)]
pub enum Item<'a> {
    Dir,
    File {
        size: u64,
        executable: bool,
        relocated: bool,
        content: &'a mut dyn Read,
    },
    Symlink {
        target: &'a [u8],
        relocated: bool,
    },
}

enum Sink<W: Write> {
    Plain(W),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

/// Writes a deterministic archive, one [`Item`] at a time, in the order given (the caller
/// gives tree order).
pub struct Writer<W: Write> {
    builder: tar::Builder<Sink<W>>,
}

impl<W: Write> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME_SECS);
    h
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: Format) -> io::Result<Writer<W>> {
        let sink = match format {
            Format::Tar => Sink::Plain(out),
            Format::TarZst => {
                let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
                encoder.include_checksum(true)?;
                Sink::Zstd(encoder)
            }
        };
        let mut builder = tar::Builder::new(sink);
        builder.follow_symlinks(false);
        Ok(Writer { builder })
    }

    /// Adds one entry at `path` (relative, `/`-separated, no leading `./`).
    pub fn add(&mut self, path: &[u8], item: Item<'_>) -> io::Result<()> {
        let relocated = matches!(
            item,
            Item::File {
                relocated: true,
                ..
            } | Item::Symlink {
                relocated: true,
                ..
            }
        );
        if relocated {
            self.builder
                .append_pax_extensions([(RELOCATED_KEY, &b"1"[..])])?;
        }
        let path = Path::new(OsStr::from_bytes(path));
        match item {
            Item::Dir => self.builder.append_data(
                &mut header(EntryType::Directory, 0o755, 0),
                path,
                io::empty(),
            ),
            Item::File {
                size,
                executable,
                content,
                ..
            } => {
                let mode = if executable { 0o755 } else { 0o644 };
                self.builder.append_data(
                    &mut header(EntryType::Regular, mode, size),
                    path,
                    content.take(size),
                )
            }
            Item::Symlink { target, .. } => {
                let target = Path::new(OsStr::from_bytes(target));
                self.builder
                    .append_link(&mut header(EntryType::Symlink, 0o777, 0), path, target)
            }
        }
    }

    /// Writes the end-of-archive marker (and the zstd frame's end) and returns the output.
    pub fn finish(self) -> io::Result<W> {
        match self.builder.into_inner()? {
            Sink::Plain(w) => Ok(w),
            Sink::Zstd(encoder) => encoder.finish(),
        }
    }
}

/// Why an archive was refused. Every variant names the entry involved.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is damaged or not a tar archive: {0}")]
    Corrupt(String),
    #[error("the archive ends early (no end-of-archive marker): it is truncated")]
    Truncated,
    #[error(
        "the archive expands to more than {limit} bytes; refusing it (raise --max-size if it is trusted)"
    )]
    TooLarge { limit: u64 },
    #[error("entry `{path}`: {reason}")]
    Entry { path: String, reason: String },
    #[error(transparent)]
    Io(io::Error),
}

fn entry_err(path: &[u8], reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Entry {
        path: printable(&String::from_utf8_lossy(path)),
        reason: printable(&reason.into()),
    }
}

/// The most characters of archive text (a name, a quoted field) an error message shows.
const MAX_SHOWN: usize = 160;

/// Text from an archive (names, the tar parser's messages, which quote its bytes) made safe to
/// print: anything but printable ASCII (control bytes, terminal escapes, bidirectional
/// overrides, the replacement characters of bytes that are not UTF-8) is shown escaped, never
/// sent raw, and the text is cut to a line's length: a damaged archive's garbage does not
/// flood the terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    let total = text.chars().count();
    for (shown, c) in text.chars().enumerate() {
        if shown == MAX_SHOWN {
            out.push_str(&format!("... ({} more characters)", total - shown));
            break;
        }
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// One validated entry, as [`read`] hands it over. Paths are lists of valid names.
#[allow(missing_debug_implementations)]
pub enum Event<'a> {
    Dir {
        path: Vec<Vec<u8>>,
    },
    File {
        path: Vec<Vec<u8>>,
        executable: bool,
        relocated: bool,
        content: &'a mut dyn Read,
    },
    Symlink {
        path: Vec<Vec<u8>>,
        target: Vec<u8>,
        relocated: bool,
    },
    /// A hard link to a file seen earlier in the archive.
    Hardlink {
        path: Vec<Vec<u8>>,
        target: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Dir,
    File,
    Symlink,
}

/// Splits and checks an archive path: relative, no `..`, valid names, within limits. A leading
/// `./` and `.` components are allowed and dropped (as `tar -C dir .` writes them).
fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>, ArchiveError> {
    if raw.starts_with(b"/") {
        return Err(entry_err(raw, "absolute path"));
    }
    if raw.len() > PATH_MAX {
        return Err(entry_err(raw, format!("path longer than {PATH_MAX} bytes")));
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return Err(entry_err(raw, "`..` in the path escapes the archive")),
            name if name.len() > NAME_MAX => {
                return Err(entry_err(
                    raw,
                    format!("a name longer than {NAME_MAX} bytes"),
                ));
            }
            name if !is_valid_name(name) => return Err(entry_err(raw, "invalid name (NUL byte?)")),
            name => out.push(name.to_vec()),
        }
    }
    Ok(out)
}

/// Counts decompressed bytes and stops past the limit; notes whether EOF was reached.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

#[derive(Debug)]
struct LimitExceeded;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the archive expands beyond the limit")
    }
}

impl std::error::Error for LimitExceeded {}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitExceeded));
        }
        Ok(n)
    }
}

/// What an I/O error met while reading an archive (or an entry's content) means.
pub fn classify(e: io::Error, limit: u64) -> ArchiveError {
    if e.get_ref().is_some_and(|inner| inner.is::<LimitExceeded>()) {
        return ArchiveError::TooLarge { limit };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated,
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other => {
            ArchiveError::Corrupt(printable(&e.to_string()))
        }
        _ => ArchiveError::Io(e),
    }
}

/// Reads an archive (tar, or tar.zst, told apart by the bytes), validating every entry, and
/// hands each to `sink`. Stops at the first problem. `limit` bounds the bytes after
/// decompression.
pub fn read<E: From<ArchiveError>>(
    input: impl Read,
    limit: u64,
    sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut input = BufReader::new(input);
    let head = input.fill_buf().map_err(ArchiveError::Io)?;
    if head.is_empty() {
        return Err(ArchiveError::Corrupt("the archive is empty".into()).into());
    }
    let zstd = head.starts_with(&ZSTD_MAGIC);
    let stream: Box<dyn Read> = if zstd {
        Box::new(
            zstd::Decoder::with_buffer(input)
                .map_err(|e| ArchiveError::Corrupt(printable(&e.to_string())))?,
        )
    } else {
        Box::new(input)
    };
    let mut limited = Limited {
        inner: stream,
        read: 0,
        limit,
    };
    read_tar(&mut limited, limit, sink)?;
    // tar ends with two zero blocks; the reader stops after the first. Without the second
    // the archive was cut off (possibly exactly at an entry boundary).
    let mut end = [0u8; 512];
    limited
        .read_exact(&mut end)
        .map_err(|e| classify(e, limit))?;
    if end.iter().any(|&b| b != 0) {
        return Err(ArchiveError::Corrupt("data after the end-of-archive marker".into()).into());
    }
    Ok(())
}

fn read_tar<E: From<ArchiveError>>(
    input: &mut dyn Read,
    limit: u64,
    sink: &mut dyn FnMut(Event<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut archive = tar::Archive::new(input);
    let mut seen: HashMap<Vec<Vec<u8>>, Seen> = HashMap::new();
    let entries = archive.entries().map_err(|e| classify(e, limit))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| classify(e, limit))?;
        let raw = entry.path_bytes().into_owned();
        let path = components(&raw)?;
        let kind = entry.header().entry_type();
        if path.is_empty() {
            if kind.is_dir() {
                continue; // `./`: the root itself
            }
            return Err(entry_err(&raw, "an entry without a name").into());
        }
        // Every parent must be a directory (or not mentioned yet: then it is one).
        for depth in 1..path.len() {
            match seen.get(&path[..depth]) {
                None => {
                    seen.insert(path[..depth].to_vec(), Seen::Dir);
                }
                Some(Seen::Dir) => {}
                Some(Seen::File) => return Err(entry_err(&raw, "is inside a regular file").into()),
                Some(Seen::Symlink) => {
                    return Err(entry_err(&raw, "would be written through a symlink").into());
                }
            }
        }
        let this = match kind {
            EntryType::Directory => Seen::Dir,
            EntryType::Regular | EntryType::Continuous => Seen::File,
            EntryType::Symlink => Seen::Symlink,
            EntryType::Link => Seen::File,
            other => {
                let what = match other {
                    EntryType::Char => "a character device".to_owned(),
                    EntryType::Block => "a block device".to_owned(),
                    EntryType::Fifo => "a fifo".to_owned(),
                    EntryType::GNUSparse => "a sparse file".to_owned(),
                    t => format!("an entry of type {:?}", t.as_byte() as char),
                };
                return Err(entry_err(&raw, format!("{what}: only files, directories, symlinks and hard links within the archive are accepted")).into());
            }
        };
        match seen.get(&path) {
            Some(Seen::Dir) if this == Seen::Dir => continue, // implied earlier, or repeated dir
            Some(_) => return Err(entry_err(&raw, "appears twice in the archive").into()),
            None => {}
        }
        let relocated = entry
            .pax_extensions()
            .map_err(|e| classify(e, limit))?
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|x| x.key_bytes() == RELOCATED_KEY.as_bytes() && x.value_bytes() == b"1");
        let event = match this {
            Seen::Dir => Event::Dir { path: path.clone() },
            Seen::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() || target.contains(&0) || target.len() > PATH_MAX {
                    return Err(entry_err(&raw, "invalid symlink target").into());
                }
                Event::Symlink {
                    path: path.clone(),
                    target,
                    relocated,
                }
            }
            Seen::File if kind == EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = components(&target_raw)
                    .map_err(|_| entry_err(&raw, "hard link to a path outside the archive"))?;
                if seen.get(&target) != Some(&Seen::File) {
                    return Err(entry_err(
                        &raw,
                        "hard link to something not seen before in the archive",
                    )
                    .into());
                }
                Event::Hardlink {
                    path: path.clone(),
                    target,
                }
            }
            Seen::File => {
                let executable =
                    entry.header().mode().map_err(|e| classify(e, limit))? & 0o100 != 0;
                Event::File {
                    path: path.clone(),
                    executable,
                    relocated,
                    content: &mut entry,
                }
            }
        };
        sink(event)?;
        seen.insert(path, this);
    }
    Ok(())
}
