//! Smoke run of every decoder of repository bytes (the fuzz targets' subjects) on valid
//! encodings and on mangled ones: truncations, bit flips, splices and hostile lengths. Any
//! file under `fuzz/regressions/<target>/` (crash inputs kept from fuzzing) is replayed too.

use cairn::crypto::MasterKey;
use cairn::crypto::keyfile::{KdfParams, KeyFile};
use cairn::id::{BlobId, PackId, SnapshotId};
use cairn::repo::blob::{BlobType, open_blob, open_file, seal_blob, seal_file, unframe};
use cairn::repo::config::{Compression, Config};
use cairn::repo::index::{IndexFile, IndexPack};
use cairn::repo::pack::{PackBuilder, PackEntry, PackHeader, read_header};
use cairn::repo::snapshot::Snapshot;
use cairn::tree::{Node, NodeKind, Tree, Xattr};

/// Valid input, every truncation, single-bit flips at many offsets, and a few splices.
fn mangled(valid: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![valid.to_vec(), Vec::new()];
    for n in 0..valid.len() {
        out.push(valid[..n].to_vec());
    }
    let step = (valid.len() / 200).max(1);
    for i in (0..valid.len()).step_by(step) {
        for bit in [0u8, 3, 7] {
            let mut v = valid.to_vec();
            v[i] ^= 1 << bit;
            out.push(v);
        }
        if valid[i] != 0xff {
            let mut v = valid.to_vec();
            v[i] = 0xff;
            out.push(v);
        }
    }
    let mut doubled = valid.to_vec();
    doubled.extend_from_slice(valid);
    out.push(doubled);
    out.push(vec![0xff; 64]);
    out.push(vec![0; 64]);
    out
}

fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn sample_tree() -> Tree {
    let mut t = Tree::default();
    t.push(Node {
        name: b"file".to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        size: 10,
        content: vec![BlobId([1; 32])],
        nlink: 1,
        ..Node::default()
    });
    t.push(Node {
        name: b"dir".to_vec(),
        kind: NodeKind::Dir,
        mode: 0o755,
        subtree: Some(BlobId([2; 32])),
        user: Some("u".into()),
        ..Node::default()
    });
    t.push(Node {
        name: b"\xffodd\nname".to_vec(),
        kind: NodeKind::Symlink,
        link_target: b"../x".to_vec(),
        xattrs: vec![Xattr {
            name: b"user.a".to_vec(),
            value: vec![0, 1, 2],
        }],
        ..Node::default()
    });
    t
}

#[test]
fn tree_decoder() {
    let mut inputs = mangled(&sample_tree().encode());
    inputs.extend(regressions("tree"));
    for b in inputs {
        if let Ok(t) = Tree::decode(&b) {
            let mut again = t.clone();
            assert_eq!(Tree::decode(&again.encode()).unwrap(), t);
        }
    }
}

#[test]
fn pack_header_and_trailer_decoders() {
    let key = MasterKey::from_seed(0);
    let h = PackHeader {
        blob_type: BlobType::Data,
        entries: vec![
            PackEntry {
                id: BlobId([4; 32]),
                offset: 0,
                length: 100,
                raw_len: 80,
            },
            PackEntry {
                id: BlobId([5; 32]),
                offset: 100,
                length: 60,
                raw_len: 60,
            },
        ],
    };
    let mut inputs = mangled(&h.encode());
    inputs.extend(regressions("pack_header"));
    for b in &inputs {
        if let Ok(d) = PackHeader::decode(b) {
            assert_eq!(PackHeader::decode(&d.encode()).unwrap(), d);
        }
    }
    let mut pb = PackBuilder::new(BlobType::Tree);
    let data = sample_tree().encode();
    let id = key.blob_id(&data);
    pb.add(
        id,
        &seal_blob(&key, BlobType::Tree, &id, &data, Compression::Auto),
        data.len() as u32,
    );
    let pack = pb.finish(&key);
    let mut tails = mangled(&pack.bytes);
    tails.extend(regressions("pack_trailer"));
    let data_len = pack.header.data_len() as usize;
    for b in &tails {
        if read_header(&key, b, b.len() as u64).is_ok() {
            // Only damage to the blob region (caught when blobs are opened) leaves it readable.
            assert_eq!(b.len(), pack.bytes.len());
            assert_eq!(b[data_len..], pack.bytes[data_len..]);
        }
    }
}

#[test]
fn index_decoder() {
    let f = IndexFile {
        packs: vec![IndexPack {
            id: PackId([7; 32]),
            size: 1000,
            blob_type: BlobType::Data,
            blobs: vec![PackEntry {
                id: BlobId([8; 32]),
                offset: 0,
                length: 500,
                raw_len: 400,
            }],
        }],
        ..IndexFile::default()
    };
    let mut inputs = mangled(&f.encode());
    inputs.extend(regressions("index_file"));
    for b in inputs {
        if let Ok(d) = IndexFile::decode(&b) {
            assert_eq!(IndexFile::decode(&d.encode()).unwrap(), d);
        }
    }
}

#[test]
fn snapshot_config_and_key_decoders() {
    let snap = Snapshot {
        time: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
        tree: BlobId([9; 32]),
        paths: vec!["/srv".into()],
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        tags: vec!["t".into()],
        parent: None,
        program_version: "cairn".into(),
        summary: Default::default(),
        original: Some(SnapshotId([7; 32])),
        reason: Some("before upgrade".into()),
    };
    let mut inputs = mangled(&snap.encode());
    inputs.extend(regressions("snapshot"));
    for b in inputs {
        if let Ok(s) = Snapshot::decode(&b) {
            assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }
    }
    let cfg = Config::new(Default::default(), Compression::Auto);
    let mut inputs = mangled(&cfg.encode());
    inputs.extend(regressions("config"));
    for b in inputs {
        let _ = Config::peek_version(&b);
        if let Ok(c) = Config::decode(&b) {
            assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        }
    }
    let k = KeyFile::wrap(&MasterKey::from_seed(1), b"pw", KdfParams::CHEAP, "h", "u").unwrap();
    let mut inputs = mangled(&k.encode());
    inputs.extend(regressions("key_file"));
    for b in inputs {
        if let Ok(d) = KeyFile::decode(&b) {
            assert_eq!(KeyFile::decode(&d.encode()).unwrap(), d);
        }
    }
}

#[test]
fn sealed_envelopes_reject_every_mangling() {
    let key = MasterKey::from_seed(2);
    let data = b"some blob content ".repeat(50);
    let id = key.blob_id(&data);
    let sealed = seal_blob(&key, BlobType::Data, &id, &data, Compression::Auto);
    let inputs = mangled(&sealed);
    let accepted = inputs
        .iter()
        .filter(|b| open_blob(&key, BlobType::Data, &id, b, data.len()).is_ok())
        .count();
    assert_eq!(accepted, 1);
    let file = seal_file(&key, b"cairn index v1", &data, Compression::Auto);
    let accepted = mangled(&file)
        .iter()
        .filter(|b| open_file(&key, b"cairn index v1", b, 1 << 20).is_ok())
        .count();
    assert_eq!(accepted, 1);
    let mut frames = mangled(&[1u8, 0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 0, 0]);
    frames.extend(regressions("blob_envelope"));
    for b in frames {
        let _ = unframe(&b, 1 << 16);
    }
}

#[test]
fn session_record_decoder() {
    use cairn::repo::session::{self, SessionInfo};
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let info = SessionInfo {
        host: "h".into(),
        pid: 42,
        user: "u".into(),
        command: "snapshot".into(),
        started: t,
        refreshed: t,
    };
    assert_eq!(SessionInfo::decode(&info.encode()).unwrap(), info);
    let mut inputs = mangled(&info.encode());
    inputs.extend(regressions("session"));
    for b in &inputs {
        if let Ok(s) = SessionInfo::decode(b) {
            assert_eq!(SessionInfo::decode(&s.encode()).unwrap(), s);
        }
    }
    // Sealed: only the untouched record opens.
    let key = MasterKey::from_seed(3);
    let accepted = mangled(&session::seal(&key, &info))
        .iter()
        .filter(|b| session::open(&key, b).is_ok())
        .count();
    assert_eq!(accepted, 1);
}
