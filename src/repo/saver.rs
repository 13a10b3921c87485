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

/// Packs per index file written during a run.
const PACKS_PER_INDEX: usize = 32;

/// Writes new blobs for one run (a snapshot).
pub struct BlobSaver<'r> {
    repo: &'r Repository,
    data: PackBuilder,
    tree: PackBuilder,
    seen: HashSet<BlobId>,
    pending: IndexFile,
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
        if builder.len() >= self.repo.config().pack_size as usize {
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
        if self.pending.packs.len() >= PACKS_PER_INDEX {
            self.flush_index()?;
        }
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        if !self.pending.packs.is_empty() {
            // 2. ... before an index names it.
            self.repo.save_index(&self.pending)?;
            self.pending = IndexFile::default();
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
