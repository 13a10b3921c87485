//! Index files: which blobs live where.
//!
//! Plaintext layout (sealed as an unpacked file, see `blob::seal_file`):
//! ```text
//! "CRNI" ‖ version (2) ‖ pack count (u32 LE) ‖ packs ‖ group count (u32 LE) ‖ marked groups
//! pack = pack id (32) ‖ pack size (u64 LE) ‖ blob type (1) ‖ blob count (u32 LE) ‖ blobs
//! blob = blob id (32) ‖ offset (u32 LE) ‖ sealed length (u32 LE) ‖ raw length (u32 LE)
//! marked group = marked at (i64 LE, Unix seconds) ‖ session count (u32 LE) ‖ session ids (32 each)
//!                ‖ pack count (u32 LE) ‖ packs
//! ```
//! Version 1 files end after the packs (no marked groups) and are still read.
//!
//! Marked packs are those a prune found unused: still listed (so they can be restored to use
//! if a snapshot written meanwhile needs them, and so that no run adopts them as unindexed),
//! but never used for dedup, and deleted by a later prune once the sessions recorded with
//! them have ended.
//! Fixed-width records: decoding checks every count against the bytes left before allocating,
//! so hostile counts cannot force large allocations.

use crate::id::{BlobId, PackId, SessionId};
use crate::repo::blob::BlobType;
use crate::repo::pack::PackEntry;

const MAGIC: &[u8; 4] = b"CRNI";
const VERSION: u8 = 2;
const PACK_FIXED: usize = 32 + 8 + 1 + 4;
const BLOB_LEN: usize = 32 + 12;

/// One pack's part of an index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    /// The pack.
    pub id: PackId,
    /// Its size in bytes, checked by `check`.
    pub size: u64,
    /// Type of its blobs.
    pub blob_type: BlobType,
    /// Its blobs.
    pub blobs: Vec<PackEntry>,
}

/// Packs a prune marked as unused at one moment, with the sessions then running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkedGroup {
    /// When they were marked (Unix seconds, the prune's clock).
    pub marked_at: i64,
    /// Sessions running at that moment: the packs are deleted only once all have ended.
    pub sessions: Vec<SessionId>,
    /// The marked packs, with their blobs (so they can be taken back into use).
    pub packs: Vec<IndexPack>,
}

/// A decoded index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Packs described by this file.
    pub packs: Vec<IndexPack>,
    /// Packs marked for deletion.
    pub marked: Vec<MarkedGroup>,
}

fn encode_packs(out: &mut Vec<u8>, packs: &[IndexPack]) {
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.size.to_le_bytes());
        out.push(p.blob_type as u8);
        out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
        for b in &p.blobs {
            out.extend_from_slice(&b.id.0);
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.length.to_le_bytes());
            out.extend_from_slice(&b.raw_len.to_le_bytes());
        }
    }
}

fn packs_len(packs: &[IndexPack]) -> usize {
    4 + packs
        .iter()
        .map(|p| PACK_FIXED + BLOB_LEN * p.blobs.len())
        .sum::<usize>()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("index file truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("invariant: 4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("invariant: 8 bytes"),
        ))
    }
    fn id(&mut self) -> Result<[u8; 32], String> {
        Ok(self.take(32)?.try_into().expect("invariant: 32 bytes"))
    }
}

impl IndexFile {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        let n = packs_len(&self.packs)
            + self
                .marked
                .iter()
                .map(|g| 12 + 32 * g.sessions.len() + packs_len(&g.packs))
                .sum::<usize>();
        let mut out = Vec::with_capacity(9 + n);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        encode_packs(&mut out, &self.packs);
        out.extend_from_slice(&(self.marked.len() as u32).to_le_bytes());
        for g in &self.marked {
            out.extend_from_slice(&g.marked_at.to_le_bytes());
            out.extend_from_slice(&(g.sessions.len() as u32).to_le_bytes());
            for s in &g.sessions {
                out.extend_from_slice(&s.0);
            }
            encode_packs(&mut out, &g.packs);
        }
        out
    }

    /// Parses plaintext bytes; rejects trailing garbage and blobs outside their pack.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let mut r = Reader(b);
        if r.take(4)? != MAGIC {
            return Err("bad index magic".into());
        }
        let v = r.take(1)?[0];
        if v != 1 && v != VERSION {
            return Err(format!("unknown index version {v}"));
        }
        let packs = read_packs(&mut r)?;
        let mut marked = Vec::new();
        if v >= 2 {
            let ngroups = r.u32()? as usize;
            if ngroups > r.0.len() / 16 {
                return Err("marked group count exceeds the file".into());
            }
            for _ in 0..ngroups {
                let marked_at = i64::from_le_bytes(r.take(8)?.try_into().expect("invariant: 8"));
                let nsessions = r.u32()? as usize;
                if nsessions > r.0.len() / 32 {
                    return Err("session count exceeds the file".into());
                }
                let mut sessions = Vec::with_capacity(nsessions);
                for _ in 0..nsessions {
                    sessions.push(SessionId(r.id()?));
                }
                let packs = read_packs(&mut r)?;
                marked.push(MarkedGroup {
                    marked_at,
                    sessions,
                    packs,
                });
            }
        }
        if !r.0.is_empty() {
            return Err("trailing bytes after index".into());
        }
        Ok(IndexFile { packs, marked })
    }
}

fn read_packs(r: &mut Reader<'_>) -> Result<Vec<IndexPack>, String> {
    let npacks = r.u32()? as usize;
    if npacks > r.0.len() / PACK_FIXED {
        return Err("pack count exceeds the file".into());
    }
    let mut packs = Vec::with_capacity(npacks);
    for _ in 0..npacks {
        let id = PackId(r.id()?);
        let size = r.u64()?;
        let t = r.take(1)?[0];
        let blob_type = BlobType::from_u8(t).ok_or_else(|| format!("unknown blob type {t}"))?;
        let nblobs = r.u32()? as usize;
        if nblobs > r.0.len() / BLOB_LEN {
            return Err("blob count exceeds the file".into());
        }
        let mut blobs = Vec::with_capacity(nblobs);
        for _ in 0..nblobs {
            let e = PackEntry {
                id: BlobId(r.id()?),
                offset: r.u32()?,
                length: r.u32()?,
                raw_len: r.u32()?,
            };
            if u64::from(e.offset) + u64::from(e.length) > size {
                return Err(format!(
                    "blob {} lies outside pack {}",
                    e.id.short(),
                    id.short()
                ));
            }
            blobs.push(e);
        }
        packs.push(IndexPack {
            id,
            size,
            blob_type,
            blobs,
        });
    }
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_pack() -> impl Strategy<Value = IndexPack> {
        (
            any::<[u8; 32]>(),
            any::<bool>(),
            proptest::collection::vec(
                (any::<[u8; 32]>(), 0u32..1000, 0u32..1000, any::<u32>()),
                0..20,
            ),
        )
            .prop_map(|(id, tree, blobs)| IndexPack {
                id: PackId(id),
                size: 1 << 20,
                blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                blobs: blobs
                    .into_iter()
                    .map(|(id, offset, length, raw_len)| PackEntry {
                        id: BlobId(id),
                        offset,
                        length,
                        raw_len,
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn round_trip(packs in proptest::collection::vec(arb_pack(), 0..6),
                      marked in proptest::collection::vec((any::<i64>(), proptest::collection::vec(any::<[u8; 32]>(), 0..3),
                                                           proptest::collection::vec(arb_pack(), 0..3)), 0..3)) {
            let marked = marked.into_iter().map(|(marked_at, s, packs)| MarkedGroup {
                marked_at, sessions: s.into_iter().map(SessionId).collect(), packs,
            }).collect();
            let f = IndexFile { packs, marked };
            prop_assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&b);
        }

        #[test]
        fn truncation_is_rejected(packs in proptest::collection::vec(arb_pack(), 1..4), cut in any::<prop::sample::Index>()) {
            let enc = IndexFile { packs, marked: vec![MarkedGroup { marked_at: 1, sessions: vec![], packs: vec![] }] }.encode();
            let n = cut.index(enc.len());
            prop_assert!(IndexFile::decode(&enc[..n]).is_err());
        }
    }

    #[test]
    fn version_1_is_read() {
        let mut b = b"CRNI\x01".to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(IndexFile::decode(&b).unwrap(), IndexFile::default());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert!(
            IndexFile::decode(&b).is_err(),
            "version 1 has no marked section"
        );
    }

    #[test]
    fn hostile_count_is_rejected_cheaply() {
        let mut b = b"CRNI\x01".to_vec();
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(IndexFile::decode(&b).is_err());
    }
}
