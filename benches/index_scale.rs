//! Index scaling: builds a repository whose index names `N` blobs and measures how fast the
//! local cache answers the two questions a run asks of it — "is this blob stored?" (dedup,
//! unchanged files) and "where is it?" (restore, check) — for stored and unknown ids.
//!
//! ```text
//! cargo bench --bench index_scale -- DIR N
//! ```
//! The blobs are synthetic (their packs do not exist): only the index and the cache are real.
//! `DIR/repo` (password from `CAIRN_PASSWORD`, default `bench`) and `DIR/cache` are left
//! behind so that `benches/scaling.sh` can time real snapshots into a repository of that size.

use std::time::{Duration, Instant};

use cairn::id::{BlobId, PackId};
use cairn::repo::blob::BlobType;
use cairn::repo::index::{IndexFile, IndexPack};
use cairn::repo::pack::PackEntry;
use cairn::repo::{InitOptions, Repository};

/// The id of synthetic blob `i` (ids above `N` are unknown).
fn id(i: u64) -> BlobId {
    BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn rate(what: &str, mut f: impl FnMut(u64)) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    println!("{what}: {per_s:.0} lookups/s ({:.1} µs each)", 1e6 / per_s);
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
    let repo = Repository::init(
        &dir.join("repo"),
        password.as_bytes(),
        &InitOptions::default(),
        &dir.join("cache"),
    )
    .expect("init (DIR/repo must not exist)");

    // Index files as a snapshot writes them: 50 packs of 1000 blobs each.
    let started = Instant::now();
    let mut next = 0u64;
    let mut pack_no = 0u64;
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
            f.packs.push(IndexPack {
                id: PackId(*blake3::hash(&(u64::MAX - pack_no).to_le_bytes()).as_bytes()),
                size: count * 16_000 + 1000,
                blob_type: BlobType::Data,
                blobs,
            });
            next += count;
        }
        repo.save_index(&f).expect("save index");
    }
    let db = std::fs::read_dir(dir.join("cache"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::metadata(e.path().join("index.sqlite")).ok())
        .map_or(0, |m| m.len());
    println!(
        "{n} blobs indexed in {:.1} s; cache database {} MB",
        started.elapsed().as_secs_f64(),
        db / 1_000_000
    );

    // Pseudo-random order, so the lookups do not walk the b-tree in sequence.
    let pick = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n;
    let cache = repo.cache();
    rate("contains, stored", |k| {
        assert!(cache.contains(&id(pick(k))).unwrap());
    });
    rate("contains, unknown", |k| {
        assert!(!cache.contains(&id(n + k)).unwrap());
    });
    rate("lookup, stored", |k| {
        assert!(cache.lookup(&id(pick(k))).unwrap().is_some());
    });
}
