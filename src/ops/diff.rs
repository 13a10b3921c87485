//! `diff`: what changed between two snapshots. Identical subtree ids are skipped without
//! being read — the Merkle structure makes an unchanged directory free to compare.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};

/// One difference.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Change {
    /// `+` added, `-` removed, `M` content changed, `U` metadata only, `T` type changed.
    pub change: String,
    /// Path inside the snapshots.
    pub path: String,
}

fn load(repo: &Repository, id: Option<&BlobId>) -> Result<Tree> {
    match id {
        Some(id) => repo.load_tree(id),
        None => Ok(Tree::default()),
    }
}

/// Lists the changes from tree `a` to tree `b`.
pub fn diff(repo: &Repository, a: &BlobId, b: &BlobId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(a), Some(b), Path::new("/"), &mut out)?;
    Ok(out)
}

fn all(repo: &Repository, n: &Node, p: &Path, sign: &str, out: &mut Vec<Change>) -> Result<()> {
    out.push(Change {
        change: sign.into(),
        path: p.display().to_string(),
    });
    if n.kind == NodeKind::Dir {
        for c in load(repo, n.subtree.as_ref())?.nodes {
            all(repo, &c, &p.join(OsStr::from_bytes(&c.name)), sign, out)?;
        }
    }
    Ok(())
}

fn diff_trees(
    repo: &Repository,
    a: Option<&BlobId>,
    b: Option<&BlobId>,
    base: &Path,
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (load(repo, a)?, load(repo, b)?);
    let (mut i, mut j) = (0, 0);
    while i < ta.nodes.len() || j < tb.nodes.len() {
        let ord = match (ta.nodes.get(i), tb.nodes.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                let x = &ta.nodes[i];
                all(repo, x, &base.join(OsStr::from_bytes(&x.name)), "-", out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let y = &tb.nodes[j];
                all(repo, y, &base.join(OsStr::from_bytes(&y.name)), "+", out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta.nodes[i], &tb.nodes[j]);
                let p = base.join(OsStr::from_bytes(&x.name));
                if x.kind != y.kind {
                    out.push(Change {
                        change: "T".into(),
                        path: p.display().to_string(),
                    });
                } else if x.kind == NodeKind::Dir {
                    if meta_differs(x, y) {
                        out.push(Change {
                            change: "U".into(),
                            path: p.display().to_string(),
                        });
                    }
                    diff_trees(repo, x.subtree.as_ref(), y.subtree.as_ref(), &p, out)?;
                } else if x.content != y.content || x.link_target != y.link_target {
                    out.push(Change {
                        change: "M".into(),
                        path: p.display().to_string(),
                    });
                } else if meta_differs(x, y) {
                    out.push(Change {
                        change: "U".into(),
                        path: p.display().to_string(),
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn meta_differs(x: &Node, y: &Node) -> bool {
    (x.mode, x.uid, x.gid, x.mtime_ns, &x.xattrs) != (y.mode, y.uid, y.gid, y.mtime_ns, &y.xattrs)
}
