//! `ls` and `dump`: read a snapshot without restoring it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::ops::walk::{find, walk_from};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// Lists the entries below `path` in the snapshot with root `root` (only direct children
/// unless `recursive`). When `path` names a non-directory, lists that one entry.
pub fn ls(
    repo: &Repository,
    root: &BlobId,
    path: &Path,
    recursive: bool,
    f: &mut dyn FnMut(&Path, &Node),
) -> Result<()> {
    let start = match find(repo, root, path)? {
        None => *root,
        Some(n) if n.kind == NodeKind::Dir => n.subtree.ok_or_else(|| {
            Error::corrupt(path.display().to_string(), "directory without subtree")
        })?,
        Some(n) => {
            f(path, &n);
            return Ok(());
        }
    };
    let base = if path.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        Path::new("/").join(path)
    };
    walk_from(repo, &start, &base, &mut |p, n| {
        f(p, n);
        Ok(recursive)
    })
}

/// Writes the content of the file at `path` to `out`, verifying every blob.
pub fn dump(repo: &Repository, root: &BlobId, path: &Path, out: &mut dyn Write) -> Result<u64> {
    let _session = repo.begin_reader_session("dump");
    let node = find(repo, root, path)?
        .ok_or_else(|| Error::Invalid("dump needs a file path, not the snapshot root".into()))?;
    if node.kind != NodeKind::File {
        return Err(Error::Invalid(format!(
            "{} is a {}, not a file",
            path.display(),
            node.kind.as_str()
        )));
    }
    let mut n = 0;
    for id in &node.content {
        let (_, data) = repo.load_blob(id)?;
        out.write_all(&data).map_err(|e| Error::io("<stdout>", e))?;
        n += data.len() as u64;
    }
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    Ok(n)
}
