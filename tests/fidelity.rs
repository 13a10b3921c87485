//! A restore reproduces every kind of entry and its metadata, compared field by field.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

fn set_mtime(p: &Path, secs: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nsec);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// Builds the tree with every kind of entry the format supports; returns whether xattrs work.
fn build(src: &Path) -> bool {
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
    // Extended attributes, where the filesystem has them.
    let xattrs = xattr::set(src.join("regular.txt"), "user.cairn.test", b"value\x00\x01").is_ok();
    if xattrs {
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

/// Entries by relative path.
type Entries = HashMap<Vec<u8>, Entry>;
/// Paths of hardlinked files by inode.
type Links = HashMap<u64, Vec<Vec<u8>>>;

#[derive(Debug, PartialEq)]
struct Entry {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<PathBuf>,
    content: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn describe(root: &Path, check_owner: bool) -> (Entries, Links) {
    let mut out = HashMap::new();
    let mut inodes: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    fn rec(
        root: &Path,
        dir: &Path,
        check_owner: bool,
        out: &mut HashMap<Vec<u8>, Entry>,
        inodes: &mut HashMap<u64, Vec<Vec<u8>>>,
    ) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "other"
            };
            let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = if ft.is_symlink() {
                vec![]
            } else {
                xattr::list(&p)
                    .unwrap()
                    .map(|n| {
                        (
                            n.as_bytes().to_vec(),
                            xattr::get(&p, &n).unwrap().unwrap_or_default(),
                        )
                    })
                    .collect()
            };
            xattrs.sort();
            if ft.is_file() && m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Entry {
                    kind: kind.into(),
                    mode: if ft.is_symlink() { 0 } else { m.mode() },
                    uid: if check_owner { m.uid() } else { 0 },
                    gid: if check_owner { m.gid() } else { 0 },
                    size: if ft.is_dir() { 0 } else { m.len() },
                    mtime: (m.mtime(), m.mtime_nsec()),
                    link: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                    content: ft.is_file().then(|| fs::read(&p).unwrap()),
                    xattrs,
                },
            );
            if ft.is_dir() {
                rec(root, &p, check_owner, out, inodes);
            }
        }
    }
    rec(root, root, check_owner, &mut out, &mut inodes);
    (out, inodes)
}

#[test]
fn restore_reproduces_every_entry_and_its_metadata() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let has_xattrs = build(&src);
    let s = env.snapshot(&[&src]);
    assert_eq!(s["errors"], 0, "{s}");
    let target = env.path("restore");
    env.restore(&target, &["--verify"]);
    let restored = target.join(src.strip_prefix("/").unwrap());

    let (a, links_a) = describe(&src, is_root());
    let (b, links_b) = describe(&restored, is_root());
    let mut names: Vec<_> = a.keys().collect();
    names.sort();
    for name in &names {
        let shown = String::from_utf8_lossy(name);
        let rb = b
            .get(*name)
            .unwrap_or_else(|| panic!("{shown} missing from restore"));
        assert_eq!(&a[*name], rb, "{shown} differs");
    }
    assert_eq!(a.len(), b.len(), "restore has extra entries");
    // Hardlinks come back as hardlinks.
    let mut ga: Vec<_> = links_a
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    let mut gb: Vec<_> = links_b
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    ga.sort();
    gb.sort();
    assert_eq!(ga.len(), 1);
    assert_eq!(ga, gb);
    // Holes stay holes.
    let sparse = fs::metadata(restored.join("sparse")).unwrap();
    assert_eq!(sparse.len(), (4 << 20) + 3);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "sparse file restored dense: {} blocks",
        sparse.blocks()
    );
    // The FIFO is a FIFO.
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(restored.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    if has_xattrs {
        assert_eq!(
            xattr::get(restored.join("regular.txt"), "user.cairn.test")
                .unwrap()
                .unwrap(),
            b"value\x00\x01"
        );
    }
    // The directory times, set after their content, survive too.
    let d = fs::metadata(restored.join("dir/sub")).unwrap();
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_300_000_000, 999_999_999));
}

#[test]
fn ls_shows_odd_names_and_dump_returns_bytes() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("new\nline"), b"nl").unwrap();
    fs::write(src.join("data.bin"), random_bytes(9, 300_000)).unwrap();
    env.snapshot(&[&src]);
    let names = env.ls_names(&["ls", "latest", src.to_str().unwrap()]);
    assert_eq!(names, vec!["data.bin", "new\nline"]);
    let o = env.run(&["dump", "latest", src.join("data.bin").to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(o.stdout, random_bytes(9, 300_000));
    let o = env.run(&["dump", "latest", src.join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found in the snapshot"));
}
