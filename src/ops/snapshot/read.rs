//! Reading file content for a snapshot: opening a file as it was examined, and small files
//! read whole, cut and hashed on the worker pool.

use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::chunker::Chunker;
use crate::crypto::MasterKey;
use crate::id::BlobId;
use crate::source::fs::to_ns;
use crate::tree::Node;

/// Files up to this size are read in parallel batches (larger ones are streamed in windows).
pub(super) const SMALL_FILE: u64 = 1 << 20;
/// A batch is stored once it holds this many bytes or files.
pub(super) const SMALL_BATCH_BYTES: u64 = 32 << 20;
pub(super) const SMALL_BATCH_FILES: usize = 2048;

/// A small file waiting for its batch.
pub(super) struct SmallFile {
    pub(super) path: PathBuf,
    pub(super) node: Node,
    /// The parent snapshot had a file at this path (counted as changed, not new).
    pub(super) changed: bool,
}

/// A small file's content, cut and hashed.
pub(super) struct SmallContent {
    pub(super) data: Vec<u8>,
    pub(super) ranges: Vec<Range<usize>>,
    pub(super) ids: Vec<BlobId>,
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

/// Reads a small file whole, cuts and hashes it (runs on the worker pool).
pub(super) fn read_small(
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
    Ok(SmallContent { data, ranges, ids })
}
