//! `repair index`: rebuild the index from the packs themselves.
//!
//! Every pack ends with a sealed header that lists its blobs, so the index can always be
//! rebuilt from `packs/` alone: when index files are lost, damaged, or name packs that are
//! gone. The new index files are durable before any old one is removed, so a crash leaves
//! the old index, the new one, or both (which readers tolerate). Marks left by `prune` are not
//! carried over: every pack whose header reads is indexed as in use, and the next prune marks
//! again what no snapshot uses.

use std::collections::HashSet;

use serde::Serialize;

use crate::backend::FileKind;
use crate::error::Result;
use crate::id::{IndexId, PackId};
use crate::repo::Repository;
use crate::repo::index::{IndexFile, IndexPack};

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
