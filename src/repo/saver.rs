//! Collects new blobs into packs and packs into index files, in the order that keeps a crash
//! harmless: a pack is stored before any index names it, and index entries reach the cache
//! only with their index file.

use std::collections::HashSet;

use crate::backend::FileKind;
use crate::error::Result;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::PackBuilder;

/// An index file is written after this many packs or blob entries, whichever comes first.
/// Once written, its blobs are found through the cache, so the in-memory set of this run's
/// blobs stays bounded however much the run stores.
const PACKS_PER_INDEX: usize = 32;
const BLOBS_PER_INDEX: usize = 50_000;
/// A pack is closed at the configured size or at this many blobs (tiny blobs would otherwise
/// make huge headers and keep many ids in memory).
const BLOBS_PER_PACK: usize = 20_000;

/// Writes new blobs for one run (a snapshot).
pub struct BlobSaver<'r> {
    repo: &'r Repository,
    data: PackBuilder,
    tree: PackBuilder,
    /// Blobs of this run not yet findable through the cache (in open packs or the pending index).
    seen: HashSet<BlobId>,
    pending: IndexFile,
    pending_blobs: usize,
    /// Plaintext bytes of blobs added in this run.
    pub data_added: u64,
    /// Stored bytes of blobs added in this run.
    pub data_added_packed: u64,
}

impl<'r> BlobSaver<'r> {
    /// A saver writing into `repo`.
    pub fn new(repo: &'r Repository) -> Self {
        BlobSaver {
            repo,
            data: PackBuilder::new(BlobType::Data),
            tree: PackBuilder::new(BlobType::Tree),
            seen: HashSet::new(),
            pending: IndexFile::default(),
            pending_blobs: 0,
            data_added: 0,
            data_added_packed: 0,
        }
    }

    /// True when the blob is already stored (indexed, or added in this run).
    pub fn is_known(&self, id: &BlobId) -> Result<bool> {
        Ok(self.seen.contains(id) || self.repo.cache().contains(id)?)
    }

    /// Adds a sealed blob unless it is already known. Returns true when it was added.
    pub fn add_sealed(
        &mut self,
        t: BlobType,
        id: BlobId,
        sealed: &[u8],
        raw_len: usize,
    ) -> Result<bool> {
        if self.is_known(&id)? {
            return Ok(false);
        }
        self.seen.insert(id);
        self.data_added += raw_len as u64;
        self.data_added_packed += sealed.len() as u64;
        let builder = match t {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        builder.add(id, sealed, raw_len as u32);
        if builder.len() >= self.repo.config().pack_size as usize
            || builder.count() >= BLOBS_PER_PACK
        {
            self.flush_pack(t)?;
        }
        Ok(true)
    }

    /// Hashes, seals and adds one blob (used for trees and small inputs); returns its id.
    pub fn save(&mut self, t: BlobType, data: &[u8]) -> Result<BlobId> {
        let id = self.repo.key().blob_id(data);
        if !self.is_known(&id)? {
            let sealed = seal_blob(
                self.repo.key(),
                t,
                &id,
                data,
                self.repo.config().compression,
            );
            self.add_sealed(t, id, &sealed, data.len())?;
        }
        Ok(id)
    }

    fn flush_pack(&mut self, t: BlobType) -> Result<()> {
        let builder = match t {
            BlobType::Data => &mut self.data,
            BlobType::Tree => &mut self.tree,
        };
        if builder.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(builder, PackBuilder::new(t));
        let pack = full.finish(self.repo.key());
        self.pending_blobs += pack.header.entries.len();
        // 1. the pack is durable ...
        self.repo
            .backend()
            .put(FileKind::Pack, &pack.id.to_hex(), &pack.bytes)?;
        self.pending.packs.push(IndexPack {
            id: pack.id,
            size: pack.bytes.len() as u64,
            blob_type: t,
            blobs: pack.header.entries,
        });
        if self.pending.packs.len() >= PACKS_PER_INDEX || self.pending_blobs >= BLOBS_PER_INDEX {
            self.flush_index()?;
        }
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        if !self.pending.packs.is_empty() {
            // 2. ... before an index names it.
            self.repo.save_index(&self.pending)?;
            self.pending = IndexFile::default();
            self.pending_blobs = 0;
            // What the index names is now in the cache (or, on a dry run, nowhere to be found
            // again, which costs only a little dedup within the run).
            let open: HashSet<BlobId> = self.data.ids().chain(self.tree.ids()).collect();
            self.seen.retain(|id| open.contains(id));
        }
        Ok(())
    }

    /// Stores the open packs and the index for everything added. After this returns, every
    /// blob added is durable and indexed, so a snapshot may reference it.
    pub fn finish(mut self) -> Result<()> {
        self.flush_pack(BlobType::Data)?;
        self.flush_pack(BlobType::Tree)?;
        self.flush_index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyfile::KdfParams;
    use crate::repo::InitOptions;

    #[test]
    fn memory_of_a_run_stays_bounded_and_everything_is_indexed() {
        let d = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        let repo = Repository::init(
            &d.path().join("repo"),
            b"pw",
            &opts,
            &d.path().join("cache"),
        )
        .unwrap();
        let mut saver = BlobSaver::new(&repo);
        let n = 3 * BLOBS_PER_INDEX;
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                saver
                    .save(BlobType::Data, format!("blob {i}").as_bytes())
                    .unwrap(),
            );
        }
        assert!(
            saver.seen.len() <= BLOBS_PER_INDEX + BLOBS_PER_PACK,
            "{} ids held in memory",
            saver.seen.len()
        );
        let again = saver.save(BlobType::Data, b"blob 7").unwrap();
        assert_eq!(again, ids[7]);
        let expected: u64 = (0..n).map(|i| format!("blob {i}").len() as u64).sum();
        assert_eq!(saver.data_added, expected);
        saver.finish().unwrap();
        for id in [ids[0], ids[n / 2], ids[n - 1]] {
            assert_eq!(repo.load_blob(&id).unwrap().0, BlobType::Data);
        }
        assert!(repo.backend().list(FileKind::Index).unwrap().len() >= 2);
    }
}
