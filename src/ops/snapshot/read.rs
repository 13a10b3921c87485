//! Reading file content for a snapshot: opening a file as it was examined, and the work the
//! pool does on content — small files read whole, cut, hashed and sealed in batches; windows
//! of large files hashed and sealed.

use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::chunker::Chunker;
use crate::crypto::MasterKey;
use crate::error::Result;
use crate::id::BlobId;
use crate::repo::blob::{BlobType, seal_blob};
use crate::repo::config::Compression;
use crate::repo::saver::Claims;
use crate::source::fs::to_ns;
use crate::tree::Node;

/// Files up to this size are read whole in batches (larger ones are streamed in windows).
pub(super) const SMALL_FILE: u64 = 1 << 20;
/// A batch of small files is handed to the pool once it holds this many bytes or files:
/// small enough that several batches keep every core busy, large enough that a batch costs
/// more than handing it over.
pub(super) const SMALL_BATCH_BYTES: u64 = 4 << 20;
pub(super) const SMALL_BATCH_FILES: usize = 256;

/// Where a file's content goes: entry `idx` of open directory `dir`.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) dir: usize,
    pub(super) idx: usize,
    pub(super) path: PathBuf,
    pub(super) size: u64,
    /// The parent snapshot had a file at this path (counted as changed, not new).
    pub(super) changed: bool,
    /// (device, inode) of a file with several hard links, whose content other links share.
    pub(super) link: Option<(u64, u64)>,
}

/// A small file waiting for its batch.
pub(super) struct SmallFile {
    pub(super) target: Target,
    pub(super) node: Node,
}

/// How a file's reading ended.
pub(super) enum End {
    /// More windows follow.
    More,
    /// The content is complete.
    Done,
    /// The file was skipped for this reason.
    Failed(String),
}

/// Content ids found for (part of) one file.
pub(super) struct FileOut {
    pub(super) target: Target,
    pub(super) ids: Vec<BlobId>,
    pub(super) bytes: u64,
    pub(super) end: End,
}

/// A blob a job claimed and sealed: id, sealed bytes, plaintext length.
pub(super) type SealedBlob = (BlobId, Vec<u8>, usize);

/// A small file read whole, with its chunk ranges and their ids.
type SmallContent = (Vec<u8>, Vec<Range<usize>>, Vec<BlobId>);

/// The result of one job: content ids per file and the blobs it claimed and sealed.
#[derive(Default)]
pub(super) struct JobOut {
    pub(super) files: Vec<FileOut>,
    pub(super) sealed: Vec<SealedBlob>,
}

/// What a job needs to hash and seal.
#[derive(Clone, Copy)]
pub(super) struct Sealer<'a, 'r> {
    pub(super) key: &'a MasterKey,
    pub(super) chunker: &'a Chunker,
    pub(super) compression: Compression,
    pub(super) claims: &'a Claims<'r>,
}

impl Sealer<'_, '_> {
    /// Seals `data` if this job is the first to claim `id`.
    fn seal_if_new(&self, id: BlobId, data: &[u8]) -> Result<Option<SealedBlob>> {
        Ok(self.claims.claim(&id)?.then(|| {
            (
                id,
                seal_blob(self.key, BlobType::Data, &id, data, self.compression),
                data.len(),
            )
        }))
    }

    /// A window of a large file: its chunks hashed and sealed in parallel.
    pub(super) fn window(
        &self,
        buf: &[u8],
        ranges: &[Range<usize>],
        target: Target,
    ) -> Result<JobOut> {
        let done: Vec<(BlobId, Option<SealedBlob>)> = ranges
            .par_iter()
            .map(|r| {
                let data = &buf[r.clone()];
                let id = self.key.blob_id(data);
                Ok((id, self.seal_if_new(id, data)?))
            })
            .collect::<Result<_>>()?;
        let mut out = JobOut::default();
        let mut ids = Vec::with_capacity(done.len());
        for (id, sealed) in done {
            ids.push(id);
            out.sealed.extend(sealed);
        }
        out.files.push(FileOut {
            target,
            ids,
            bytes: buf.len() as u64,
            end: End::More,
        });
        Ok(out)
    }

    /// A batch of small files, each read whole, cut, hashed and sealed.
    pub(super) fn small_batch(&self, files: Vec<SmallFile>) -> Result<JobOut> {
        let mut out = JobOut::default();
        for f in files {
            match read_small(&f.target.path, &f.node, self.chunker, self.key) {
                Ok((data, ranges, ids)) => {
                    for (r, id) in ranges.iter().zip(&ids) {
                        out.sealed.extend(self.seal_if_new(*id, &data[r.clone()])?);
                    }
                    out.files.push(FileOut {
                        target: f.target,
                        ids,
                        bytes: data.len() as u64,
                        end: End::Done,
                    });
                }
                Err(e) => out.files.push(FileOut {
                    target: f.target,
                    ids: Vec::new(),
                    bytes: 0,
                    end: End::Failed(e.to_string()),
                }),
            }
        }
        Ok(out)
    }
}

/// Opens a file without following a symlink or blocking on a FIFO swapped in since it was
/// examined, and checks that it is still the same regular file (`node`'s inode).
pub(super) fn open_examined(path: &Path, node: &Node) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() || m.ino() != node.inode {
        return Err(std::io::Error::other(
            "replaced by another file while being read; skipped",
        ));
    }
    Ok(f)
}

/// True when the open file still has the size and times it had when examined.
pub(super) fn unchanged_since(f: &std::fs::File, node: &Node, read: u64) -> std::io::Result<bool> {
    let m = f.metadata()?;
    Ok(read == node.size
        && m.len() == node.size
        && to_ns(m.mtime(), m.mtime_nsec()) == node.mtime_ns
        && to_ns(m.ctime(), m.ctime_nsec()) == node.ctime_ns)
}

/// Reads a small file whole, cuts and hashes it.
fn read_small(
    path: &Path,
    node: &Node,
    chunker: &Chunker,
    key: &MasterKey,
) -> std::io::Result<SmallContent> {
    let mut f = open_examined(path, node)?;
    let mut data = Vec::with_capacity(node.size as usize + 1);
    (&mut f).take(node.size + 1).read_to_end(&mut data)?;
    if !unchanged_since(&f, node, data.len() as u64)? {
        return Err(std::io::Error::other(
            "file changed while it was read; skipped",
        ));
    }
    let ranges: Vec<Range<usize>> = chunker.chunks(&data).collect();
    let ids = ranges
        .iter()
        .map(|r| key.blob_id(&data[r.clone()]))
        .collect();
    Ok((data, ranges, ids))
}
