//! Micro-benchmarks of the snapshot pipeline's stages, per MiB of input:
//! `cargo bench --bench stages`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cairn::backend::{Backend, FileKind, LocalBackend};
use cairn::chunker::{Chunker, ChunkerParams};
use cairn::crypto::MasterKey;
use cairn::id::BlobId;
use cairn::id::{IndexId, PackId};
use cairn::repo::blob::{BlobType, seal_blob};
use cairn::repo::cache::Cache;
use cairn::repo::config::Compression;
use cairn::repo::index::{IndexFile, IndexPack};
use cairn::repo::pack::{PackBuilder, PackEntry, PackWriter};
use cairn::tree::{Node, NodeKind, Tree};

fn data(n: usize) -> Vec<u8> {
    // Half random, half text-like: a mix the compressor sees in real trees.
    let mut v = vec![0u8; n];
    blake3::Hasher::new().finalize_xof().fill(&mut v[..n / 2]);
    for (i, b) in v[n / 2..].iter_mut().enumerate() {
        *b = b"the quick brown fox jumps over the lazy dog "[i % 44];
    }
    v
}

fn stages(c: &mut Criterion) {
    let key = MasterKey::from_seed(1);
    let input = data(16 << 20);
    let (g, gl) = key.gear_tables();
    let chunker = Chunker::new(ChunkerParams::default(), g, gl);
    let chunk = &input[..1 << 20];
    let id = key.blob_id(chunk);

    let mut grp = c.benchmark_group("stages");
    grp.throughput(Throughput::Bytes(input.len() as u64));
    grp.bench_function("chunk 16MiB", |b| b.iter(|| chunker.chunks(&input).count()));
    grp.bench_function("keyed blake3 16MiB", |b| b.iter(|| key.blob_id(&input)));
    grp.throughput(Throughput::Bytes(chunk.len() as u64));
    grp.bench_function("seal 1MiB uncompressed", |b| {
        b.iter(|| seal_blob(&key, BlobType::Data, &id, chunk, Compression::Off))
    });
    grp.bench_function("compress+seal 1MiB zstd3", |b| {
        b.iter(|| seal_blob(&key, BlobType::Data, &id, chunk, Compression::Auto))
    });
    grp.bench_function("compress+seal 1MiB zstd1", |b| {
        b.iter(|| seal_blob(&key, BlobType::Data, &id, chunk, Compression::Level(1)))
    });
    let sealed = seal_blob(&key, BlobType::Data, &id, chunk, Compression::Off);
    grp.bench_function("pack build 16 blobs", |b| {
        b.iter(|| {
            let mut p = PackBuilder::new(BlobType::Data);
            for i in 0..16u8 {
                p.add(BlobId([i; 32]), &sealed, chunk.len() as u32);
            }
            p.finish(&key).id
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let local = LocalBackend::new(dir.path());
    local.create_layout().expect("layout");
    grp.bench_function("pack write 16 blobs to disk (fsync)", |b| {
        b.iter(|| {
            let mut w = PackWriter::new(&local, BlobType::Data).unwrap();
            for i in 0..16u8 {
                w.add(BlobId([i; 32]), &sealed, chunk.len() as u32).unwrap();
            }
            let (id, _, _) = w.finish(&key).unwrap();
            local.delete(FileKind::Pack, &id.to_hex()).unwrap();
        })
    });
    grp.finish();

    // The dedup question against a cache of 100,000 indexed blobs (benches/index_scale.rs
    // measures 10^6 and 10^7).
    let mut cache = Cache::open(&dir.path().join("cache.sqlite")).expect("cache");
    let ids: Vec<BlobId> = (0..100_000u64)
        .map(|i| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let index = IndexFile {
        packs: ids
            .chunks(1000)
            .enumerate()
            .map(|(p, c)| IndexPack {
                id: PackId([p as u8; 32]),
                size: 1 << 24,
                blob_type: BlobType::Data,
                blobs: c
                    .iter()
                    .enumerate()
                    .map(|(k, id)| PackEntry {
                        id: *id,
                        offset: k as u32 * 1000,
                        length: 1000,
                        raw_len: 2000,
                    })
                    .collect(),
            })
            .collect(),
        ..IndexFile::default()
    };
    cache
        .add_index_file(&IndexId([1; 32]), &index)
        .expect("index");
    let mut k = 0usize;
    c.bench_function("index lookup (100k blobs), stored", |b| {
        b.iter(|| {
            k = (k + 7919) % ids.len();
            cache.contains(&ids[k]).unwrap()
        })
    });
    c.bench_function("index lookup (100k blobs), unknown", |b| {
        b.iter(|| cache.contains(&BlobId([0xee; 32])).unwrap())
    });

    let mut tree = Tree::default();
    for i in 0..2000u32 {
        tree.push(Node {
            name: format!("file-{i:05}.txt").into_bytes(),
            kind: NodeKind::File,
            mode: 0o644,
            size: u64::from(i) * 100,
            mtime_ns: 1_700_000_000_000_000_000 + i64::from(i),
            content: vec![BlobId([i as u8; 32])],
            nlink: 1,
            ..Node::default()
        });
    }
    let bytes = tree.clone().encode();
    c.bench_function("tree encode 2000 nodes", |b| {
        b.iter(|| tree.clone().encode())
    });
    c.bench_function("tree decode 2000 nodes", |b| {
        b.iter(|| Tree::decode(&bytes).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = stages
}
criterion_main!(benches);
