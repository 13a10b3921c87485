use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::*;
use crate::crypto::keyfile::KdfParams;
use crate::ops::snapshot::{Input, SnapshotOptions, snapshot};
use crate::repo::InitOptions;

fn repo_in(dir: &Path) -> Arc<Repository> {
    let opts = InitOptions {
        kdf: KdfParams::CHEAP,
        ..InitOptions::default()
    };
    Arc::new(Repository::init(&dir.join("repo"), b"pw", &opts, &dir.join("cache")).unwrap())
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Walks `path` (inside the view) from the root by lookups.
fn walk(vfs: &Vfs, path: &Path) -> Attr {
    let mut ino = ROOT;
    let mut attr = vfs.getattr(ROOT).unwrap();
    for c in path.components() {
        let std::path::Component::Normal(n) = c else {
            continue;
        };
        attr = vfs.lookup(ino, n.as_bytes()).unwrap();
        if attr.kind == NodeKind::Symlink && ino == ROOT {
            let t = vfs.readlink(attr.ino).unwrap();
            assert!(t.starts_with(b"snapshots/"), "{t:?}");
            attr = vfs.lookup(SNAPSHOTS, &t[10..]).unwrap();
        }
        ino = attr.ino;
    }
    attr
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Arc<Repository>,
    src: std::path::PathBuf,
    big: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    let big = pseudo_random(24 << 20, 7);
    std::fs::write(src.join("big"), &big).unwrap();
    std::fs::write(src.join("sub/small"), b"hello").unwrap();
    std::fs::hard_link(src.join("sub/small"), src.join("sub/deeper/link")).unwrap();
    std::os::unix::fs::symlink("../big", src.join("sub/to-big")).unwrap();
    let repo = repo_in(dir.path());
    snapshot(
        &repo,
        Input::Paths(vec![src.clone()]),
        &SnapshotOptions {
            tags: vec!["nightly".into()],
            ..SnapshotOptions::default()
        },
    )
    .unwrap();
    Fixture {
        _dir: dir,
        repo,
        src,
        big,
    }
}

impl Fixture {
    /// The source folder as the view shows it under `latest`.
    fn in_latest(&self) -> std::path::PathBuf {
        Path::new("latest").join(self.src.strip_prefix("/").unwrap())
    }
}

#[test]
fn a_read_opens_only_the_chunks_it_overlaps_and_sequential_reads_each_chunk_once() {
    let f = fixture();
    let vfs = Vfs::new(f.repo.clone(), VfsOptions::default(), |_| {}).unwrap();
    let attr = walk(
        &vfs,
        &Path::new("latest")
            .join(f.src.strip_prefix("/").unwrap())
            .join("big"),
    );
    assert_eq!(attr.size, f.big.len() as u64);
    let fh = vfs.open(attr.ino).unwrap();
    // The chunk boundaries, from the same map the reads use.
    let map = vfs.maps.lock().unwrap().get(&attr.ino).unwrap().clone();
    assert!(map.len() >= 8, "{} chunks", map.len());
    let mut expected = std::collections::HashSet::new();
    for k in 0..40u64 {
        let off = (k * 2_654_435_761) % (f.big.len() as u64 - 4096);
        let before = vfs.blob_loads();
        let data = vfs.read(fh, off, 4096).unwrap();
        assert_eq!(
            data,
            &f.big[off as usize..off as usize + 4096],
            "offset {off}"
        );
        let (a, b) = (map.chunk_at(off), map.chunk_at(off + 4095));
        let new: u64 = (a..=b).filter(|i| expected.insert(*i)).count() as u64;
        assert_eq!(
            vfs.blob_loads() - before,
            new,
            "offset {off}: only overlapping chunks"
        );
    }
    vfs.release(fh);

    // A fresh view reading the whole file in kernel-sized pieces loads each chunk once.
    let vfs = Vfs::new(f.repo.clone(), VfsOptions::default(), |_| {}).unwrap();
    let attr = walk(
        &vfs,
        &Path::new("latest")
            .join(f.src.strip_prefix("/").unwrap())
            .join("big"),
    );
    let fh = vfs.open(attr.ino).unwrap();
    let mut all = Vec::new();
    loop {
        let d = vfs.read(fh, all.len() as u64, 128 << 10).unwrap();
        if d.is_empty() {
            break;
        }
        all.extend_from_slice(&d);
    }
    assert!(all == f.big);
    assert_eq!(vfs.blob_loads(), map.len() as u64);
}

#[test]
fn a_small_cache_stays_within_its_bound_and_still_reads_right() {
    let f = fixture();
    let opts = VfsOptions {
        blob_cache_bytes: 2 << 20,
        read_ahead_bytes: 1 << 20,
        ..VfsOptions::default()
    };
    let vfs = Vfs::new(f.repo.clone(), opts, |_| {}).unwrap();
    let attr = walk(
        &vfs,
        &Path::new("latest")
            .join(f.src.strip_prefix("/").unwrap())
            .join("big"),
    );
    let fh = vfs.open(attr.ino).unwrap();
    for off in [0u64, 20 << 20, 3 << 20, 0, 23 << 20] {
        let d = vfs.read(fh, off, 1 << 20).unwrap();
        assert!(d == f.big[off as usize..(off as usize + (1 << 20)).min(f.big.len())]);
        let held = vfs.blobs.slots.lock().unwrap().1;
        assert!(held <= (2 << 20) + (8 << 20), "{held} bytes held");
    }
}

#[test]
fn layout_links_hardlinks_and_forgetting() {
    let f = fixture();
    let vfs = Vfs::new(f.repo.clone(), VfsOptions::default(), |_| {}).unwrap();
    let names: Vec<Vec<u8>> = vfs
        .readdir(ROOT)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    for want in [&b"snapshots"[..], b"ids", b"tags", b"hosts", b"latest"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    let snaps = vfs.readdir(SNAPSHOTS).unwrap();
    assert_eq!(snaps.len(), 3, "., .. and one snapshot");
    let tag = vfs.lookup(TAGS, b"nightly").unwrap();
    let in_tag = vfs.readdir(tag.ino).unwrap();
    assert_eq!(in_tag[2].name, snaps[2].name);
    let base = f.in_latest();
    let a = walk(&vfs, &base.join("sub/small"));
    let b = walk(&vfs, &base.join("sub/deeper/link"));
    assert_eq!((a.ino, a.nlink), (b.ino, 2), "one inode for both links");
    let l = walk(&vfs, &base.join("sub/to-big"));
    assert_eq!(vfs.readlink(l.ino).unwrap(), b"../big");
    let sub = walk(&vfs, &base.join("sub"));
    assert_eq!(sub.nlink, 3, "2 + one subdirectory");
    assert!(matches!(
        vfs.lookup(sub.ino, b"nothing"),
        Err(Fault::NotFound)
    ));
    let live = vfs.live_inodes();
    vfs.forget(l.ino, 1);
    assert_eq!(vfs.live_inodes(), live - 1);
    assert!(matches!(vfs.getattr(l.ino), Err(Fault::NotFound)));
}

#[test]
fn a_new_snapshot_appears_after_the_refresh_interval() {
    let f = fixture();
    let opts = VfsOptions {
        refresh: Duration::ZERO,
        ..VfsOptions::default()
    };
    let vfs = Vfs::new(f.repo.clone(), opts, |_| {}).unwrap();
    assert_eq!(vfs.readdir(SNAPSHOTS).unwrap().len(), 3);
    std::fs::write(f.src.join("new"), b"new file").unwrap();
    snapshot(
        &f.repo,
        Input::Paths(vec![f.src.clone()]),
        &SnapshotOptions::default(),
    )
    .unwrap();
    let after = vfs.readdir(SNAPSHOTS).unwrap();
    assert_eq!(after.len(), 4);
    let newest = &after[3];
    let latest = vfs.lookup(ROOT, b"latest").unwrap();
    let target = vfs.readlink(latest.ino).unwrap();
    assert_eq!(&target[10..], &newest.name[..]);
    let a = walk(
        &vfs,
        &Path::new("latest")
            .join(f.src.strip_prefix("/").unwrap())
            .join("new"),
    );
    let fh = vfs.open(a.ino).unwrap();
    assert_eq!(vfs.read(fh, 0, 100).unwrap(), b"new file");
}

#[test]
fn directory_handles_serve_one_listing_and_plus_entries_are_held_only_when_sent() {
    let f = fixture();
    let vfs = Vfs::new(f.repo.clone(), VfsOptions::default(), |_| {}).unwrap();
    let sub = walk(&vfs, &f.in_latest().join("sub"));
    let (fh, fixed) = vfs.opendir(sub.ino).unwrap();
    assert!(fixed, "snapshot content never changes");
    let names: Vec<Vec<u8>> = vfs
        .listing(fh)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, [&b"."[..], b"..", b"deeper", b"small", b"to-big"]);
    vfs.releasedir(fh);
    assert!(vfs.listing(fh).is_none());
    let (root, fixed) = vfs.opendir(ROOT).unwrap();
    assert!(
        !fixed,
        "the virtual folders change as snapshots come and go"
    );
    vfs.releasedir(root);

    let live = vfs.live_inodes();
    assert!(!vfs.lookup_if(sub.ino, b"small", |a| a.size == 999).unwrap());
    assert_eq!(vfs.live_inodes(), live, "not sent, not held");
    assert!(vfs.lookup_if(sub.ino, b"small", |a| a.size == 5).unwrap());
    assert_eq!(vfs.live_inodes(), live + 1);
}
