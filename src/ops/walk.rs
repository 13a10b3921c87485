//! Walking a snapshot's trees and finding a path in them.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// Visits every node below the tree `root` depth-first in name order, with its path inside
/// the snapshot (starting with `/`). `f` returns whether to descend into a directory.
pub fn walk(
    repo: &Repository,
    root: &BlobId,
    f: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    walk_from(repo, root, Path::new("/"), f)
}

/// Like [`walk`], with node paths starting at `base`.
pub fn walk_from(
    repo: &Repository,
    tree: &BlobId,
    base: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let t = repo.load_tree(tree)?;
    for n in &t.nodes {
        let p = base.join(std::ffi::OsStr::from_bytes(&n.name));
        if f(&p, n)?
            && n.kind == NodeKind::Dir
            && let Some(sub) = &n.subtree
        {
            walk_from(repo, sub, &p, f)?;
        }
    }
    Ok(())
}

/// The node at `path` inside the snapshot with root tree `root`; `None` for the root itself.
pub fn find(repo: &Repository, root: &BlobId, path: &Path) -> Result<Option<Node>> {
    let mut tree_id = *root;
    let mut node: Option<Node> = None;
    let mut walked = PathBuf::from("/");
    for c in path.components() {
        let name = match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            _ => {
                return Err(Error::Invalid(format!(
                    "{} must be a plain path inside the snapshot",
                    path.display()
                )));
            }
        };
        if let Some(n) = &node {
            tree_id = n
                .subtree
                .filter(|_| n.kind == NodeKind::Dir)
                .ok_or_else(|| Error::PathNotInSnapshot(path.display().to_string()))?;
        }
        walked.push(name);
        let t = repo.load_tree(&tree_id)?;
        node = Some(t.get(name.as_bytes()).cloned().ok_or_else(|| {
            Error::PathNotInSnapshot(if walked.as_path() == path {
                path.display().to_string()
            } else {
                format!("{}: no {}", path.display(), walked.display())
            })
        })?);
    }
    Ok(node)
}
