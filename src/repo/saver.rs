//! Collects new blobs into packs and packs into index files, in the order that keeps a crash
//! harmless: a pack is stored before any index names it, and index entries reach the cache
//! only with their index file.
//!
//! Packs are written on their own thread, streamed to the backend as blobs arrive, so hashing,
//! compressing and sealing never wait for a write or an fsync, and no pack is held in memory.
//! Workers on other threads decide which blobs to seal through [`Claims`]: a blob is sealed by
//! the first worker that claims it, once per run.

use std::collections::{HashSet, VecDeque};
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

    /// [`is_known`](Self::is_known) for each of `ids`, the cache asked once for the lot.
    pub fn known_each(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        // The set first, as in `is_known`.
        let mut known: Vec<bool> = {
            let set = self.ids();
            ids.iter().map(|id| set.contains(id)).collect()
        };
        let rest: Vec<BlobId> = ids
            .iter()
            .zip(&known)
            .filter(|(_, k)| !**k)
            .map(|(id, _)| *id)
            .collect();
        let mut found = self.repo.cache().contains_each(&rest)?.into_iter();
        for k in known.iter_mut().filter(|k| !**k) {
            *k = found.next().unwrap_or(false);
        }
        Ok(known)
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

    /// See [`Claims::known_each`].
    pub fn known_each(&self, ids: &[BlobId]) -> Result<Vec<bool>> {
        self.claims.known_each(ids)
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
/// index file every few packs. Runs until the queue closes. Where the store takes several
/// packs at once ([`Backend::uploads`](crate::backend::Backend::uploads), a server), each
/// full pack is stored on a thread of its own while the next fills, up to that many at
/// once; an index file is written only once every pack it names is stored.
fn write_packs(repo: &Repository, claims: &Claims<'_>, rx: Receiver<Sealed>) -> Result<()> {
    let backend = repo.backend();
    let uploads = backend.uploads().max(1);
    let pack_size = repo.config().pack_size as usize;
    std::thread::scope(|scope| {
        let mut open: [Option<PackWriter<'_>>; 2] = [None, None];
        let mut packs = Packs {
            repo,
            claims,
            pending: IndexFile::default(),
            pending_blobs: 0,
            in_flight: VecDeque::new(),
        };
        let run = (|| {
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
                    packs.close(scope, w, blob.blob_type, uploads)?;
                    if packs.pending.packs.len() >= PACKS_PER_INDEX
                        || packs.pending_blobs >= BLOBS_PER_INDEX
                    {
                        packs.flush_index()?;
                    }
                }
            }
            for (t, slot) in [BlobType::Data, BlobType::Tree].into_iter().zip(open) {
                if let Some(w) = slot {
                    packs.close(scope, w, t, uploads)?;
                }
            }
            packs.flush_index()
        })();
        // On failure the uploads still running are waited for (the scope would anyway);
        // their packs are adopted by the next run.
        for (h, _) in packs.in_flight.drain(..) {
            let _ = h.join();
        }
        run
    })
}

/// An upload of a pack on its own thread, with the type of its blobs.
type Upload<'scope> = (
    ScopedJoinHandle<'scope, Result<(crate::id::PackId, u64, crate::repo::pack::PackHeader)>>,
    BlobType,
);

/// The pack writer's stored packs not yet in an index file, and its uploads in flight.
struct Packs<'a, 'r, 'scope> {
    repo: &'a Repository,
    claims: &'a Claims<'r>,
    pending: IndexFile,
    pending_blobs: usize,
    in_flight: VecDeque<Upload<'scope>>,
}

impl<'env, 'scope> Packs<'env, '_, 'scope> {
    /// Stores a full pack: here, or on a thread of its own when the store takes `uploads`
    /// at once (waiting first for the oldest when that many are in flight).
    fn close(
        &mut self,
        scope: &'scope Scope<'scope, 'env>,
        w: PackWriter<'env>,
        t: BlobType,
        uploads: usize,
    ) -> Result<()> {
        let key = self.repo.key();
        if uploads == 1 {
            let stored = w.finish(key)?;
            return self.stored(stored, t);
        }
        while self.in_flight.len() >= uploads {
            self.join_oldest()?;
        }
        let h = std::thread::Builder::new()
            .name("pack upload".into())
            .spawn_scoped(scope, move || w.finish(key))
            .map_err(|e| Error::Invalid(format!("cannot start a pack upload: {e}")))?;
        self.in_flight.push_back((h, t));
        Ok(())
    }

    /// A pack is durable (step 1): it goes in the next index file.
    fn stored(
        &mut self,
        (id, size, header): (crate::id::PackId, u64, crate::repo::pack::PackHeader),
        t: BlobType,
    ) -> Result<()> {
        self.pending_blobs += header.entries.len();
        self.pending.packs.push(IndexPack {
            id,
            size,
            blob_type: t,
            blobs: header.entries,
        });
        Ok(())
    }

    fn join_oldest(&mut self) -> Result<()> {
        let Some((h, t)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let stored = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        self.stored(stored, t)
    }

    /// Once every pack it names is durable, the index file is written (step 2); then the
    /// cache knows their blobs and the run's set may forget them.
    fn flush_index(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.join_oldest()?;
        }
        if self.pending.packs.is_empty() {
            return Ok(());
        }
        self.repo.save_index(&self.pending)?;
        let mut ids = self.claims.ids();
        for p in &self.pending.packs {
            for b in &p.blobs {
                ids.remove(&b.id);
            }
        }
        drop(ids);
        self.pending = IndexFile::default();
        self.pending_blobs = 0;
        Ok(())
    }
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

    /// A store that takes 3 packs at once and is slow to take each, counting how many
    /// pack writes overlap.
    struct Slow {
        inner: std::sync::Arc<dyn crate::backend::Backend>,
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        indexed_early: std::sync::atomic::AtomicBool,
    }

    impl crate::backend::Backend for Slow {
        fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
            use std::sync::atomic::Ordering::SeqCst;
            if kind == FileKind::Index && self.now.load(SeqCst) > 0 {
                self.indexed_early.store(true, SeqCst);
            }
            if kind != FileKind::Pack {
                return self.inner.put(kind, name, data);
            }
            let n = self.now.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(n, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
            let r = self.inner.put(kind, name, data);
            self.now.fetch_sub(1, SeqCst);
            r
        }
        fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
            self.inner.get(kind, name)
        }
        fn get_range(&self, kind: FileKind, name: &str, o: u64, l: u64) -> Result<Vec<u8>> {
            self.inner.get_range(kind, name, o, l)
        }
        fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
            self.inner.list(kind)
        }
        fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
            self.inner.delete(kind, name)
        }
        fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
            self.inner.stat(kind, name)
        }
        fn uploads(&self) -> usize {
            3
        }
    }

    #[test]
    fn a_store_that_takes_several_packs_gets_them_at_once_and_indexes_after() {
        use std::sync::atomic::Ordering::SeqCst;
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            kdf: KdfParams::CHEAP,
            pack_size: 1 << 16,
            ..InitOptions::default()
        };
        let slow = std::sync::Arc::new(std::sync::OnceLock::new());
        let got = slow.clone();
        let repo = Repository::init(&d.path().join("repo"), b"pw", &opts, &d.path().join("c"))
            .unwrap()
            .with_backend(move |inner| {
                let s = std::sync::Arc::new(Slow {
                    inner,
                    now: Default::default(),
                    most: Default::default(),
                    indexed_early: Default::default(),
                });
                let _ = got.set(s.clone());
                s
            });
        let claims = BlobSaver::claims(&repo);
        let mut ids = Vec::new();
        std::thread::scope(|s| {
            let mut saver = BlobSaver::start(&repo, &claims, s);
            for i in 0..40u32 {
                // Incompressible: 40 blobs of 20 kB make a dozen packs of 64 kB.
                let mut x = u64::from(i) + 1;
                let data: Vec<u8> = (0..20_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let (id, _) = saver.save_new(BlobType::Data, &data).unwrap();
                ids.push(id);
            }
            saver.finish().unwrap();
        });
        let slow = slow.get().unwrap();
        assert!(slow.most.load(SeqCst) > 1, "packs were stored one by one");
        assert!(
            slow.most.load(SeqCst) <= 3,
            "more in flight than the store takes"
        );
        assert!(
            !slow.indexed_early.load(SeqCst),
            "an index was written before its packs"
        );
        assert!(claims.is_empty());
        for id in &ids {
            assert_eq!(repo.load_blob(id).unwrap().0, BlobType::Data);
        }
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
