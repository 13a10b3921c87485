//! One entry of a directory listing with everything a faithful restore needs.

use minicbor::{Decode, Encode};

use crate::id::BlobId;

/// What kind of filesystem object a node is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(index_only)]
pub enum NodeKind {
    /// Regular file; `content` lists its chunks.
    #[default]
    #[n(0)]
    File,
    /// Directory; `subtree` is its listing.
    #[n(1)]
    Dir,
    /// Symbolic link; `link_target` holds the raw target.
    #[n(2)]
    Symlink,
    /// Named pipe.
    #[n(3)]
    Fifo,
    /// Character device (`rdev`).
    #[n(4)]
    CharDevice,
    /// Block device (`rdev`).
    #[n(5)]
    BlockDevice,
    /// Unix socket (restored as nothing; recorded for completeness).
    #[n(6)]
    Socket,
}

impl NodeKind {
    /// Kind from its encoding number (unknown numbers map to `File`); for tests and tools.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            3 => NodeKind::Fifo,
            4 => NodeKind::CharDevice,
            5 => NodeKind::BlockDevice,
            6 => NodeKind::Socket,
            _ => NodeKind::File,
        }
    }

    /// Short name used by `ls` and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

/// An extended attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Xattr {
    /// Attribute name, raw bytes.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub name: Vec<u8>,
    /// Attribute value, raw bytes.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub value: Vec<u8>,
}

/// A directory entry. Field numbers are the CBOR map keys and never change meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Node {
    /// File name, raw bytes (need not be UTF-8; never contains `/` or NUL).
    #[cbor(n(0), with = "minicbor::bytes")]
    pub name: Vec<u8>,
    /// Object kind.
    #[n(1)]
    pub kind: NodeKind,
    /// Full `st_mode` permission bits including setuid, setgid and sticky (no type bits).
    #[n(2)]
    pub mode: u32,
    /// Owner uid.
    #[n(3)]
    pub uid: u32,
    /// Owner gid.
    #[n(4)]
    pub gid: u32,
    /// Owner name, when known.
    #[n(5)]
    pub user: Option<String>,
    /// Group name, when known.
    #[n(6)]
    pub group: Option<String>,
    /// Modification time, nanoseconds since the epoch.
    #[n(7)]
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch (change detection only).
    #[n(8)]
    pub ctime_ns: i64,
    /// Size in bytes (files) or 0.
    #[n(9)]
    pub size: u64,
    /// Inode number (change detection and hardlinks).
    #[n(10)]
    pub inode: u64,
    /// Device number of the containing filesystem (hardlinks).
    #[n(11)]
    pub device: u64,
    /// Link count; above 1 the file is restored as hardlinks sharing (device, inode).
    #[n(12)]
    pub nlink: u64,
    /// Symlink target, raw bytes.
    #[cbor(n(13), with = "minicbor::bytes")]
    pub link_target: Vec<u8>,
    /// Device number for device nodes.
    #[n(14)]
    pub rdev: u64,
    /// Extended attributes, sorted by name.
    #[n(15)]
    pub xattrs: Vec<Xattr>,
    /// Content chunks in order (files).
    #[n(16)]
    pub content: Vec<BlobId>,
    /// The directory listing (dirs).
    #[n(17)]
    pub subtree: Option<BlobId>,
}

impl Node {
    /// The name as UTF-8, with invalid sequences replaced (for display only).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// True when a file with these stat fields can reuse this node's content unread.
    pub fn unchanged(&self, other: &Node) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.inode == other.inode
    }

    /// A JSON view for `ls --json` and `cat tree`; raw names are shown lossily, with the exact
    /// bytes in hex alongside when they are not UTF-8.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name_lossy(),
            "type": self.kind.as_str(),
            "mode": format!("{:o}", self.mode),
            "uid": self.uid,
            "gid": self.gid,
            "user": self.user,
            "group": self.group,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
            "size": self.size,
            "inode": self.inode,
            "device": self.device,
            "nlink": self.nlink,
        });
        let m = v.as_object_mut().expect("invariant: json object");
        if std::str::from_utf8(&self.name).is_err() {
            m.insert("name_hex".into(), hex::encode(&self.name).into());
        }
        if self.kind == NodeKind::Symlink {
            m.insert(
                "link_target".into(),
                String::from_utf8_lossy(&self.link_target).into(),
            );
        }
        if self.rdev != 0 {
            m.insert("rdev".into(), self.rdev.into());
        }
        if !self.xattrs.is_empty() {
            let x: serde_json::Map<_, _> = self
                .xattrs
                .iter()
                .map(|x| {
                    (
                        String::from_utf8_lossy(&x.name).into_owned(),
                        hex::encode(&x.value).into(),
                    )
                })
                .collect();
            m.insert("xattrs".into(), x.into());
        }
        if !self.content.is_empty() {
            m.insert(
                "content".into(),
                self.content
                    .iter()
                    .map(|c| c.to_hex())
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        if let Some(s) = &self.subtree {
            m.insert("subtree".into(), s.to_hex().into());
        }
        v
    }
}
