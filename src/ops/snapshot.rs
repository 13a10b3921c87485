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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::ops::pattern::PathPatterns;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::saver::BlobSaver;
use crate::repo::snapshot::{Snapshot, Summary};
use crate::source::fs::{Owners, node_from_metadata, to_ns};
use crate::source::stream::for_each_window;
use crate::tree::{Node, NodeKind, Tree};

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

enum ReadError {
    Source(std::io::Error),
    Repo(Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Source(e)
    }
}

/// Files up to this size are read in parallel batches (larger ones are streamed in windows).
const SMALL_FILE: u64 = 1 << 20;
/// A batch is stored once it holds this many bytes or files.
const SMALL_BATCH_BYTES: u64 = 32 << 20;
const SMALL_BATCH_FILES: usize = 2048;

/// A small file waiting for its batch.
struct SmallFile {
    path: PathBuf,
    node: Node,
    /// The parent snapshot had a file at this path (counted as changed, not new).
    changed: bool,
}

/// A small file's content, cut and hashed.
struct SmallContent {
    data: Vec<u8>,
    ranges: Vec<Range<usize>>,
    ids: Vec<BlobId>,
}

/// Opens a file without following a symlink or blocking on a FIFO swapped in since it was
/// examined, and checks that it is still the same regular file (`node`'s inode).
fn open_examined(path: &Path, node: &Node) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.ino() != node.inode {
        return Err(std::io::Error::other(
            "replaced by another file while being read; skipped",
        ));
    }
    Ok(f)
}

/// True when the open file still has the size and times it had when examined.
fn unchanged_since(f: &std::fs::File, node: &Node, read: u64) -> std::io::Result<bool> {
    let m = f.metadata()?;
    Ok(read == node.size
        && m.len() == node.size
        && to_ns(m.mtime(), m.mtime_nsec()) == node.mtime_ns
        && to_ns(m.ctime(), m.ctime_nsec()) == node.ctime_ns)
}

/// Reads a small file whole, cuts and hashes it (runs on the worker pool).
fn read_small(
    path: &Path,
    node: &Node,
    chunker: &crate::chunker::Chunker,
    key: &crate::crypto::MasterKey,
) -> std::io::Result<SmallContent> {
    let mut f = open_examined(path, node)?;
    let mut data = Vec::with_capacity(node.size as usize + 1);
    (&mut f).take(node.size + 1).read_to_end(&mut data)?;
    if !unchanged_since(&f, node, data.len() as u64)? {
        return Err(std::io::Error::other(
            "file changed while it was read; skipped",
        ));
    }
    let ranges: Vec<Range<usize>> = chunker.chunks(&data).collect();
    let ids = ranges
        .iter()
        .map(|r| key.blob_id(&data[r.clone()]))
        .collect();
    Ok(SmallContent { data, ranges, ids })
}

struct Excludes {
    patterns: PathPatterns,
    if_present: Vec<OsString>,
}

impl Excludes {
    fn new(patterns: &[String], if_present: &[String]) -> Result<Self> {
        Ok(Excludes {
            patterns: PathPatterns::new(patterns)?,
            if_present: if_present.iter().map(OsString::from).collect(),
        })
    }

    fn excluded(&self, path: &Path, name: &OsStr) -> bool {
        self.patterns.matches(path, name)
    }
}

struct Archiver<'r, 'o> {
    repo: &'r Repository,
    saver: BlobSaver<'r>,
    opts: &'o SnapshotOptions,
    excludes: Excludes,
    owners: Owners,
    summary: Summary,
    errors: Vec<SourceError>,
    /// Small files of the directory being archived, waiting to be read as one parallel batch.
    small: Vec<SmallFile>,
    /// Their total size.
    small_bytes: u64,
    /// Content of hardlinked files by (device, inode), with the number of links not yet seen.
    hardlinks: HashMap<(u64, u64), (Vec<BlobId>, u64)>,
}

/// Requested paths as a trie of components below `/`.
#[derive(Default)]
struct PathTrie {
    requested: bool,
    children: BTreeMap<OsString, PathTrie>,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    // Resolve `.`/`..` and symlinks in the parent, but keep a final symlink as itself.
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map_err(|e| Error::io(parent, e))?
            .join(name)),
        _ => std::fs::canonicalize(&abs).map_err(|e| Error::io(&abs, e)),
    }
}

impl<'r, 'o> Archiver<'r, 'o> {
    fn report(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.errors.push(SourceError {
            path: path.display().to_string(),
            error: e.to_string(),
        });
    }

    /// Archives the trie below `dir` (an absolute path), returning its tree id.
    fn save_trie(&mut self, dir: &Path, trie: &PathTrie, parent: Option<&Tree>) -> Result<BlobId> {
        let outer = self.begin_dir();
        let mut tree = Tree::default();
        for (name, child) in &trie.children {
            let path = dir.join(name);
            let pnode = parent.and_then(|t| t.get(name.as_bytes()));
            let node = if child.requested {
                self.archive_entry(&path, name, pnode, None)?
            } else {
                self.intermediate(&path, name, child, pnode)?
            };
            if let Some(n) = node {
                tree.push(n);
            }
        }
        self.end_dir(&mut tree, outer)?;
        self.saver.save(BlobType::Tree, &tree.encode())
    }

    /// Starts a directory: its small files are batched apart from its parent's.
    fn begin_dir(&mut self) -> (Vec<SmallFile>, u64) {
        (
            std::mem::take(&mut self.small),
            std::mem::take(&mut self.small_bytes),
        )
    }

    /// Finishes a directory: stores its last batch of small files into `tree`.
    fn end_dir(&mut self, tree: &mut Tree, outer: (Vec<SmallFile>, u64)) -> Result<()> {
        self.flush_small(tree)?;
        (self.small, self.small_bytes) = outer;
        Ok(())
    }

    /// Reads, chunks and hashes the pending small files in parallel, then seals their new
    /// chunks in parallel: per-file overhead no longer keeps a core idle.
    fn flush_small(&mut self, tree: &mut Tree) -> Result<()> {
        let files = std::mem::take(&mut self.small);
        self.small_bytes = 0;
        if files.is_empty() {
            return Ok(());
        }
        let (key, chunker) = (self.repo.key(), self.repo.chunker());
        let read: Vec<_> = files
            .into_par_iter()
            .map(|f| {
                let r = read_small(&f.path, &f.node, chunker, key);
                (f, r)
            })
            .collect();
        let mut done = Vec::with_capacity(read.len());
        for (f, r) in read {
            match r {
                Ok(content) => done.push((f, content)),
                Err(e) => {
                    self.summary.total_files -= 1;
                    self.summary.total_bytes -= f.node.size;
                    self.report(&f.path, e);
                }
            }
        }
        self.store_new(done.iter().flat_map(|(_, c)| {
            c.ranges
                .iter()
                .map(|r| &c.data[r.clone()])
                .zip(c.ids.iter().copied())
        }))?;
        for (mut f, c) in done {
            self.summary.bytes_read += c.data.len() as u64;
            if f.changed {
                self.summary.files_changed += 1;
            } else {
                self.summary.files_new += 1;
            }
            f.node.content = c.ids;
            tree.push(f.node);
        }
        Ok(())
    }

    fn intermediate(
        &mut self,
        path: &Path,
        name: &OsStr,
        trie: &PathTrie,
        pnode: Option<&Node>,
    ) -> Result<Option<Node>> {
        let Some((_, mut node)) = self.examine(path, name) else {
            return Ok(None);
        };
        // Only part of this directory is stored, so its times and link count describe entries
        // that are not in the snapshot; zeroing them keeps an unchanged source's trees
        // identical when a sibling of the source changes (restore leaves such times alone).
        node.mtime_ns = 0;
        node.ctime_ns = 0;
        node.nlink = 0;
        let ptree = self.parent_subtree(pnode);
        node.subtree = Some(self.save_trie(path, trie, ptree.as_ref())?);
        self.summary.dirs += 1;
        Ok(Some(node))
    }

    /// `lstat` and the node for `path`; a failure is reported and gives `None`.
    fn examine(&mut self, path: &Path, name: &OsStr) -> Option<(std::fs::Metadata, Node)> {
        let node = std::fs::symlink_metadata(path)
            .and_then(|m| node_from_metadata(name, path, &m, &mut self.owners).map(|n| (m, n)));
        match node {
            Ok(found) => Some(found),
            Err(e) => {
                self.report(path, e);
                None
            }
        }
    }

    fn parent_subtree(&self, pnode: Option<&Node>) -> Option<Tree> {
        let id = pnode.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        self.repo.load_tree(&id).ok()
    }

    fn archive_entry(
        &mut self,
        path: &Path,
        name: &OsStr,
        pnode: Option<&Node>,
        parent_dev: Option<u64>,
    ) -> Result<Option<Node>> {
        if self.excludes.excluded(path, name) || self.opts.skip.iter().any(|s| s == path) {
            return Ok(None);
        }
        let Some((m, mut node)) = self.examine(path, name) else {
            return Ok(None);
        };
        match node.kind {
            NodeKind::Dir => {
                let cross = self.opts.one_file_system && parent_dev.is_some_and(|d| d != m.dev());
                if self
                    .excludes
                    .if_present
                    .iter()
                    .any(|f| path.join(f).symlink_metadata().is_ok())
                {
                    return Ok(None);
                }
                let subtree = if cross {
                    self.saver.save(BlobType::Tree, &Tree::default().encode())?
                } else {
                    let ptree = self.parent_subtree(pnode);
                    match self.save_dir(path, m.dev(), ptree.as_ref())? {
                        Some(id) => id,
                        None => return Ok(None),
                    }
                };
                node.subtree = Some(subtree);
                self.summary.dirs += 1;
            }
            NodeKind::File => {
                let stored = self.save_file(path, &mut node, pnode)?;
                return Ok(stored.then_some(node));
            }
            _ => {}
        }
        Ok(Some(node))
    }

    /// Archives a directory's entries; `None` when the directory cannot be listed.
    fn save_dir(&mut self, path: &Path, dev: u64, parent: Option<&Tree>) -> Result<Option<BlobId>> {
        let entries = match std::fs::read_dir(path).and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()
        }) {
            Ok(v) => v,
            Err(e) => {
                self.report(path, e);
                return Ok(None);
            }
        };
        let mut names = entries;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let outer = self.begin_dir();
        let mut tree = Tree::default();
        for name in names {
            let child = path.join(&name);
            let pnode = parent.and_then(|t| t.get(name.as_bytes()));
            if let Some(n) = self.archive_entry(&child, &name, pnode, Some(dev))? {
                tree.push(n);
            }
            if self.small_bytes >= SMALL_BATCH_BYTES || self.small.len() >= SMALL_BATCH_FILES {
                self.flush_small(&mut tree)?;
            }
        }
        self.end_dir(&mut tree, outer)?;
        Ok(Some(self.saver.save(BlobType::Tree, &tree.encode())?))
    }

    /// Stores a regular file's content into `node.content`; false when the file was skipped or
    /// handed to the small-file batch (which adds the node to the tree itself).
    fn save_file(&mut self, path: &Path, node: &mut Node, pnode: Option<&Node>) -> Result<bool> {
        self.summary.total_files += 1;
        self.summary.total_bytes += node.size;
        if let Some(p) = pnode.filter(|p| !self.opts.force && p.unchanged(node))
            && self.all_indexed(&p.content)?
        {
            node.content = p.content.clone();
            self.summary.files_unmodified += 1;
            return Ok(true);
        }
        if node.nlink <= 1 && node.size <= SMALL_FILE {
            self.small_bytes += node.size;
            self.small.push(SmallFile {
                path: path.to_path_buf(),
                node: node.clone(),
                changed: pnode.is_some(),
            });
            return Ok(false);
        }
        let link_key = (node.device, node.inode);
        if node.nlink > 1
            && let Some((c, left)) = self.hardlinks.get_mut(&link_key)
        {
            node.content = c.clone();
            // Forget the content once every link was seen: the map holds only open groups.
            *left -= 1;
            if *left == 0 {
                self.hardlinks.remove(&link_key);
            }
        } else {
            match self.read_file(path, node) {
                Ok(content) => node.content = content,
                Err(ReadError::Repo(e)) => return Err(e),
                Err(ReadError::Source(e)) => {
                    self.summary.total_files -= 1;
                    self.summary.total_bytes -= node.size;
                    self.report(path, e);
                    return Ok(false);
                }
            }
            if node.nlink > 1 {
                self.hardlinks
                    .insert(link_key, (node.content.clone(), node.nlink - 1));
            }
        }
        if pnode.is_some() {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        Ok(true)
    }

    fn all_indexed(&self, content: &[BlobId]) -> Result<bool> {
        for id in content {
            if !self.saver.is_known(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_file(&mut self, path: &Path, node: &Node) -> Result<Vec<BlobId>, ReadError> {
        let f = open_examined(path, node)?;
        let mut content = Vec::new();
        let n = self.store_stream(&f, Some(node.size), &mut content)?;
        if !unchanged_since(&f, node, n)? {
            return Err(ReadError::Source(std::io::Error::other(
                "file changed while it was read; skipped",
            )));
        }
        Ok(content)
    }

    fn store_stream(
        &mut self,
        r: impl Read,
        size_hint: Option<u64>,
        content: &mut Vec<BlobId>,
    ) -> Result<u64, ReadError> {
        let chunker = self.repo.chunker();
        let n = for_each_window(r, chunker, size_hint, |buf, ranges| {
            self.store_chunks(buf, ranges, content)
                .map_err(ReadError::Repo)
        })?;
        self.summary.bytes_read += n;
        Ok(n)
    }

    fn store_chunks(
        &mut self,
        buf: &[u8],
        ranges: Vec<Range<usize>>,
        content: &mut Vec<BlobId>,
    ) -> Result<()> {
        let key = self.repo.key();
        let ids: Vec<BlobId> = ranges
            .par_iter()
            .map(|r| key.blob_id(&buf[r.clone()]))
            .collect();
        self.store_new(
            ranges
                .iter()
                .map(|r| &buf[r.clone()])
                .zip(ids.iter().copied()),
        )?;
        content.extend(ids);
        Ok(())
    }

    /// Seals (in parallel) and stores the chunks not yet in the repository or this run.
    fn store_new<'b>(&mut self, chunks: impl Iterator<Item = (&'b [u8], BlobId)>) -> Result<()> {
        let mut batch = HashSet::new();
        let mut todo = Vec::new();
        for (data, id) in chunks {
            if batch.insert(id) && !self.saver.is_known(&id)? {
                todo.push((data, id));
            }
        }
        let (key, compression) = (self.repo.key(), self.repo.config().compression);
        let sealed: Vec<(BlobId, Vec<u8>, usize)> = todo
            .par_iter()
            .map(|(data, id)| {
                (
                    *id,
                    seal_blob(key, BlobType::Data, id, data, compression),
                    data.len(),
                )
            })
            .collect();
        for (id, s, n) in sealed {
            self.saver.add_sealed(BlobType::Data, id, &s, n)?;
        }
        Ok(())
    }
}

fn build_trie(paths: &[PathBuf]) -> PathTrie {
    let mut root = PathTrie::default();
    for p in paths {
        let mut t = &mut root;
        for c in p.components().skip(1) {
            if t.requested {
                break;
            }
            t = t.children.entry(c.as_os_str().to_owned()).or_default();
        }
        if !t.requested {
            t.requested = true;
            t.children.clear();
        }
    }
    root
}

/// Refuses a run whose source paths cannot be examined, before anything is written.
pub fn check_sources(paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Err(Error::Invalid(
            "nothing to snapshot: give at least one path".into(),
        ));
    }
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(Error::Invalid(format!(
                "source path {} cannot be read: {e}",
                p.display()
            )));
        }
    }
    Ok(())
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
    if !dry_run {
        // Repair around what a killed run left: its temporary files and its unindexed packs.
        repo.backend().remove_stale_temps()?;
        repo.adopt_unindexed_packs()?;
    }
    let mut a = Archiver {
        repo,
        saver: BlobSaver::new(repo),
        opts,
        excludes: Excludes::new(&opts.excludes, &opts.exclude_if_present)?,
        owners: Owners::default(),
        summary: Summary::default(),
        errors: Vec::new(),
        hardlinks: HashMap::new(),
        small: Vec::new(),
        small_bytes: 0,
    };
    let (paths, tree, parent) = match input {
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
                find_parent(repo, opts, &host, &strs)?
            };
            let ptree = match &parent {
                Some((_, s)) => Some(repo.load_tree(&s.tree)?),
                None => None,
            };
            let trie = build_trie(&abs);
            let tree = if trie.requested {
                // The whole filesystem root was requested.
                let dev = std::fs::metadata("/").map_err(|e| Error::io("/", e))?.dev();
                match a.save_dir(Path::new("/"), dev, ptree.as_ref())? {
                    Some(t) => t,
                    None => return Err(Error::Invalid("cannot list /".into())),
                }
            } else {
                a.save_trie(Path::new("/"), &trie, ptree.as_ref())?
            };
            (strs, tree, parent)
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
                find_parent(repo, opts, &host, &strs)?
            };
            let mut content = Vec::new();
            let size = match a.store_stream(reader, None, &mut content) {
                Ok(n) => n,
                Err(ReadError::Repo(e)) => return Err(e),
                Err(ReadError::Source(e)) => return Err(Error::io(format!("<{name}>"), e)),
            };
            finish()?;
            let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
            let node = Node {
                name: name.into_bytes(),
                kind: NodeKind::File,
                mode: 0o600,
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                user: Some(user.clone()),
                mtime_ns: now,
                ctime_ns: now,
                size,
                nlink: 1,
                content,
                ..Node::default()
            };
            a.summary.files_new = 1;
            a.summary.total_files = 1;
            a.summary.total_bytes = size;
            let mut t = Tree::default();
            t.push(node);
            let id = a.saver.save(BlobType::Tree, &t.encode())?;
            (strs, id, parent)
        }
    };
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
    };
    // Last: the snapshot file, once everything it references is durable and indexed.
    let snapshot_id = if dry_run {
        None
    } else {
        Some(repo.save_snapshot(&snap)?)
    };
    Ok(SnapshotReport {
        snapshot_id,
        parent: snap.parent,
        summary,
        duration_s: started.elapsed().as_secs_f64(),
        error_details: errors,
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_drops_paths_below_requested_ones() {
        let t = build_trie(&[
            PathBuf::from("/a/b"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/a/d"),
        ]);
        let a = &t.children[OsStr::new("a")];
        assert!(!a.requested);
        assert!(a.children[OsStr::new("b")].requested);
        assert!(a.children[OsStr::new("b")].children.is_empty());
        assert!(a.children[OsStr::new("d")].requested);
    }
}
