//! A 1 GiB file through a real FUSE mount, served in-process so that a counting backend sees
//! every pack read: random reads fetch only the blobs they overlap, `cat` fetches each blob
//! once. Skipped (with the reason) where nothing can be mounted.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn::backend::{Backend, FileKind, NewFile};
use cairn::crypto::keyfile::KdfParams;
use cairn::ops::snapshot::{Input, SnapshotOptions, snapshot};
use cairn::ops::vfs::fuse::{MountOptions, mount};
use cairn::ops::vfs::{Vfs, VfsOptions};
use cairn::repo::{InitOptions, Repository};

const SIZE: u64 = 1 << 30;

/// The file's bytes at `offset`: a seekable pseudo-random stream.
fn expected(offset: u64, len: usize) -> Vec<u8> {
    let mut x = blake3::Hasher::new().update(b"big").finalize_xof();
    x.set_position(offset);
    let mut v = vec![0u8; len];
    x.fill(&mut v);
    v
}

/// Records every ranged pack read: (pack, offset) → times read.
struct Counting {
    inner: Arc<dyn Backend>,
    reads: Mutex<HashMap<(String, u64), u32>>,
}

impl Counting {
    fn take(&self) -> HashMap<(String, u64), u32> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl Backend for Counting {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: FileKind, name: &str) -> cairn::Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, off: u64, len: u64) -> cairn::Result<Vec<u8>> {
        if kind == FileKind::Pack {
            *self
                .reads
                .lock()
                .unwrap()
                .entry((name.to_string(), off))
                .or_default() += 1;
        }
        self.inner.get_range(kind, name, off, len)
    }
    fn list(&self, kind: FileKind) -> cairn::Result<Vec<(String, u64)>> {
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> cairn::Result<()> {
        self.inner.delete(kind, name)
    }
    fn stat(&self, kind: FileKind, name: &str) -> cairn::Result<Option<u64>> {
        self.inner.stat(kind, name)
    }
    fn create(&self, kind: FileKind) -> cairn::Result<Box<dyn NewFile + '_>> {
        self.inner.create(kind)
    }
    fn streams(&self) -> bool {
        self.inner.streams()
    }
}

/// A blob of the file: where it starts in the file and where it lies in its pack.
struct Piece {
    start: u64,
    end: u64,
    at: (String, u64),
}

#[test]
fn a_gibibyte_file_reads_only_the_blobs_it_needs_and_each_once() {
    if !Path::new("/dev/fuse").exists() || !common::is_root() {
        eprintln!("skipped: /dev/fuse is absent or this is not root, so nothing can be mounted");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The file, its repository and room to spare.
    let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < 3 * SIZE {
        eprintln!("skipped: {free} bytes free in the temporary folder, 3 GiB needed");
        return;
    }
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    {
        let f = std::fs::File::create(src.join("big")).unwrap();
        let step = 64 << 20;
        for off in (0..SIZE).step_by(step) {
            f.write_all_at(&expected(off, step), off).unwrap();
        }
    }
    let (root, cache) = (dir.path().join("repo"), dir.path().join("cache"));
    let opts = InitOptions {
        kdf: KdfParams::CHEAP,
        ..InitOptions::default()
    };
    let repo = Repository::init(&root, b"pw", &opts, &cache).unwrap();
    snapshot(
        &repo,
        Input::Paths(vec![src.clone()]),
        &SnapshotOptions::default(),
    )
    .unwrap();
    std::fs::remove_file(src.join("big")).unwrap();
    let (_, snap) = repo.resolve_snapshot("latest").unwrap();
    let node = cairn::ops::walk::find(&repo, &snap.tree, &src.join("big"))
        .unwrap()
        .unwrap();
    let mut pieces = Vec::new();
    let mut start = 0;
    for id in &node.content {
        let loc = repo.locate(id).unwrap().unwrap();
        let end = start + u64::from(loc.raw_len);
        pieces.push(Piece {
            start,
            end,
            at: (loc.pack.to_hex(), u64::from(loc.offset)),
        });
        start = end;
    }
    assert_eq!(start, SIZE);
    drop(repo);

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let inside = mnt
        .join("latest")
        .join(src.strip_prefix("/").unwrap())
        .join("big");
    let serve = || {
        let counting = Arc::new(Mutex::new(None::<Arc<Counting>>));
        let slot = counting.clone();
        let repo = Repository::open(&root, || Ok(b"pw".to_vec().into()), &cache)
            .unwrap()
            .with_backend(move |inner| {
                let c = Arc::new(Counting {
                    inner,
                    reads: Mutex::default(),
                });
                *slot.lock().unwrap() = Some(c.clone());
                c
            });
        // Room for every blob the random reads fetch, so none is fetched twice.
        let opts = VfsOptions {
            blob_cache_bytes: 256 << 20,
            ..VfsOptions::default()
        };
        let vfs = Vfs::new(Arc::new(repo), opts, |_| {}).unwrap();
        let m = mount(
            vfs,
            &mnt,
            &MountOptions {
                allow_other: false,
                threads: 4,
            },
        )
        .unwrap();
        let c = counting.lock().unwrap().clone().unwrap();
        (m, c)
    };

    // `cat`: the whole file, right, each blob fetched exactly once.
    let (m, counts) = serve();
    let mut f = std::fs::File::open(&inside).unwrap();
    counts.take(); // the trees on the way

    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n] == expected(off, n), "content at {off}");
        off += n as u64;
    }
    assert_eq!(off, SIZE);
    drop(f);
    let reads = counts.take();
    assert_eq!(reads.len(), pieces.len(), "every blob fetched");
    assert!(reads.values().all(|n| *n == 1), "each blob fetched once");
    m.unmount().unwrap();

    // 100 random reads: right bytes, and only the blobs under the pages they touch.
    let (m, counts) = serve();
    let f = std::fs::File::open(&inside).unwrap();
    nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM).unwrap();
    counts.take();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut fetched = std::collections::HashSet::new();
    for _ in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let off = seed % (SIZE - 4096);
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, off).unwrap();
        assert!(b == expected(off, 4096), "content at {off}");
        // The kernel asks for whole pages; a blob fetched by an earlier read is in the cache.
        let (lo, hi) = (off & !4095, (off + 4096 + 4095) & !4095);
        let mut want: Vec<_> = pieces
            .iter()
            .filter(|p| p.start < hi && p.end > lo)
            .map(|p| p.at.clone())
            .filter(|at| !fetched.contains(at))
            .collect();
        let reads = counts.take();
        assert!(reads.values().all(|n| *n == 1), "offset {off}: {reads:?}");
        let mut got: Vec<_> = reads.into_keys().collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "offset {off}: exactly the blobs under the read");
        fetched.extend(got);
    }
    assert!(fetched.len() >= 50, "{} blobs for 100 reads", fetched.len());
    drop(f);
    m.unmount().unwrap();
}
