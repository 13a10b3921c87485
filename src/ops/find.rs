//! `find`: which snapshots hold entries matching a pattern.
//!
//! Snapshots share most of their trees, so each (tree, path) pair is searched once and its
//! matches are remembered: searching a hundred snapshots of a mostly unchanged tree costs
//! little more than searching one.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::id::{BlobId, SnapshotId};
use crate::ops::pattern::PathPatterns;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::tree::{Node, NodeKind};

/// What to look for.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    /// Globs: one with `/` matches a whole path, one without a name anywhere.
    pub patterns: Vec<String>,
    /// Fold case in the patterns.
    pub ignore_case: bool,
    /// Only entries modified at or after this time (ns since the epoch).
    pub oldest_ns: Option<i64>,
    /// Only entries modified at or before this time (ns since the epoch).
    pub newest_ns: Option<i64>,
}

/// One matching entry; its node carries no content list (a match is reported, not read).
#[derive(Clone, Debug)]
pub struct Found {
    /// Path inside the snapshot, starting with `/`.
    pub path: PathBuf,
    /// The entry's metadata.
    pub node: Node,
}

/// Totals of a search.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FindReport {
    /// Snapshots looked at.
    pub snapshots_searched: usize,
    /// Snapshots with at least one match.
    pub snapshots_matching: usize,
    /// Matches over all snapshots (an entry found in three snapshots counts three times).
    pub matches: usize,
}

/// Receives a snapshot's matches.
pub type OnMatches<'a> = dyn FnMut(&SnapshotId, &Snapshot, &[Found]) -> Result<()> + 'a;

/// Once a search has remembered this many (tree, path) results, or this many matches in
/// them, it starts over, so that memory stays bounded whatever the repository holds.
const MEMO_LIMIT: usize = 1 << 18;

/// Results with more matches than this are not remembered: a broad pattern (`*`) would
/// otherwise keep a copy of every match at every level above it.
const MEMO_MATCHES: usize = 64;

/// Searches `snapshots` in the order given and calls `f` once per snapshot with a match,
/// with its matches in walk order (depth-first, names sorted).
pub fn find(
    repo: &Repository,
    snapshots: &[(SnapshotId, Snapshot)],
    opts: &FindOptions,
    f: &mut OnMatches<'_>,
) -> Result<FindReport> {
    let _session = repo.begin_reader_session("find");
    let mut search = Search {
        repo,
        patterns: PathPatterns::for_search(&opts.patterns, opts.ignore_case)?,
        opts,
        memo: HashMap::new(),
        memo_matches: 0,
    };
    let mut report = FindReport::default();
    for (id, snap) in snapshots {
        report.snapshots_searched += 1;
        let found = search.tree(&snap.tree, Path::new("/"))?;
        if !found.is_empty() {
            report.snapshots_matching += 1;
            report.matches += found.len();
            f(id, snap, &found)?;
        }
    }
    Ok(report)
}

struct Search<'a> {
    repo: &'a Repository,
    patterns: PathPatterns,
    opts: &'a FindOptions,
    memo: HashMap<(BlobId, PathBuf), Arc<Vec<Found>>>,
    /// Matches held in `memo`.
    memo_matches: usize,
}

impl Search<'_> {
    fn tree(&mut self, id: &BlobId, base: &Path) -> Result<Arc<Vec<Found>>> {
        let key = (*id, base.to_path_buf());
        if let Some(hit) = self.memo.get(&key) {
            return Ok(hit.clone());
        }
        let tree = self.repo.load_tree(id)?;
        let mut found = Vec::new();
        for n in &tree.nodes {
            let name = OsStr::from_bytes(&n.name);
            let path = base.join(name);
            if self.wanted(&path, name, n) {
                let mut node = n.clone();
                node.content = Vec::new();
                found.push(Found {
                    path: path.clone(),
                    node,
                });
            }
            if n.kind == NodeKind::Dir
                && let Some(sub) = &n.subtree
            {
                found.extend(self.tree(sub, &path)?.iter().cloned());
            }
        }
        let found = Arc::new(found);
        if found.len() <= MEMO_MATCHES {
            if self.memo.len() >= MEMO_LIMIT || self.memo_matches >= MEMO_LIMIT {
                self.memo.clear();
                self.memo_matches = 0;
            }
            self.memo_matches += found.len();
            self.memo.insert(key, found.clone());
        }
        Ok(found)
    }

    fn wanted(&self, path: &Path, name: &OsStr, n: &Node) -> bool {
        self.patterns.matches(path, name)
            && self.opts.oldest_ns.is_none_or(|t| n.mtime_ns >= t)
            && self.opts.newest_ns.is_none_or(|t| n.mtime_ns <= t)
    }
}
