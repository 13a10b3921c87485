//! Reading filesystem metadata into [`Node`]s.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::tree::{Node, NodeKind, Xattr};

/// Caches uid → user name and gid → group name lookups for one run.
#[derive(Default)]
pub struct Owners {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Owners {
    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
    fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// Nanoseconds since the epoch from a (seconds, nanoseconds) pair.
pub fn to_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The node kind of a file type.
pub fn kind_of(m: &Metadata) -> NodeKind {
    let t = m.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDevice
    } else if t.is_block_device() {
        NodeKind::BlockDevice
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Builds a node (without content or subtree) from `lstat` metadata. Reads the symlink target
/// and extended attributes; a failure there is returned as an error for the caller to report.
///
/// `before` is the same entry in the parent snapshot, if any. When it is the same inode with
/// the same change time, its extended attributes and symlink target are taken from it instead
/// of being read again: setting or removing an extended attribute updates the change time,
/// and a symlink's target cannot change without a new inode. (This is the same trust the
/// unchanged-file check puts in ctime, and it saves two syscalls per entry.)
pub fn node_from_metadata(
    name: &OsStr,
    path: &Path,
    m: &Metadata,
    owners: &mut Owners,
    before: Option<&Node>,
) -> std::io::Result<Node> {
    let kind = kind_of(m);
    let ctime_ns = to_ns(m.ctime(), m.ctime_nsec());
    let same = before.filter(|b| {
        b.kind == kind && b.inode == m.ino() && b.device == m.dev() && b.ctime_ns == ctime_ns
    });
    let link_target = match (kind, same) {
        (NodeKind::Symlink, Some(b)) => b.link_target.clone(),
        (NodeKind::Symlink, None) => std::fs::read_link(path)?
            .into_os_string()
            .as_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    let xattrs = match same {
        Some(b) => b.xattrs.clone(),
        None => read_xattrs(path)?,
    };
    Ok(Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        user: owners.user(m.uid()),
        group: owners.group(m.gid()),
        mtime_ns: to_ns(m.mtime(), m.mtime_nsec()),
        ctime_ns,
        size: if kind == NodeKind::File { m.len() } else { 0 },
        inode: m.ino(),
        device: m.dev(),
        nlink: m.nlink(),
        link_target,
        rdev: if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            m.rdev()
        } else {
            0
        },
        xattrs,
        content: Vec::new(),
        subtree: None,
    })
}

/// Extended attributes of `path` itself (not a symlink's target), sorted by name.
/// Filesystems without xattr support yield none.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names {
        match xattr::get(path, &n) {
            Ok(Some(value)) => out.push(Xattr {
                name: n.as_bytes().to_vec(),
                value,
            }),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
