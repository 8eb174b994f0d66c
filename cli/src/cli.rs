use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Stable, content-named homes for build and runtime environments.
///
/// envstore stores a directory tree by content and lays it out at a path that depends only on
/// that content: the same environment always appears at the same place.
#[derive(Debug, Parser)]
#[command(name = "envstore", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// The store directory [default: $XDG_CACHE_HOME/envstore, else ~/.cache/envstore]
    #[arg(long, global = true, env = "ENVSTORE_DIR", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more on stderr
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a directory tree and print its snapshot id
    #[command(after_help = "Example:\n  envstore ingest /tmp/pip-build-env-abc123/overlay")]
    Ingest {
        /// The directory to store
        dir: PathBuf,
        /// Key the tree on its `*.dist-info/RECORD` files (and the --key texts): when that key
        /// names a snapshot whose every path, kind, size and link target the directory still
        /// has, reuse it without hashing a file (the build hook's fast path; any doubt hashes)
        #[arg(long)]
        by_records: bool,
        /// With --by-records: a text that joins the key (the hook passes the interpreter)
        #[arg(long = "key", value_name = "TEXT", requires = "by_records")]
        keys: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Lay an environment out at its stable path and print that path
    ///
    /// SOURCE is a directory (hashed, and stored if new), a snapshot id, or a unique id prefix of
    /// at least 8 hex digits. Prints exactly one line on stdout: the absolute path.
    #[command(
        after_help = "Example:\n  cmake -DCMAKE_PREFIX_PATH=\"$(envstore materialize ./build-env)\" .."
    )]
    Materialize {
        /// A directory, a snapshot id, or an id prefix
        source: String,
        /// How to lay files out: `auto` tries reflink, then hardlink, then copy
        #[arg(long, value_enum, default_value_t = LinkModeArg::Auto, env = "ENVSTORE_LINK_MODE")]
        link_mode: LinkModeArg,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Name a snapshot so it is kept and easy to find (replaces an existing pin of that name)
    #[command(
        after_help = "Examples:\n  envstore pin bench-2026-11 ./venv\n  envstore pin release-2.3 0eaa7ea5"
    )]
    Pin {
        /// Letters, digits, `.`, `_`, `-`, `+`; not starting with `.`
        name: String,
        /// A directory (stored first), a snapshot id or prefix, or another pin
        source: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Remove a pin (the snapshot stays until prune removes it)
    #[command(after_help = "Example:\n  envstore unpin bench-2026-11")]
    Unpin { name: String },
    /// List the snapshots in the store, newest first
    #[command(after_help = "Examples:\n  envstore ls\n  envstore ls --json | jq '.[].id'")]
    Ls,
    /// Show one snapshot: size, unique bytes, pins, where and how it is materialized
    #[command(after_help = "Example:\n  envstore show release-2.3")]
    Show {
        /// A directory (hashed, not stored), a snapshot id or prefix, or a pin
        source: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Show what changed between two environments (reads trees, not files)
    #[command(after_help = "Example:\n  envstore diff release-2.2 release-2.3")]
    Diff {
        /// The old side: a directory, a snapshot id or prefix, or a pin
        old: String,
        /// The new side
        new: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print the materialized path without doing any work; exit 1 if it is not materialized
    #[command(
        after_help = "Example:\n  envstore path release-2.3 || envstore materialize release-2.3"
    )]
    Path {
        source: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Remove snapshots now, with their materializations and what only they used
    ///
    /// Pinned snapshots, the newest build of a key name, and snapshots a live build directory
    /// uses (a root) are refused without --force; a snapshot in use (leased) is never removed,
    /// and the message names the process holding it.
    #[command(
        after_help = "Examples:\n  envstore rm 0eaa7ea5 --dry-run\n  envstore rm release-2.2 --force"
    )]
    Rm {
        /// Snapshot ids or prefixes, pins, or directories (hashed, not stored)
        #[arg(required = true)]
        sources: Vec<String>,
        /// Also remove pinned and rooted snapshots (and those pins and roots)
        #[arg(long)]
        force: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Record that a build directory uses environments, so prune keeps them while it does
    #[command(subcommand)]
    Root(RootCommand),
    /// List the roots (build directories that keep environments), or find build directories
    ///
    /// A root is live while its directory exists and its build files (CMakeCache.txt,
    /// build.ninja, compile_commands.json, meson-info) still name the environment's path, or it
    /// has none to check. With --scan, build directories under DIR that use environments of this
    /// store are listed (and registered with --add).
    #[command(after_help = "Examples:\n  envstore roots\n  envstore roots --scan ~/src --add")]
    Roots {
        #[arg(long, value_name = "DIR", num_args = 1..)]
        scan: Vec<PathBuf>,
        /// With --scan: register what was found
        #[arg(long, requires = "scan")]
        add: bool,
    },
    /// Check a project: is the build hook active, which environments do its build
    /// directories use, do they exist, and why might the last build have recompiled
    #[command(after_help = "Example:\n  envstore doctor ~/src/my-extension")]
    Doctor {
        /// The project directory [default: the current directory]
        dir: Option<PathBuf>,
    },
    /// Upload snapshots to a remote: only what it lacks, the snapshot published last
    ///
    /// Packs of new chunks go first, each with an index of what it holds; the snapshot record
    /// comes last, so a reader never sees a snapshot whose parts are missing. With --name, a
    /// ref (a pin on the remote) names the snapshot; --sign signs that ref.
    #[command(
        after_help = "Examples:\n  envstore push ./build-env --to ci\n  envstore push release-2.3 --to ci --name release-2.3 --sign ~/.config/envstore/ci.key\n  envstore push 0eaa7ea5 --remote s3://team-envs/prod"
    )]
    Push {
        /// Directories (stored first), snapshot ids or prefixes, or pins
        #[arg(required = true)]
        sources: Vec<String>,
        /// A configured remote's name, or a URL (s3://, http(s)://, file://)
        #[arg(long, alias = "remote", value_name = "REMOTE")]
        to: Option<String>,
        /// Publish a ref of this name for the (single) snapshot
        #[arg(long, value_name = "REF")]
        name: Option<String>,
        /// Sign the ref with this secret key file (from `envstore key generate`)
        #[arg(long, value_name = "KEYFILE", requires = "name")]
        sign: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Download snapshots from a remote: only the chunks this store lacks, each checked
    ///
    /// Every tree, chunk and object is checked against its hash before it enters the store; a
    /// damaged or tampered remote is refused (exit 2) and nothing from it is kept. A ref is
    /// refused unless a trusted key signed it, when the store trusts any keys.
    #[command(
        after_help = "Examples:\n  envstore pull release-2.3 --from ci\n  envstore pull 0eaa7ea5c1d2... --remote https://cache.example/envs"
    )]
    Pull {
        /// Full snapshot ids or ref names
        #[arg(required = true)]
        sources: Vec<String>,
        /// A configured remote's name, or a URL; default: every configured remote in order
        #[arg(long, alias = "remote", value_name = "REMOTE")]
        from: Option<String>,
        /// Pin each pulled ref here under the same name (kept by prune, usable as a SOURCE
        /// offline); refs only
        #[arg(long)]
        pin: bool,
    },
    /// Configure remotes and look at them: add, ls, rm, stats, prune, trust
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Signing keys for refs: generate
    #[command(subcommand)]
    Key(KeyCommand),
    /// Store size, counts, deduplication, and which link modes the file system supports
    #[command(after_help = "Example:\n  envstore stats --json")]
    Stats,
    /// Run a command with an environment materialized and leased for as long as it runs
    ///
    /// The command gets the path in ENVSTORE_PATH (and the id in ENVSTORE_ID); prune leaves the
    /// environment alone while the command runs. Exits with the command's exit code.
    #[command(
        after_help = "Example:\n  envstore run ./build-env -- sh -c 'cmake -DCMAKE_PREFIX_PATH=$ENVSTORE_PATH ..'"
    )]
    Run {
        /// A directory, a snapshot id or prefix, or a pin
        source: String,
        /// Also record DIR as a root of the environment (a build directory using it), so prune
        /// keeps the environment while DIR refers to it
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
        #[arg(long, value_enum, default_value_t = LinkModeArg::Auto, env = "ENVSTORE_LINK_MODE")]
        link_mode: LinkModeArg,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Build an environment only when its inputs change, and print its stable path
    ///
    /// The key is a hash of the key files (paths as given, and contents), the --key texts, the
    /// --key-env variables' values and CMD. When the store has a snapshot for the key, it is
    /// materialized and CMD does not run. Otherwise CMD runs once (concurrent callers with the
    /// same key wait for it) with ENVSTORE_OUT set to a new empty directory to fill; that
    /// directory is stored (relocatably when it is a venv, or with --relocate) and
    /// materialized. A failing CMD records nothing and ensure exits with its code.
    #[command(
        after_help = "Examples:\n  envstore ensure --key-file requirements.txt -- sh -c 'python3 -m venv \"$ENVSTORE_OUT\" && \"$ENVSTORE_OUT/bin/pip\" install -r requirements.txt'\n  envstore ensure --name tools --key-file tools.lock --key-env PYTHON_VERSION -- ./build-tools.sh"
    )]
    Ensure {
        /// A file whose content (and path as given) is part of the key (repeatable)
        #[arg(long = "key-file", value_name = "FILE")]
        key_files: Vec<PathBuf>,
        /// A text that is part of the key (repeatable)
        #[arg(long = "key", value_name = "TEXT")]
        keys: Vec<String>,
        /// An environment variable whose value (or absence) is part of the key (repeatable)
        #[arg(long = "key-env", value_name = "VAR")]
        key_env: Vec<String>,
        /// Keep the newest build of this name alive like a pin; `explain NAME` shows its history
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Store the output relocatably (automatic when it is a venv)
        #[arg(long)]
        relocate: bool,
        #[arg(long, value_enum, default_value_t = LinkModeArg::Auto, env = "ENVSTORE_LINK_MODE")]
        link_mode: LinkModeArg,
        /// The build command and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// A virtualenv with the given requirements, built only when they change; prints its path
    ///
    /// Keyed on the requirement files' contents, the interpreter (path and version) and the
    /// installer: uv when it is on PATH, else `python -m venv` and pip. The venv is read-only
    /// and content-named: to change it, change the requirements (a new one is built).
    #[command(
        after_help = "Examples:\n  envstore venv -r requirements.txt\n  \"$(envstore venv -r dev.txt --name dev)/bin/python\" -m pytest"
    )]
    Venv {
        /// A requirements file (repeatable)
        #[arg(short = 'r', long = "requirement", value_name = "FILE")]
        requirements: Vec<PathBuf>,
        /// The interpreter [default: python3 on PATH]
        #[arg(long, value_name = "PYTHON")]
        python: Option<PathBuf>,
        /// Keep the newest venv of this name alive; `explain NAME` shows its history
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = LinkModeArg::Auto, env = "ENVSTORE_LINK_MODE")]
        link_mode: LinkModeArg,
    },
    /// List key records: which inputs built which snapshot
    #[command(after_help = "Example:\n  envstore keys --json")]
    Keys,
    /// Say which inputs changed between the builds recorded under NAME
    #[command(after_help = "Example:\n  envstore explain tools")]
    Explain {
        /// A name given to `ensure --name`
        name: String,
    },
    /// Move snapshots to the cold tier: deduplicated chunks in zstd packs
    ///
    /// With no SOURCE, packs every snapshot that is not materialized. Loose objects that only
    /// packed, unmaterialized snapshots need are freed; materializing a packed snapshot brings
    /// them back.
    #[command(
        after_help = "Examples:\n  envstore pack\n  envstore pack release-2.2 release-2.3\n  envstore prune --pack-older-than 14d"
    )]
    Pack {
        /// Snapshot ids or prefixes, or pins
        sources: Vec<String>,
    },
    /// Remove what is not pinned, not in use and not used lately; then unreferenced objects
    #[command(
        after_help = "Examples:\n  envstore prune --dry-run\n  envstore prune --older-than 7d --max-size 20G\n  envstore prune --older-than 90d --pack-older-than 14d"
    )]
    Prune {
        /// Keep what was used more recently than this (s, m, h, d, w)
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration, allow_hyphen_values = true)]
        older_than: std::time::Duration,
        /// Then remove more, least recently used first, until objects fit in SIZE (K, M, G, T)
        #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
        max_size: Option<u64>,
        /// Also move snapshots kept but not used within DURATION to the cold tier (their
        /// materializations are removed unless leased; pinned snapshots too)
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        pack_older_than: Option<std::time::Duration>,
        /// Empty the store: remove every snapshot not in use right now, pinned, rooted and
        /// key-named ones too (with those pins, roots and key records)
        #[arg(long, conflicts_with_all = ["max_size", "pack_older_than"])]
        all: bool,
        /// Print the plan and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Check objects, trees and materializations; exit 1 if anything is wrong
    #[command(
        after_help = "Examples:\n  envstore verify\n  envstore verify --repair\n  envstore verify release-2.3"
    )]
    Verify {
        /// Check only this snapshot (and its materialization)
        source: Option<String>,
        /// Mend what can be mended: remove leftovers, restore objects from intact copies,
        /// rebuild materializations and the index
        #[arg(long)]
        repair: bool,
    },
    /// Write a snapshot to one file: tar, or tar.zst when FILE ends in .tar.zst
    ///
    /// The same snapshot gives byte-identical files on any machine, at any time.
    #[command(
        after_help = "Examples:\n  envstore export release-2.3 -o release-2.3.tar.zst\n  envstore export release-2.3 -o - | ssh host envstore import -"
    )]
    Export {
        /// A directory (stored first), a snapshot id or prefix, or a pin
        source: String,
        /// Where to write; `-` for stdout
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Overrides the format the file name implies (stdout defaults to tar)
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Store the snapshot in a tar or tar.zst file (or stdin) and print its id
    #[command(
        after_help = "Examples:\n  envstore import release-2.3.tar.zst --name release-2.3\n  curl -s https://example.invalid/env.tar.zst | envstore import -"
    )]
    Import {
        /// The archive; `-` for stdin. Compression is detected from the bytes
        file: PathBuf,
        /// Pin the imported snapshot under this name
        #[arg(long, value_name = "PIN")]
        name: Option<String>,
        /// Refuse archives that expand to more than this (K, M, G, T)
        #[arg(long, value_name = "SIZE", default_value = "32G", value_parser = parse_size, allow_hyphen_values = true)]
        max_size: u64,
    },
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  envstore completions bash > /etc/bash_completion.d/envstore"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Add a remote (checked: it must answer and be empty or an envstore remote)
    #[command(
        after_help = "Examples:\n  envstore remote add ci s3://team-envs/ci\n  envstore remote add lan http://cache.lan:8080/envs\n  envstore remote add nfs file:///mnt/shared/envs\n\nS3 endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION,\nAWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and ~/.aws/{credentials,config}."
    )]
    Add {
        /// 1-64 of A-Z a-z 0-9 . _ -
        name: String,
        /// s3://BUCKET/PREFIX, http(s)://[USER:PASSWORD@]HOST/PATH or file:///DIR
        url: String,
        /// In the user's remotes file (~/.config/envstore/remotes), read by every store
        #[arg(long)]
        user: bool,
    },
    /// List the configured remotes and trusted keys; with NAME, that remote's refs and snapshots
    #[command(after_help = "Examples:\n  envstore remote ls\n  envstore remote ls ci --json")]
    Ls {
        /// A configured remote's name, or a URL
        remote: Option<String>,
    },
    /// Forget a remote (nothing on the remote is touched)
    Rm {
        name: String,
        /// From the user's remotes file instead of the store's
        #[arg(long)]
        user: bool,
    },
    /// Check what works on a remote: read, list, write, read back, create-if-absent, delete
    ///
    /// Prints each step with how long it took; a failing step says why (refused credentials, a
    /// missing bucket, no answer). Exit 1 when a step fails.
    #[command(after_help = "Example:\n  envstore remote doctor ci")]
    Doctor {
        /// A configured remote's name, or a URL
        remote: Option<String>,
    },
    /// Check that every snapshot on a remote still has the packs its record lists
    ///
    /// Finds what storage lost behind envstore's back; exit 1 when something is missing. Push
    /// an affected snapshot again from a store that has it: the push uploads what is gone.
    Verify {
        /// A configured remote's name, or a URL
        remote: Option<String>,
    },
    /// Count what a remote holds
    Stats {
        /// A configured remote's name, or a URL
        remote: Option<String>,
    },
    /// Delete what no ref and no recent push needs from a remote
    ///
    /// Snapshots no ref names and last pushed or pulled longer ago than --older-than are removed, then packs
    /// nothing kept needs: marked first, deleted by a later prune after --grace, so a push
    /// running meanwhile is never broken.
    #[command(
        after_help = "Examples:\n  envstore remote prune ci --older-than 30d --dry-run\n  envstore remote prune ci --older-than 14d\n  envstore remote prune ci --max-size 200G"
    )]
    Prune {
        /// A configured remote's name, or a URL
        remote: Option<String>,
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration, allow_hyphen_values = true)]
        older_than: std::time::Duration,
        /// How long unneeded packs stay (keep it longer than any push takes)
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, allow_hyphen_values = true)]
        grace: std::time::Duration,
        /// Also remove the least recently pushed or pulled snapshots no ref names until what the rest
        /// need fits in SIZE (e.g. 500G); recorded on the remote, `remote stats` shows it
        #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
        max_size: Option<u64>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Trust a public key (NAME:HEX from `envstore key generate`): refs must then be signed
    Trust {
        key: String,
        /// In the user's remotes file, for every store
        #[arg(long)]
        user: bool,
    },
    /// Stop trusting a key (by name or NAME:HEX)
    Untrust {
        key: String,
        /// In the user's remotes file
        #[arg(long)]
        user: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Record that DIR (a build directory) uses SOURCE's environment
    #[command(
        after_help = "Example:\n  cmake -B build -DCMAKE_PREFIX_PATH=\"$(envstore materialize deps)\"\n  envstore root add build deps"
    )]
    Add {
        dir: PathBuf,
        /// Snapshot ids or prefixes, pins, or materialized paths
        #[arg(required = true)]
        sources: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a signing key: writes the secret key to FILE (mode 0600), prints the public key
    #[command(
        after_help = "Example:\n  envstore key generate ci-1 --out ~/.config/envstore/ci-1.key\n  envstore remote trust \"$(envstore key public ~/.config/envstore/ci-1.key)\""
    )]
    Generate {
        /// The key's name (1-64 of A-Z a-z 0-9 . _ -)
        name: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the public key of a secret key file
    Public { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Leave out entries matching this glob (repeatable). Without `/` it matches names at any
    /// depth (`*.log`); with `/` it matches paths from the root (`share/doc/**`)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Keep `__pycache__` directories and `*.pyc` files, which are left out by default
    #[arg(long)]
    pub no_default_excludes: bool,

    /// Store a tree that contains its own path (a venv) so that it gets the same id wherever it
    /// was made: that path in text files under 1 MiB and in symlink targets is replaced by a
    /// placeholder, and written back as the materialized path
    #[arg(long)]
    pub relocate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Tar,
    #[value(name = "tar.zst")]
    TarZst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkModeArg {
    Auto,
    Reflink,
    Hardlink,
    Copy,
}

impl From<LinkModeArg> for envstore::LinkPolicy {
    fn from(arg: LinkModeArg) -> Self {
        use envstore::{LinkMode, LinkPolicy};
        match arg {
            LinkModeArg::Auto => LinkPolicy::Auto,
            LinkModeArg::Reflink => LinkPolicy::Only(LinkMode::Reflink),
            LinkModeArg::Hardlink => LinkPolicy::Only(LinkMode::Hardlink),
            LinkModeArg::Copy => LinkPolicy::Only(LinkMode::Copy),
        }
    }
}

/// Splits `12.5h` into its number and its unit, refusing what is not a plain non-negative
/// number (a sign, an exponent, `inf`, `nan`).
fn number_and_unit<'a>(s: &'a str, what: &str, example: &str) -> Result<(f64, &'a str), String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("`{s}` is negative; give a {what} like {example}"));
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|_| !number.is_empty())
        .ok_or_else(|| format!("`{s}` is not a {what} like {example}"))?;
    Ok((value, unit))
}

/// `30d`, `12h`, `90m`, `45s`, `2w`; a unit is required (a bare `30` once meant 30 *seconds*
/// and pruned nearly everything), except for `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let example = "30d, 12h, 90m or 45s";
    let (value, unit) = number_and_unit(s, "duration", example)?;
    let scale = match unit {
        "" if value == 0.0 => 1.0,
        "" => {
            return Err(format!(
                "`{s}` has no unit; say `{s}d` for days, `{s}h` for hours, `{s}m` for minutes \
                 or `{s}s` for seconds"
            ));
        }
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use s, m, h, d or w)"
            ));
        }
    };
    std::time::Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{s}` is too long a duration; give one like {example}"))
}

/// `20G`, `500M`, `64K`, `1T`, or plain bytes (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let example = "20G, 500M or 64K";
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (value, unit) = number_and_unit(t, "size", example).map_err(|e| e.replacen(t, s, 1))?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use K, M, G or T)")),
    };
    let bytes = value * scale as f64;
    // 2^64 itself is not representable: refuse rather than saturate.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{s}` is larger than any size envstore can handle"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("0").unwrap().as_secs(), 0);
        assert_eq!(parse_duration("1.5h").unwrap().as_secs(), 5400);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3y").is_err());
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("big").is_err());
    }

    #[test]
    fn bare_negative_huge_and_odd_values_are_refused_with_the_value_named() {
        let bare = parse_duration("30").unwrap_err();
        assert!(
            bare.contains("`30` has no unit") && bare.contains("30d"),
            "{bare}"
        );
        for bad in [
            "-1s",
            "99999999999999999999d",
            "1e99s",
            "inf",
            "nan",
            "",
            ".",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        for bad in ["-1G", "99999999999999999999T", "16777216T", "1e3"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert_eq!(parse_size("16777215T").unwrap(), 16_777_215 << 40);
    }
}
