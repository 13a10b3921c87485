//! `stats`: sizes, counts and the dedup ratio.

use std::collections::HashSet;

use serde::Serialize;

use crate::error::Result;
use crate::id::BlobId;
use crate::ops::walk::walk;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::tree::NodeKind;

/// Repository or snapshot statistics.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Snapshots considered.
    pub snapshots: u64,
    /// Files in them (counting each snapshot's files).
    pub files: u64,
    /// Sum of their file sizes: what a restore of every snapshot would write.
    pub restore_size: u64,
    /// Distinct data blobs.
    pub data_blobs: u64,
    /// Distinct tree blobs.
    pub tree_blobs: u64,
    /// Plaintext size of the distinct blobs.
    pub raw_size: u64,
    /// Stored (compressed, sealed) size of the distinct blobs.
    pub stored_size: u64,
    /// Plaintext size of the distinct data blobs (file content after dedup).
    pub data_size: u64,
    /// `restore_size / data_size`: how much dedup saved.
    pub dedup_ratio: f64,
    /// `raw_size / stored_size`: how much compression saved.
    pub compression_ratio: f64,
    /// Packs (whole repository only).
    pub packs: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Statistics over the whole repository (`roots` is `None`; figures come from the index and
/// the snapshots' summaries) or over the given snapshot trees (walked in full).
pub fn stats(repo: &Repository, roots: Option<&[BlobId]>) -> Result<Stats> {
    let mut s = Stats::default();
    let mut seen: HashSet<BlobId> = HashSet::new();
    let mut trees: HashSet<BlobId> = HashSet::new();
    for root in roots.unwrap_or_default() {
        s.snapshots += 1;
        trees.insert(*root);
        walk(repo, root, &mut |_, n| {
            if n.kind == NodeKind::File {
                s.files += 1;
                s.restore_size += n.size;
                seen.extend(n.content.iter().copied());
            }
            if let Some(t) = n.subtree {
                trees.insert(t);
            }
            Ok(true)
        })?;
    }
    if roots.is_none() {
        for (_, snap) in repo.snapshots()? {
            s.snapshots += 1;
            s.files += snap.summary.total_files;
            s.restore_size += snap.summary.total_bytes;
        }
        for (t, n, raw, stored) in repo.cache().totals()? {
            match t {
                BlobType::Data => {
                    s.data_blobs = n;
                    s.data_size = raw;
                }
                BlobType::Tree => s.tree_blobs = n,
            }
            s.raw_size += raw;
            s.stored_size += stored;
        }
        s.packs = repo.cache().packs()?.len() as u64;
    } else {
        s.data_blobs = seen.len() as u64;
        s.tree_blobs = trees.len() as u64;
        for id in seen.iter().chain(trees.iter()) {
            if let Some(l) = repo.locate(id)? {
                s.raw_size += u64::from(l.raw_len);
                s.stored_size += u64::from(l.length);
                if l.blob_type == BlobType::Data {
                    s.data_size += u64::from(l.raw_len);
                }
            }
        }
    }
    s.dedup_ratio = ratio(s.restore_size, s.data_size);
    s.compression_ratio = ratio(s.raw_size, s.stored_size);
    Ok(s)
}
