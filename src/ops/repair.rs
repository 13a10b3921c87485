//! `repair index`: rebuild the index from the packs themselves. `repair snapshots`: rewrite
//! the snapshots whose trees need blobs that are lost, so that what remains restores and
//! `check` passes again.
//!
//! Every pack ends with a sealed header that lists its blobs, so the index can always be
//! rebuilt from `packs/` alone: when index files are lost, damaged, or name packs that are
//! gone. The new index files are durable before any old one is removed, so a crash leaves
//! the old index, the new one, or both (which readers tolerate). Marks left by `prune` are not
//! carried over: every pack whose header reads is indexed as in use, and the next prune marks
//! again what no snapshot uses.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::saver::BlobSaver;
use crate::tree::{NodeKind, Tree};

/// Index files of at most this many blob entries.
const BLOBS_PER_INDEX: usize = 100_000;

/// What `repair index` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairIndexReport {
    /// Packs indexed.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Packs whose header could not be read, with the reason: their blobs are lost to the
    /// index (`repair snapshots` rewrites the snapshots that need them).
    pub unreadable: Vec<(PackId, String)>,
    /// Index files written.
    pub index_written: u64,
    /// Index files removed.
    pub index_removed: u64,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// Rebuilds the index from pack headers.
pub fn repair_index(repo: &Repository, dry_run: bool) -> Result<RepairIndexReport> {
    let session = if dry_run {
        None
    } else {
        repo.begin_session("repair index")?
    };
    let mut rep = RepairIndexReport {
        dry_run,
        ..RepairIndexReport::default()
    };
    let old: Vec<IndexId> = repo
        .backend()
        .list(FileKind::Index)?
        .into_iter()
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    let mut file = IndexFile::default();
    let mut blobs = 0;
    let mut seen = HashSet::new();
    for (name, size) in repo.backend().list(FileKind::Pack)? {
        let Ok(id) = name.parse::<PackId>() else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        match repo.read_pack_header(&id, size) {
            Ok(h) => {
                rep.packs += 1;
                rep.blobs += h.entries.len() as u64;
                blobs += h.entries.len();
                file.packs.push(IndexPack {
                    id,
                    size,
                    blob_type: h.blob_type,
                    blobs: h.entries,
                });
                if blobs >= BLOBS_PER_INDEX && !dry_run {
                    repo.save_index(&std::mem::take(&mut file))?;
                    rep.index_written += 1;
                    blobs = 0;
                }
            }
            Err(e) => rep.unreadable.push((id, e.to_string())),
        }
    }
    if !dry_run {
        if !file.packs.is_empty() {
            repo.save_index(&file)?;
            rep.index_written += 1;
        }
        for id in &old {
            repo.backend().delete(FileKind::Index, &id.to_hex())?;
            rep.index_removed += 1;
        }
        repo.rebuild_cache()?;
    }
    if let Some(s) = session {
        s.end()?;
    }
    Ok(rep)
}

/// One snapshot `repair snapshots` rewrote.
#[derive(Debug, Serialize)]
pub struct Repaired {
    /// The damaged snapshot.
    pub old: SnapshotId,
    /// Its repaired copy (none on a dry run).
    pub new: Option<SnapshotId>,
    /// What was lost, one line per path: a file truncated at its first lost blob, or a
    /// directory whose listing is lost (it is restored empty).
    pub lost: Vec<String>,
}

/// What `repair snapshots` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairSnapshotsReport {
    /// Snapshots read.
    pub snapshots: u64,
    /// Those that needed lost blobs, rewritten.
    pub repaired: Vec<Repaired>,
    /// True when the damaged snapshots were removed once their copies were written.
    pub forgot: bool,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// Rewrites every snapshot that needs lost blobs: a file keeps its content up to its first
/// lost blob (its size shrinks accordingly), a directory whose tree is lost becomes empty.
/// The copy is tagged `repaired` and remembers the damaged snapshot as `original`; with
/// `forget`, the damaged snapshot file is removed once the copy is durable.
pub fn repair_snapshots(
    repo: &Repository,
    forget: bool,
    dry_run: bool,
) -> Result<RepairSnapshotsReport> {
    let session = if dry_run {
        None
    } else {
        repo.begin_session("repair snapshots")?
    };
    let mut rep = RepairSnapshotsReport {
        forgot: forget && !dry_run,
        dry_run,
        ..RepairSnapshotsReport::default()
    };
    let stored: HashSet<String> = repo
        .backend()
        .list(FileKind::Pack)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let claims = BlobSaver::claims(repo);
    let mut memo = HashMap::new();
    for (id, snap) in repo.snapshots()? {
        rep.snapshots += 1;
        let mut lost = Vec::new();
        let tree = std::thread::scope(|s| -> Result<BlobId> {
            let mut fixer = Fixer {
                repo,
                stored: &stored,
                saver: (!dry_run).then(|| BlobSaver::start(repo, &claims, s)),
                memo: &mut memo,
            };
            let t = fixer.tree(&snap.tree, "/", &mut lost)?;
            if let Some(saver) = fixer.saver.take() {
                saver.finish()?;
            }
            Ok(t)
        })?;
        if lost.is_empty() {
            continue;
        }
        let mut new = None;
        if let Some(s) = &session {
            let mut copy = snap.clone();
            copy.tree = tree;
            copy.original = snap.original.or(Some(id));
            if !copy.tags.iter().any(|t| t == "repaired") {
                copy.tags.push("repaired".into());
            }
            s.ensure_current()?;
            new = Some(repo.save_snapshot(&copy)?);
            if forget {
                repo.delete_snapshot(&id)?;
            }
        }
        rep.repaired.push(Repaired { old: id, new, lost });
    }
    if let Some(s) = session {
        s.end()?;
    }
    Ok(rep)
}

/// Rewrites trees bottom-up, each distinct tree once.
struct Fixer<'a, 's, 'r> {
    repo: &'r Repository,
    stored: &'a HashSet<String>,
    saver: Option<BlobSaver<'s, 'r>>,
    /// Tree id → repaired tree id and what it lost (relative paths).
    memo: &'a mut HashMap<BlobId, (BlobId, Vec<String>)>,
}

impl Fixer<'_, '_, '_> {
    /// The blob's plaintext length, when it can still be read.
    fn available(&self, id: &BlobId) -> Result<Option<u32>> {
        Ok(self
            .repo
            .locate(id)?
            .filter(|l| self.stored.contains(&l.pack.to_hex()))
            .map(|l| l.raw_len))
    }

    fn save(&mut self, tree: &mut Tree) -> Result<BlobId> {
        let bytes = tree.encode();
        match &mut self.saver {
            Some(s) => s.save(BlobType::Tree, &bytes),
            None => Ok(self.repo.key().blob_id(&bytes)),
        }
    }

    fn tree(&mut self, id: &BlobId, path: &str, lost: &mut Vec<String>) -> Result<BlobId> {
        if let Some((new, l)) = self.memo.get(id) {
            lost.extend(l.iter().map(|p| format!("{path}{p}")));
            return Ok(*new);
        }
        let mut here = Vec::new();
        let new = match self.repo.load_tree(id) {
            Ok(mut tree) => {
                let mut changed = false;
                for n in &mut tree.nodes {
                    let name = n.name_lossy();
                    if n.kind == NodeKind::Dir {
                        let sub_lost = here.len();
                        let fixed = match n.subtree {
                            Some(sub) => {
                                let mut l = Vec::new();
                                let f = self.tree(&sub, "", &mut l)?;
                                here.extend(l.into_iter().map(|p| format!("{name}/{p}")));
                                f
                            }
                            None => continue,
                        };
                        if here.len() > sub_lost || Some(fixed) != n.subtree {
                            changed = true;
                            n.subtree = Some(fixed);
                        }
                    } else if !n.content.is_empty() {
                        let mut size = 0u64;
                        let mut keep = 0;
                        for c in &n.content {
                            match self.available(c)? {
                                Some(len) => {
                                    size += u64::from(len);
                                    keep += 1;
                                }
                                None => break,
                            }
                        }
                        if keep < n.content.len() {
                            here.push(format!(
                                "{name} (truncated from {} to {size} bytes)",
                                n.size
                            ));
                            n.content.truncate(keep);
                            n.size = size;
                            changed = true;
                        }
                    }
                }
                if changed { self.save(&mut tree)? } else { *id }
            }
            Err(Error::BlobNotIndexed(_) | Error::Missing(_) | Error::Corrupt { .. }) => {
                here.push("(directory listing lost: restored empty)".into());
                self.save(&mut Tree::default())?
            }
            Err(e) => return Err(e),
        };
        lost.extend(here.iter().map(|p| format!("{path}{p}")));
        self.memo.insert(*id, (new, here));
        Ok(new)
    }
}
