//! Collects new blobs into packs and packs into index files, in the order that keeps a crash
//! harmless: a pack is stored before any index names it, and index entries reach the cache
//! only with their index file.
//!
//! Packs are written on their own thread, streamed to the backend as blobs arrive, so hashing,
//! compressing and sealing never wait for a write or an fsync, and no pack is held in memory.
//! Workers on other threads decide which blobs to seal through [`Claims`]: a blob is sealed by
//! the first worker that claims it, once per run.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::PackWriter;

/// An index file is written after this many packs or blob entries, whichever comes first.
/// Once written, its blobs are found through the cache, so the in-memory set of this run's
/// blobs stays bounded however much the run stores.
const PACKS_PER_INDEX: usize = 32;
const BLOBS_PER_INDEX: usize = 50_000;
/// A pack is closed at the configured size or at this many blobs (tiny blobs would otherwise
/// make huge headers and keep many ids in memory).
const BLOBS_PER_PACK: usize = 20_000;
/// Sealed blobs queued for the pack writer: the jobs in flight already cover an fsync, and
/// every queued blob is memory (16 measured 129 MB peak RSS on incompressible input, 4: 107,
/// at the same speed).
const WRITER_QUEUE: usize = 4;

/// Blobs of this run that the cache cannot show yet: claimed by a worker, waiting in an open
/// pack, or named by an index file not yet written. Shared by the workers, the run's main
/// thread and the pack writer (which removes what it has indexed).
pub struct Claims<'r> {
    repo: &'r Repository,
    ids: Mutex<HashSet<BlobId>>,
}

impl<'r> Claims<'r> {
    fn ids(&self) -> MutexGuard<'_, HashSet<BlobId>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the blob is stored or being stored by this run.
    pub fn is_known(&self, id: &BlobId) -> Result<bool> {
        // This run's set first: the writer adds to the cache before it removes from the set,
        // so in this order a blob can never slip between the two.
        Ok(self.ids().contains(id) || self.repo.cache().contains(id)?)
    }

    /// True when the caller must store this blob: it is not known, and it is now claimed by
    /// the caller (no other worker will seal it). A claimed blob must then be handed to
    /// [`BlobSaver::add_claimed`], or the run must fail.
    pub fn claim(&self, id: &BlobId) -> Result<bool> {
        Ok(!self.is_known(id)? && self.ids().insert(*id))
    }

    /// Number of ids held (for tests of the memory bound).
    pub fn len(&self) -> usize {
        self.ids().len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sealed blob on its way to a pack.
struct Sealed {
    blob_type: BlobType,
    id: BlobId,
    bytes: Vec<u8>,
    raw_len: u32,
}

/// Writes new blobs for one run (a snapshot).
pub struct BlobSaver<'s, 'r> {
    repo: &'r Repository,
    claims: &'s Claims<'r>,
    queue: Option<SyncSender<Sealed>>,
    writer: Option<ScopedJoinHandle<'s, Result<()>>>,
    /// Plaintext bytes of blobs added in this run.
    pub data_added: u64,
    /// Stored bytes of blobs added in this run.
    pub data_added_packed: u64,
}

impl<'s, 'r: 's> BlobSaver<'s, 'r> {
    /// Creates the claims shared by a run's workers (see [`BlobSaver::start`]).
    pub fn claims(repo: &'r Repository) -> Claims<'r> {
        Claims {
            repo,
            ids: Mutex::new(HashSet::new()),
        }
    }

    /// Starts the pack writer on a thread of `scope`.
    pub fn start(repo: &'r Repository, claims: &'s Claims<'r>, scope: &'s Scope<'s, '_>) -> Self {
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let writer = std::thread::Builder::new()
            .name("pack writer".into())
            .spawn_scoped(scope, move || write_packs(repo, claims, rx))
            .expect("spawning the pack writer thread");
        BlobSaver {
            repo,
            claims,
            queue: Some(tx),
            writer: Some(writer),
            data_added: 0,
            data_added_packed: 0,
        }
    }

    /// True when the blob is already stored (indexed, or added in this run).
    pub fn is_known(&self, id: &BlobId) -> Result<bool> {
        self.claims.is_known(id)
    }

    /// Queues a sealed blob that the caller claimed (see [`Claims::claim`]) for a pack.
    pub fn add_claimed(
        &mut self,
        t: BlobType,
        id: BlobId,
        sealed: Vec<u8>,
        raw_len: usize,
    ) -> Result<()> {
        self.data_added += raw_len as u64;
        self.data_added_packed += sealed.len() as u64;
        let blob = Sealed {
            blob_type: t,
            id,
            bytes: sealed,
            raw_len: raw_len as u32,
        };
        let sent = self.queue.as_ref().map(|q| q.send(blob).is_ok());
        if sent != Some(true) {
            // The writer stopped: its error says why.
            return Err(self.stop().err().unwrap_or_else(|| {
                Error::Invalid("the pack writer stopped before the run ended".into())
            }));
        }
        Ok(())
    }

    /// Adds a copy of a stored blob, sealed bytes as they are (prune's repack). Not deduplicated
    /// against the index, which still lists the copy being replaced.
    pub fn add_copy(
        &mut self,
        t: BlobType,
        id: BlobId,
        sealed: Vec<u8>,
        raw_len: usize,
    ) -> Result<()> {
        if !self.claims.ids().insert(id) {
            return Ok(());
        }
        self.add_claimed(t, id, sealed, raw_len)
    }

    /// Hashes, seals and adds one blob (used for trees and small inputs); returns its id.
    pub fn save(&mut self, t: BlobType, data: &[u8]) -> Result<BlobId> {
        self.save_new(t, data).map(|(id, _)| id)
    }

    /// Like [`save`](Self::save), and also tells whether this call stored the blob (`false`:
    /// it was stored already, or claimed earlier in this run), for callers that count
    /// what they sent.
    pub fn save_new(&mut self, t: BlobType, data: &[u8]) -> Result<(BlobId, bool)> {
        let id = self.repo.key().blob_id(data);
        if !self.claims.claim(&id)? {
            return Ok((id, false));
        }
        let sealed = seal_blob(
            self.repo.key(),
            t,
            &id,
            data,
            self.repo.config().compression,
        );
        self.add_claimed(t, id, sealed, data.len())?;
        Ok((id, true))
    }

    fn stop(&mut self) -> Result<()> {
        self.queue = None;
        match self.writer.take() {
            Some(w) => w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => Ok(()),
        }
    }

    /// Stores the open packs and the index for everything added. After this returns, every
    /// blob added is durable and indexed, so a snapshot may reference it.
    pub fn finish(mut self) -> Result<()> {
        self.stop()
    }
}

impl Drop for BlobSaver<'_, '_> {
    fn drop(&mut self) {
        // On an early return the queue closes: the writer stores its open packs and their
        // index as at a normal end, and is joined by the scope. (Packs of a writer that
        // failed, or was killed, before indexing them are adopted by the next run.)
        self.queue = None;
    }
}

/// The pack writer's loop: fills one pack per blob type, stores each when full, and writes an
/// index file every few packs. Runs until the queue closes.
fn write_packs(repo: &Repository, claims: &Claims<'_>, rx: Receiver<Sealed>) -> Result<()> {
    let backend = repo.backend();
    let mut open: [Option<PackWriter<'_>>; 2] = [None, None];
    let mut pending = IndexFile::default();
    let mut pending_blobs = 0usize;
    let pack_size = repo.config().pack_size as usize;
    let close = |w: PackWriter<'_>,
                 pending: &mut IndexFile,
                 pending_blobs: &mut usize,
                 t: BlobType|
     -> Result<()> {
        // 1. the pack is durable ...
        let (id, size, header) = w.finish(repo.key())?;
        *pending_blobs += header.entries.len();
        pending.packs.push(IndexPack {
            id,
            size,
            blob_type: t,
            blobs: header.entries,
        });
        Ok(())
    };
    let flush_index = |pending: &mut IndexFile, pending_blobs: &mut usize| -> Result<()> {
        if pending.packs.is_empty() {
            return Ok(());
        }
        // 2. ... before an index names it; then the cache knows its blobs and the run's set
        // may forget them.
        repo.save_index(pending)?;
        let mut ids = claims.ids();
        for p in &pending.packs {
            for b in &p.blobs {
                ids.remove(&b.id);
            }
        }
        drop(ids);
        *pending = IndexFile::default();
        *pending_blobs = 0;
        Ok(())
    };
    for blob in rx {
        let slot = &mut open[blob.blob_type as usize];
        if slot.is_none() {
            *slot = Some(PackWriter::new(backend, blob.blob_type)?);
        }
        let w = slot.as_mut().expect("invariant: opened above");
        w.add(blob.id, &blob.bytes, blob.raw_len)?;
        drop(blob.bytes);
        if w.len() >= pack_size || w.count() >= BLOBS_PER_PACK {
            let w = slot.take().expect("invariant: open");
            close(w, &mut pending, &mut pending_blobs, blob.blob_type)?;
            if pending.packs.len() >= PACKS_PER_INDEX || pending_blobs >= BLOBS_PER_INDEX {
                flush_index(&mut pending, &mut pending_blobs)?;
            }
        }
    }
    for (t, slot) in [BlobType::Data, BlobType::Tree].into_iter().zip(open) {
        if let Some(w) = slot {
            close(w, &mut pending, &mut pending_blobs, t)?;
        }
    }
    flush_index(&mut pending, &mut pending_blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FileKind;
    use crate::crypto::keyfile::KdfParams;
    use crate::repo::InitOptions;

    /// A repository at `dir/repo` with its cache at `dir/cache`.
    fn repo_in(dir: &std::path::Path) -> Repository {
        let opts = InitOptions {
            kdf: KdfParams::CHEAP,
            ..InitOptions::default()
        };
        Repository::init(&dir.join("repo"), b"pw", &opts, &dir.join("cache")).unwrap()
    }

    #[test]
    fn memory_of_a_run_stays_bounded_and_everything_is_indexed() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo_in(d.path());
        let claims = BlobSaver::claims(&repo);
        let n = 3 * BLOBS_PER_INDEX;
        let mut ids = Vec::new();
        std::thread::scope(|s| {
            let mut saver = BlobSaver::start(&repo, &claims, s);
            for i in 0..n {
                ids.push(
                    saver
                        .save(BlobType::Data, format!("blob {i}").as_bytes())
                        .unwrap(),
                );
                // The writer trims what it indexed; allow for what is still queued.
                assert!(
                    claims.len() <= BLOBS_PER_INDEX + BLOBS_PER_PACK + WRITER_QUEUE + 1,
                    "{} ids held in memory",
                    claims.len()
                );
            }
            let again = saver.save(BlobType::Data, b"blob 7").unwrap();
            assert_eq!(again, ids[7]);
            let expected: u64 = (0..n).map(|i| format!("blob {i}").len() as u64).sum();
            assert_eq!(saver.data_added, expected, "a repeated blob is stored once");
            saver.finish().unwrap();
        });
        assert!(claims.is_empty(), "everything added was indexed");
        for id in [ids[0], ids[n / 2], ids[n - 1]] {
            assert_eq!(repo.load_blob(&id).unwrap().0, BlobType::Data);
        }
        assert!(repo.backend().list(FileKind::Index).unwrap().len() >= 2);
        // Nothing was left in `packs/` by the streamed writes.
        let stray: Vec<_> = std::fs::read_dir(d.path().join("repo/packs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_file())
            .collect();
        assert!(stray.is_empty());
    }

    #[test]
    fn a_failing_writer_fails_the_run() {
        let d = tempfile::tempdir().unwrap();
        let repo = repo_in(d.path());
        let root = d.path().join("repo");
        // The writer cannot create its pack file.
        std::fs::remove_dir_all(root.join("packs")).unwrap();
        let claims = BlobSaver::claims(&repo);
        std::thread::scope(|s| {
            let mut saver = BlobSaver::start(&repo, &claims, s);
            let mut failed = false;
            for i in 0..1000 {
                if saver
                    .save(BlobType::Data, format!("{i}").as_bytes())
                    .is_err()
                {
                    failed = true;
                    break;
                }
            }
            assert!(failed || saver.finish().is_err());
        });
    }
}
