//! Serving a [`Vfs`] to the kernel through FUSE (fuser, no libfuse): read-only, several
//! request threads, snapshot content cached by the kernel (it never changes), the virtual
//! folders trusted for a second.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request, SessionACL,
};

use super::{Attr, Fault, Vfs, VfsResult};
use crate::error::{Error, Result};
use crate::tree::NodeKind;

/// How long the kernel may trust what never changes (snapshot content).
const STABLE: Duration = Duration::from_secs(3600);
/// How long it may trust the virtual folders.
const VOLATILE: Duration = Duration::from_secs(1);

/// How the mount is made.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    /// Let other users in (`allow_other`; the stored permissions are enforced).
    pub allow_other: bool,
    /// Request threads (at least 1).
    pub threads: usize,
}

struct Fuse {
    vfs: Vfs,
    /// The kernel sends no `opendir`/`releasedir` (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1):
    /// two requests fewer per directory, and it keeps listings in its page cache.
    no_opendir: std::sync::atomic::AtomicBool,
}

fn errno(f: Fault) -> Errno {
    match f {
        Fault::NotFound => Errno::ENOENT,
        Fault::NotDir => Errno::ENOTDIR,
        Fault::NoData => Errno::ENODATA,
        Fault::Io(_) => Errno::EIO,
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// The kernel's 32-bit device encoding of a `dev_t`.
fn kernel_rdev(rdev: u64) -> u32 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: time(a.mtime_ns),
        mtime: time(a.mtime_ns),
        ctime: time(a.ctime_ns),
        crtime: time(a.mtime_ns),
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: kernel_rdev(a.rdev),
        blksize: 4096,
        flags: 0,
    }
}

fn ttl(a: &Attr) -> Duration {
    if a.volatile { VOLATILE } else { STABLE }
}

impl Fuse {
    fn reply_attr(&self, r: VfsResult<Attr>, reply: ReplyAttr) {
        match r {
            Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Fuse {
    /// A directory's listing: the open handle's, or (without one) the view's by inode.
    fn listing(
        &self,
        ino: INodeNo,
        fh: FileHandle,
    ) -> Result<std::sync::Arc<Vec<super::Entry>>, Errno> {
        match self.vfs.listing(fh.0) {
            Some(e) => Ok(e),
            None => self.vfs.listing_of(ino.0).map_err(errno),
        }
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger kernel read-ahead: fewer, bigger reads for sequential readers.
        let _ = config.set_max_readahead(1 << 20);
        // Listings carry their entries' attributes when the kernel sees them looked up
        // (`ls -l`, `find -printf`, stat-walking backup tools): one request per directory
        // instead of one per entry.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        // Stored POSIX ACLs are enforced along with the mode bits (DefaultPermissions), as
        // on the filesystem they came from.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_POSIX_ACL);
        if config
            .add_capabilities(fuser::InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok()
        {
            self.no_opendir
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&ttl(&a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.reply_attr(self.vfs.getattr(ino.0), reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(Fault::NoData) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(Fault::NoData) => reply.error(Errno::EACCES),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read(fh.0, offset, size as usize) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.vfs.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir.load(std::sync::atomic::Ordering::Relaxed) {
            // Tells the kernel to stop sending them; listings then come by inode.
            return reply.error(Errno::ENOSYS);
        }
        match self.vfs.opendir(ino.0) {
            // A snapshot's directories never change: the kernel may keep their listings.
            Ok((fh, true)) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Ok((fh, false)) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.listing(ino, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(e.ino),
                (i + 1) as u64,
                file_type(e.kind),
                OsStr::from_bytes(&e.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.listing(ino, fh) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        for (i, e) in entries.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            let name = OsStr::from_bytes(&e.name);
            // `.` and `..` take no reference; they carry the directory's own attributes.
            let full = if i < 2 {
                match self.vfs.getattr(ino.0) {
                    Ok(a) => reply.add(
                        INodeNo(e.ino),
                        next,
                        name,
                        &ttl(&a),
                        &file_attr(&a),
                        Generation(0),
                    ),
                    Err(err) => return reply.error(errno(err)),
                }
            } else {
                match self.vfs.lookup_if(ino.0, &e.name, |a| {
                    !reply.add(
                        INodeNo(e.ino),
                        next,
                        name,
                        &ttl(a),
                        &file_attr(a),
                        Generation(0),
                    )
                }) {
                    Ok(added) => !added,
                    Err(err) => return reply.error(errno(err)),
                }
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let xs = match self.vfs.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(e)),
        };
        match xs.iter().find(|x| x.name == name.as_bytes()) {
            None => reply.error(Errno::ENODATA),
            Some(x) if size == 0 => reply.size(x.value.len() as u32),
            Some(x) if x.value.len() > size as usize => reply.error(Errno::ERANGE),
            Some(x) => reply.data(&x.value),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let xs = match self.vfs.xattrs(ino.0) {
            Ok(x) => x,
            Err(e) => return reply.error(errno(e)),
        };
        let mut names = Vec::new();
        for x in &xs {
            names.extend_from_slice(&x.name);
            names.push(0);
        }
        if size == 0 {
            reply.size(names.len() as u32);
        } else if names.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&names);
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permissions are checked by the kernel (default_permissions); only existence here.
        match self.vfs.getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

/// A mounted view; dropping it unmounts.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    mountpoint: std::path::PathBuf,
}

impl Mounted {
    /// Whether the filesystem is still being served (false once someone ran `umount`).
    pub fn is_serving(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmounts (lazily when the mount is busy, so a shell inside it does not keep it) and
    /// waits for the request threads. A lazily detached mount stays connected while anyone
    /// still uses it, so the connection is then aborted (through fusectl, where mounted):
    /// those users get ENOTCONN, and this returns instead of waiting for them.
    pub fn unmount(mut self) -> Result<()> {
        let shown = || self.mountpoint.display().to_string();
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        if s.guard.is_finished() {
            return s.join().map_err(|e| Error::io(shown(), e));
        }
        let connection = nix::sys::stat::stat(&self.mountpoint)
            .ok()
            .map(|st| nix::sys::stat::minor(st.st_dev));
        if let Err(e) = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH)
            && e != nix::errno::Errno::EINVAL
        {
            // Not root: the session's own unmount goes through fusermount.
            return s.umount_and_join().map_err(|e| Error::io(shown(), e));
        }
        let mut deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut aborted = false;
        while !s.guard.is_finished() {
            if std::time::Instant::now() >= deadline {
                if aborted {
                    // The threads end with the connection; nothing here needs them.
                    return Ok(());
                }
                if let Some(c) = connection {
                    let _ = std::fs::write(format!("/sys/fs/fuse/connections/{c}/abort"), "1");
                }
                aborted = true;
                deadline += Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        s.join().map_err(|e| Error::io(shown(), e))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

/// Refuses a mount point that is missing, not a directory or not empty, and a machine
/// without FUSE, each with what to do.
pub fn check_mountpoint(mountpoint: &Path) -> Result<()> {
    let shown = mountpoint.display();
    let mut entries = match std::fs::read_dir(mountpoint) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "mount point {shown} does not exist: create it with `mkdir -p {shown}`"
            )));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(Error::Invalid(format!(
                "mount point {shown} is left from a mount whose process ended: run \
                 `umount -l {shown}` first"
            )));
        }
        Err(e) => {
            return Err(Error::Invalid(format!(
                "mount point {shown} cannot be used: {e} (it must be an empty directory)"
            )));
        }
    };
    if entries.next().is_some() {
        return Err(Error::Invalid(format!(
            "mount point {shown} is not empty: mount on an empty directory"
        )));
    }
    fuse_available()
}

/// Whether this machine can mount FUSE filesystems; the error says how to get it.
pub fn fuse_available() -> Result<()> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Invalid(
            "FUSE is not available: /dev/fuse does not exist (load the module with `modprobe fuse`; \
             in a container, run it with `--device /dev/fuse --cap-add SYS_ADMIN`)"
                .into(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // fusermount (setuid) may still open it for this user.
            if which_fusermount() {
                Ok(())
            } else {
                Err(Error::Invalid(format!(
                    "FUSE is not available to this user: /dev/fuse: {e} (install the `fuse3` \
                     package for fusermount, or run as root)"
                )))
            }
        }
        Err(e) => Err(Error::Invalid(format!(
            "FUSE is not available: /dev/fuse: {e}"
        ))),
    }
}

fn which_fusermount() -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| d.join("fusermount").exists() || d.join("fusermount3").exists())
    })
}

/// Mounts `vfs` read-only at `mountpoint` and serves it on background threads.
pub fn mount(vfs: Vfs, mountpoint: &Path, opts: &MountOptions) -> Result<Mounted> {
    check_mountpoint(mountpoint)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    let session = fuser::spawn_mount(
        Fuse {
            vfs,
            no_opendir: Default::default(),
        },
        mountpoint,
        &config,
    )
    .map_err(|e| {
        Error::Invalid(format!(
            "cannot mount at {}: {e}{}",
            mountpoint.display(),
            if opts.allow_other && e.kind() == std::io::ErrorKind::PermissionDenied {
                " (--allow-other needs root or `user_allow_other` in /etc/fuse.conf)"
            } else {
                ""
            }
        ))
    })?;
    Ok(Mounted {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}
