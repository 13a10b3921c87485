//! The fidelity tree: every kind of entry and metadata a snapshot keeps.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{is_root, random_bytes};

/// A POSIX access ACL as the kernel stores it (`u::rw-,u:1234:r--,g::---,m::r--,o::---`):
/// version 2, then (tag, permissions, id) entries.
pub const ACL: &[u8] = &[
    2, 0, 0, 0, // version
    1, 0, 6, 0, 255, 255, 255, 255, // user::rw-
    2, 0, 4, 0, 210, 4, 0, 0, // user:1234:r--
    4, 0, 0, 0, 255, 255, 255, 255, // group::---
    16, 0, 4, 0, 255, 255, 255, 255, // mask::r--
    32, 0, 0, 0, 255, 255, 255, 255, // other::---
];

pub fn set_mtime(p: &Path, secs: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nsec);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// Builds the tree with every kind of entry the format supports; returns whether xattrs work.
pub fn build(src: &Path) -> bool {
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::write(src.join("regular.txt"), b"hello fidelity\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("dir/sub/big.bin"), random_bytes(1, 700_000)).unwrap();
    // Hardlinks.
    fs::write(src.join("dir/linked-a"), b"same inode").unwrap();
    fs::hard_link(src.join("dir/linked-a"), src.join("dir/sub/linked-b")).unwrap();
    // Symlinks, one dangling.
    std::os::unix::fs::symlink("regular.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    // FIFO.
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    // Sparse file: data, a 4 MiB hole, data.
    {
        let f = fs::File::create(src.join("sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"end", 4 << 20).unwrap();
    }
    // Names that are not UTF-8 and that contain a newline.
    fs::write(src.join(OsStr::from_bytes(b"bad-\xff\xfe-name")), b"latin").unwrap();
    fs::write(src.join("new\nline"), b"nl").unwrap();
    // A very long path (well over 1000 bytes, components of 200 bytes).
    let mut long = src.to_path_buf();
    for i in 0..6 {
        long.push(format!("{}{}", i, "x".repeat(199)));
    }
    fs::create_dir_all(&long).unwrap();
    fs::write(long.join("y".repeat(250)), b"deep").unwrap();
    // Mode bits: setuid, setgid, sticky.
    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("setgid"), b"g").unwrap();
    fs::set_permissions(src.join("setgid"), fs::Permissions::from_mode(0o2640)).unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(src.join("private"), b"p").unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    // Ownership (only root can give files away).
    if is_root() {
        nix::unistd::chown(
            &src.join("regular.txt"),
            Some(1234.into()),
            Some(5678.into()),
        )
        .unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &src.join("link"),
            Some(4321.into()),
            Some(8765.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        // chown clears setuid: set it again.
        nix::unistd::chown(&src.join("setuid"), Some(1000.into()), Some(1000.into())).unwrap();
        fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    // A character device (only root may make one): the same numbers as /dev/null.
    // (A container without CAP_MKNOD refuses even root: then the tree has none.)
    if is_root() {
        let _ = nix::sys::stat::mknod(
            &src.join("chardev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o620),
            nix::sys::stat::makedev(1, 3),
        );
    }
    // Extended attributes, where the filesystem has them.
    let xattrs = xattr::set(src.join("regular.txt"), "user.cairn.test", b"value\x00\x01").is_ok();
    if xattrs {
        // Where the filesystem keeps ACLs (the tests that look for it check first).
        let _ = xattr::set(src.join("private"), "system.posix_acl_access", ACL);
        xattr::set(src.join("dir"), "user.dir.attr", b"d").unwrap();
        xattr::set(src.join("empty"), "user.empty", b"").unwrap();
    }
    // Nanosecond mtimes, set last (children before parents).
    set_mtime(&src.join("regular.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&src.join("link"), 1_500_000_000, 987_654_321);
    set_mtime(&src.join("dangling"), 1_400_000_000, 1);
    set_mtime(&src.join("dir/sub"), 1_300_000_000, 999_999_999);
    set_mtime(&src.join("dir"), 1_200_000_000, 5);
    set_mtime(&src.join("sticky"), 1_100_000_000, 42);
    xattrs
}
