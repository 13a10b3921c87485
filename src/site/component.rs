//! One component's data in and out: its snapshot (paths, a command's output, an SQLite
//! image), and its restore, either in place (rollback, recover) or into a scratch place
//! (drill). Hooks are the caller's business: these functions only move data.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{DateTime, Utc};

use super::config::{Component, Source, component_tag, kind_tag};
use super::handle::Site;
use super::hooks::{HookEnv, shell};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::ops::browse;
use crate::ops::progress::{Cancel, ProgressSink};
use crate::ops::restore::{Overwrite, RestoreOptions, RestoreReport, restore};
use crate::ops::snapshot::{Input, SnapshotOptions, SnapshotReport, snapshot, snapshot_command};
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::source::command::{TAIL_BYTES, failure, join_briefly, run_to_end, tail_reader};
use crate::source::sqlite;

/// How a component's snapshot is taken.
#[derive(Clone, Debug, Default)]
pub struct TakeOptions {
    /// Its kind (`kind=K` tag).
    pub kind: String,
    /// Why it is taken.
    pub reason: Option<String>,
    /// Its time (default now).
    pub time: Option<DateTime<Utc>>,
    /// Asked whether to stop early.
    pub cancel: Cancel,
    /// Receives files and bytes as they are read.
    pub progress: ProgressSink,
}

/// A scratch file or directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = if self.0.is_dir() {
            std::fs::remove_dir_all(&self.0)
        } else {
            std::fs::remove_file(&self.0)
        };
    }
}

/// A fresh name in `dir` for a temporary file or directory.
fn scratch_name(dir: &Path, what: &str) -> PathBuf {
    let mut r = [0u8; 6];
    crate::crypto::random_bytes(&mut r);
    dir.join(format!(".cairn-{what}-{}", hex::encode(r)))
}

/// Takes the snapshot of `comp` into `repo`, tagged `component=NAME` and `kind=K`.
pub fn take(
    site: &Site,
    repo: &Repository,
    comp: &Component,
    o: &TakeOptions,
) -> Result<SnapshotReport> {
    let state = &site.config.state_dir;
    let mut opts = SnapshotOptions {
        tags: vec![component_tag(&comp.name), kind_tag(&o.kind)],
        host: Some(site.host()),
        time: o.time,
        reason: o.reason.clone(),
        cancel: o.cancel.clone(),
        progress: o.progress.clone(),
        skip: own_paths(site, repo),
        ..SnapshotOptions::default()
    };
    match &comp.source {
        Source::Paths {
            paths,
            exclude,
            exclude_if_present,
            one_file_system,
        } => {
            opts.excludes = exclude.clone();
            opts.exclude_if_present = exclude_if_present.clone();
            opts.one_file_system = *one_file_system;
            crate::ops::snapshot::check_sources(paths)?;
            snapshot(repo, Input::Paths(paths.clone()), &opts)
        }
        Source::Command {
            command, filename, ..
        } => {
            let env = HookEnv::new(&comp.name, "run")
                .with("KIND", &o.kind)
                .with("REASON", o.reason.clone().unwrap_or_default());
            let label = format!("command `{command}`");
            snapshot_command(
                repo,
                &mut shell(command, &env),
                &label,
                filename,
                true,
                &opts,
            )
        }
        Source::Sqlite { path } => {
            let tmp = state.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let image = Scratch(scratch_name(&tmp, "sqlite"));
            sqlite::image(path, &image.0)?;
            let file = std::fs::File::open(&image.0).map_err(|e| Error::io(&image.0, e))?;
            let input = Input::Stream {
                name: sqlite_name(path),
                reader: Box::new(file),
                finish: Box::new(|| Ok(())),
            };
            snapshot(repo, input, &opts)
        }
    }
}

/// What cairn itself keeps on disk for this site: the repository, the cache, the state
/// directory. Never stored, never deleted by a restore in place.
pub fn own_paths(site: &Site, repo: &Repository) -> Vec<PathBuf> {
    let cache = site.cache_dir();
    [
        repo.root(),
        cache.as_path(),
        site.config.state_dir.as_path(),
    ]
    .iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect()
}

/// The file name an sqlite component's image has in its snapshots.
fn sqlite_name(db: &Path) -> String {
    db.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "database.sqlite".into())
}

/// The one file a command or sqlite component's snapshot holds.
fn stream_path(snap: &Snapshot) -> Result<PathBuf> {
    match snap.paths.as_slice() {
        [one] => Ok(PathBuf::from(one)),
        _ => Err(Error::Invalid(format!(
            "the snapshot holds {} paths, not one stream: it is not of a command or sqlite component",
            snap.paths.len()
        ))),
    }
}

/// Where a restore goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Back where the data lives (rollback, recover).
    Live,
    /// Into this scratch directory (drill); nothing live is touched.
    Scratch(PathBuf),
}

/// What a restore did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Restored {
    /// Plaintext bytes restored.
    pub bytes: u64,
    /// Files written (for a paths component).
    pub files: u64,
    /// Entries deleted to make a live paths component identical.
    pub deleted: u64,
    /// Files whose content was re-read and compared with the snapshot.
    pub verified: u64,
    /// The restored copy a probe examines (a scratch restore).
    pub copy: Option<PathBuf>,
}

/// Restores snapshot `snap` of `comp` to `to`. `env` is what the restore commands see.
pub fn put_back(
    site: &Site,
    repo: &Repository,
    comp: &Component,
    (id, snap): (&SnapshotId, &Snapshot),
    to: &Destination,
    env: &HookEnv,
) -> Result<Restored> {
    let env = env.clone().with("SNAPSHOT", id.to_hex());
    match (&comp.source, to) {
        (Source::Paths { .. }, _) => restore_paths(repo, comp, snap, to, own_paths(site, repo)),
        (
            Source::Command {
                restore_command, ..
            },
            Destination::Live,
        ) => {
            let cmd = restore_command.as_deref().ok_or_else(|| {
                Error::Invalid(format!(
                    "component {} has no restore_command: add one to the config to restore it \
                     (or get the stream with `cairn dump {} {}`)",
                    comp.name,
                    id.short(),
                    snap.paths.first().map(String::as_str).unwrap_or("/")
                ))
            })?;
            // Proven whole before the first byte reaches a restore that may drop data
            // (`pg_restore --clean`): a damaged blob stops it before anything is changed.
            let tmp = site.config.state_dir.join("tmp");
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let image = Scratch(scratch_name(&tmp, "stream"));
            dump_to(repo, snap, &image.0)?;
            let label = format!("restore_command `{cmd}`");
            let bytes = pipe_file_into(&image.0, cmd, &label, &env)?;
            Ok(Restored {
                bytes,
                ..Restored::default()
            })
        }
        (Source::Command { .. }, Destination::Scratch(dir)) => {
            let restore_cmd = comp
                .drill
                .as_ref()
                .and_then(|d| d.restore_command.as_deref());
            match restore_cmd {
                Some(cmd) => {
                    let env = env.with("DRILL_DIR", dir.display().to_string());
                    let bytes = pipe_into(
                        repo,
                        snap,
                        cmd,
                        &format!("drill restore_command `{cmd}`"),
                        &env,
                    )?;
                    Ok(Restored {
                        bytes,
                        ..Restored::default()
                    })
                }
                None => {
                    let file = dir.join(stream_name(snap)?);
                    let bytes = dump_to(repo, snap, &file)?;
                    Ok(Restored {
                        bytes,
                        verified: 1,
                        copy: Some(file),
                        ..Restored::default()
                    })
                }
            }
        }
        (Source::Sqlite { path }, Destination::Live) => {
            let live = comp.restore_target.clone().unwrap_or_else(|| path.clone());
            let dir = live.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let image = Scratch(scratch_name(dir, "sqlite"));
            let bytes = dump_to(repo, snap, &image.0)?;
            sqlite::integrity_check(&image.0)?;
            sqlite::replace(&live, &image.0)?;
            Ok(Restored {
                bytes,
                ..Restored::default()
            })
        }
        (Source::Sqlite { .. }, Destination::Scratch(dir)) => {
            let file = dir.join(stream_name(snap)?);
            let bytes = dump_to(repo, snap, &file)?;
            sqlite::integrity_check(&file)?;
            Ok(Restored {
                bytes,
                verified: 1,
                copy: Some(file),
                ..Restored::default()
            })
        }
    }
}

fn stream_name(snap: &Snapshot) -> Result<String> {
    let p = stream_path(snap)?;
    Ok(p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stream".into()))
}

/// Writes the snapshot's one stream to `file`, every blob proven on the way.
fn dump_to(repo: &Repository, snap: &Snapshot, file: &Path) -> Result<u64> {
    let path = stream_path(snap)?;
    let mut out = std::fs::File::create(file).map_err(|e| Error::io(file, e))?;
    let n = browse::dump(repo, &snap.tree, &path, &mut out)?;
    out.sync_all().map_err(|e| Error::io(file, e))?;
    Ok(n)
}

/// Feeds `file` to `cmd` on its standard input.
fn pipe_file_into(file: &Path, cmd: &str, label: &str, env: &HookEnv) -> Result<u64> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let len = f.metadata().map_err(|e| Error::io(file, e))?.len();
    let mut c = shell(cmd, env);
    c.stdin(Stdio::from(f));
    run_to_end(&mut c, label)?;
    Ok(len)
}

/// Feeds the snapshot's one stream to `cmd` on its standard input.
fn pipe_into(
    repo: &Repository,
    snap: &Snapshot,
    cmd: &str,
    label: &str,
    env: &HookEnv,
) -> Result<u64> {
    let path = stream_path(snap)?;
    let mut c = shell(cmd, env);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| Error::Invalid(format!("cannot run {label}: {e}")))?;
    let out = child.stdout.take().map(|o| tail_reader(o, TAIL_BYTES));
    let err = child.stderr.take().map(|e| tail_reader(e, TAIL_BYTES));
    let fed = match child.stdin.take() {
        Some(mut stdin) => browse::dump(repo, &snap.tree, &path, &mut stdin),
        None => Err(Error::Invalid(format!("{label}: no standard input"))),
    };
    let status = child
        .wait()
        .map_err(|e| Error::Invalid(format!("{label}: {e}")))?;
    drop(out);
    let err = err.map(join_briefly).unwrap_or_default();
    if !status.success() {
        return Err(Error::Invalid(failure(label, &status, &err)));
    }
    match fed {
        Ok(n) => Ok(n),
        // The command succeeded without reading everything: it did not take the snapshot.
        Err(e) => Err(Error::Invalid(format!(
            "{label} did not read the whole snapshot: {e}"
        ))),
    }
}

fn restore_paths(
    repo: &Repository,
    comp: &Component,
    snap: &Snapshot,
    to: &Destination,
    keep: Vec<PathBuf>,
) -> Result<Restored> {
    let Source::Paths {
        exclude,
        exclude_if_present,
        one_file_system,
        ..
    } = &comp.source
    else {
        return Err(Error::Invalid("not a paths component".into()));
    };
    let opts = match to {
        Destination::Live => RestoreOptions {
            target: comp
                .restore_target
                .clone()
                .unwrap_or_else(|| PathBuf::from("/")),
            include: snap.paths.clone(),
            exclude: exclude.clone(),
            overwrite: Overwrite::Always,
            // Entries the snapshot could not read are absent from it, not gone: a partial
            // snapshot gives no say over what is not in it.
            delete: snap.summary.errors == 0,
            keep_if_present: exclude_if_present.clone(),
            one_file_system: *one_file_system,
            force: true,
            keep,
            ..RestoreOptions::default()
        },
        Destination::Scratch(dir) => RestoreOptions {
            target: dir.clone(),
            include: snap.paths.clone(),
            verify: true,
            ..RestoreOptions::default()
        },
    };
    let r: RestoreReport = restore(repo, &snap.tree, &opts)?;
    if let Some(first) = r.errors.first() {
        return Err(Error::Invalid(format!(
            "{} entries could not be restored; the first: {}: {}",
            r.errors.len(),
            first.path,
            first.error
        )));
    }
    Ok(Restored {
        bytes: r.bytes,
        files: r.files,
        deleted: r.deleted,
        verified: r.verified,
        copy: match to {
            Destination::Scratch(d) => Some(d.clone()),
            Destination::Live => None,
        },
    })
}

/// The snapshots of component `name`, oldest first.
pub fn versions(repo: &Repository, name: &str) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let tag = component_tag(name);
    Ok(repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .collect())
}

/// The kind of a snapshot (its `kind=K` tag).
pub fn kind_of(s: &Snapshot) -> Option<&str> {
    s.tags.iter().find_map(|t| t.strip_prefix("kind="))
}

/// The component of a snapshot (its `component=NAME` tag).
pub fn component_of(s: &Snapshot) -> Option<&str> {
    s.tags.iter().find_map(|t| t.strip_prefix("component="))
}
