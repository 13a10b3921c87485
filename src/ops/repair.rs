//! `repair index`: rebuild the index from the packs themselves. `repair snapshots`: rewrite
//! the snapshots whose trees need blobs that are lost, so that what remains restores and
//! `check` passes again. A blob is lost when no index names it, when its pack is gone, and
//! (with `--read-data`, which reads every pack) when it does not authenticate where the index
//! places it.
//!
//! Every pack ends with a sealed header that lists its blobs, so the index can always be
//! rebuilt from `packs/` alone: when index files are lost, damaged, or name packs that are
//! gone. The new index files are durable before any old one is removed, so a crash leaves
//! the old index, the new one, or both (which readers tolerate). Marks left by `prune` are not
//! carried over: every pack whose header reads is indexed as in use, and the next prune marks
//! again what no snapshot uses.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, SessionId, SnapshotId};
use crate::repo::Repository;
use crate::repo::blob::{BlobType, open_blob};
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
    /// Packs whose header could not be read, with the reason.
    pub unreadable: Vec<(PackId, String)>,
    /// Of those, the packs whose entries a readable old index file still had, and which stay
    /// indexed from it (their blobs are checked by `check --read-data`).
    pub carried: u64,
    /// Packs kept marked for deletion, as an earlier prune left them.
    pub marked: u64,
    /// Index files written (or that would be).
    pub index_written: u64,
    /// Index files removed (or that would be).
    pub index_removed: u64,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// A prune's mark on a pack: when, and the sessions then running.
type Mark = (i64, Vec<SessionId>);

/// Rebuilds the index from pack headers. Marks of a prune are carried over from the readable
/// old index files (a prune running meanwhile may delete those packs); a pack whose header
/// is damaged keeps the entries an old index file has for it. Any error other than damage
/// stops the repair before an old index file is removed.
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
    // Marked packs (few) from the readable old files; a pack in use anywhere is in use.
    let mut marks: HashMap<PackId, Mark> = HashMap::new();
    let mut live: HashSet<PackId> = HashSet::new();
    for_each_old_index(repo, &old, |f| {
        live.extend(f.packs.iter().map(|p| p.id));
        for g in &f.marked {
            for p in &g.packs {
                marks
                    .entry(p.id)
                    .or_insert_with(|| (g.marked_at, g.sessions.clone()));
            }
        }
    })?;
    marks.retain(|id, _| !live.contains(id));
    drop(live);
    let mut w = repo.index_writer(BLOBS_PER_INDEX, dry_run);
    let mut seen = HashSet::new();
    let mut damaged = HashSet::new();
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
                let mark = marks.get(&id);
                rep.marked += u64::from(mark.is_some());
                let p = IndexPack {
                    id,
                    size,
                    blob_type: h.blob_type,
                    blobs: h.entries,
                };
                w.add(p, mark.map(|(at, s)| (*at, s.as_slice())))?;
            }
            Err(e @ Error::Corrupt { .. }) => {
                rep.unreadable.push((id, e.to_string()));
                damaged.insert(id);
            }
            Err(e) => return Err(e),
        }
    }
    if !damaged.is_empty() {
        let mut carried = Vec::new();
        for_each_old_index(repo, &old, |f| {
            let groups = f.marked.iter().flat_map(|g| &g.packs);
            for p in f.packs.iter().chain(groups) {
                if damaged.remove(&p.id) {
                    carried.push(p.clone());
                }
            }
        })?;
        for p in carried {
            rep.carried += 1;
            rep.packs += 1;
            rep.blobs += p.blobs.len() as u64;
            let mark = marks.get(&p.id);
            w.add(p, mark.map(|(at, s)| (*at, s.as_slice())))?;
        }
    }
    rep.index_written = w.finish()?.1;
    rep.index_removed = old.len() as u64;
    if !dry_run {
        for id in &old {
            repo.backend().delete(FileKind::Index, &id.to_hex())?;
        }
        repo.rebuild_cache()?;
    }
    if let Some(s) = session {
        s.end()?;
    }
    Ok(rep)
}

/// Calls `f` with every old index file that can be read; damaged ones are what is being
/// repaired and are skipped.
fn for_each_old_index(
    repo: &Repository,
    old: &[IndexId],
    mut f: impl FnMut(&IndexFile),
) -> Result<()> {
    for id in old {
        match repo.load_index(id) {
            Ok(file) => f(&file),
            Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// How `repair snapshots` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove each damaged snapshot once its repaired copy is durable.
    pub forget: bool,
    /// Write nothing; report what would be repaired.
    pub dry_run: bool,
    /// Read every pack first, so that blobs damaged inside present packs count as lost.
    pub read_data: bool,
}

/// What `repair snapshots` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairSnapshotsReport {
    /// Snapshots read.
    pub snapshots: u64,
    /// Those that needed lost blobs, rewritten.
    pub repaired: Vec<Repaired>,
    /// With `read_data`: packs read, and blobs found damaged in them (lost like missing ones).
    pub packs_read: u64,
    /// See `packs_read`.
    pub damaged_blobs: u64,
    /// Of those, blobs with an intact copy in another pack: not cut, since a prune that
    /// rewrites the damaged pack keeps that copy.
    pub intact_elsewhere: u64,
    /// The packs holding damaged blobs, for `prune --repack`.
    pub damaged_packs: Vec<PackId>,
    /// True when the damaged snapshots were removed once their copies were written.
    pub forgot: bool,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// Rewrites every snapshot that needs lost blobs: a file keeps its content up to its first
/// lost blob (its size shrinks accordingly), a directory whose tree is lost becomes empty.
/// The copy is tagged `repaired` and remembers the damaged snapshot as `original`; with
/// `forget`, the damaged snapshot file is removed once the copy is durable. With
/// `read_data`, every pack is read first and blobs that fail to authenticate count as lost
/// too (without it, only missing blobs and unreadable trees are found).
pub fn repair_snapshots(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
) -> Result<RepairSnapshotsReport> {
    let RepairSnapshotsOptions {
        forget,
        dry_run,
        read_data,
    } = *opts;
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
    ensure_index_complete(repo, &stored)?;
    let damage = if read_data {
        let d = damaged_blobs(repo, &stored)?;
        rep.packs_read = d.read;
        rep.damaged_blobs = d.at.len() as u64;
        rep.intact_elsewhere = d.intact_elsewhere.len() as u64;
        let packs: std::collections::BTreeSet<PackId> = d.at.iter().map(|(_, p)| *p).collect();
        rep.damaged_packs = packs.into_iter().collect();
        d
    } else {
        Damage::default()
    };
    let snapshots = repo.snapshots()?;
    // A damaged snapshot already repaired (and kept, without --forget) is not copied again.
    let done: HashSet<SnapshotId> = snapshots
        .iter()
        .filter(|(_, s)| s.tags.iter().any(|t| t == "repaired"))
        .filter_map(|(_, s)| s.original)
        .collect();
    let claims = BlobSaver::claims(repo);
    let mut memo = HashMap::new();
    for (id, snap) in snapshots {
        rep.snapshots += 1;
        let is_copy = snap.tags.iter().any(|t| t == "repaired");
        if done.contains(&id) || !is_copy && snap.original.is_some_and(|o| done.contains(&o)) {
            continue;
        }
        let mut lost = Vec::new();
        let tree = std::thread::scope(|s| -> Result<BlobId> {
            let mut fixer = Fixer {
                repo,
                stored: &stored,
                damage: &damage,
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

/// What reading every pack found.
#[derive(Default)]
struct Damage {
    /// Packs read.
    read: u64,
    /// Blobs that do not authenticate where an index places them, with that pack.
    at: HashSet<(BlobId, PackId)>,
    /// Of those blobs, the ones with an intact copy in another stored pack: not lost, since
    /// `prune --repack` of the damaged pack keeps that copy.
    intact_elsewhere: HashSet<BlobId>,
}

impl Damage {
    /// True when the copy of `id` in `pack` is damaged and no other copy is intact.
    fn loses(&self, id: &BlobId, pack: &PackId) -> bool {
        self.at.contains(&(*id, *pack)) && !self.intact_elsewhere.contains(id)
    }
}

/// Reads every indexed pack, one index file at a time (memory stays bounded by the largest
/// index file and one pack per thread), and finds the blobs that do not authenticate where
/// the index places them. A pack that cannot be read at all loses every blob the index places
/// in it; marked packs already deleted are skipped. A second pass over the index files (no
/// reading of packs) finds the damaged blobs that have an intact copy elsewhere: every copy
/// not found damaged was read and proven by the first pass.
fn damaged_blobs(repo: &Repository, stored: &HashSet<String>) -> Result<Damage> {
    let mut d = Damage::default();
    let files = repo.cache().known_index_files()?;
    fn stored_packs<'f>(f: &'f IndexFile, stored: &HashSet<String>) -> Vec<&'f IndexPack> {
        f.packs
            .iter()
            .chain(f.marked.iter().flat_map(|g| g.packs.iter()))
            // A marked pack may be deleted already; a pack in use is there (checked before).
            .filter(|p| stored.contains(&p.id.to_hex()))
            .collect()
    }
    for file in &files {
        let f = repo.load_index(file)?;
        let packs = stored_packs(&f, stored);
        let found: Vec<Result<Vec<BlobId>>> =
            packs.par_iter().map(|p| damaged_in(repo, p)).collect();
        for (p, r) in packs.iter().zip(found) {
            d.read += 1;
            d.at.extend(r?.into_iter().map(|b| (b, p.id)));
        }
    }
    if d.at.is_empty() {
        return Ok(d);
    }
    let ids: HashSet<BlobId> = d.at.iter().map(|(b, _)| *b).collect();
    for file in &files {
        let f = repo.load_index(file)?;
        for p in stored_packs(&f, stored) {
            for e in p.blobs.iter().filter(|e| ids.contains(&e.id)) {
                if !d.at.contains(&(e.id, p.id)) {
                    d.intact_elsewhere.insert(e.id);
                }
            }
        }
    }
    Ok(d)
}

/// The blobs of one pack that do not authenticate at their indexed place.
fn damaged_in(repo: &Repository, p: &IndexPack) -> Result<Vec<BlobId>> {
    let bytes = match repo.backend().get(FileKind::Pack, &p.id.to_hex()) {
        Ok(b) => b,
        Err(Error::Missing(_) | Error::Corrupt { .. }) => {
            return Ok(p.blobs.iter().map(|b| b.id).collect());
        }
        Err(e) => return Err(e),
    };
    Ok(p.blobs
        .iter()
        .filter(|e| {
            let (start, end) = (e.offset as usize, e.offset as usize + e.length as usize);
            bytes.get(start..end).is_none_or(|sealed| {
                open_blob(repo.key(), p.blob_type, &e.id, sealed, e.raw_len as usize).is_err()
            })
        })
        .map(|e| e.id)
        .collect())
}

/// Refuses to judge blobs lost while the index itself is incomplete: a blob that only a
/// damaged or missing index file names, or that lies in a pack no index names, still exists,
/// and cutting the files that need it would lose data for good.
fn ensure_index_complete(repo: &Repository, stored: &HashSet<String>) -> Result<()> {
    let why = if !repo.damaged_index_files().is_empty() {
        Some("some index files are damaged")
    } else if repo
        .cache()
        .packs()?
        .iter()
        .any(|p| !stored.contains(&p.0.to_hex()))
    {
        Some("the index names packs that are gone")
    } else {
        let mut unindexed = false;
        for name in stored {
            if let Ok(id) = name.parse::<PackId>()
                && !repo.cache().has_pack(&id)?
            {
                unindexed = true;
                break;
            }
        }
        unindexed.then_some("some packs are in no index")
    };
    match why {
        Some(why) => Err(Error::Invalid(format!(
            "{why}: run `cairn repair index` first, so that only data that is really lost is \
             cut from the snapshots"
        ))),
        None => Ok(()),
    }
}

/// Rewrites trees bottom-up, each distinct tree once.
struct Fixer<'a, 's, 'r> {
    repo: &'r Repository,
    stored: &'a HashSet<String>,
    /// What reading the packs found (empty without `read_data`).
    damage: &'a Damage,
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
            .filter(|l| !self.damage.loses(id, &l.pack))
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
