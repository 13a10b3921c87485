//! Local copies of tree packs and snapshot files, for repositories on a server.
//!
//! A snapshot compares every directory with its parent's tree, a restore and a `check` walk
//! every tree: on a server that would be one ranged GET per directory (860 requests for an
//! unchanged re-snapshot of a tree of 861 directories). Tree packs hold only trees, so the
//! first tree read from a pack fetches the whole pack (one GET), checks that its bytes hash
//! to its name, and keeps it in the cache folder; later tree reads are local. Trees stay
//! sealed there as in the repository, and each blob is still authenticated when it is opened.
//! Copies of packs the index no longer lists (after a prune) are removed when the index is
//! synced.
//!
//! Snapshot files are read whole to find a parent or `latest`: one GET per snapshot at every
//! run. They never change (named by their hash), so each is fetched once, kept under
//! `snapshots/`, checked against its name when read, and removed once a listing no longer
//! shows it (after a `forget`).

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::backend::{Backend, FileKind};
use crate::error::{Error, Result};
use crate::id::PackId;

/// The cache folder of tree packs (`CACHE/REPO-ID/trees/`).
pub struct TreePacks {
    dir: PathBuf,
}

impl TreePacks {
    /// Tree packs kept under `dir`.
    pub fn new(dir: PathBuf) -> TreePacks {
        TreePacks { dir }
    }

    fn path(&self, pack: &PackId) -> PathBuf {
        let hex = pack.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// `len` bytes at `offset` of a tree pack: from the local copy, which is fetched first
    /// when there is none. `fresh` forces a new fetch (the copy failed to authenticate).
    pub fn read(
        &self,
        backend: &dyn Backend,
        pack: &PackId,
        offset: u64,
        len: u64,
        fresh: bool,
    ) -> Result<Vec<u8>> {
        let path = self.path(pack);
        if !fresh && let Ok(f) = std::fs::File::open(&path) {
            let mut buf = vec![0u8; len as usize];
            if f.read_exact_at(&mut buf, offset).is_ok() {
                return Ok(buf);
            }
        }
        let bytes = backend.get(FileKind::Pack, &pack.to_hex())?;
        let end = offset.saturating_add(len);
        let Some(range) = bytes.get(offset as usize..end as usize) else {
            return Err(Error::corrupt(
                format!("pack {pack}"),
                format!(
                    "short read at {offset}+{len}: the pack has {} bytes",
                    bytes.len()
                ),
            ));
        };
        let wanted = range.to_vec();
        // Kept only when whole and intact: a pack is named by the hash of its bytes.
        if crate::id::file_hash(&bytes) == pack.0 {
            // A full or read-only cache only costs the requests it would have saved.
            let _ = keep(&path, &bytes);
        }
        Ok(wanted)
    }

    /// Removes the copies of packs for which `listed` is false.
    pub fn retain(&self, listed: impl Fn(&PackId) -> bool) {
        let Ok(folders) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for folder in folders.flatten() {
            let Ok(files) = std::fs::read_dir(folder.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let keep = name
                    .to_str()
                    .and_then(|n| n.parse::<PackId>().ok())
                    .is_some_and(|id| listed(&id));
                if !keep {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
}

/// The cache folder of snapshot files (`CACHE/REPO-ID/snapshots/`).
pub struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    /// Snapshot files kept under `dir`.
    pub fn new(dir: PathBuf) -> SnapshotFiles {
        SnapshotFiles { dir }
    }

    /// The bytes of snapshot file `name`, whose hash is `hash`: the local copy when it is
    /// intact, else the server's (kept for next time when it is intact).
    pub fn get(&self, backend: &dyn Backend, name: &str, hash: &[u8; 32]) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        if let Ok(b) = std::fs::read(&path) {
            if crate::id::file_hash(&b) == *hash {
                return Ok(b);
            }
            let _ = std::fs::remove_file(&path);
        }
        let bytes = backend.get(FileKind::Snapshot, name)?;
        if crate::id::file_hash(&bytes) == *hash {
            let _ = keep(&path, &bytes);
        }
        Ok(bytes)
    }

    /// Removes the copies of snapshot files a listing no longer shows.
    pub fn retain(&self, listed: impl Fn(&str) -> bool) {
        let Ok(files) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for f in files.flatten() {
            if !f.file_name().to_str().is_some_and(&listed) {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
}

/// Writes a copy atomically (temporary file, rename), so a reader never sees part of one.
fn keep(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .expect("invariant: a cached file has a folder");
    std::fs::create_dir_all(dir)?;
    let mut r = [0u8; 8];
    crate::crypto::random_bytes(&mut r);
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), hex::encode(r)));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn a_pack_is_fetched_once_and_only_an_intact_one_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let t = TreePacks::new(d.path().join("trees"));
        let m = MemoryBackend::default();
        let bytes = b"tree pack bytes".to_vec();
        let id = PackId(crate::id::file_hash(&bytes));
        m.put(FileKind::Pack, &id.to_hex(), &bytes).unwrap();
        assert_eq!(t.read(&m, &id, 5, 4, false).unwrap(), b"pack");
        let gets = m.gets.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(t.read(&m, &id, 0, 4, false).unwrap(), b"tree");
        assert_eq!(
            m.gets.load(std::sync::atomic::Ordering::Relaxed),
            gets,
            "the second read is local"
        );
        assert_eq!(t.read(&m, &id, 0, 4, true).unwrap(), b"tree");
        assert_eq!(
            m.gets.load(std::sync::atomic::Ordering::Relaxed),
            gets + 1,
            "a fresh read fetches again"
        );
        assert!(t.read(&m, &id, 10, 100, true).is_err(), "a short pack");
        // Bytes that do not hash to the name are served (the blob's seal decides) but not kept.
        let other = PackId([7; 32]);
        m.put(FileKind::Pack, &other.to_hex(), b"not its hash")
            .unwrap();
        assert_eq!(t.read(&m, &other, 0, 3, false).unwrap(), b"not");
        assert!(!t.path(&other).exists());
        t.retain(|p| *p != id);
        assert!(
            !t.path(&id).exists(),
            "copies of packs gone from the index are removed"
        );
    }

    #[test]
    fn a_snapshot_file_is_fetched_once_and_a_bad_copy_again() {
        let d = tempfile::tempdir().unwrap();
        let f = SnapshotFiles::new(d.path().join("snapshots"));
        let m = MemoryBackend::default();
        let bytes = b"sealed snapshot".to_vec();
        let hash = crate::id::file_hash(&bytes);
        let name = hex::encode(hash);
        m.put(FileKind::Snapshot, &name, &bytes).unwrap();
        let gets = || m.gets.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(f.get(&m, &name, &hash).unwrap(), bytes);
        assert_eq!(f.get(&m, &name, &hash).unwrap(), bytes);
        assert_eq!(gets(), 1, "the second read is local");
        std::fs::write(d.path().join("snapshots").join(&name), b"rotten").unwrap();
        assert_eq!(f.get(&m, &name, &hash).unwrap(), bytes);
        assert_eq!(
            gets(),
            2,
            "a copy that does not match its name is fetched again"
        );
        f.retain(|n| n != name);
        assert!(!d.path().join("snapshots").join(&name).exists());
    }
}
