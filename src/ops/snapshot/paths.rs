//! The source paths of a snapshot: validated, made absolute, and arranged in a trie below `/`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Requested paths as a trie of components below `/`.
#[derive(Default)]
pub(super) struct PathTrie {
    pub(super) requested: bool,
    pub(super) children: BTreeMap<OsString, PathTrie>,
}

/// The absolute form of a source path, as stored in the snapshot.
pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    // Resolve `.`/`..` and symlinks in the parent, but keep a final symlink as itself.
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map_err(|e| Error::io(parent, e))?
            .join(name)),
        _ => std::fs::canonicalize(&abs).map_err(|e| Error::io(&abs, e)),
    }
}

pub(super) fn build_trie(paths: &[PathBuf]) -> PathTrie {
    let mut root = PathTrie::default();
    for p in paths {
        let mut t = &mut root;
        for c in p.components().skip(1) {
            if t.requested {
                break;
            }
            t = t.children.entry(c.as_os_str().to_owned()).or_default();
        }
        if !t.requested {
            t.requested = true;
            t.children.clear();
        }
    }
    root
}

/// Refuses a run whose source paths cannot be examined, before anything is written.
pub fn check_sources(paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Err(Error::Invalid(
            "nothing to snapshot: give at least one path".into(),
        ));
    }
    for p in paths {
        if let Err(e) = std::fs::symlink_metadata(p) {
            return Err(Error::Invalid(format!(
                "source path {} cannot be read: {e}",
                p.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn trie_drops_paths_below_requested_ones() {
        let t = build_trie(&[
            PathBuf::from("/a/b"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/a/d"),
        ]);
        let a = &t.children[OsStr::new("a")];
        assert!(!a.requested);
        assert!(a.children[OsStr::new("b")].requested);
        assert!(a.children[OsStr::new("b")].children.is_empty());
        assert!(a.children[OsStr::new("d")].requested);
    }
}
