//! A restore reproduces every kind of entry and its metadata, compared field by field.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::fidelity::build;
use common::*;

/// Entries by relative path.
type Entries = HashMap<Vec<u8>, Entry>;
/// Paths of hardlinked files by inode.
type Links = HashMap<u64, Vec<Vec<u8>>>;

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    link: Option<PathBuf>,
    rdev: u64,
    content: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The hardlink groups, each sorted, in order: comparable between two trees.
fn link_groups(l: Links) -> Vec<Vec<Vec<u8>>> {
    let mut g: Vec<_> = l
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    g.sort();
    g
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
                    rdev: m.rdev(),
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

/// Asserts that `restored` holds the entries of `src`, field by field, and its hardlink
/// groups; returns how many groups there are.
fn assert_same(src: &Path, restored: &Path) -> usize {
    let (a, links_a) = describe(src, is_root());
    let (b, links_b) = describe(restored, is_root());
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
    let (ga, gb) = (link_groups(links_a), link_groups(links_b));
    assert_eq!(ga, gb);
    ga.len()
}

#[test]
fn a_restore_in_many_small_batches_written_two_at_a_time_is_as_faithful() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    build(&src);
    // 300 more files over 12 folders, of sizes from empty to several chunks, with mtimes of
    // their own, hardlinks across folders, and folders whose times are set after them.
    for d in 0..12u64 {
        let dir = src.join(format!("many/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..25u64 {
            let i = d * 25 + f;
            let size = [0, 1, 700, 5000, 300_000, 2_500_000][(i % 6) as usize];
            let p = dir.join(format!("f{f:02}"));
            fs::write(&p, random_bytes(i, size)).unwrap();
            let t = filetime::FileTime::from_unix_time(1_400_000_000 + i as i64, i as u32);
            filetime::set_file_mtime(&p, t).unwrap();
        }
        if d > 0 {
            fs::hard_link(
                dir.join("f03"),
                src.join(format!("many/d{:02}/link", d - 1)),
            )
            .unwrap();
        }
    }
    for d in 0..12u64 {
        let t = filetime::FileTime::from_unix_time(1_350_000_000 + d as i64, 0);
        filetime::set_file_mtime(src.join(format!("many/d{d:02}")), t).unwrap();
    }
    env.snapshot(&[&src]);
    // A low open-file limit makes batches of 16 files: 19 of them, written two at a time.
    let target = env.path("restore");
    let out = env
        .cmd_with_file_limit(
            &[
                "restore",
                "latest",
                "--verify",
                "--target",
                target.to_str().unwrap(),
            ],
            64,
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(assert_same(&src, &restored), 12);
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

    // Hardlinks come back as hardlinks.
    assert_eq!(assert_same(&src, &restored), 1);
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

#[test]
fn dump_archive_tar_unpacks_to_the_same_tree() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let has_xattrs = build(&src);
    env.snapshot(&[&src]);
    let o = env.run(&["dump", "latest", src.to_str().unwrap(), "--archive", "tar"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = env.path("untar");
    untar(&o.stdout, &out);
    let unpacked = out.join(src.strip_prefix("/").unwrap());
    let (a, links_a) = describe(&src, is_root());
    let (b, links_b) = describe(&unpacked, is_root());
    let mut names: Vec<_> = a.keys().collect();
    names.sort();
    for name in names {
        let shown = String::from_utf8_lossy(name);
        let mut want = a[name].clone();
        // tar sets no time on a symlink it creates.
        if want.kind == "symlink" {
            want.mtime = b[name].mtime;
        }
        assert_eq!(b.get(name), Some(&want), "{shown} differs");
    }
    assert_eq!(a.len(), b.len(), "the archive has extra entries");
    assert_eq!(
        link_groups(links_a),
        link_groups(links_b),
        "hardlinks stay hardlinks"
    );
    if has_xattrs {
        assert_eq!(
            xattr::get(unpacked.join("regular.txt"), "user.cairn.test")
                .unwrap()
                .unwrap(),
            b"value\x00\x01"
        );
    }
}

#[test]
fn dump_archive_zip_holds_files_links_and_modes() {
    use std::io::Read;
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    build(&src);
    env.snapshot(&[&src]);
    let o = env.run(&["dump", "latest", src.to_str().unwrap(), "--archive", "zip"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fifo: a fifo has no place"), "{err}");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(o.stdout)).unwrap();
    let rel = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let mut seen = 0;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let inside = name.strip_prefix(&rel).unwrap().trim_start_matches('/');
        if name.contains('\u{fffd}') {
            continue; // zip names are UTF-8: a name that is not is written lossily
        }
        let local = src.join(inside.trim_end_matches('/'));
        let meta = fs::symlink_metadata(&local).unwrap();
        // zip keeps the rwx bits only.
        assert_eq!(
            f.unix_mode().unwrap() & 0o777,
            meta.mode() & 0o777,
            "{name}"
        );
        if meta.file_type().is_file() {
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            assert_eq!(data, fs::read(&local).unwrap(), "{name}");
            seen += 1;
        } else if meta.file_type().is_symlink() {
            let mut target = String::new();
            f.read_to_string(&mut target).unwrap();
            assert_eq!(Path::new(&target), fs::read_link(&local).unwrap());
        } else {
            assert!(f.is_dir(), "{name}");
        }
    }
    assert!(seen >= 10, "{seen} files");
}
