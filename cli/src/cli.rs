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
    /// Store size, counts, deduplication, and which link modes the file system supports
    #[command(after_help = "Example:\n  envstore stats --json")]
    Stats,
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  envstore completions bash > /etc/bash_completion.d/envstore"
    )]
    Completions { shell: clap_complete::Shell },
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
