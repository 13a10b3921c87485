//! `restore`: write a snapshot (or part of it) back to a directory, bit-exact, with metadata.
//!
//! ```text
//! restore_dir(tree, target):
//!     for each node (name order), skipping excluded ones and those no include selects:
//!         dir   → restore_dir(subtree) first; remember (dir, node) for metadata
//!         file  → the pending batch (several directories' files at once)
//!         other → a job for this directory
//!     run the directory's other jobs on the pool (hardlinked files in order, to link them)
//! batch of files (up to 1024, a quarter of the open-file limit, or what is left at the end):
//!     create each file (sized); plan its blobs by pack (plan.rs): one read per run of
//!     neighbouring blobs, runs on the pool; each blob opened, proven and written at every
//!     offset that needs it; then per file: verify, metadata, rename into place
//! set directory metadata, deepest first (times last, after all content is in place)
//! ```
//! File content is written at its offsets after `set_len`, skipping aligned all-zero 4 KiB
//! blocks, so holes stay holes. A file that replaces an existing one goes to a temporary name
//! and is renamed into place, so the old file survives a failure; a new file is written under
//! its own name (as restic does) and gets its mtime last. So a killed restore is resumed by
//! running it again: with the default `--overwrite if-changed`, a file whose size and mtime
//! match the snapshot (and, with `--verify`, its content, read locally) is complete and is
//! neither read from the repository nor written; a partly written one has the wrong mtime and
//! is redone; temporary files of the killed process are swept. Every blob is authenticated
//! and its id re-derived before a byte of it is written; a file whose data is damaged is
//! reported and the restore goes on with the others.

mod plan;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::ops::pattern::PathPatterns;
use crate::ops::progress::ProgressSink;
use crate::repo::Repository;
use crate::repo::blob::open_blob;
use crate::source::fs::to_ns;
use crate::tree::{Node, NodeKind};
use plan::{Coalesce, Place, Planner};

/// What to do with files that already exist in the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Replace them all.
    Always,
    /// Replace them unless size and mtime already match the snapshot (with `verify`, their
    /// content too): what makes running a killed restore again resume it.
    #[default]
    IfChanged,
    /// Leave them alone.
    Never,
}

/// What [`Restorer::clear_target`] found at a target path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    /// Nothing, or something to replace: write the entry.
    Write,
    /// The entry as the snapshot has it (a file restored before): left as it is.
    Complete,
    /// Something the policy (or an error) keeps: left alone, not the snapshot's entry.
    Kept,
}

/// Options of `restore`.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Where to restore; snapshot paths are recreated below it.
    pub target: PathBuf,
    /// Restore only what matches (and what lies below a match).
    pub include: Vec<String>,
    /// Leave out what matches.
    pub exclude: Vec<String>,
    /// Re-read every restored file and compare it with the snapshot.
    pub verify: bool,
    /// Count only; write nothing.
    pub dry_run: bool,
    /// Existing-file policy.
    pub overwrite: Overwrite,
    /// Receives files and bytes as they are restored.
    pub progress: ProgressSink,
    /// Make the target identical: remove what a restored directory holds and the snapshot
    /// lacks (only in directories the include patterns select, never what the exclude
    /// patterns match).
    pub delete: bool,
    /// With `delete`: keep directories holding one of these files (a snapshot taken with
    /// `--exclude-if-present` left them out, so it has no say over them).
    pub keep_if_present: Vec<String>,
    /// With `delete`: delete nothing inside a directory on another filesystem than its
    /// parent's (a one-file-system snapshot stored mount points empty).
    pub one_file_system: bool,
    /// Allow `delete` into `/`.
    pub force: bool,
    /// With `delete`: target paths never deleted, nor any folder holding one (the
    /// repository, its cache, a state directory inside the restored tree).
    pub keep: Vec<PathBuf>,
}

/// A problem with one path.
#[derive(Clone, Debug, Serialize)]
pub struct PathError {
    /// Snapshot path.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// The outcome of a restore.
#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    /// Regular files written (or that would be, on a dry run).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks, FIFOs, devices and hardlinks.
    pub others: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Entries left alone by the overwrite policy.
    pub skipped: u64,
    /// Entries removed (or, on a dry run, to be removed) by `delete`.
    pub deleted: u64,
    /// Files re-read and confirmed by `--verify`.
    pub verified: u64,
    /// Entries whose data could not be restored (exit 1).
    pub errors: Vec<PathError>,
    /// Metadata that could not be applied (e.g. ownership when not root).
    pub warnings: Vec<PathError>,
}

struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    include: PathPatterns,
    exclude: PathPatterns,
    is_root: bool,
    report: Mutex<RestoreReport>,
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    /// How many files make a batch.
    batch: usize,
}

/// A regular file waiting for its batch: snapshot path, target path, node.
type Pending = (PathBuf, PathBuf, Node);

/// What the walk of the trees collects, and the batch of files being written meanwhile.
///
/// A batch is written on a thread of its own while the walk gathers the next one, and the
/// next starts before the walk waits for it: so the pool always has a batch's work while
/// the other is in a phase that keeps a core idle (creating files, the last pack runs,
/// finishing files). At most two batches are open at once, within half the open-file limit.
struct Walk<'s, 'e> {
    scope: &'s std::thread::Scope<'s, 'e>,
    /// Directories restored, whose metadata is applied at the end.
    dirs: Vec<(PathBuf, Node)>,
    /// Regular files (one link) waiting for their batch.
    files: Vec<Pending>,
    /// The batch being written.
    writing: Option<std::thread::ScopedJoinHandle<'s, Result<()>>>,
}

/// Waits for a batch's thread; its panic is carried on.
fn join(h: std::thread::ScopedJoinHandle<'_, Result<()>>) -> Result<()> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Restores the snapshot tree `root` into `opts.target`.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreReport> {
    if opts.delete
        && !opts.force
        && fs::canonicalize(&opts.target).is_ok_and(|t| t == Path::new("/"))
    {
        return Err(Error::Invalid(
            "restore --delete into / would remove everything the snapshot lacks from the whole \
             system: restore into another directory, or add --force (with --include to confine it)"
                .into(),
        ));
    }
    let _session = repo.begin_reader_session("restore");
    let r = Restorer {
        repo,
        opts,
        include: PathPatterns::new(&opts.include)?,
        exclude: PathPatterns::new(&opts.exclude)?,
        is_root: nix::unistd::geteuid().is_root(),
        report: Mutex::new(RestoreReport::default()),
        links: Mutex::new(HashMap::new()),
        batch: file_batch(),
    };
    if !opts.dry_run {
        fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    }
    let dirs = std::thread::scope(|scope| -> Result<Vec<(PathBuf, Node)>> {
        let mut w = Walk {
            scope,
            dirs: Vec::new(),
            files: Vec::new(),
            writing: None,
        };
        r.restore_dir(
            &mut w,
            root,
            Path::new("/"),
            &opts.target,
            r.include.is_empty(),
        )?;
        r.flush(&mut w)?;
        if let Some(h) = w.writing.take() {
            join(h)?;
        }
        Ok(w.dirs)
    })?;
    for (path, node) in &dirs {
        r.apply_meta(path, node);
    }
    let mut report = r.report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.dirs = dirs.len() as u64;
    Ok(report)
}

/// Regular files restored together (each open until its batch ends): enough that the pauses
/// between batches are rare and their blobs fill pack reads (256: 6.0 s, 1024: 5.3 s for the
/// `usr` corpus), within a quarter of the open-file limit.
fn file_batch() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((mut soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 64;
    };
    // Like Go programs (restic), use more of the hard limit when the soft one is low.
    if soft < 4096 && hard > soft {
        let raised = hard.min(4096);
        if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
            soft = raised;
        }
    }
    ((soft / 4) as usize).clamp(16, 1024)
}

/// A file being restored: written under its own name when none existed, else under a
/// temporary name beside it.
struct OutFile {
    file: fs::File,
    /// The temporary name, when an existing file is being replaced.
    tmp: Option<PathBuf>,
    /// The first failure; the file is then removed instead of finished.
    failed: Mutex<Option<String>>,
}

impl OutFile {
    fn create(tp: &Path, size: u64) -> std::io::Result<OutFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |p: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)
        };
        let (file, tmp) = match open(tp) {
            Ok(f) => (f, None),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let tmp = temp_beside(tp);
                (create_temp(&tmp)?, Some(tmp))
            }
            Err(e) => return Err(e),
        };
        let out = OutFile {
            file,
            tmp,
            failed: Mutex::new(None),
        };
        if let Err(e) = out.file.set_len(size) {
            let _ = fs::remove_file(out.path(tp));
            return Err(e);
        }
        Ok(out)
    }

    fn path<'p>(&'p self, tp: &'p Path) -> &'p Path {
        self.tmp.as_deref().unwrap_or(tp)
    }

    fn fail(&self, e: impl std::fmt::Display) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }

    /// Runs `finish` on the written file, then renames it into place; on any failure the
    /// file is removed (an existing file it was to replace stays as it was).
    fn finish(
        self,
        tp: &Path,
        finish: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<(), String> {
        let path = self.path(tp).to_path_buf();
        let failed = self.failed.into_inner().unwrap_or_else(|e| e.into_inner());
        drop(self.file);
        let res = match failed {
            Some(e) => Err(e),
            None => finish(&path).and_then(|()| match &self.tmp {
                Some(tmp) => fs::rename(tmp, tp).map_err(|e| e.to_string()),
                None => Ok(()),
            }),
        };
        if res.is_err() {
            let _ = fs::remove_file(&path);
        }
        res
    }
}

/// How temporary files of a restore begin. The restore writing one holds an exclusive
/// `flock` on it, so a later restore can tell those of a killed one (unlocked) from those
/// of a restore still running, on any host or in any container sharing the directory.
const TEMP_PREFIX: &str = ".cairn-restore-";

/// Whether `a` and `b` are one file (the same device and inode).
fn same_inode(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Creates a temporary file (mode 0600, never through a symlink) and locks it, where the
/// filesystem has locks, for as long as it stays open.
fn create_temp(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // A filesystem without locks only loses the sweep: there no temporary file can be
    // locked by the sweeping restore either, so none is removed.
    let _ = f.try_lock();
    Ok(f)
}

/// A fresh temporary name in `tp`'s folder, for a file that replaces `tp` by rename.
fn temp_beside(tp: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    crate::crypto::random_bytes(&mut r);
    tp.with_file_name(format!("{TEMP_PREFIX}{}", hex::encode(r)))
}

fn lossy(p: &Path) -> String {
    p.display().to_string()
}

impl Restorer<'_> {
    fn report(&self) -> std::sync::MutexGuard<'_, RestoreReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, spath: &Path, e: impl std::fmt::Display) {
        self.report().errors.push(PathError {
            path: lossy(spath),
            error: e.to_string(),
        });
    }

    fn warn(&self, spath: &Path, e: impl std::fmt::Display) {
        self.report().warnings.push(PathError {
            path: lossy(spath),
            error: e.to_string(),
        });
    }

    /// Makes `tp` a real directory (never following a symlink in its place); returns whether
    /// it was created by this call.
    fn ensure_dir(&self, tp: &Path) -> std::io::Result<bool> {
        match fs::symlink_metadata(tp) {
            Ok(m) if m.is_dir() => Ok(false),
            Ok(_) if self.opts.overwrite == Overwrite::Never => {
                Err(std::io::Error::other("a non-directory is in the way"))
            }
            Ok(_) => {
                fs::remove_file(tp)?;
                fs::create_dir(tp).map(|()| true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(tp).map(|()| true),
            Err(e) => Err(e),
        }
    }

    /// Removes the entries of `tpath` that `tree` lacks (`delete`), but for those the
    /// exclude patterns match, directories with a `keep_if_present` file, and everything on
    /// another filesystem with `one_file_system`.
    fn delete_extra(&self, tree: &crate::tree::Tree, spath: &Path, tpath: &Path) {
        let dev = |p: &Path| fs::symlink_metadata(p).map(|m| m.dev()).ok();
        // A snapshot path that is itself a mount point was stored whole: only what lies
        // below it on other filesystems is out of the snapshot's reach.
        let named = self.opts.include.iter().any(|i| Path::new(i) == spath);
        if self.opts.one_file_system
            && !named
            && let Some(parent) = tpath.parent()
            && dev(tpath) != dev(parent)
        {
            return;
        }
        let entries = match fs::read_dir(tpath) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => return self.error(spath, e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return self.error(spath, e),
            };
            let name = entry.file_name();
            if tree.get(name.as_bytes()).is_some() {
                continue;
            }
            let (s, tp) = (spath.join(&name), tpath.join(&name));
            if self.exclude.matches(&s, &name) || self.opts.keep.iter().any(|k| k.starts_with(&tp))
            {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&tp) else {
                continue;
            };
            if m.is_dir() {
                if self
                    .opts
                    .keep_if_present
                    .iter()
                    .any(|f| tp.join(f).symlink_metadata().is_ok())
                {
                    continue;
                }
                if self.opts.one_file_system && dev(tpath) != Some(m.dev()) {
                    continue;
                }
            }
            if !self.opts.dry_run {
                let gone = if m.is_dir() {
                    fs::remove_dir_all(&tp)
                } else {
                    fs::remove_file(&tp)
                };
                if let Err(e) = gone {
                    self.error(&s, format!("cannot delete: {e}"));
                    continue;
                }
            }
            self.report().deleted += 1;
        }
    }

    /// Restores one directory's contents into `tpath` (created here, top-down, so no path
    /// below the target goes through a symlink); returns whether anything was selected and
    /// whether the directory was created.
    fn restore_dir<'s>(
        &'s self,
        w: &mut Walk<'s, '_>,
        tree: &BlobId,
        spath: &Path,
        tpath: &Path,
        inherited: bool,
    ) -> Result<(bool, bool)> {
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(e) => {
                self.error(spath, e);
                return Ok((false, false));
            }
        };
        let created = match self.opts.dry_run || tpath == self.opts.target {
            true => false,
            false => match self.ensure_dir(tpath) {
                Ok(c) => c,
                Err(e) => {
                    self.error(spath, e);
                    return Ok((false, false));
                }
            },
        };
        if self.opts.delete && inherited && !created {
            self.delete_extra(&t, spath, tpath);
        } else if !created && !self.opts.dry_run {
            self.sweep_temps(tpath);
        }
        let mut jobs = Vec::new();
        let mut any = false;
        for n in t.nodes {
            let name = std::ffi::OsStr::from_bytes(&n.name);
            let (s, tp) = (spath.join(name), tpath.join(name));
            if self.exclude.matches(&s, name) {
                continue;
            }
            let inc = inherited || self.include.matches(&s, name);
            if n.kind == NodeKind::Dir {
                let (sub_any, sub_created) = match &n.subtree {
                    Some(sub) => self.restore_dir(w, sub, &s, &tp, inc)?,
                    None => (false, false),
                };
                // A directory that only leads to selected entries keeps its own metadata
                // when it was there already (a restore in place must not reset `/srv`).
                if inc || (sub_any && (sub_created || self.opts.dry_run)) {
                    w.dirs.push((tp, n));
                }
                any |= inc || sub_any;
            } else if inc && n.kind == NodeKind::File && n.nlink <= 1 {
                w.files.push((s, tp, n));
                any = true;
                if w.files.len() >= self.batch {
                    self.flush(w)?;
                }
            } else if inc {
                jobs.push((s, tp, n));
                any = true;
            }
        }
        if !any && !inherited && created {
            // Nothing selected below: leave no empty directory behind.
            let _ = fs::remove_dir(tpath);
        }
        let created = created && (any || inherited);
        let (linked, single): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|(_, _, n)| n.kind == NodeKind::File && n.nlink > 1);
        single.par_iter().for_each(|(s, tp, n)| {
            self.restore_node(s, tp, n);
        });
        for (s, tp, n) in &linked {
            let key = (n.device, n.inode);
            let first = self
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            match first {
                Some(_) if self.opts.dry_run => self.report().others += 1,
                Some(first) => {
                    if same_inode(&first, tp) {
                        // Linked by an earlier run.
                        self.report().skipped += 1;
                        continue;
                    }
                    let state = match fs::symlink_metadata(tp) {
                        // Whatever its size and time, a separate file is not this link.
                        Ok(m) if m.is_file() && self.opts.overwrite != Overwrite::Never => {
                            match fs::remove_file(tp) {
                                Ok(()) => Existing::Write,
                                Err(e) => {
                                    self.error(s, e);
                                    Existing::Kept
                                }
                            }
                        }
                        _ => self.clear_target(s, tp, n),
                    };
                    if state == Existing::Write {
                        match fs::hard_link(&first, tp) {
                            Ok(()) => self.report().others += 1,
                            Err(e) => self.error(s, e),
                        }
                    }
                }
                None => {
                    // Only a file this restore wrote, or found complete, may become the
                    // target of later links.
                    if self.restore_node(s, tp, n) {
                        self.links
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key, tp.clone());
                    }
                }
            }
        }
        Ok((any, created))
    }

    /// Starts writing the pending files as a batch, then waits for the batch before it.
    fn flush<'s>(&'s self, w: &mut Walk<'s, '_>) -> Result<()> {
        let batch = std::mem::take(&mut w.files);
        if batch.is_empty() {
            return Ok(());
        }
        let started = w.scope.spawn(move || self.write_batch(batch));
        match w.writing.replace(started) {
            Some(before) => join(before),
            None => Ok(()),
        }
    }

    /// Restores a batch of regular files: created, filled pack by pack, finished.
    fn write_batch(&self, batch: Vec<Pending>) -> Result<()> {
        if self.opts.dry_run {
            for (s, tp, n) in &batch {
                self.restore_node(s, tp, n);
            }
            return Ok(());
        }
        // Create (and size) every file; `None` for those left alone or not creatable.
        let outs: Vec<Option<OutFile>> = batch
            .par_iter()
            .map(|(s, tp, n)| {
                if self.clear_target(s, tp, n) != Existing::Write {
                    return None;
                }
                match OutFile::create(tp, n.size) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        self.error(s, e);
                        None
                    }
                }
            })
            .collect();
        // Plan: every blob of every file, by pack, located in one read of the cache. A
        // cache failure fails the batch's files one by one (they are removed at the end),
        // rather than leaving them created and empty.
        let ids: Vec<BlobId> = batch
            .iter()
            .zip(&outs)
            .filter(|(_, out)| out.is_some())
            .flat_map(|((_, _, n), _)| n.content.iter().copied())
            .collect();
        let mut locs = match self.repo.locate_each(&ids) {
            Ok(l) => l.into_iter(),
            Err(e) => {
                let e = e.to_string();
                outs.iter().flatten().for_each(|o| o.fail(&e));
                Vec::new().into_iter()
            }
        };
        let mut planner = Planner::default();
        for (i, ((_, _, n), out)) in batch.iter().zip(&outs).enumerate() {
            let Some(out) = out else { continue };
            // This file's share of `locs`, taken whole even when it fails part-way.
            let mine: Vec<_> = locs.by_ref().take(n.content.len()).collect();
            let mut off = 0u64;
            for (id, loc) in n.content.iter().zip(mine) {
                match loc {
                    Some(loc) => {
                        planner.add(
                            *id,
                            &loc,
                            Place {
                                file: i,
                                offset: off,
                            },
                        );
                        off += u64::from(loc.raw_len);
                    }
                    None => {
                        out.fail(Error::BlobNotIndexed(id.to_hex()));
                        break;
                    }
                }
            }
            if off != n.size {
                out.fail(format!(
                    "content adds up to {off} bytes but the file had {}",
                    n.size
                ));
            }
        }
        // Read each run once, open and prove its blobs, write them where they go.
        let coalesce = if self.repo.is_local() {
            Coalesce::LOCAL
        } else {
            Coalesce::REMOTE
        };
        planner.runs(coalesce).par_iter().for_each(|run| {
            let sealed = self.repo.backend().get_range(
                FileKind::Pack,
                &run.pack.to_hex(),
                run.start,
                run.len,
            );
            // Blobs of one run are opened in parallel too: a batch of small files may need
            // only a run or two.
            run.needs.par_iter().for_each(|need| {
                let data = sealed.as_ref().map_err(|e| e.to_string()).and_then(|b| {
                    let at = (need.offset - run.start) as usize;
                    open_blob(
                        self.repo.key(),
                        need.blob_type,
                        &need.id,
                        &b[at..at + need.length as usize],
                        need.raw_len,
                    )
                    .map_err(|e| format!("blob {} in pack {}: {e}", need.id, run.pack))
                });
                for p in &need.places {
                    let Some(out) = &outs[p.file] else { continue };
                    match &data {
                        Ok(d) => {
                            if let Err(e) = write_sparse(&out.file, d, p.offset) {
                                out.fail(e);
                            }
                        }
                        Err(e) => out.fail(e),
                    }
                }
            });
        });
        // Finish each file.
        batch.par_iter().zip(outs).for_each(|((s, tp, n), out)| {
            let Some(out) = out else { return };
            match out.finish(tp, |path| {
                if self.opts.verify {
                    self.verify_file(path, n)
                        .map_err(|e| format!("verification failed: {e}"))?;
                }
                self.apply_meta(path, n);
                Ok(())
            }) {
                Ok(()) => {
                    let mut r = self.report();
                    r.files += 1;
                    r.bytes += n.size;
                    if self.opts.verify {
                        r.verified += 1;
                    }
                    drop(r);
                    self.opts.progress.advance(1, n.size);
                }
                Err(e) => self.error(s, e),
            }
        });
        Ok(())
    }

    /// Applies the overwrite policy to what is at `tp`. Existing files are replaced by
    /// rename, so they are not touched here; other existing entries that are not
    /// directories are removed. A file already restored (same size and mtime, and with
    /// `verify` the same content) is [`Existing::Complete`]: its metadata is applied again
    /// and its content is neither read from the repository nor written.
    fn clear_target(&self, s: &Path, tp: &Path, n: &Node) -> Existing {
        let Ok(m) = fs::symlink_metadata(tp) else {
            return Existing::Write;
        };
        let same = m.is_file()
            && n.kind == NodeKind::File
            && m.len() == n.size
            && to_ns(m.mtime(), m.mtime_nsec()) == n.mtime_ns;
        match self.opts.overwrite {
            Overwrite::Never => {
                self.report().skipped += 1;
                return Existing::Kept;
            }
            Overwrite::IfChanged if same => {
                let proven = !self.opts.verify || self.verify_file(tp, n).is_ok();
                if proven {
                    self.apply_meta(tp, n);
                    let mut r = self.report();
                    r.skipped += 1;
                    if self.opts.verify {
                        r.verified += 1;
                    }
                    drop(r);
                    self.opts.progress.advance(1, n.size);
                    return Existing::Complete;
                }
            }
            _ => {}
        }
        if m.is_dir() {
            if !self.opts.delete {
                self.error(s, "a directory is in the way; not replaced");
                return Existing::Kept;
            }
            if let Err(e) = fs::remove_dir_all(tp) {
                self.error(
                    s,
                    format!("a directory is in the way and cannot be deleted: {e}"),
                );
                return Existing::Kept;
            }
            return Existing::Write;
        }
        if n.kind == NodeKind::File && n.nlink <= 1 {
            return Existing::Write;
        }
        if let Err(e) = fs::remove_file(tp) {
            self.error(s, e);
            return Existing::Kept;
        }
        Existing::Write
    }

    /// Removes what an earlier restore that was killed left in `dir`: temporary files no
    /// process holds locked (a running restore's are its own business).
    fn sweep_temps(&self, dir: &Path) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_name().as_bytes().starts_with(TEMP_PREFIX.as_bytes())
                || !e.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let Ok(f) = fs::File::open(e.path()) else {
                continue;
            };
            if f.try_lock().is_ok() {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Restores one non-directory entry; true when the target now holds it (written, or
    /// found complete).
    fn restore_node(&self, s: &Path, tp: &Path, n: &Node) -> bool {
        if self.opts.dry_run {
            let mut r = self.report();
            if n.kind == NodeKind::File {
                r.files += 1;
                r.bytes += n.size;
                self.opts.progress.advance(1, n.size);
            } else {
                r.others += 1;
            }
            return true;
        }
        match self.clear_target(s, tp, n) {
            Existing::Write => {}
            Existing::Complete => return true,
            Existing::Kept => return false,
        }
        let res = match n.kind {
            NodeKind::File => self.write_file(tp, n),
            NodeKind::Symlink => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&n.link_target), tp)
                    .map_err(|e| e.to_string())
                    .map(|()| self.apply_meta(tp, n))
            }
            NodeKind::Fifo => {
                nix::unistd::mkfifo(tp, nix::sys::stat::Mode::from_bits_truncate(n.mode & 0o777))
                    .map_err(|e| e.to_string())
                    .map(|()| self.apply_meta(tp, n))
            }
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                let kind = if n.kind == NodeKind::CharDevice {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                match nix::sys::stat::mknod(
                    tp,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(n.mode & 0o777),
                    n.rdev as _,
                ) {
                    Ok(()) => {
                        self.apply_meta(tp, n);
                        Ok(())
                    }
                    Err(e) => {
                        self.warn(s, format!("cannot create device node: {e}"));
                        return false;
                    }
                }
            }
            NodeKind::Socket | NodeKind::Dir => return false,
        };
        match res {
            Ok(()) => {
                let mut r = self.report();
                if n.kind == NodeKind::File {
                    r.files += 1;
                    r.bytes += n.size;
                    self.opts.progress.advance(1, n.size);
                    if self.opts.verify {
                        r.verified += 1;
                    }
                } else {
                    r.others += 1;
                }
                true
            }
            Err(e) => {
                self.error(s, e);
                false
            }
        }
    }

    /// Writes a file under a temporary name beside `tp`, verifies it if asked, applies its
    /// metadata, and renames it into place: an existing file is replaced only by a complete,
    /// proven one, and a failure leaves it as it was.
    fn write_file(&self, tp: &Path, n: &Node) -> Result<(), String> {
        let tmp = temp_beside(tp);
        let result = self.write_content(&tmp, n).and_then(|()| {
            if self.opts.verify {
                self.verify_file(&tmp, n)
                    .map_err(|e| format!("verification failed: {e}"))?;
            }
            self.apply_meta(&tmp, n);
            fs::rename(&tmp, tp).map_err(|e| e.to_string())
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_content(&self, path: &Path, n: &Node) -> Result<(), String> {
        let f = create_temp(path).map_err(|e| e.to_string())?;
        f.set_len(n.size).map_err(|e| e.to_string())?;
        let mut off = 0u64;
        for id in &n.content {
            let (_, data) = self.repo.load_blob(id).map_err(|e| e.to_string())?;
            write_sparse(&f, &data, off).map_err(|e| e.to_string())?;
            off += data.len() as u64;
        }
        if off != n.size {
            return Err(format!(
                "content adds up to {off} bytes but the file had {}",
                n.size
            ));
        }
        Ok(())
    }

    fn verify_file(&self, path: &Path, n: &Node) -> Result<(), String> {
        let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
        for id in &n.content {
            let loc = self
                .repo
                .locate(id)
                .map_err(|e| e.to_string())?
                .ok_or("blob not indexed")?;
            let mut buf = vec![0u8; loc.raw_len as usize];
            f.read_exact(&mut buf).map_err(|e| e.to_string())?;
            if self.repo.key().blob_id(&buf) != *id {
                return Err("restored content differs from the snapshot".into());
            }
        }
        if f.read(&mut [0u8; 1]).map_err(|e| e.to_string())? != 0 {
            return Err("restored file is longer than in the snapshot".into());
        }
        Ok(())
    }

    /// Ownership, extended attributes, mode, then times (last, as the others touch ctime;
    /// xattrs before the mode, which may forbid writing them).
    fn apply_meta(&self, tp: &Path, n: &Node) {
        use nix::unistd::{Gid, Uid};
        let is_link = n.kind == NodeKind::Symlink;
        if self.is_root
            && let Err(e) = nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                tp,
                Some(Uid::from_raw(n.uid)),
                Some(Gid::from_raw(n.gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        {
            self.warn(tp, format!("cannot set owner: {e}"));
        }
        for x in &n.xattrs {
            if let Err(e) = xattr::set(tp, std::ffi::OsStr::from_bytes(&x.name), &x.value) {
                self.warn(
                    tp,
                    format!(
                        "cannot set extended attribute {}: {e}",
                        String::from_utf8_lossy(&x.name)
                    ),
                );
            }
        }
        if !is_link && let Err(e) = fs::set_permissions(tp, fs::Permissions::from_mode(n.mode)) {
            self.warn(tp, format!("cannot set mode: {e}"));
        }
        if n.kind == NodeKind::Dir && n.mtime_ns == 0 && n.ctime_ns == 0 {
            // A directory on the way to a snapshot path: its times were not recorded.
            return;
        }
        let mtime = filetime::FileTime::from_unix_time(
            n.mtime_ns.div_euclid(1_000_000_000),
            n.mtime_ns.rem_euclid(1_000_000_000) as u32,
        );
        // Path-based and not following symlinks: never opens the entry (a FIFO would block).
        if let Err(e) = filetime::set_symlink_file_times(tp, mtime, mtime) {
            self.warn(tp, format!("cannot set times: {e}"));
        }
    }
}

/// Hole granularity: runs of zeros this long and aligned are left unwritten.
const HOLE_BLOCK: usize = 4096;

/// Writes `data` at `off`, skipping aligned all-zero blocks so that they stay holes in the
/// file (which was sized with `set_len`, so skipped ranges read as zeros).
fn write_sparse(f: &fs::File, data: &[u8], off: u64) -> std::io::Result<()> {
    let mut i = 0;
    while i < data.len() {
        // Block boundaries aligned to the file offset.
        let block_end = |i: usize| {
            (((off as usize + i) / HOLE_BLOCK + 1) * HOLE_BLOCK - off as usize).min(data.len())
        };
        let mut j = block_end(i);
        if data[i..j].iter().all(|b| *b == 0) {
            i = j;
            continue;
        }
        while j < data.len() {
            let k = block_end(j);
            if data[j..k].iter().all(|b| *b == 0) {
                break;
            }
            j = k;
        }
        f.write_all_at(&data[i..j], off + i as u64)?;
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_writes_leave_zero_blocks_unwritten_and_content_exact() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let mut data = vec![0u8; 3 << 20];
        data[10] = 1;
        data[(2 << 20) + 5000] = 2;
        let off = 1000;
        f.set_len(off + data.len() as u64).unwrap();
        write_sparse(&f, &data, off).unwrap();
        let back = fs::read(&p).unwrap();
        assert_eq!(&back[off as usize..], &data[..]);
        assert!(
            f.metadata().unwrap().blocks() * 512 < 64 * 1024,
            "{} blocks",
            f.metadata().unwrap().blocks()
        );
    }
}
