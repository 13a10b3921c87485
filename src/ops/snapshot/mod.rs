//! `snapshot`: store a tree of files (or one stream) and write a snapshot record.
//!
//! ```text
//! for each requested path (absolute; intermediate directories recorded with their metadata):
//!     walk sorted; for each entry: lstat → node
//!         dir:  recurse with the parent snapshot's subtree → encode tree → save blob
//!         file: unchanged against the parent node (size, mtime, ctime, inode) and all its
//!               chunks indexed → reuse content ids unread; else read in windows → chunk →
//!               keyed hash (parallel) → skip known → compress + seal (parallel) → pack
//! finish packs → index files → snapshot file (last)
//! ```
//! An entry that cannot be read, or that changes while being read, is reported, left out,
//! and makes the run partial (exit 3); the snapshot is still written.

mod archiver;
mod paths;
mod read;

pub use paths::check_sources;

use archiver::{Archiver, Link};
use paths::{absolute, build_trie};

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::ops::progress::{Cancel, ProgressSink};
use crate::repo::Repository;
use crate::repo::saver::BlobSaver;
use crate::repo::snapshot::{Snapshot, Summary};
use crate::source::command::Producer;
use crate::tree::{Node, NodeKind};

/// What to snapshot.
pub enum Input<'a> {
    /// Files and directories.
    Paths(Vec<PathBuf>),
    /// One stream stored as a single file named `name`. `finish` runs after the stream ends
    /// and before the snapshot is written; an error there (e.g. the producing command failed)
    /// aborts the snapshot.
    Stream {
        /// File name inside the snapshot.
        name: String,
        /// The data.
        reader: Box<dyn Read + 'a>,
        /// Called at end of stream.
        finish: Box<dyn FnOnce() -> Result<()> + 'a>,
    },
}

/// Options of `snapshot`.
#[derive(Clone, Debug, Default)]
pub struct SnapshotOptions {
    /// Tags to attach.
    pub tags: Vec<String>,
    /// Host name to record (default: this host).
    pub host: Option<String>,
    /// Glob patterns to leave out; a pattern with `/` matches the absolute path, one without
    /// matches the file name.
    pub excludes: Vec<String>,
    /// Leave out directories containing a file with one of these names.
    pub exclude_if_present: Vec<String>,
    /// Do not descend into other filesystems.
    pub one_file_system: bool,
    /// Parent snapshot reference (default: latest with the same host and paths).
    pub parent: Option<String>,
    /// Re-read every file, ignoring the parent.
    pub force: bool,
    /// Snapshot time (default: now).
    pub time: Option<DateTime<Utc>>,
    /// Absolute paths never stored, whatever the patterns say: the repository itself and the
    /// local cache, so that a snapshot of a home directory does not swallow its own output.
    pub skip: Vec<PathBuf>,
    /// Receives files and bytes as they are stored or found unchanged; the parent snapshot's
    /// size is the expected total.
    pub progress: ProgressSink,
    /// Why the snapshot was taken ("before upgrade"), kept in the snapshot.
    pub reason: Option<String>,
    /// Asked between entries (and stream windows) whether to stop early.
    pub cancel: Cancel,
}

/// A source entry that was skipped.
#[derive(Clone, Debug, Serialize)]
pub struct SourceError {
    /// The path concerned.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// The result of a snapshot run. Serialised flat: the summary's figures are top-level
/// fields of `snapshot --json`.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotReport {
    /// Id of the snapshot written (none on a dry run).
    pub snapshot_id: Option<SnapshotId>,
    /// Parent used for change detection.
    pub parent: Option<SnapshotId>,
    /// The figures also stored in the snapshot (`errors` is the number of skipped entries).
    #[serde(flatten)]
    pub summary: Summary,
    /// Wall time.
    pub duration_s: f64,
    /// The skipped entries.
    pub error_details: Vec<SourceError>,
    /// True when nothing was written.
    pub dry_run: bool,
}

fn find_parent(
    repo: &Repository,
    opts: &SnapshotOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    if let Some(r) = &opts.parent {
        return repo.resolve_snapshot(r).map(Some);
    }
    let mut sorted = paths.to_vec();
    sorted.sort();
    Ok(repo.snapshots()?.into_iter().rev().find(|(_, s)| {
        let mut p = s.paths.clone();
        p.sort();
        s.hostname == host && p == sorted
    }))
}

/// Takes a snapshot of `input` into `repo`.
/// On a dry-run repository (`Repository::into_dry_run`) everything is read and counted and
/// nothing is written.
pub fn snapshot(
    repo: &Repository,
    input: Input<'_>,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport> {
    let started = Instant::now();
    let dry_run = repo.is_dry_run();
    let (host, user) = crate::repo::whoami();
    let host = opts.host.clone().unwrap_or(host);
    if let Input::Paths(paths) = &input {
        check_sources(paths)?;
    }
    let session = repo.begin_session("snapshot")?;
    if !dry_run {
        // Repair around what a killed run left: its temporary files and its unindexed packs.
        repo.backend().remove_stale_temps()?;
        repo.adopt_unindexed_packs()?;
    }
    let claims = BlobSaver::claims(repo);
    let (paths, tree, parent, summary, errors) = std::thread::scope(|threads| {
        let saver = BlobSaver::start(repo, &claims, threads);
        rayon::in_place_scope(|pool| -> Result<_> {
            let mut a = Archiver::new(repo, saver, &claims, pool, opts)?;
            let (paths, parent) = archive(&mut a, repo, opts, &host, &user, input)?;
            a.drain()?;
            a.record_proofs();
            let tree = a
                .root()
                .expect("invariant: every directory is saved once all jobs are drained");
            let Archiver {
                saver,
                mut summary,
                errors,
                ..
            } = a;
            summary.data_added = saver.data_added;
            summary.data_added_packed = saver.data_added_packed;
            summary.errors = errors.len() as u64;
            saver.finish()?;
            Ok((paths, tree, parent, summary, errors))
        })
    })?;
    let snap = Snapshot {
        time: opts.time.unwrap_or_else(Utc::now),
        tree,
        paths,
        hostname: host,
        username: user,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        tags: opts.tags.clone(),
        parent: parent.as_ref().map(|p| p.0),
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        summary: summary.clone(),
        original: None,
        reason: opts.reason.clone(),
    };
    // Last: the snapshot file, once everything it references is durable and indexed.
    let snapshot_id = match &session {
        None => None,
        Some(s) => {
            s.ensure_current()?;
            Some(repo.save_snapshot(&snap)?)
        }
    };
    if let Some(s) = session {
        s.end()?;
    }
    Ok(SnapshotReport {
        snapshot_id,
        parent: snap.parent,
        summary,
        duration_s: started.elapsed().as_secs_f64(),
        error_details: errors,
        dry_run,
    })
}

/// Takes a snapshot of what `cmd` prints on standard output, stored as one file `name`. The
/// snapshot is written only if the command exits successfully; otherwise the error names
/// `label`, the exit status and (with `capture_stderr`) the end of its standard error.
pub fn snapshot_command(
    repo: &Repository,
    cmd: &mut std::process::Command,
    label: &str,
    name: &str,
    capture_stderr: bool,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport> {
    if opts.cancel.is_armed() {
        // In a group of its own, so that a stop request reaches the whole pipeline the
        // command may be (`sh -c 'pg_dump | …'`).
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
    let (producer, stdout) = Producer::spawn(cmd, label, capture_stderr)?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = opts.cancel.is_armed().then(|| {
        let (cancel, done, pid) = (opts.cancel.clone(), done.clone(), producer.pid());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if cancel.is_set() {
                    // A command blocked without output would otherwise hold the stop up.
                    let group = nix::unistd::Pid::from_raw(-(pid as i32));
                    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    });
    let producer = std::cell::RefCell::new(Some(producer));
    let finish = Box::new(|| -> Result<()> {
        let ended = match producer.borrow_mut().take() {
            Some(p) => p
                .wait()
                .map_err(|e| Error::Invalid(format!("{e}; no snapshot written"))),
            None => Ok(()),
        };
        opts.cancel.check()?;
        ended
    });
    let input = Input::Stream {
        name: name.to_string(),
        reader: Box::new(stdout),
        finish,
    };
    let r = snapshot(repo, input, opts);
    if r.is_err()
        && let Some(p) = producer.borrow_mut().take()
    {
        p.kill();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    r
}

type Parent = Option<(SnapshotId, Snapshot)>;

/// Walks `input` into the archiver (whose root is then saved once drained); returns the
/// snapshot's paths and the parent used.
fn archive(
    a: &mut Archiver<'_, '_, '_, '_>,
    repo: &Repository,
    opts: &SnapshotOptions,
    host: &str,
    user: &str,
    input: Input<'_>,
) -> Result<(Vec<String>, Parent)> {
    match input {
        Input::Paths(paths) => {
            let mut abs = Vec::new();
            for p in &paths {
                if let Err(e) = std::fs::symlink_metadata(p) {
                    return Err(Error::Invalid(format!(
                        "source path {} cannot be read: {e}",
                        p.display()
                    )));
                }
                abs.push(absolute(p)?);
            }
            if abs.is_empty() {
                return Err(Error::Invalid(
                    "nothing to snapshot: give at least one path".into(),
                ));
            }
            abs.sort();
            abs.dedup();
            let strs: Vec<String> = abs.iter().map(|p| p.display().to_string()).collect();
            let parent = if opts.force {
                None
            } else {
                find_parent(repo, opts, host, &strs)?
            };
            let ptree = match &parent {
                Some((_, s)) => {
                    opts.progress.total(s.summary.total_bytes);
                    Some((s.tree, repo.load_tree(&s.tree)?))
                }
                None => None,
            };
            let trie = build_trie(&abs);
            if trie.requested {
                // The whole filesystem root was requested.
                let dev = std::fs::metadata("/").map_err(|e| Error::io("/", e))?.dev();
                if !a.save_dir(Path::new("/"), dev, ptree.as_ref(), Link::Root)? {
                    return Err(Error::Invalid("cannot list /".into()));
                }
            } else {
                a.save_trie(
                    Path::new("/"),
                    &trie,
                    ptree.as_ref().map(|(_, t)| t),
                    Link::Root,
                )?;
            }
            Ok((strs, parent))
        }
        Input::Stream {
            name,
            reader,
            finish,
        } => {
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Error::Invalid(format!(
                    "stdin file name {name:?} must be a plain file name"
                )));
            }
            let strs = vec![format!("/{name}")];
            let parent = if opts.force {
                None
            } else {
                find_parent(repo, opts, host, &strs)?
            };
            let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
            let node = Node {
                name: name.clone().into_bytes(),
                kind: NodeKind::File,
                mode: 0o600,
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                user: Some(user.to_string()),
                mtime_ns: now,
                ctime_ns: now,
                nlink: 1,
                ..Node::default()
            };
            let key = a.open_dir(Link::Root);
            let target = a.stream_target(key, node, &name);
            let size = match a.stream(reader, None, &target)? {
                Ok(n) => n,
                Err(e) => return Err(Error::io(format!("<{name}>"), e)),
            };
            finish()?;
            a.stream_done(target, size);
            a.release(key)?;
            Ok((strs, parent))
        }
    }
}
