//! The archiver: walks sources, reuses what the parent snapshot proves unchanged, and stores
//! new content and trees through the `BlobSaver`.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;

use super::paths::PathTrie;
use super::read::{
    SMALL_BATCH_BYTES, SMALL_BATCH_FILES, SMALL_FILE, SmallFile, open_examined, read_small,
    unchanged_since,
};
use super::{ReadError, SnapshotOptions, SourceError};
use crate::error::Result;
use crate::id::BlobId;
use crate::ops::pattern::PathPatterns;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::saver::BlobSaver;
use crate::repo::snapshot::Summary;
use crate::source::fs::{Owners, node_from_metadata};
use crate::source::stream::for_each_window;
use crate::tree::{Node, NodeKind, Tree};

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

pub(super) struct Archiver<'r, 'o> {
    pub(super) repo: &'r Repository,
    pub(super) saver: BlobSaver<'r>,
    pub(super) opts: &'o SnapshotOptions,
    pub(super) excludes: Excludes,
    pub(super) owners: Owners,
    pub(super) summary: Summary,
    pub(super) errors: Vec<SourceError>,
    /// Small files of the directory being archived, waiting to be read as one parallel batch.
    pub(super) small: Vec<SmallFile>,
    /// Their total size.
    pub(super) small_bytes: u64,
    /// Content of hardlinked files by (device, inode), with the number of links not yet seen.
    pub(super) hardlinks: HashMap<(u64, u64), (Vec<BlobId>, u64)>,
}

impl<'r, 'o> Archiver<'r, 'o> {
    pub(super) fn report(&mut self, path: &Path, e: impl std::fmt::Display) {
        self.errors.push(SourceError {
            path: path.display().to_string(),
            error: e.to_string(),
        });
    }

    /// Archives the trie below `dir` (an absolute path), returning its tree id.
    pub(super) fn save_trie(
        &mut self,
        dir: &Path,
        trie: &PathTrie,
        parent: Option<&Tree>,
    ) -> Result<BlobId> {
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
    pub(super) fn begin_dir(&mut self) -> (Vec<SmallFile>, u64) {
        (
            std::mem::take(&mut self.small),
            std::mem::take(&mut self.small_bytes),
        )
    }

    /// Finishes a directory: stores its last batch of small files into `tree`.
    pub(super) fn end_dir(&mut self, tree: &mut Tree, outer: (Vec<SmallFile>, u64)) -> Result<()> {
        self.flush_small(tree)?;
        (self.small, self.small_bytes) = outer;
        Ok(())
    }

    /// Reads, chunks and hashes the pending small files in parallel, then seals their new
    /// chunks in parallel: per-file overhead no longer keeps a core idle.
    pub(super) fn flush_small(&mut self, tree: &mut Tree) -> Result<()> {
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

    pub(super) fn intermediate(
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
    pub(super) fn examine(
        &mut self,
        path: &Path,
        name: &OsStr,
    ) -> Option<(std::fs::Metadata, Node)> {
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

    pub(super) fn parent_subtree(&self, pnode: Option<&Node>) -> Option<Tree> {
        let id = pnode.filter(|n| n.kind == NodeKind::Dir)?.subtree?;
        self.repo.load_tree(&id).ok()
    }

    pub(super) fn archive_entry(
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
    pub(super) fn save_dir(
        &mut self,
        path: &Path,
        dev: u64,
        parent: Option<&Tree>,
    ) -> Result<Option<BlobId>> {
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
    pub(super) fn save_file(
        &mut self,
        path: &Path,
        node: &mut Node,
        pnode: Option<&Node>,
    ) -> Result<bool> {
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

    pub(super) fn all_indexed(&self, content: &[BlobId]) -> Result<bool> {
        for id in content {
            if !self.saver.is_known(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub(super) fn read_file(&mut self, path: &Path, node: &Node) -> Result<Vec<BlobId>, ReadError> {
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

    pub(super) fn store_stream(
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

    pub(super) fn store_chunks(
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
    pub(super) fn store_new<'b>(
        &mut self,
        chunks: impl Iterator<Item = (&'b [u8], BlobId)>,
    ) -> Result<()> {
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
