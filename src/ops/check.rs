//! `check`: prove the repository intact.
//!
//! Structure: every index file matches its name and decodes; every indexed pack exists with
//! the recorded size; every snapshot file matches its name and decodes; every tree of every
//! snapshot loads (its blob authenticated and its id re-derived) and every blob it references
//! is indexed. Trees already proven are skipped: snapshots share most of them.
//! With `--read-data`: every selected pack is read whole, its name hash checked, its header
//! authenticated and compared with the index, and every blob in it opened and re-hashed.
//!
//! Packs are immutable and named by their hash, so a pack proven once stays proven until it
//! is read again: each proof is recorded with its time in the cache's verification ledger.
//! `max_age` reads only packs never proven or proven longer ago, oldest proof first, and a
//! size or share of the repository caps what one run reads. A daily
//! `--read-data --max-age 30d --read-data-subset 4%` thus reads about a 25th of the
//! repository each day and proves every pack at least once every 30 days; losing the cache
//! only means reading more.

use crate::ops::progress::ProgressSink;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use rayon::prelude::*;
use serde::Serialize;

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SnapshotId, file_hash};
use crate::repo::Repository;
use crate::repo::blob::{authenticate_blob, open_blob};
use crate::repo::cache::BlobLocation;
use crate::repo::pack::read_header;
use crate::tree::NodeKind;

/// Which packs `--read-data` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataSubset {
    /// Every pack.
    All,
    /// Packs whose id (first 32 bits) falls in group `n` of `t` (1-based), so that `1/t` … `t/t`
    /// on successive runs read the whole repository.
    Group(u32, u32),
    /// This fraction (0–1) of the packs, chosen at random; with a maximum age, this share of
    /// the repository's bytes, oldest proof first.
    Fraction(f64),
    /// About this many bytes of packs, oldest proof first: packs are read until the budget is
    /// reached, so the last one may pass it by less than a pack.
    Bytes(u64),
}

impl DataSubset {
    /// Parses `N%`, `n/t` or a size such as `5G`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let f: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad percentage {s:?}"))?;
            if !(f > 0.0 && f <= 100.0) {
                return Err(format!("percentage {s:?} must be in (0, 100]"));
            }
            return Ok(DataSubset::Fraction(f / 100.0));
        }
        if let Some((n, t)) = s.split_once('/') {
            let (n, t): (u32, u32) = (
                n.trim().parse().map_err(|_| format!("bad subset {s:?}"))?,
                t.trim().parse().map_err(|_| format!("bad subset {s:?}"))?,
            );
            if t == 0 || n == 0 || n > t {
                return Err(format!("subset {s:?} must be n/t with 1 <= n <= t"));
            }
            return Ok(DataSubset::Group(n, t));
        }
        match crate::ops::parse_size(s) {
            Ok(0) => Err(format!("subset {s:?} must be more than 0 bytes")),
            Ok(b) => Ok(DataSubset::Bytes(b)),
            Err(_) => Err(format!("subset {s:?} must be N%, n/t or a size (e.g. 5G)")),
        }
    }

    fn selects(&self, id: &PackId) -> bool {
        match *self {
            DataSubset::All => true,
            DataSubset::Group(n, t) => {
                let x = u64::from(u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]));
                (x * u64::from(t)) >> 32 == u64::from(n - 1)
            }
            DataSubset::Fraction(f) => {
                let mut b = [0u8; 4];
                crate::crypto::random_bytes(&mut b);
                (u32::from_le_bytes(b) as f64) < f * (u32::MAX as f64)
            }
            DataSubset::Bytes(_) => true,
        }
    }

    /// The bytes one run may read under a ledger-driven selection.
    fn budget(&self, total: u64) -> u64 {
        match *self {
            DataSubset::All => u64::MAX,
            DataSubset::Bytes(b) => b,
            DataSubset::Fraction(f) => (f * total as f64).ceil() as u64,
            DataSubset::Group(_, t) => total.div_ceil(u64::from(t)),
        }
    }
}

type PackRow = (PackId, crate::repo::blob::BlobType, u64);

/// The packs to read and how many candidates the budget left for later. Without a maximum
/// age, `All`, `Group` and `Fraction` select as restic does; a maximum age or a size selects
/// from the ledger: never-proven packs, then the oldest proofs, until the budget is spent.
fn choose<'p>(
    present: &[&'p PackRow],
    subset: DataSubset,
    max_age: Option<Duration>,
    ledger: &HashMap<PackId, i64>,
    now: i64,
) -> (Vec<&'p PackRow>, u64) {
    if max_age.is_none() && !matches!(subset, DataSubset::Bytes(_)) {
        return (
            present
                .iter()
                .copied()
                .filter(|p| subset.selects(&p.0))
                .collect(),
            0,
        );
    }
    let due = |p: &&PackRow| match (ledger.get(&p.0), max_age) {
        (None, _) | (Some(_), None) => true,
        (Some(at), Some(age)) => {
            now.saturating_sub(*at) >= i64::try_from(age.as_secs()).unwrap_or(i64::MAX)
        }
    };
    let mut candidates: Vec<&PackRow> = present.iter().copied().filter(due).collect();
    candidates.sort_by_key(|p| (ledger.get(&p.0).copied().unwrap_or(i64::MIN), p.0));
    let total: u64 = present.iter().map(|p| p.2).sum();
    let budget = subset.budget(total);
    let mut spent = 0u64;
    let mut chosen = Vec::new();
    // Until the budget is reached (the last pack may pass it by less than a pack): a run
    // reads at least its share, which is what the coverage guarantee counts on.
    for p in &candidates {
        if spent >= budget {
            break;
        }
        spent += p.2;
        chosen.push(*p);
    }
    let left = (candidates.len() - chosen.len()) as u64;
    (chosen, left)
}

/// Options of `check`.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read pack data (`None`: structure only).
    pub read_data: Option<DataSubset>,
    /// Read only packs never proven or last proven at least this long ago (oldest first).
    pub max_age: Option<Duration>,
    /// The present time for the ledger (`None`: the clock; tests simulate days).
    pub now: Option<DateTime<Utc>>,
    /// Receives packs and bytes as they are read.
    pub progress: ProgressSink,
    /// Check only these snapshots, and with `read_data` only the packs that hold their
    /// trees and data (`None`: the whole repository).
    pub snapshots: Option<Vec<SnapshotId>>,
    /// What reading a pack proves of each blob.
    pub proof: DataProof,
}

/// What `check --read-data` proves of each blob of a pack it reads. Both prove the pack's
/// bytes against its name and header and authenticate every blob, so both find every case
/// of damage in docs/RELIABILITY.md; only `Content` also proves what the writer sealed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataProof {
    /// Authenticate, decompress and re-hash every blob against its id (as restic does).
    #[default]
    Content,
    /// Authenticate every blob (key, type, id) without decompressing it: about half the CPU.
    Seal,
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The file, pack, snapshot or path concerned.
    pub what: String,
    /// What is wrong.
    pub problem: String,
}

/// Everything `check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees proven.
    pub trees: u64,
    /// Packs indexed.
    pub packs: u64,
    /// Packs read with `--read-data`.
    pub packs_read: u64,
    /// Blobs authenticated with `--read-data`.
    pub blobs_read: u64,
    /// Bytes of the packs read.
    pub bytes_read: u64,
    /// Packs due for a read that this run's budget left for the next runs.
    pub packs_due: u64,
    /// Packs never proven (after this run), per the ledger.
    pub packs_unproven: u64,
    /// The oldest proof of a pack in use (after this run), per the ledger.
    pub oldest_proof: Option<DateTime<Utc>>,
    /// Errors: the repository is damaged.
    pub errors: Vec<Finding>,
    /// Notes that are not damage (e.g. packs no index names, left by an interrupted run).
    pub warnings: Vec<Finding>,
}

/// Checks `repo`.
pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let _session = repo.begin_reader_session("check");
    let mut rep = CheckReport::default();
    let err = |rep: &mut CheckReport, what: String, problem: String| {
        rep.errors.push(Finding { what, problem })
    };
    // Index files: rebuild the cache from them, verifying each; report the bad ones.
    repo.rebuild_cache()?;
    for problem in repo.damaged_index_files() {
        rep.errors.push(Finding {
            what: "index".into(),
            problem,
        });
    }
    for (name, _) in repo.backend().list(FileKind::Index)? {
        if name.parse::<crate::id::IndexId>().is_err() {
            rep.warnings.push(Finding {
                what: format!("index/{name}"),
                problem: "not a repository file name".into(),
            });
        }
    }
    // Packs: indexed ones must exist with the right size.
    let stored: std::collections::HashMap<String, u64> =
        repo.backend().list(FileKind::Pack)?.into_iter().collect();
    let indexed = repo.cache().packs()?;
    rep.packs = indexed.len() as u64;
    // Packs a prune marked for deletion may be present or already gone: neither is wrong.
    let indexed_names: HashSet<String> = indexed
        .iter()
        .chain(repo.cache().marked_packs()?.iter())
        .map(|p| p.0.to_hex())
        .collect();
    for (id, _, size) in &indexed {
        match stored.get(&id.to_hex()) {
            None => err(
                &mut rep,
                format!("pack {id}"),
                "is indexed but missing".into(),
            ),
            Some(s) if s != size => err(
                &mut rep,
                format!("pack {id}"),
                format!("has {s} bytes, the index says {size}"),
            ),
            _ => {}
        }
    }
    for name in stored.keys() {
        if !indexed_names.contains(name) {
            rep.warnings.push(Finding {
                what: format!("pack {name}"),
                problem:
                    "is not in any index (left by an interrupted run; the next snapshot adopts it)"
                        .into(),
            });
        }
    }
    // Snapshots and their trees; then, or meanwhile, the packs' data. A scoped check learns
    // which packs to read from its trees; a whole one knows them already and reads them while
    // the trees are walked, so that the walk's one thread does not leave a core idle
    // (measured: the walk is a third of a check that reads every pack).
    let present: Vec<&PackRow> = indexed
        .iter()
        .filter(|p| stored.contains_key(&p.0.to_hex()))
        .collect();
    match &opts.snapshots {
        Some(ids) => {
            let mut used = Some(HashSet::new());
            walk_snapshots(repo, ids, &mut used, &mut rep)?;
            if let Some(subset) = opts.read_data {
                let used = used.unwrap_or_default();
                let present: Vec<&PackRow> = present
                    .into_iter()
                    .filter(|p| used.contains(&p.0))
                    .collect();
                read_packs(repo, opts, subset, &present, &mut rep)?;
            }
        }
        None => {
            let ids = repo.snapshot_ids()?;
            let mut data = CheckReport::default();
            let (walked, read) = rayon::join(
                || walk_snapshots(repo, &ids, &mut None, &mut rep),
                || match opts.read_data {
                    Some(subset) => read_packs(repo, opts, subset, &present, &mut data),
                    None => Ok(()),
                },
            );
            walked?;
            read?;
            rep.errors.append(&mut data.errors);
            rep.packs_read = data.packs_read;
            rep.bytes_read = data.bytes_read;
            rep.blobs_read = data.blobs_read;
            rep.packs_due = data.packs_due;
            rep.packs_unproven = data.packs_unproven;
            rep.oldest_proof = data.oldest_proof;
        }
    }
    Ok(rep)
}

/// Proves the trees of snapshots `ids` (each distinct tree once), collecting into `used` the
/// packs they use when it is given.
fn walk_snapshots(
    repo: &Repository,
    ids: &[SnapshotId],
    used: &mut Option<HashSet<PackId>>,
    rep: &mut CheckReport,
) -> Result<()> {
    let mut proven: HashSet<BlobId> = HashSet::new();
    for sid in ids {
        let snap = match repo.load_snapshot_from_store(sid) {
            Ok(s) => s,
            Err(e) => {
                rep.errors.push(Finding {
                    what: format!("snapshot {sid}"),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        rep.snapshots += 1;
        let loc = repo.locate(&snap.tree)?;
        check_tree(
            repo,
            &snap.tree,
            loc,
            &format!("snapshot {}:/", sid.short()),
            &mut proven,
            used,
            rep,
        )?;
    }
    rep.trees = proven.len() as u64;
    Ok(())
}

/// Reads the packs of `present` that `subset` and the ledger choose, in parallel, and
/// records each outcome as its pack is done, so that an interrupted run keeps the proofs it
/// made. Fills the data fields and errors of `rep`.
fn read_packs(
    repo: &Repository,
    opts: &CheckOptions,
    subset: DataSubset,
    present: &[&PackRow],
    rep: &mut CheckReport,
) -> Result<()> {
    let now = opts.now.unwrap_or_else(Utc::now).timestamp();
    let ledger = repo.cache().verified()?;
    let (chosen, due) = choose(present, subset, opts.max_age, &ledger, now);
    rep.packs_due = due;
    opts.progress.total(chosen.iter().map(|p| p.2).sum());
    let results: Vec<Result<(u64, u64, Vec<Finding>)>> = chosen
        .par_iter()
        .map(|(id, _, size)| {
            let r = read_pack(repo, id, *size, opts.proof)?;
            opts.progress.advance(1, *size);
            if let Some((_, findings)) = &r {
                repo.cache()
                    .record_verified(id, findings.is_empty().then_some(now))?;
            }
            Ok(r.map_or((0, 0, Vec::new()), |(blobs, findings)| {
                (*size, blobs, findings)
            }))
        })
        .collect();
    for r in results {
        let (bytes, blobs, findings) = r?;
        if bytes > 0 {
            rep.packs_read += 1;
            rep.bytes_read += bytes;
        }
        rep.blobs_read += blobs;
        rep.errors.extend(findings);
    }
    let ledger = repo.cache().verified()?;
    let proofs: Vec<i64> = present
        .iter()
        .filter_map(|p| ledger.get(&p.0).copied())
        .collect();
    rep.packs_unproven = (present.len() - proofs.len()) as u64;
    rep.oldest_proof = proofs
        .iter()
        .min()
        .and_then(|t| DateTime::from_timestamp(*t, 0));
    Ok(())
}

/// Proves tree `id` (found at `loc`) and, once each, the trees below it: each decodes, each
/// data blob it names is indexed. A tree's lookups are made in one read transaction each
/// (measured: a third of a structure check went to taking SQLite's locks per statement).
fn check_tree(
    repo: &Repository,
    id: &BlobId,
    loc: Option<BlobLocation>,
    path: &str,
    proven: &mut HashSet<BlobId>,
    used: &mut Option<HashSet<PackId>>,
    rep: &mut CheckReport,
) -> Result<()> {
    if !proven.insert(*id) {
        return Ok(());
    }
    if let (Some(u), Some(l)) = (used.as_mut(), &loc) {
        u.insert(l.pack);
    }
    let loaded = match &loc {
        Some(l) => repo.load_tree_at(id, l),
        None => Err(Error::BlobNotIndexed(id.to_hex())),
    };
    let tree = match loaded {
        Ok(t) => t,
        Err(
            e @ (Error::Corrupt { .. }
            | Error::BlobNotIndexed(_)
            | Error::Missing(_)
            | Error::Io { .. }),
        ) => {
            rep.errors.push(Finding {
                what: format!("tree {} at {path}", id.short()),
                problem: e.to_string(),
            });
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let content: Vec<BlobId> = tree
        .nodes
        .iter()
        .flat_map(|n| n.content.iter().copied())
        .collect();
    let subtrees: Vec<BlobId> = tree
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Dir)
        .filter_map(|n| n.subtree)
        .collect();
    let found = repo.cache().contains_each(&content)?;
    if let Some(u) = used.as_mut() {
        let present: Vec<BlobId> = content
            .iter()
            .zip(&found)
            .filter(|(_, f)| **f)
            .map(|(c, _)| *c)
            .collect();
        u.extend(
            repo.cache()
                .lookup_each(&present)?
                .into_iter()
                .flatten()
                .map(|l| l.pack),
        );
    }
    let mut found = found.into_iter();
    let mut sub_locs = repo.cache().lookup_each(&subtrees)?.into_iter();
    for n in &tree.nodes {
        let p = format!(
            "{}{}{}",
            path,
            if path.ends_with('/') { "" } else { "/" },
            n.name_lossy()
        );
        for c in &n.content {
            if found.next().unwrap_or(false) {
                continue;
            }
            match repo.locate(c)? {
                // Written by a run that started before a prune marked its pack; the next
                // prune takes the pack back into use.
                Some(loc) if repo.backend().stat(FileKind::Pack, &loc.pack.to_hex())?.is_some() => {
                    rep.warnings.push(Finding {
                        what: p.clone(),
                        problem: format!(
                            "data blob {} is in pack {}, which a prune marked for deletion; the next prune keeps it",
                            c.short(),
                            loc.pack.short()
                        ),
                    })
                }
                _ => rep.errors.push(Finding {
                    what: p.clone(),
                    problem: format!("data blob {} is not in any index", c.short()),
                }),
            }
        }
        if n.kind == NodeKind::Dir {
            match &n.subtree {
                Some(sub) => {
                    let loc = sub_locs.next().flatten();
                    check_tree(repo, sub, loc, &p, proven, used, rep)?
                }
                None => rep.errors.push(Finding {
                    what: p,
                    problem: "directory without a subtree".into(),
                }),
            }
        }
    }
    Ok(())
}

/// Reads one pack whole and proves it: name, header, every blob.
/// Reads and verifies one pack: `None` when it was not read (its size differs from the
/// index's, which the structure pass reports), else the blobs verified and what was found.
fn read_pack(
    repo: &Repository,
    id: &PackId,
    size: u64,
    proof: DataProof,
) -> Result<Option<(u64, Vec<Finding>)>> {
    let what = format!("pack {id}");
    let mut out = Vec::new();
    // Never load more than the index says the pack holds (a grown file is reported by the
    // structure pass and not read).
    match repo.backend().stat(FileKind::Pack, &id.to_hex())? {
        Some(s) if s == size => {}
        _ => return Ok(None),
    }
    let bytes = match repo.backend().get(FileKind::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Some((
                0,
                vec![Finding {
                    what,
                    problem: e.to_string(),
                }],
            )));
        }
    };
    if file_hash(&bytes) != id.0 {
        out.push(Finding {
            what: what.clone(),
            problem: "content does not match its name (bit rot or tampering)".into(),
        });
    }
    let header = match read_header(repo.key(), &bytes, size.min(bytes.len() as u64)) {
        Ok(h) => h,
        Err(e) => {
            out.push(Finding {
                what,
                problem: format!("header: {e}"),
            });
            return Ok(Some((0, out)));
        }
    };
    let mut n = 0;
    let ids: Vec<BlobId> = header.entries.iter().map(|e| e.id).collect();
    let locs = repo.cache().lookup_each(&ids)?;
    for (e, loc) in header.entries.iter().zip(locs) {
        match loc {
            None => out.push(Finding {
                what: what.clone(),
                problem: format!("blob {} is in the pack but in no index", e.id.short()),
            }),
            Some(l)
                if l.pack == *id
                    && (l.offset, l.length, l.raw_len) != (e.offset, e.length, e.raw_len) =>
            {
                out.push(Finding {
                    what: what.clone(),
                    problem: format!(
                        "the index places blob {} differently than the pack header",
                        e.id.short()
                    ),
                })
            }
            Some(_) => {}
        }
        let sealed = &bytes[e.offset as usize..(e.offset as usize + e.length as usize)];
        let proven = match proof {
            DataProof::Content => open_blob(
                repo.key(),
                header.blob_type,
                &e.id,
                sealed,
                e.raw_len as usize,
            )
            .map(drop),
            DataProof::Seal => authenticate_blob(repo.key(), header.blob_type, &e.id, sealed),
        };
        if let Err(p) = proven {
            out.push(Finding {
                what: format!("blob {} in {what}", e.id.short()),
                problem: p,
            });
        }
        n += 1;
    }
    Ok(Some((n, out)))
}
