//! Index scaling: builds a repository whose index names `N` blobs and measures how fast the
//! local cache answers the two questions a run asks of it — "is this blob stored?" (dedup,
//! unchanged files) and "where is it?" (restore, check) — for stored and unknown ids.
//!
//! ```text
//! cargo bench --bench index_scale -- DIR N
//! ```
//! The blobs are synthetic: only the index and the cache are real, and each pack the index
//! names is a sparse file of the indexed size (so that `check`'s structure pass and `prune`
//! see a consistent repository without the disk holding the data). `DIR/repo` (password from
//! `CAIRN_PASSWORD`, default `bench`) and `DIR/cache` are left behind so that
//! `benches/scaling.sh` can time real snapshots, checks and prunes at that size; when they
//! exist, a later call grows the same repository to its `N` (the count so far is kept in
//! `DIR/blobs`), so one run climbs 10⁶, 10⁷, … without rebuilding the lower steps.
//!
//! Prints one line of figures first (`blobs=N add_s=… write_s=… db_bytes=… wal_bytes=…
//! contains_us=… unknown_us=… lookup_us=…`), then the same in words.

use std::time::{Duration, Instant};

use cairn::backend::FileKind;
use cairn::id::{BlobId, PackId};
use cairn::repo::blob::BlobType;
use cairn::repo::index::{IndexFile, IndexPack};
use cairn::repo::pack::PackEntry;
use cairn::repo::{InitOptions, Repository};

/// The id of synthetic blob `i` (ids above `N` are unknown).
fn id(i: u64) -> BlobId {
    BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// Microseconds per call of `f`, over two seconds of calls.
fn rate(mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(dir), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: cargo bench --bench index_scale -- DIR N");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(dir);
    let password = std::env::var("CAIRN_PASSWORD").unwrap_or_else(|_| "bench".into());
    let count_file = dir.join("blobs");
    let have: u64 = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let repo = if dir.join("repo/config").exists() {
        let pw = password.clone();
        Repository::open(
            &dir.join("repo"),
            move || Ok(zeroize::Zeroizing::new(pw.into_bytes())),
            &dir.join("cache"),
        )
        .expect("open DIR/repo")
    } else {
        Repository::init(
            &dir.join("repo"),
            password.as_bytes(),
            &InitOptions::default(),
            &dir.join("cache"),
        )
        .expect("init (DIR/repo must not exist)")
    };
    assert!(have <= n, "DIR already holds {have} blobs, more than {n}");

    // Index files as a snapshot writes them: 50 packs of 1000 blobs each. Their rows are
    // staged in a rebuild that is dropped, and the cache is then rebuilt from every index
    // file, as `check` does (added one file at a time, as snapshots add theirs, each of
    // millions of rows would land at a random place of the table: hours for 10^8).
    let started = Instant::now();
    repo.cache().begin_rebuild().expect("stage");
    let mut next = have;
    // Pack numbers follow the blobs, so that a later call continues the same sequence.
    let mut pack_no = have.div_ceil(1000);
    while next < n {
        let mut f = IndexFile::default();
        while f.packs.len() < 50 && next < n {
            let count = 1000.min(n - next);
            let blobs = (0..count)
                .map(|k| PackEntry {
                    id: id(next + k),
                    offset: (k * 16_000) as u32,
                    length: 16_000,
                    raw_len: 40_000,
                })
                .collect();
            pack_no += 1;
            let id = PackId(*blake3::hash(&(u64::MAX - pack_no).to_le_bytes()).as_bytes());
            let size = count * 16_000 + 1000;
            let path = dir.join("repo").join(FileKind::Pack.rel_path(&id.to_hex()));
            std::fs::File::create(&path)
                .and_then(|p| p.set_len(size))
                .unwrap_or_else(|e| panic!("sparse pack {}: {e}", path.display()));
            f.packs.push(IndexPack {
                id,
                size,
                blob_type: BlobType::Data,
                blobs,
            });
            next += count;
        }
        repo.save_index(&f).expect("save index");
    }
    repo.cache().abort_rebuild();
    let write_s = started.elapsed().as_secs_f64();
    repo.rebuild_cache().expect("rebuild the cache");
    std::fs::write(&count_file, n.to_string()).expect("write DIR/blobs");
    let add_s = started.elapsed().as_secs_f64();
    let cache_file = |name: &str| {
        std::fs::read_dir(dir.join("cache"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::metadata(e.path().join(name)).ok())
            .map_or(0, |m| m.len())
    };
    let (db, wal) = (cache_file("index.sqlite"), cache_file("index.sqlite-wal"));

    // Pseudo-random order, so the lookups do not walk the b-tree in sequence.
    let pick = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n;
    let cache = repo.cache();
    let stored = rate(|k| assert!(cache.contains(&id(pick(k))).unwrap()));
    let unknown = rate(|k| assert!(!cache.contains(&id(n + k)).unwrap()));
    let lookup = rate(|k| assert!(cache.lookup(&id(pick(k))).unwrap().is_some()));
    println!(
        "blobs={n} add_s={add_s:.1} write_s={write_s:.1} db_bytes={db} wal_bytes={wal} contains_us={stored:.2} \
         unknown_us={unknown:.2} lookup_us={lookup:.2}"
    );
    println!(
        "{} blobs indexed in {add_s:.1} s (index files written in {write_s:.1} s, then the \
         cache rebuilt from all {n}); cache database {} MB ({:.0} B per blob; its WAL {} MB)",
        n - have,
        db / 1_000_000,
        db as f64 / n as f64,
        wal / 1_000_000
    );
    for (what, us) in [
        ("contains, stored", stored),
        ("contains, unknown", unknown),
        ("lookup, stored", lookup),
    ] {
        println!("{what}: {:.0} lookups/s ({us:.1} µs each)", 1e6 / us);
    }
}
