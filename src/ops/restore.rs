//! `restore`: write a snapshot (or part of it) back to a directory, bit-exact, with metadata.
//!
//! ```text
//! restore_dir(tree, target):
//!     for each node (name order), skipping excluded ones and those no include selects:
//!         dir   → restore_dir(subtree) first; remember (dir, node) for metadata
//!         other → a job for this directory
//!     run the directory's file jobs on the pool (hardlinked files in order, to link them)
//! set directory metadata, deepest first (times last, after all content is in place)
//! ```
//! File content is written at its offsets after `set_len`, skipping aligned all-zero 4 KiB
//! blocks, so holes stay holes; a file goes to a temporary name and is renamed into place.
//! Every blob is authenticated and its id re-derived before a byte of it is written; a file
//! whose data is damaged is reported and the restore goes on with the others.

use crate::ops::progress::ProgressSink;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::ops::pattern::PathPatterns;
use crate::repo::Repository;
use crate::source::fs::to_ns;
use crate::tree::{Node, NodeKind};

/// What to do with files that already exist in the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Replace them.
    #[default]
    Always,
    /// Replace them unless size and mtime already match.
    IfChanged,
    /// Leave them alone.
    Never,
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
    dirs: Vec<(PathBuf, Node)>,
}

/// Restores the snapshot tree `root` into `opts.target`.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreReport> {
    let mut r = Restorer {
        repo,
        opts,
        include: PathPatterns::new(&opts.include)?,
        exclude: PathPatterns::new(&opts.exclude)?,
        is_root: nix::unistd::geteuid().is_root(),
        report: Mutex::new(RestoreReport::default()),
        links: Mutex::new(HashMap::new()),
        dirs: Vec::new(),
    };
    if !opts.dry_run {
        fs::create_dir_all(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
    }
    r.restore_dir(
        root,
        Path::new("/"),
        &opts.target.clone(),
        r.include.is_empty(),
    )?;
    let dirs = std::mem::take(&mut r.dirs);
    for (path, node) in &dirs {
        r.apply_meta(path, node);
    }
    let mut report = r.report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.dirs = dirs.len() as u64;
    Ok(report)
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

    /// Restores one directory's contents into `tpath` (created here, top-down, so no path
    /// below the target goes through a symlink); returns whether anything was selected.
    fn restore_dir(
        &mut self,
        tree: &BlobId,
        spath: &Path,
        tpath: &Path,
        inherited: bool,
    ) -> Result<bool> {
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(e) => {
                self.error(spath, e);
                return Ok(false);
            }
        };
        let created = match self.opts.dry_run || tpath == self.opts.target {
            true => false,
            false => match self.ensure_dir(tpath) {
                Ok(c) => c,
                Err(e) => {
                    self.error(spath, e);
                    return Ok(false);
                }
            },
        };
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
                let sub_any = match &n.subtree {
                    Some(sub) => self.restore_dir(sub, &s, &tp, inc)?,
                    None => false,
                };
                if inc || sub_any {
                    self.dirs.push((tp, n));
                    any = true;
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
                    if self.clear_target(s, tp, n) {
                        match fs::hard_link(&first, tp) {
                            Ok(()) => self.report().others += 1,
                            Err(e) => self.error(s, e),
                        }
                    }
                }
                None => {
                    // Only a file this restore wrote may become the target of later links.
                    if self.restore_node(s, tp, n) {
                        self.links
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key, tp.clone());
                    }
                }
            }
        }
        Ok(any)
    }

    /// Applies the overwrite policy; true when `tp` may be (re)written. Existing files are
    /// replaced by rename, so they are not touched here; other existing entries that are not
    /// directories are removed.
    fn clear_target(&self, s: &Path, tp: &Path, n: &Node) -> bool {
        let Ok(m) = fs::symlink_metadata(tp) else {
            return true;
        };
        let same = m.is_file()
            && n.kind == NodeKind::File
            && m.len() == n.size
            && to_ns(m.mtime(), m.mtime_nsec()) == n.mtime_ns;
        match self.opts.overwrite {
            Overwrite::Never => {
                self.report().skipped += 1;
                return false;
            }
            Overwrite::IfChanged if same => {
                self.report().skipped += 1;
                return false;
            }
            _ => {}
        }
        if m.is_dir() {
            self.error(s, "a directory is in the way; not replaced");
            return false;
        }
        if n.kind == NodeKind::File && n.nlink <= 1 {
            return true;
        }
        if let Err(e) = fs::remove_file(tp) {
            self.error(s, e);
            return false;
        }
        true
    }

    /// Restores one non-directory entry; true when it was written.
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
        if !self.clear_target(s, tp, n) {
            return false;
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
        let mut r = [0u8; 8];
        crate::crypto::random_bytes(&mut r);
        let tmp = tp.with_file_name(format!(".cairn-restore-{}", hex::encode(r)));
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
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| e.to_string())?;
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
