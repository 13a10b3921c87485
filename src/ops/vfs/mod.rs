//! A read-only view of the repository as a filesystem, independent of FUSE: inodes, lookups,
//! attributes, listings, links, extended attributes and file reads. `fuse.rs` serves it to
//! the kernel; other front ends (an HTTP file browser) can use it as it is.
//!
//! ```text
//! /                       (or, with a single snapshot, that snapshot's tree)
//! ├── snapshots/<local time>_<short id>/…   the snapshot's paths
//! ├── latest -> snapshots/<newest>
//! ├── ids/<short id> -> ../snapshots/<…>
//! ├── tags/<tag>/<…> -> ../../snapshots/<…>
//! └── hosts/<host>/<…> -> ../../snapshots/<…>
//! ```
//! Inode numbers are derived, not allocated: a hash of the parent's inode and the name, or
//! for a hardlinked file of (snapshot, device, inode), so every link of a file within a
//! snapshot is one inode and listing a directory needs no table. The table holds only the
//! inodes the kernel has looked up, dropped again when it forgets them, so memory follows
//! the kernel's cache, not the repository's size. Trees and opened blobs are LRU caches.
//! The snapshot list is read again when a listing of it is older than a second, so new
//! snapshots appear without remounting.

pub mod content;
pub mod fuse;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::ops::forget::Filter;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::tree::{Node, NodeKind, Tree, Xattr};
use content::{BlobCache, ChunkMap, OpenFile, ReadAhead};

/// The root directory's inode.
pub const ROOT: u64 = 1;
const SNAPSHOTS: u64 = 2;
const IDS: u64 = 3;
const TAGS: u64 = 4;
const HOSTS: u64 = 5;
const LATEST: u64 = 6;

/// How a view is set up.
#[derive(Clone, Debug)]
pub struct VfsOptions {
    /// Show only this snapshot, its tree at the root.
    pub snapshot: Option<SnapshotId>,
    /// Which snapshots appear.
    pub filter: Filter,
    /// Plaintext bytes of opened blobs kept.
    pub blob_cache_bytes: u64,
    /// Plaintext bytes of decoded trees kept.
    pub tree_cache_bytes: u64,
    /// Bytes loaded ahead of a sequential reader.
    pub read_ahead_bytes: u64,
    /// How long a listing of the snapshots is trusted before it is read again.
    pub refresh: Duration,
}

impl Default for VfsOptions {
    fn default() -> Self {
        VfsOptions {
            snapshot: None,
            filter: Filter::default(),
            blob_cache_bytes: content::DEFAULT_CACHE_BYTES,
            tree_cache_bytes: 64 << 20,
            read_ahead_bytes: 16 << 20,
            refresh: Duration::from_secs(1),
        }
    }
}

/// Why an operation failed, as a filesystem reports it.
#[derive(Debug)]
pub enum Fault {
    /// No such entry (ENOENT).
    NotFound,
    /// Not a directory (ENOTDIR).
    NotDir,
    /// Not a symlink, or no such attribute (EINVAL / ENODATA).
    NoData,
    /// The repository could not give the data (EIO); the message names what failed.
    Io(String),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Io(e.to_string())
    }
}

/// A result of the view.
pub type VfsResult<T> = std::result::Result<T, Fault>;

/// What `stat` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Object kind.
    pub kind: NodeKind,
    /// Permission bits with setuid, setgid and sticky.
    pub perm: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (the target's length for a symlink).
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Whether the entry can change (the virtual folders) or never does (snapshot content).
    pub volatile: bool,
}

/// One entry of a listing.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its inode.
    pub ino: u64,
    /// Its kind.
    pub kind: NodeKind,
    /// Its name, raw bytes.
    pub name: Vec<u8>,
}

/// A snapshot as the view shows it.
#[derive(Debug)]
struct Shown {
    id: SnapshotId,
    snap: Snapshot,
    /// `<local time>_<short id>`.
    name: String,
}

/// The snapshots in the view and when they were listed.
struct Listing {
    shown: Vec<Arc<Shown>>,
    by_name: HashMap<String, usize>,
    listed: Option<Instant>,
    known: HashMap<SnapshotId, Arc<Shown>>,
}

/// What an inode is.
#[derive(Clone, Debug)]
enum Inode {
    Root,
    Snapshots,
    Ids,
    Tags,
    Hosts,
    Tag(String),
    Host(String),
    /// A virtual symlink.
    Link(Vec<u8>, i64),
    /// A snapshot's root tree.
    SnapRoot(Arc<Shown>),
    /// An entry inside a snapshot.
    Node {
        snap: Arc<Shown>,
        node: Arc<Node>,
    },
}

struct Live {
    inode: Inode,
    lookups: u64,
}

/// The view. Every method takes `&self` and may run on many threads at once.
pub struct Vfs {
    repo: Arc<Repository>,
    opts: VfsOptions,
    listing: Mutex<Listing>,
    inodes: Mutex<HashMap<u64, Live>>,
    trees: Mutex<content::ByteLru<Arc<Tree>>>,
    maps: Mutex<LruCache<u64, Arc<ChunkMap>>>,
    blobs: Arc<BlobCache>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Listings of open directories: built once at `opendir`, so that the kernel's many
    /// `readdir` calls for a large directory each cost a slice, not a rebuild.
    dirs: Mutex<HashMap<u64, Arc<Vec<Entry>>>>,
    /// Listings of snapshot directories read without a handle, by inode.
    listings: Mutex<LruCache<u64, Arc<Vec<Entry>>>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
    log: Box<dyn Fn(&str) + Send + Sync>,
}

fn hash_ino(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let b = h.finalize();
    let n = u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("invariant: 8 bytes"));
    // Above every fixed inode, never 0 or the kernel's "unknown" -1.
    (n | 1 << 62) & !(1 << 63)
}

impl Vfs {
    /// A view of `repo`; `log` receives one line per read that failed.
    pub fn new(
        repo: Arc<Repository>,
        opts: VfsOptions,
        log: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Vfs> {
        let vfs = Vfs {
            blobs: Arc::new(BlobCache::new(opts.blob_cache_bytes)),
            repo,
            listing: Mutex::new(Listing {
                shown: Vec::new(),
                by_name: HashMap::new(),
                listed: None,
                known: HashMap::new(),
            }),
            inodes: Mutex::new(HashMap::new()),
            trees: Mutex::new((LruCache::unbounded(), 0)),
            maps: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(1024).expect("invariant: nonzero"),
            )),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            listings: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(64).expect("invariant: nonzero"),
            )),
            next_handle: AtomicU64::new(1),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            log: Box::new(log),
            opts,
        };
        vfs.refresh(true)?;
        if let Some(id) = vfs.opts.snapshot
            && !vfs.lock_listing().known.contains_key(&id)
        {
            return Err(Error::Invalid(format!(
                "snapshot {} is not there",
                id.short()
            )));
        }
        Ok(vfs)
    }

    /// Blobs read from the repository so far.
    pub fn blob_loads(&self) -> u64 {
        self.blobs.loads()
    }

    fn lock_listing(&self) -> std::sync::MutexGuard<'_, Listing> {
        self.listing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the snapshot list again when it is older than the refresh interval (or `force`);
    /// new snapshots' index files are read first, so their blobs are found.
    fn refresh(&self, force: bool) -> Result<()> {
        let mut l = self.lock_listing();
        if !force && l.listed.is_some_and(|t| t.elapsed() < self.opts.refresh) {
            return Ok(());
        }
        let ids = self.repo.snapshot_ids()?;
        if ids.iter().any(|id| !l.known.contains_key(id)) {
            self.repo.sync_index()?;
        }
        let mut known = HashMap::new();
        for id in ids {
            if let Some(s) = l.known.get(&id) {
                known.insert(id, s.clone());
                continue;
            }
            match self.repo.load_snapshot(&id) {
                Ok(snap) => {
                    let time = snap.time.with_timezone(&chrono::Local);
                    let name = format!("{}_{}", time.format("%Y-%m-%dT%H:%M:%S"), id.short());
                    known.insert(id, Arc::new(Shown { id, snap, name }));
                }
                // Removed between the listing and the read (a forget): not shown.
                Err(Error::Missing(_)) => {}
                Err(e) => (self.log)(&format!("snapshot {} is not shown: {e}", id.short())),
            }
        }
        let mut shown: Vec<Arc<Shown>> = known
            .values()
            .filter(|s| self.opts.filter.matches(&s.snap))
            .cloned()
            .collect();
        shown.sort_by(|a, b| (a.snap.time, &a.name).cmp(&(b.snap.time, &b.name)));
        l.by_name = shown
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        l.shown = shown;
        l.known = known;
        l.listed = Some(Instant::now());
        Ok(())
    }

    fn shown(&self) -> VfsResult<Vec<Arc<Shown>>> {
        self.refresh(false)?;
        Ok(self.lock_listing().shown.clone())
    }

    fn shown_named(&self, name: &[u8]) -> VfsResult<Arc<Shown>> {
        self.refresh(false)?;
        let l = self.lock_listing();
        let name = std::str::from_utf8(name).map_err(|_| Fault::NotFound)?;
        l.by_name
            .get(name)
            .map(|&i| l.shown[i].clone())
            .ok_or(Fault::NotFound)
    }

    fn inode(&self, ino: u64) -> VfsResult<Inode> {
        match ino {
            ROOT => {
                if let Some(id) = self.opts.snapshot {
                    let l = self.lock_listing();
                    return l
                        .known
                        .get(&id)
                        .cloned()
                        .map(Inode::SnapRoot)
                        .ok_or(Fault::NotFound);
                }
                return Ok(Inode::Root);
            }
            SNAPSHOTS => return Ok(Inode::Snapshots),
            IDS => return Ok(Inode::Ids),
            TAGS => return Ok(Inode::Tags),
            HOSTS => return Ok(Inode::Hosts),
            _ => {}
        }
        let g = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        g.get(&ino).map(|l| l.inode.clone()).ok_or(Fault::NotFound)
    }

    fn remember(&self, ino: u64, inode: Inode) {
        if ino < LATEST {
            return;
        }
        let mut g = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        // The newest meaning wins: `latest` keeps its inode but points elsewhere over time.
        let l = g.entry(ino).or_insert(Live {
            inode: inode.clone(),
            lookups: 0,
        });
        l.inode = inode;
        l.lookups += 1;
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut g = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = g.get_mut(&ino) {
            l.lookups = l.lookups.saturating_sub(n);
            if l.lookups == 0 {
                g.remove(&ino);
            }
        }
    }

    /// Number of inodes held for the kernel (for tests: memory follows this).
    pub fn live_inodes(&self) -> usize {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn tree(&self, id: &BlobId) -> VfsResult<Arc<Tree>> {
        {
            let mut g = self.trees.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, _)) = g.0.get(id) {
                return Ok(t.clone());
            }
        }
        let t = Arc::new(self.repo.load_tree(id).map_err(|e| {
            (self.log)(&format!("cannot read tree {}: {e}", id.short()));
            Fault::from(e)
        })?);
        // What a decoded node costs: the struct, its heap parts, and the allocator's share.
        let size = t
            .nodes
            .iter()
            .map(|n| {
                std::mem::size_of::<Node>()
                    + 64
                    + n.name.len()
                    + n.link_target.len()
                    + n.user.as_ref().map_or(0, |u| u.len() + 16)
                    + n.group.as_ref().map_or(0, |g| g.len() + 16)
                    + 32 * n.content.len()
                    + n.xattrs
                        .iter()
                        .map(|x| x.name.len() + x.value.len() + 64)
                        .sum::<usize>()
            })
            .sum::<usize>() as u64;
        let mut g = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        g.0.put(*id, (t.clone(), size));
        g.1 += size;
        while g.1 > self.opts.tree_cache_bytes && g.0.len() > 1 {
            let Some((_, (_, n))) = g.0.pop_lru() else {
                break;
            };
            g.1 -= n;
        }
        Ok(t)
    }

    /// The listing of a directory inode: its tree and the snapshot it is in.
    fn dir_tree(&self, inode: &Inode) -> VfsResult<Option<(Arc<Shown>, Arc<Tree>)>> {
        match inode {
            Inode::SnapRoot(s) => Ok(Some((s.clone(), self.tree(&s.snap.tree)?))),
            Inode::Node { snap, node } if node.kind == NodeKind::Dir => {
                let sub = node.subtree.ok_or_else(|| {
                    Fault::Io(format!("directory {} has no subtree", node.name_lossy()))
                })?;
                Ok(Some((snap.clone(), self.tree(&sub)?)))
            }
            _ => Ok(None),
        }
    }

    fn child_ino(parent: u64, snap: &Shown, n: &Node) -> u64 {
        if n.kind == NodeKind::File && n.nlink > 1 {
            hash_ino(&[
                b"hardlink",
                &snap.id.0,
                &n.device.to_le_bytes(),
                &n.inode.to_le_bytes(),
            ])
        } else {
            hash_ino(&[b"node", &parent.to_le_bytes(), &n.name])
        }
    }

    fn link_ino(parent: u64, name: &[u8]) -> u64 {
        hash_ino(&[b"link", &parent.to_le_bytes(), name])
    }

    fn snap_ino(s: &Shown) -> u64 {
        hash_ino(&[b"snapshot", &s.id.0])
    }

    fn newest_time(&self) -> i64 {
        let l = self.lock_listing();
        l.shown.last().map(|s| to_ns(&s.snap)).unwrap_or(0)
    }

    fn virtual_dir(&self, ino: u64, subdirs: u32) -> Attr {
        Attr {
            ino,
            kind: NodeKind::Dir,
            perm: 0o555,
            nlink: 2 + subdirs,
            uid: self.uid,
            gid: self.gid,
            size: 0,
            mtime_ns: self.newest_time(),
            ctime_ns: self.newest_time(),
            rdev: 0,
            volatile: true,
        }
    }

    fn attr(&self, ino: u64, inode: &Inode) -> VfsResult<Attr> {
        Ok(match inode {
            Inode::Root => self.virtual_dir(ino, 4),
            Inode::Snapshots => {
                let n = self.shown()?.len() as u32;
                self.virtual_dir(ino, n)
            }
            Inode::Ids => self.virtual_dir(ino, 0),
            Inode::Tags => {
                let n = self.tag_names()?.len() as u32;
                self.virtual_dir(ino, n)
            }
            Inode::Hosts => {
                let n = self.host_names()?.len() as u32;
                self.virtual_dir(ino, n)
            }
            Inode::Tag(_) | Inode::Host(_) => self.virtual_dir(ino, 0),
            Inode::Link(target, time) => Attr {
                ino,
                kind: NodeKind::Symlink,
                perm: 0o777,
                nlink: 1,
                uid: self.uid,
                gid: self.gid,
                size: target.len() as u64,
                mtime_ns: *time,
                ctime_ns: *time,
                rdev: 0,
                volatile: true,
            },
            Inode::SnapRoot(s) => {
                // A tree that cannot be read costs only its link count here: listing the
                // folder above must not fail for it (entering it reports the error).
                let n = self.tree(&s.snap.tree).map(|t| subdirs(&t)).unwrap_or(0);
                Attr {
                    mtime_ns: to_ns(&s.snap),
                    ctime_ns: to_ns(&s.snap),
                    volatile: false,
                    ..self.virtual_dir(ino, n)
                }
            }
            Inode::Node { node, .. } => {
                let nlink = if node.kind == NodeKind::Dir {
                    let t = self.dir_tree(inode).ok().flatten();
                    2 + t.map(|(_, t)| subdirs(&t)).unwrap_or(0)
                } else {
                    node.nlink.clamp(1, u32::MAX.into()) as u32
                };
                Attr {
                    ino,
                    kind: node.kind,
                    perm: node.mode & 0o7777,
                    nlink,
                    uid: node.uid,
                    gid: node.gid,
                    size: match node.kind {
                        NodeKind::File => node.size,
                        NodeKind::Symlink => node.link_target.len() as u64,
                        _ => 0,
                    },
                    mtime_ns: node.mtime_ns,
                    ctime_ns: node.ctime_ns,
                    rdev: node.rdev,
                    volatile: false,
                }
            }
        })
    }

    fn tag_names(&self) -> VfsResult<BTreeMap<String, Vec<Arc<Shown>>>> {
        let mut m: BTreeMap<String, Vec<Arc<Shown>>> = BTreeMap::new();
        for s in self.shown()? {
            for t in &s.snap.tags {
                if valid_name(t) {
                    m.entry(t.clone()).or_default().push(s.clone());
                }
            }
        }
        Ok(m)
    }

    fn host_names(&self) -> VfsResult<BTreeMap<String, Vec<Arc<Shown>>>> {
        let mut m: BTreeMap<String, Vec<Arc<Shown>>> = BTreeMap::new();
        for s in self.shown()? {
            if valid_name(&s.snap.hostname) {
                m.entry(s.snap.hostname.clone())
                    .or_default()
                    .push(s.clone());
            }
        }
        Ok(m)
    }

    /// The entries of a directory, without `.` and `..`.
    fn children(&self, ino: u64, inode: &Inode) -> VfsResult<Vec<(Entry, Inode)>> {
        let link = |parent: u64, name: &str, target: String, time: i64| {
            (
                Entry {
                    ino: Self::link_ino(parent, name.as_bytes()),
                    kind: NodeKind::Symlink,
                    name: name.as_bytes().to_vec(),
                },
                Inode::Link(target.into_bytes(), time),
            )
        };
        let dir = |ino: u64, name: &str, inode: Inode| {
            (
                Entry {
                    ino,
                    kind: NodeKind::Dir,
                    name: name.as_bytes().to_vec(),
                },
                inode,
            )
        };
        Ok(match inode {
            Inode::Root => {
                let mut v = vec![
                    dir(SNAPSHOTS, "snapshots", Inode::Snapshots),
                    dir(IDS, "ids", Inode::Ids),
                    dir(TAGS, "tags", Inode::Tags),
                    dir(HOSTS, "hosts", Inode::Hosts),
                ];
                if let Some(s) = self.shown()?.last() {
                    let mut l = link(
                        ROOT,
                        "latest",
                        format!("snapshots/{}", s.name),
                        to_ns(&s.snap),
                    );
                    l.0.ino = LATEST;
                    v.push(l);
                }
                v
            }
            Inode::Snapshots => self
                .shown()?
                .into_iter()
                .map(|s| dir(Self::snap_ino(&s), &s.name.clone(), Inode::SnapRoot(s)))
                .collect(),
            Inode::Ids => self
                .shown()?
                .iter()
                .map(|s| {
                    link(
                        ino,
                        &s.id.short(),
                        format!("../snapshots/{}", s.name),
                        to_ns(&s.snap),
                    )
                })
                .collect(),
            Inode::Tags => self
                .tag_names()?
                .into_keys()
                .map(|t| dir(hash_ino(&[b"tag", t.as_bytes()]), &t.clone(), Inode::Tag(t)))
                .collect(),
            Inode::Hosts => self
                .host_names()?
                .into_keys()
                .map(|h| {
                    dir(
                        hash_ino(&[b"host", h.as_bytes()]),
                        &h.clone(),
                        Inode::Host(h),
                    )
                })
                .collect(),
            Inode::Tag(t) | Inode::Host(t) => {
                let group = match inode {
                    Inode::Tag(_) => self.tag_names()?,
                    _ => self.host_names()?,
                };
                group
                    .get(t)
                    .map(|v| {
                        v.iter()
                            .map(|s| {
                                link(
                                    ino,
                                    &s.name,
                                    format!("../../snapshots/{}", s.name),
                                    to_ns(&s.snap),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Inode::Link(..) => return Err(Fault::NotDir),
            Inode::SnapRoot(_) | Inode::Node { .. } => {
                let Some((snap, tree)) = self.dir_tree(inode)? else {
                    return Err(Fault::NotDir);
                };
                tree.nodes
                    .iter()
                    .map(|n| {
                        (
                            Entry {
                                ino: Self::child_ino(ino, &snap, n),
                                kind: n.kind,
                                name: n.name.clone(),
                            },
                            Inode::Node {
                                snap: snap.clone(),
                                node: Arc::new(n.clone()),
                            },
                        )
                    })
                    .collect()
            }
        })
    }

    /// Looks `name` up in directory `parent`; the kernel holds one more reference to it.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> VfsResult<Attr> {
        let (ino, inode, attr) = self.resolve(parent, name)?;
        self.remember(ino, inode);
        Ok(attr)
    }

    /// Like [`lookup`](Self::lookup) for an entry a `readdirplus` reply may carry: the
    /// reference is taken only when `add` put the entry in the reply (returns true), so an
    /// entry that did not fit is not held for a kernel that never saw it.
    pub fn lookup_if(
        &self,
        parent: u64,
        name: &[u8],
        add: impl FnOnce(&Attr) -> bool,
    ) -> VfsResult<bool> {
        let (ino, inode, attr) = self.resolve(parent, name)?;
        let added = add(&attr);
        if added {
            self.remember(ino, inode);
        }
        Ok(added)
    }

    fn resolve(&self, parent: u64, name: &[u8]) -> VfsResult<(u64, Inode, Attr)> {
        let pinode = self.inode(parent)?;
        let (ino, inode) = match &pinode {
            Inode::Snapshots => {
                let s = self.shown_named(name)?;
                (Self::snap_ino(&s), Inode::SnapRoot(s))
            }
            Inode::SnapRoot(_) | Inode::Node { .. } => {
                let Some((snap, tree)) = self.dir_tree(&pinode)? else {
                    return Err(Fault::NotDir);
                };
                let n = tree.get(name).ok_or(Fault::NotFound)?;
                (
                    Self::child_ino(parent, &snap, n),
                    Inode::Node {
                        snap,
                        node: Arc::new(n.clone()),
                    },
                )
            }
            Inode::Link(..) => return Err(Fault::NotDir),
            _ => {
                let found = self
                    .children(parent, &pinode)?
                    .into_iter()
                    .find(|(e, _)| e.name == name)
                    .ok_or(Fault::NotFound)?;
                (found.0.ino, found.1)
            }
        };
        let attr = self.attr(ino, &inode)?;
        Ok((ino, inode, attr))
    }

    /// The attributes of an inode the kernel holds.
    pub fn getattr(&self, ino: u64) -> VfsResult<Attr> {
        let inode = self.inode(ino)?;
        self.attr(ino, &inode)
    }

    /// The listing of a directory: `.`, `..`, then its entries in name order.
    /// (`..` carries the directory's own inode: the kernel does not use it.)
    pub fn readdir(&self, ino: u64) -> VfsResult<Vec<Entry>> {
        let inode = self.inode(ino)?;
        let mut v = vec![
            Entry {
                ino,
                kind: NodeKind::Dir,
                name: b".".to_vec(),
            },
            Entry {
                ino,
                kind: NodeKind::Dir,
                name: b"..".to_vec(),
            },
        ];
        match self.dir_tree(&inode)? {
            // Snapshot content: entries straight from the tree, no node copied.
            Some((snap, tree)) => v.extend(tree.nodes.iter().map(|n| Entry {
                ino: Self::child_ino(ino, &snap, n),
                kind: n.kind,
                name: n.name.clone(),
            })),
            None => v.extend(self.children(ino, &inode)?.into_iter().map(|(e, _)| e)),
        }
        Ok(v)
    }

    /// Opens a directory: its listing is built now and served by [`listing`](Self::listing)
    /// until [`releasedir`](Self::releasedir). Returns the handle and whether the listing
    /// never changes (snapshot content, which the kernel may then cache).
    pub fn opendir(&self, ino: u64) -> VfsResult<(u64, bool)> {
        let inode = self.inode(ino)?;
        let fixed = matches!(inode, Inode::SnapRoot(_) | Inode::Node { .. });
        let entries = Arc::new(self.readdir(ino)?);
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, entries);
        Ok((fh, fixed))
    }

    /// The listing of a directory without a handle: snapshot content from a small cache
    /// by inode (it never changes), virtual folders built afresh.
    pub fn listing_of(&self, ino: u64) -> VfsResult<Arc<Vec<Entry>>> {
        if let Some(l) = self
            .listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
        {
            return Ok(l.clone());
        }
        let inode = self.inode(ino)?;
        let fixed = matches!(inode, Inode::SnapRoot(_) | Inode::Node { .. });
        let l = Arc::new(self.readdir(ino)?);
        if fixed {
            self.listings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(ino, l.clone());
        }
        Ok(l)
    }

    /// The listing of an open directory (`None` for an unknown handle).
    pub fn listing(&self, fh: u64) -> Option<Arc<Vec<Entry>>> {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    /// A symlink's target, as stored.
    pub fn readlink(&self, ino: u64) -> VfsResult<Vec<u8>> {
        match self.inode(ino)? {
            Inode::Link(t, _) => Ok(t),
            Inode::Node { node, .. } if node.kind == NodeKind::Symlink => {
                Ok(node.link_target.clone())
            }
            _ => Err(Fault::NoData),
        }
    }

    /// The extended attributes of an entry, as stored.
    pub fn xattrs(&self, ino: u64) -> VfsResult<Vec<Xattr>> {
        match self.inode(ino)? {
            Inode::Node { node, .. } => Ok(node.xattrs.clone()),
            _ => Ok(Vec::new()),
        }
    }

    /// Opens a file for reading; the handle is passed to [`read`](Self::read).
    pub fn open(&self, ino: u64) -> VfsResult<u64> {
        let Inode::Node { node, snap } = self.inode(ino)? else {
            return Err(Fault::NotFound);
        };
        if node.kind != NodeKind::File {
            return Err(Fault::NoData);
        }
        let cached = {
            let mut g = self.maps.lock().unwrap_or_else(|e| e.into_inner());
            g.get(&ino).cloned()
        };
        let map = match cached {
            Some(m) => m,
            None => {
                let m = Arc::new(ChunkMap::new(&self.repo, &node.content, node.size).map_err(
                    |e| {
                        (self.log)(&format!("cannot open {}: {e}", node.name_lossy()));
                        Fault::from(e)
                    },
                )?);
                self.maps
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .put(ino, m.clone());
                m
            }
        };
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(
            fh,
            Arc::new(OpenFile::new(
                map,
                format!("{} (snapshot {})", node.name_lossy(), snap.id.short()),
            )),
        );
        Ok(fh)
    }

    /// Reads up to `len` bytes at `off` of an open file. Data that fails to authenticate is
    /// an error for this read (and a log line naming the pack), never wrong bytes.
    pub fn read(&self, fh: u64, off: u64, len: usize) -> VfsResult<Vec<u8>> {
        let f = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(Fault::NotFound)?;
        // Read-ahead beyond half the cache would evict what it loaded before it is read.
        let ahead = ReadAhead {
            bytes: self
                .opts
                .read_ahead_bytes
                .min(self.opts.blob_cache_bytes / 2),
        };
        f.read(&self.repo, &self.blobs, ahead, off, len)
            .map_err(|e| {
                (self.log)(&format!("read of {} failed: {e}", f.name));
                Fault::from(e)
            })
    }

    /// Closes a handle from [`open`](Self::open).
    pub fn release(&self, fh: u64) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }
}

fn to_ns(s: &Snapshot) -> i64 {
    s.time.timestamp_nanos_opt().unwrap_or(0)
}

fn subdirs(t: &Tree) -> u32 {
    t.nodes.iter().filter(|n| n.kind == NodeKind::Dir).count() as u32
}

/// Whether a tag or host can be a file name.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

#[cfg(test)]
mod tests;
