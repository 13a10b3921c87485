//! Index files: which blobs live where.
//!
//! Plaintext layout (sealed as an unpacked file, see `blob::seal_file`):
//! ```text
//! "CRNI" ‖ version (1) ‖ pack count (u32 LE) ‖ packs
//! pack = pack id (32) ‖ pack size (u64 LE) ‖ blob type (1) ‖ blob count (u32 LE) ‖ blobs
//! blob = blob id (32) ‖ offset (u32 LE) ‖ sealed length (u32 LE) ‖ raw length (u32 LE)
//! ```
//! Fixed-width records: decoding checks every count against the bytes left before allocating,
//! so hostile counts cannot force large allocations.

use crate::id::{BlobId, PackId};
use crate::repo::blob::BlobType;
use crate::repo::pack::PackEntry;

const MAGIC: &[u8; 4] = b"CRNI";
const VERSION: u8 = 1;
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

/// A decoded index file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Packs described by this file.
    pub packs: Vec<IndexPack>,
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
        let n: usize = self
            .packs
            .iter()
            .map(|p| PACK_FIXED + BLOB_LEN * p.blobs.len())
            .sum();
        let mut out = Vec::with_capacity(9 + n);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
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
        out
    }

    /// Parses plaintext bytes; rejects trailing garbage and blobs outside their pack.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let mut r = Reader(b);
        if r.take(4)? != MAGIC {
            return Err("bad index magic".into());
        }
        let v = r.take(1)?[0];
        if v != VERSION {
            return Err(format!("unknown index version {v}"));
        }
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
        if !r.0.is_empty() {
            return Err("trailing bytes after index".into());
        }
        Ok(IndexFile { packs })
    }
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
        fn round_trip(packs in proptest::collection::vec(arb_pack(), 0..6)) {
            let f = IndexFile { packs };
            prop_assert_eq!(IndexFile::decode(&f.encode()).unwrap(), f);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&b);
        }

        #[test]
        fn truncation_is_rejected(packs in proptest::collection::vec(arb_pack(), 1..4), cut in any::<prop::sample::Index>()) {
            let enc = IndexFile { packs }.encode();
            let n = cut.index(enc.len());
            prop_assert!(IndexFile::decode(&enc[..n]).is_err());
        }
    }

    #[test]
    fn hostile_count_is_rejected_cheaply() {
        let mut b = b"CRNI\x01".to_vec();
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(IndexFile::decode(&b).is_err());
    }
}
