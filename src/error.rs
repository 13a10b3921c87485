//! The library's error type. Variants name the thing that failed so the CLI can print one line
//! that says what and where, and map it to an exit code.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No repository at the path (no `config` file).
    #[error("no repository at {0}: create one with `cairn init` (or pass the right -r/--repo)")]
    NoRepository(PathBuf),
    /// `init` over something that already is a repository or is not empty.
    #[error("{0} already exists and is not empty; refusing to initialise a repository there")]
    AlreadyExists(PathBuf),
    /// No key file could be opened with the given password.
    #[error("wrong password: no key in {0} opens with it")]
    WrongPassword(PathBuf),
    /// The repository was written by an incompatible version.
    #[error("repository {path} has format version {found}; this cairn reads version {supported}")]
    UnsupportedVersion {
        /// Repository path.
        path: PathBuf,
        /// Version found in `config`.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// A repository file failed to decode or authenticate.
    #[error("corrupt {what}: {why}")]
    Corrupt {
        /// Which file or blob, e.g. `pack 1a2b…` or `keys/0f…`.
        what: String,
        /// What was wrong with it.
        why: String,
    },
    /// An I/O error on a path.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error (shown in the message, so not also chained as a source).
        err: std::io::Error,
    },
    /// A repository file that must exist does not.
    #[error("{0} is missing from the repository")]
    Missing(String),
    /// A blob referenced by a tree or snapshot is not in any index.
    #[error("blob {0} is not in the index")]
    BlobNotIndexed(String),
    /// The local cache database failed.
    #[error("cache {path}: {err} (the cache is disposable: delete it and retry)")]
    Cache {
        /// The cache database file.
        path: PathBuf,
        /// The SQLite error (shown in the message).
        err: rusqlite::Error,
    },
    /// The local cache database turned out damaged while in use; its files were removed.
    #[error(
        "cache {path} is damaged ({err}); it was removed and is rebuilt from the repository \
         on the next run: run the command again"
    )]
    CacheDamaged {
        /// The cache database file.
        path: PathBuf,
        /// The SQLite error.
        err: rusqlite::Error,
    },
    /// A snapshot reference matched nothing or several snapshots.
    #[error("{0}")]
    SnapshotRef(String),
    /// A path inside a snapshot does not exist.
    #[error("not found in the snapshot: {0} (see `cairn ls SNAPSHOT`)")]
    PathNotInSnapshot(String),
    /// Anything the user asked for that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The operation was asked to stop (a signal, a cancelled job) and did.
    #[error(
        "cancelled before the end: nothing half-written is referenced, and the next run reuses \
         what was stored"
    )]
    Cancelled,
}

impl Error {
    /// Builds an `Io` error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    /// Builds a `Corrupt` error.
    pub fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            why: why.into(),
        }
    }

    /// The process exit code this error maps to (restic's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoRepository(_) => 10,
            Error::WrongPassword(_) => 12,
            _ => 1,
        }
    }
}
