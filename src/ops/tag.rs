//! `tag`: change a snapshot's tags. Snapshot files are immutable and named by their hash, so
//! a change writes a new file and removes the old one only once the new one is durable: a
//! crash in between leaves both (the same tree twice), never neither.

use serde::Serialize;

use crate::error::Result;
use crate::id::SnapshotId;
use crate::repo::Repository;

/// How to change tags.
#[derive(Clone, Debug, Default)]
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags by these (applied first).
    pub set: Option<Vec<String>>,
}

/// One snapshot rewritten.
#[derive(Clone, Debug, Serialize)]
pub struct Retagged {
    /// The old snapshot file (removed).
    pub old: SnapshotId,
    /// The new one.
    pub new: SnapshotId,
    /// Its tags.
    pub tags: Vec<String>,
}

/// Applies `change` to each snapshot; snapshots whose tags would not change are left as
/// they are and not reported.
pub fn retag(repo: &Repository, refs: &[String], change: &TagChange) -> Result<Vec<Retagged>> {
    // The new file references trees a concurrent prune may be marking (if the old file is
    // forgotten meanwhile): announce it like any writer.
    let session = repo.begin_session("tag")?;
    let mut out = Vec::new();
    for r in refs {
        let (old, mut snap) = repo.resolve_snapshot(r)?;
        let mut tags = change.set.clone().unwrap_or_else(|| snap.tags.clone());
        for t in &change.add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags.retain(|t| !change.remove.contains(t));
        if tags == snap.tags {
            continue;
        }
        snap.tags = tags.clone();
        // As restic does: the rewritten snapshot remembers the one it replaces, so that
        // `copy` still knows it was copied.
        snap.original = snap.original.or(Some(old));
        if let Some(s) = &session {
            s.ensure_current()?;
        }
        let new = repo.save_snapshot(&snap)?;
        repo.delete_snapshot(&old)?;
        out.push(Retagged { old, new, tags });
    }
    if let Some(s) = session {
        s.end()?;
    }
    Ok(out)
}
