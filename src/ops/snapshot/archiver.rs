//! The archiver: walks sources, reuses what the parent snapshot proves unchanged, and hands
//! new content to the worker pool, so that walking, reading, hashing, compressing, sealing
//! and pack writing all overlap.
//!
//! The walk runs on the calling thread. A directory's tree can only be encoded once the
//! content of all its files and the trees of all its subdirectories are known, and those
//! arrive later from the pool; so each directory stays open (its entries in order, with
//! placeholders) until nothing in it is waiting, and is then encoded, saved and linked into
//! its parent. Jobs complete in the order they were submitted, which keeps a large file's
//! windows in order and the run deterministic. Memory is bounded by the bytes in flight.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};

use super::paths::PathTrie;
use super::read::{
    End, FileOut, JobOut, SMALL_BATCH_BYTES, SMALL_BATCH_FILES, SMALL_FILE, Sealer, SmallFile,
    Target, open_examined, unchanged_since,
};
use super::{SnapshotOptions, SourceError};
use crate::error::Result;
use crate::id::BlobId;
use crate::ops::pattern::PathPatterns;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::saver::{BlobSaver, Claims};
use crate::repo::snapshot::Summary;
use crate::source::fs::{Owners, node_from_metadata, to_ns};
use crate::source::stream::for_each_window;
use crate::tree::{Node, NodeKind, Tree};

/// Input bytes handed to the pool and not yet collected: one window of a large file (whose
/// chunks are sealed in parallel) and a batch of small files, or a few batches. More bought
/// no speed on two cores and cost peak memory (16 MiB: 108 MB RSS, 24: 122, 32: 150 on the
/// `usr` corpus).
const MAX_IN_FLIGHT: u64 = 24 << 20;
/// Jobs in flight, whatever their size.
const MAX_JOBS: usize = 32;

pub(super) struct Excludes {
    patterns: PathPatterns,
    if_present: Vec<OsString>,
}

impl Excludes {
    pub(super) fn new(patterns: &[String], if_present: &[String]) -> Result<Self> {
        Ok(Excludes {
            patterns: PathPatterns::new(patterns)?,
            if_present: if_present.iter().map(OsString::from).collect(),
        })
    }

    fn excluded(&self, path: &Path, name: &OsStr) -> bool {
        self.patterns.matches(path, name)
    }
}

/// Where a directory's tree id goes once it is saved.
#[derive(Clone, Copy)]
pub(super) enum Link {
    /// Into entry `idx` of open directory `dir`.
    Entry(usize, usize),
    /// It is the snapshot's root.
    Root,
}

/// A directory whose tree is not saved yet.
struct OpenDir {
    /// Entries in walk order; `None` for one dropped after it was listed (unreadable).
    nodes: Vec<Option<Node>>,
    /// Entries still waiting for content or a subtree, plus one while the walk is inside.
    waiting: usize,
    link: Link,
}

/// Content shared by the hard links of one file.
enum LinkGroup {
    /// The first link is being read; these entries wait for its content. With the number
    /// of links not yet seen.
    Reading(Vec<Target>, u64),
    /// The content, and the number of links not yet seen.
    Read(Vec<BlobId>, u64),
}

/// A job handed to the pool, or a result already known.
enum Job {
    Running(Receiver<Result<JobOut>>),
    Ready(JobOut),
}

/// `'a` is the lifetime of what jobs on the pool borrow, `'p` of the walk's own borrows, `'t`
/// of the pack writer's thread scope.
pub(super) struct Archiver<'p, 't, 'a, 'r> {
    pub(super) repo: &'r Repository,
    pub(super) saver: BlobSaver<'t, 'r>,
    claims: &'a Claims<'r>,
    pool: &'p rayon::Scope<'a>,
    opts: &'p SnapshotOptions,
    pub(super) excludes: Excludes,
    pub(super) owners: Owners,
    pub(super) summary: Summary,
    pub(super) errors: Vec<SourceError>,
    dirs: HashMap<usize, OpenDir>,
    next_dir: usize,
    /// The root tree's id, once saved.
    root: Option<BlobId>,
    /// Small files waiting to be handed to the pool as one batch, and their size.
    small: Vec<SmallFile>,
    small_bytes: u64,
    jobs: VecDeque<(Job, u64)>,
    in_flight: u64,
    /// Hard-linked files by (device, inode).
    hardlinks: HashMap<(u64, u64), LinkGroup>,
    /// Parent trees whose files' chunks were all found indexed, to be recorded in the cache
    /// (see [`Archiver::proven_unchanged`]), and the cache's generation they were found at.
    proofs: Vec<BlobId>,
    proof_generation: Option<i64>,
}

/// Proofs of unchanged trees are written to the cache in batches of this many.
const PROOFS_PER_WRITE: usize = 4096;

/// A directory of the parent snapshot: its tree's id and the tree.
pub(super) type ParentTree = (BlobId, Tree);

/// What the walk knows of an entry before examining it.
#[derive(Clone, Copy, Default)]
pub(super) struct Seen {
    /// The device of its directory (for `--one-file-system`); `None` for a source path.
    parent_dev: Option<u64>,
    /// Its node in the parent tree matches its `lstat` and every chunk of it is indexed.
    proven: bool,
}

impl<'p, 't, 'a, 'r: 'a> Archiver<'p, 't, 'a, 'r> {
    pub(super) fn new(
        repo: &'r Repository,
        saver: BlobSaver<'t, 'r>,
        claims: &'a Claims<'r>,
        pool: &'p rayon::Scope<'a>,
        opts: &'p SnapshotOptions,
    ) -> Result<Self> {
        Ok(Archiver {
            repo,
            saver,
            claims,
            pool,
            opts,
            excludes: Excludes::new(&opts.excludes, &opts.exclude_if_present)?,
            owners: Owners::default(),
            summary: Summary::default(),
            errors: Vec::new(),
            dirs: HashMap::new(),
            next_dir: 0,
            root: None,
            small: Vec::new(),
            small_bytes: 0,
            jobs: VecDeque::new(),
            in_flight: 0,
            hardlinks: HashMap::new(),
            proofs: Vec::new(),
            proof_generation: None,
        })
    }

    pub(super) fn report(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.errors.push(SourceError {
            path: path.display().to_string(),
            error: e.to_string(),
        });
    }

    fn sealer(&self) -> Sealer<'a, 'r> {
        Sealer {
            key: self.repo.key(),
            chunker: self.repo.chunker(),
            compression: self.repo.config().compression,
            claims: self.claims,
        }
    }

    // ---- open directories -------------------------------------------------------------

    /// Opens a directory whose tree goes to `link`.
    pub(super) fn open_dir(&mut self, link: Link) -> usize {
        let key = self.next_dir;
        self.next_dir += 1;
        self.dirs.insert(
            key,
            OpenDir {
                nodes: Vec::new(),
                waiting: 1,
                link,
            },
        );
        key
    }

    fn dir(&mut self, key: usize) -> &mut OpenDir {
        self.dirs
            .get_mut(&key)
            .expect("invariant: an open directory is not saved before its last entry")
    }

    /// Adds an entry to an open directory; `waits` when its content or subtree comes later.
    pub(super) fn push(&mut self, key: usize, node: Node, waits: bool) -> usize {
        let d = self.dir(key);
        d.nodes.push(Some(node));
        if waits {
            d.waiting += 1;
        }
        d.nodes.len() - 1
    }

    fn node(&mut self, key: usize, idx: usize) -> Option<&mut Node> {
        self.dir(key).nodes[idx].as_mut()
    }

    /// One thing `key` waited for is resolved; saves the tree when nothing else is pending,
    /// and so on up the chain of parents.
    pub(super) fn release(&mut self, key: usize) -> Result<()> {
        let mut key = key;
        loop {
            let d = self.dir(key);
            d.waiting -= 1;
            if d.waiting > 0 {
                return Ok(());
            }
            let d = self.dirs.remove(&key).expect("invariant: present");
            let mut tree = Tree {
                nodes: d.nodes.into_iter().flatten().collect(),
            };
            let id = self.saver.save(BlobType::Tree, &tree.encode())?;
            match d.link {
                Link::Root => {
                    self.root = Some(id);
                    return Ok(());
                }
                Link::Entry(parent, idx) => {
                    if let Some(n) = self.node(parent, idx) {
                        n.subtree = Some(id);
                    }
                    key = parent;
                }
            }
        }
    }

    /// Drops an entry that turned out unreadable.
    fn drop_entry(&mut self, t: &Target, why: impl std::fmt::Display) -> Result<()> {
        self.dir(t.dir).nodes[t.idx] = None;
        self.summary.total_files -= 1;
        self.summary.total_bytes -= t.size;
        self.report(&t.path, why);
        self.release(t.dir)
    }

    // ---- jobs ----------------------------------------------------------------------------

    fn submit(
        &mut self,
        bytes: u64,
        work: impl FnOnce() -> Result<JobOut> + Send + 'a,
    ) -> Result<()> {
        while !self.jobs.is_empty()
            && (self.in_flight + bytes > MAX_IN_FLIGHT || self.jobs.len() >= MAX_JOBS)
        {
            self.collect_oldest()?;
        }
        let (tx, rx) = sync_channel(1);
        self.pool.spawn(move |_| {
            // The receiver is gone only when the run already failed.
            let _ = tx.send(work());
        });
        self.jobs.push_back((Job::Running(rx), bytes));
        self.in_flight += bytes;
        self.collect_finished()
    }

    /// Applies the oldest jobs that have already finished, in order, without waiting: their
    /// blobs go to the pack writer and their progress is reported now, not when the budget
    /// next forces a wait (a stream that stalls after a burst showed a window's progress
    /// where three were sealed).
    fn collect_finished(&mut self) -> Result<()> {
        loop {
            let done = match self.jobs.front() {
                None => return Ok(()),
                Some((Job::Ready(_), _)) => None,
                Some((Job::Running(rx), _)) => match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(TryRecvError::Empty) => return Ok(()),
                    // `collect_oldest` reports the broken invariant.
                    Err(TryRecvError::Disconnected) => None,
                },
            };
            if let Some(r) = done
                && let Some(front) = self.jobs.front_mut()
            {
                match r {
                    Ok(out) => front.0 = Job::Ready(out),
                    Err(e) => {
                        // Its result is taken: the job leaves the queue with the error.
                        if let Some((_, bytes)) = self.jobs.pop_front() {
                            self.in_flight -= bytes;
                        }
                        return Err(e);
                    }
                }
            }
            self.collect_oldest()?;
        }
    }

    fn collect_oldest(&mut self) -> Result<()> {
        let Some((job, bytes)) = self.jobs.pop_front() else {
            return Ok(());
        };
        self.in_flight -= bytes;
        let out = match job {
            Job::Ready(out) => out,
            Job::Running(rx) => rx
                .recv()
                .expect("invariant: a job always sends its result")?,
        };
        self.apply(out)
    }

    /// Hands the pending small files to the pool and waits for every job.
    pub(super) fn drain(&mut self) -> Result<()> {
        self.flush_small()?;
        while !self.jobs.is_empty() {
            self.collect_oldest()?;
        }
        Ok(())
    }

    fn apply(&mut self, out: JobOut) -> Result<()> {
        for (id, sealed, raw_len) in out.sealed {
            self.saver
                .add_claimed(BlobType::Data, id, sealed, raw_len)?;
        }
        for f in out.files {
            self.summary.bytes_read += f.bytes;
            self.opts
                .progress
                .advance(u64::from(matches!(f.end, End::Done)), f.bytes);
            let t = f.target;
            match f.end {
                End::More => {
                    if let Some(n) = self.node(t.dir, t.idx) {
                        n.content.extend(f.ids);
                    }
                }
                End::Done => {
                    // Only `drop_entry` empties an entry, and it already released it.
                    let Some(n) = self.node(t.dir, t.idx) else {
                        continue;
                    };
                    n.content.extend(f.ids);
                    // Hard links waiting for this file get a copy of its content.
                    let shared = t.link.map(|link| (link, n.content.clone()));
                    self.count_stored(t.changed);
                    if let Some((link, content)) = shared {
                        self.link_read(link, content)?;
                    }
                    self.release(t.dir)?;
                }
                End::Failed(why) => {
                    if let Some(link) = t.link
                        && let Some(LinkGroup::Reading(waiters, _)) = self.hardlinks.remove(&link)
                    {
                        for w in waiters {
                            self.drop_entry(
                                &w,
                                format!("hard link of {}: {why}", t.path.display()),
                            )?;
                        }
                    }
                    self.drop_entry(&t, why)?;
                }
            }
        }
        Ok(())
    }

    fn count_stored(&mut self, changed: bool) {
        if changed {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
    }

    /// The first link of a hard-linked file was read: the links waiting for it get its content.
    fn link_read(&mut self, link: (u64, u64), content: Vec<BlobId>) -> Result<()> {
        let Some(LinkGroup::Reading(waiters, left)) = self.hardlinks.remove(&link) else {
            return Ok(());
        };
        for w in waiters {
            if let Some(n) = self.node(w.dir, w.idx) {
                n.content = content.clone();
            }
            self.count_stored(w.changed);
            self.release(w.dir)?;
        }
        // Keep the content only while more links are to come: the map holds open groups.
        if left > 0 {
            self.hardlinks.insert(link, LinkGroup::Read(content, left));
        }
        Ok(())
    }

    fn flush_small(&mut self) -> Result<()> {
        if self.small.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.small);
        let bytes = std::mem::take(&mut self.small_bytes);
        let sealer = self.sealer();
        self.submit(bytes, move || sealer.small_batch(files))
    }

    // ---- the walk ------------------------------------------------------------------------

    /// Archives the trie below `dir` (an absolute path) into a new open directory.
    pub(super) fn save_trie(
        &mut self,
        dir: &Path,
        trie: &PathTrie,
        parent: Option<&Tree>,
        link: Link,
    ) -> Result<()> {
        let key = self.open_dir(link);
        for (name, child) in &trie.children {
            let path = dir.join(name);
            let pnode = parent.and_then(|t| t.get(name.as_bytes()));
            if child.requested {
                let m = std::fs::symlink_metadata(&path);
                self.archive_entry(key, &path, name, m, pnode, Seen::default())?;
            } else {
                self.intermediate(key, &path, name, child, pnode)?;
            }
        }
        self.release(key)
    }

    fn intermediate(
        &mut self,
        key: usize,
        path: &Path,
        name: &OsStr,
        trie: &PathTrie,
        pnode: Option<&Node>,
    ) -> Result<()> {
        let m = std::fs::symlink_metadata(path);
        let Some((_, mut node)) = self.examine(path, name, m, pnode) else {
            return Ok(());
        };
        // Only part of this directory is stored, so its times and link count describe entries
        // that are not in the snapshot; zeroing them keeps an unchanged source's trees
        // identical when a sibling of the source changes (restore leaves such times alone).
        node.mtime_ns = 0;
        node.ctime_ns = 0;
        node.nlink = 0;
        let ptree = self.parent_subtree(pnode);
        let idx = self.push(key, node, true);
        self.summary.dirs += 1;
        self.save_trie(
            path,
            trie,
            ptree.as_ref().map(|(_, t)| t),
            Link::Entry(key, idx),
        )
    }

    /// The node for `path` from its `lstat` result; a failure is reported and gives `None`.
    fn examine(
        &mut self,
        path: &Path,
        name: &OsStr,
        meta: std::io::Result<std::fs::Metadata>,
        before: Option<&Node>,
    ) -> Option<(std::fs::Metadata, Node)> {
        let node = meta.and_then(|m| {
            node_from_metadata(name, path, &m, &mut self.owners, before).map(|n| (m, n))
        });
        match node {
            Ok(found) => Some(found),
            Err(e) => {
                self.report(path, e);
                None
            }
        }
    }

    fn parent_subtree(&self, pnode: Option<&Node>) -> Option<ParentTree> {
        let id = pnode.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        Some((id, self.repo.load_tree(&id).ok()?))
    }

    pub(super) fn archive_entry(
        &mut self,
        key: usize,
        path: &Path,
        name: &OsStr,
        meta: std::io::Result<std::fs::Metadata>,
        pnode: Option<&Node>,
        seen: Seen,
    ) -> Result<()> {
        let Seen { parent_dev, proven } = seen;
        self.opts.cancel.check()?;
        if self.excludes.excluded(path, name) || self.opts.skip.iter().any(|s| s == path) {
            return Ok(());
        }
        let Some((m, node)) = self.examine(path, name, meta, pnode) else {
            return Ok(());
        };
        match node.kind {
            NodeKind::Dir => {
                if self
                    .excludes
                    .if_present
                    .iter()
                    .any(|f| path.join(f).symlink_metadata().is_ok())
                {
                    return Ok(());
                }
                self.summary.dirs += 1;
                let cross = self.opts.one_file_system && parent_dev.is_some_and(|d| d != m.dev());
                if cross {
                    let mut node = node;
                    node.subtree =
                        Some(self.saver.save(BlobType::Tree, &Tree::default().encode())?);
                    self.push(key, node, false);
                    return Ok(());
                }
                let ptree = self.parent_subtree(pnode);
                let idx = self.push(key, node, true);
                if !self.save_dir(path, m.dev(), ptree.as_ref(), Link::Entry(key, idx))? {
                    self.summary.dirs -= 1;
                    self.dir(key).nodes[idx] = None;
                    self.release(key)?;
                }
                Ok(())
            }
            NodeKind::File => self.save_file(key, path, node, pnode, proven),
            _ => {
                self.push(key, node, false);
                Ok(())
            }
        }
    }

    /// Archives a directory's entries into a new open directory; false (and nothing opened)
    /// when the directory cannot be listed.
    pub(super) fn save_dir(
        &mut self,
        path: &Path,
        dev: u64,
        parent: Option<&ParentTree>,
        link: Link,
    ) -> Result<bool> {
        // `lstat` through the directory's descriptor (fstatat): no path lookup per entry.
        let entries = match std::fs::read_dir(path).and_then(|rd| {
            rd.map(|e| e.map(|e| (e.file_name(), e.metadata())))
                .collect::<std::io::Result<Vec<_>>>()
        }) {
            Ok(v) => v,
            Err(e) => {
                self.report(path, e);
                return Ok(false);
            }
        };
        let mut names = entries;
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let proven = self.proven_unchanged(&names, parent)?;
        let key = self.open_dir(link);
        for (i, (name, meta)) in names.into_iter().enumerate() {
            let child = path.join(&name);
            let pnode = parent.and_then(|(_, t)| t.get(name.as_bytes()));
            let seen = Seen {
                parent_dev: Some(dev),
                proven: proven[i],
            };
            self.archive_entry(key, &child, &name, meta, pnode, seen)?;
        }
        self.release(key)?;
        Ok(true)
    }

    /// For each entry of a directory: true when it is a regular file whose `lstat` matches
    /// its node in the parent tree and every chunk of that node is indexed — found with one
    /// lookup of all such chunks, not one per chunk (the unchanged re-run's lookups were
    /// mostly SQLite's per-statement locking).
    ///
    /// A parent tree all of whose files' chunks are found indexed is recorded as proven in
    /// the cache, and the next run over it asks the cache once for the tree instead of once
    /// per chunk. Chunks leave the cache's mirror only when it is rebuilt or cleared (after
    /// a prune, a repair, a damaged cache), which forgets every proof, so a proven tree's
    /// chunks are exactly as indexed as a lookup of each would find them.
    fn proven_unchanged(
        &mut self,
        entries: &[(std::ffi::OsString, std::io::Result<std::fs::Metadata>)],
        parent: Option<&ParentTree>,
    ) -> Result<Vec<bool>> {
        let mut proven = vec![false; entries.len()];
        let (Some((tree_id, parent)), false) = (parent, self.opts.force) else {
            return Ok(proven);
        };
        let mut ids = Vec::new();
        let mut spans = Vec::new();
        for (i, (name, meta)) in entries.iter().enumerate() {
            let (Ok(m), Some(p)) = (meta, parent.get(name.as_bytes())) else {
                continue;
            };
            let same = p.kind == NodeKind::File
                && m.file_type().is_file()
                && p.size == m.len()
                && p.inode == m.ino()
                && p.mtime_ns == to_ns(m.mtime(), m.mtime_nsec())
                && p.ctime_ns == to_ns(m.ctime(), m.ctime_nsec());
            if same {
                spans.push((i, ids.len(), p.content.len()));
                ids.extend_from_slice(&p.content);
            }
        }
        if ids.is_empty() {
            return Ok(proven);
        }
        let Some((indexed, generation)) = self
            .repo
            .cache()
            .contains_each_unless_proven(tree_id, &ids)?
        else {
            for (i, _, _) in spans {
                proven[i] = true;
            }
            return Ok(proven);
        };
        let known = if indexed.iter().all(|k| *k) {
            let files = parent
                .nodes
                .iter()
                .filter(|n| n.kind == NodeKind::File)
                .count();
            if spans.len() == files {
                self.note_proven(*tree_id, generation);
            }
            indexed
        } else {
            // Chunks not indexed yet may be this run's own.
            self.saver.known_each(&ids)?
        };
        for (i, at, n) in spans {
            proven[i] = known[at..at + n].iter().all(|k| *k);
        }
        Ok(proven)
    }

    /// Keeps `tree` as proven at cache generation `generation`; proofs of an older
    /// generation are dropped (the mirror lost entries since).
    fn note_proven(&mut self, tree: BlobId, generation: i64) {
        if self.proof_generation.is_some_and(|g| g != generation) {
            self.proofs.clear();
        }
        self.proof_generation = Some(generation);
        self.proofs.push(tree);
        if self.proofs.len() >= PROOFS_PER_WRITE {
            self.record_proofs();
        }
    }

    /// Writes the proofs kept so far to the cache. They only save later runs lookups, so a
    /// failure to write them (a cache locked by a long rebuild elsewhere, a full disk) is
    /// reported and costs this run nothing.
    pub(super) fn record_proofs(&mut self) {
        if let Some(g) = self.proof_generation
            && let Err(e) = self.repo.cache().record_proven(g, &self.proofs)
        {
            self.repo.warn(&format!(
                "cannot record unchanged folders in the cache ({e}); the next snapshot looks \
                 their data up again"
            ));
        }
        self.proofs.clear();
    }

    /// Adds a regular file: its parent's content when unchanged, else a placeholder filled
    /// when the pool has read it. `proven`: its parent node's chunks were found indexed
    /// already (see [`Self::proven_unchanged`]).
    fn save_file(
        &mut self,
        key: usize,
        path: &Path,
        mut node: Node,
        pnode: Option<&Node>,
        proven: bool,
    ) -> Result<()> {
        self.summary.total_files += 1;
        self.summary.total_bytes += node.size;
        if let Some(p) = pnode.filter(|p| !self.opts.force && p.unchanged(&node))
            && (proven || self.all_indexed(&p.content)?)
        {
            node.content = p.content.clone();
            self.summary.files_unmodified += 1;
            self.opts.progress.advance(1, node.size);
            self.push(key, node, false);
            return Ok(());
        }
        let link_key = (node.device, node.inode);
        let mut target = Target {
            dir: key,
            idx: 0,
            path: path.to_path_buf(),
            size: node.size,
            changed: pnode.is_some(),
            link: None,
        };
        if node.nlink > 1 {
            match self.hardlinks.get_mut(&link_key) {
                Some(LinkGroup::Read(content, left)) => {
                    node.content = content.clone();
                    *left -= 1;
                    if *left == 0 {
                        self.hardlinks.remove(&link_key);
                    }
                    self.count_stored(target.changed);
                    self.push(key, node, false);
                    return Ok(());
                }
                Some(LinkGroup::Reading(..)) => {
                    target.idx = self.push(key, node, true);
                    if let Some(LinkGroup::Reading(waiters, left)) =
                        self.hardlinks.get_mut(&link_key)
                    {
                        *left = left.saturating_sub(1);
                        waiters.push(target);
                    }
                    return Ok(());
                }
                None => {
                    self.hardlinks
                        .insert(link_key, LinkGroup::Reading(Vec::new(), node.nlink - 1));
                    target.link = Some(link_key);
                }
            }
        }
        target.idx = self.push(key, node.clone(), true);
        if node.nlink <= 1 && node.size <= SMALL_FILE {
            self.small_bytes += node.size;
            self.small.push(SmallFile { target, node });
            if self.small_bytes >= SMALL_BATCH_BYTES || self.small.len() >= SMALL_BATCH_FILES {
                self.flush_small()?;
            }
            return Ok(());
        }
        let end = match open_examined(path, &node) {
            Err(e) => End::Failed(e.to_string()),
            Ok(f) => match self.stream(&f, Some(node.size), &target)? {
                Err(e) => End::Failed(e.to_string()),
                Ok(n) => match unchanged_since(&f, &node, n) {
                    Ok(true) => End::Done,
                    Ok(false) => End::Failed("file changed while it was read; skipped".into()),
                    Err(e) => End::Failed(e.to_string()),
                },
            },
        };
        self.queue_end(target, end);
        Ok(())
    }

    fn all_indexed(&self, content: &[BlobId]) -> Result<bool> {
        for id in content {
            if !self.saver.is_known(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads `r` in windows, each cut here and handed to the pool with `target`; the caller
    /// queues the file's end. Returns the bytes read, or the source's read error.
    pub(super) fn stream(
        &mut self,
        r: impl Read,
        size_hint: Option<u64>,
        target: &Target,
    ) -> Result<std::result::Result<u64, std::io::Error>> {
        let chunker = self.repo.chunker();
        let mut repo_err = None;
        let res = for_each_window(r, chunker, size_hint, |buf, ranges| {
            if let Err(e) = self.opts.cancel.check() {
                repo_err = Some(e);
                return Err(std::io::Error::other("cancelled"));
            }
            let sealer = self.sealer();
            let t = target.clone();
            let bytes = buf.len() as u64;
            self.submit(bytes, move || sealer.window(&buf, &ranges, t))
                .map_err(|e| {
                    repo_err = Some(e);
                    std::io::Error::other("the repository failed")
                })
        });
        if let Some(e) = repo_err {
            return Err(e);
        }
        Ok(res)
    }

    /// A placeholder for a stream stored as one file (`snapshot --stdin`) in open directory
    /// `key`.
    pub(super) fn stream_target(&mut self, key: usize, node: Node, name: &str) -> Target {
        let idx = self.push(key, node, true);
        Target {
            dir: key,
            idx,
            path: format!("<{name}>").into(),
            size: 0,
            changed: false,
            link: None,
        }
    }

    /// The stream of `target` ended after `size` bytes.
    pub(super) fn stream_done(&mut self, target: Target, size: u64) {
        if let Some(n) = self.node(target.dir, target.idx) {
            n.size = size;
        }
        self.summary.total_files += 1;
        self.summary.total_bytes += size;
        self.queue_end(target, End::Done);
    }

    fn queue_end(&mut self, target: Target, end: End) {
        let out = JobOut {
            files: vec![FileOut {
                target,
                ids: Vec::new(),
                bytes: 0,
                end,
            }],
            sealed: Vec::new(),
        };
        self.jobs.push_back((Job::Ready(out), 0));
    }

    /// The snapshot's root tree, once everything was drained.
    pub(super) fn root(&self) -> Option<BlobId> {
        debug_assert!(self.dirs.is_empty() || self.root.is_none());
        self.root
    }
}
