//! Pack files: sealed blobs of one type back to back, then a sealed header, then its length.
//!
//! ```text
//! blob_1 ‖ … ‖ blob_n ‖ seal("cairn pack header v1", header) ‖ header_len (u32 LE)
//! header = "CRNP" ‖ version (1) ‖ blob type (1) ‖ count (u32 LE) ‖ count × entry
//! entry  = blob id (32) ‖ sealed length (u32 LE) ‖ raw length (u32 LE)
//! ```
//! Blob offsets are the running sum of the sealed lengths. The header makes every pack
//! self-describing: the index can be rebuilt from packs alone, and a pack left behind by a
//! crash before its index was written can be adopted by the next run.

use crate::backend::{Backend, FileKind, NewFile};
use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::id::{BlobId, PackId};
use crate::repo::blob::BlobType;

const MAGIC: &[u8; 4] = b"CRNP";
const VERSION: u8 = 1;
const HEADER_AAD: &[u8] = b"cairn pack header v1";
const ENTRY_LEN: usize = 40;
const FIXED_LEN: usize = 10;

/// One blob's place in a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The blob's id.
    pub id: BlobId,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_len: u32,
}

/// A decoded pack header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackHeader {
    /// The type of every blob in the pack.
    pub blob_type: BlobType,
    /// Entries in pack order.
    pub entries: Vec<PackEntry>,
}

impl PackHeader {
    /// Plaintext header bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + ENTRY_LEN * self.entries.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.blob_type as u8);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.length.to_le_bytes());
            out.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        out
    }

    /// Parses plaintext header bytes, recomputing offsets.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < FIXED_LEN || &b[..4] != MAGIC {
            return Err("bad pack header magic".into());
        }
        if b[4] != VERSION {
            return Err(format!("unknown pack header version {}", b[4]));
        }
        let blob_type =
            BlobType::from_u8(b[5]).ok_or_else(|| format!("unknown blob type {}", b[5]))?;
        let count = u32::from_le_bytes(b[6..10].try_into().expect("invariant: 4 bytes")) as usize;
        let body = &b[FIXED_LEN..];
        if body.len() != count.checked_mul(ENTRY_LEN).ok_or("count overflows")? {
            return Err(format!(
                "header says {count} blobs but holds {} bytes of entries",
                body.len()
            ));
        }
        let mut entries = Vec::with_capacity(count);
        let mut offset: u64 = 0;
        for e in body.chunks_exact(ENTRY_LEN) {
            let length = u32::from_le_bytes(e[32..36].try_into().expect("invariant: 4 bytes"));
            let raw_len = u32::from_le_bytes(e[36..40].try_into().expect("invariant: 4 bytes"));
            if (length as usize) < SEAL_OVERHEAD + 1 {
                return Err("blob shorter than its seal".into());
            }
            let off = u32::try_from(offset).map_err(|_| "pack larger than 4 GiB")?;
            entries.push(PackEntry {
                id: BlobId::from_slice(&e[..32]).expect("invariant: 32 bytes"),
                offset: off,
                length,
                raw_len,
            });
            offset += u64::from(length);
        }
        Ok(PackHeader { blob_type, entries })
    }

    /// Bytes covered by the blobs.
    pub fn data_len(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.length)).sum()
    }
}

/// Decodes the header from the last bytes of a pack (`tail` ends where the pack ends) and
/// checks it against the pack's total size. Needs at most the header and its length field.
pub fn read_header(key: &MasterKey, tail: &[u8], pack_size: u64) -> Result<PackHeader, String> {
    if tail.len() < 4 {
        return Err("pack too short for a trailer".into());
    }
    let hlen = u32::from_le_bytes(
        tail[tail.len() - 4..]
            .try_into()
            .expect("invariant: 4 bytes"),
    ) as usize;
    if hlen + 4 > tail.len() {
        return Err(format!("header length {hlen} exceeds the pack"));
    }
    let sealed = &tail[tail.len() - 4 - hlen..tail.len() - 4];
    let plain = key
        .open(HEADER_AAD, sealed)
        .map_err(|_| "pack header fails authentication".to_string())?;
    let h = PackHeader::decode(&plain)?;
    if h.data_len() + hlen as u64 + 4 != pack_size {
        return Err(format!(
            "header accounts for {} bytes, pack has {pack_size}",
            h.data_len() + hlen as u64 + 4
        ));
    }
    Ok(h)
}

/// Length of the sealed header for a pack whose trailer is `trailer` (the last 4 bytes).
pub fn header_len_from_trailer(trailer: &[u8; 4]) -> u64 {
    u64::from(u32::from_le_bytes(*trailer))
}

/// Collects sealed blobs of one type until the pack is full.
pub struct PackBuilder {
    blob_type: BlobType,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to store.
pub struct FinishedPack {
    /// Name: BLAKE3 of `bytes`.
    pub id: PackId,
    /// The complete file.
    pub bytes: Vec<u8>,
    /// What the index must say about it.
    pub header: PackHeader,
}

impl PackBuilder {
    /// An empty pack of `blob_type`.
    pub fn new(blob_type: BlobType) -> Self {
        PackBuilder {
            blob_type,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, id: BlobId, sealed: &[u8], raw_len: u32) {
        self.entries.push(PackEntry {
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_len,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Ids of the blobs added so far.
    pub fn ids(&self) -> impl Iterator<Item = BlobId> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// Number of blobs added so far.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header, appends the trailer and names the pack.
    pub fn finish(self, key: &MasterKey) -> FinishedPack {
        let header = PackHeader {
            blob_type: self.blob_type,
            entries: self.entries,
        };
        let sealed = key.seal(HEADER_AAD, &header.encode());
        let mut bytes = self.buf;
        bytes.extend_from_slice(&sealed);
        bytes.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = PackId(crate::id::file_hash(&bytes));
        FinishedPack { id, bytes, header }
    }
}

/// A pack written straight to the backend as blobs arrive (see [`Backend::create`]): the
/// snapshot pipeline never holds a whole pack in memory. Produces the same bytes as
/// [`PackBuilder`].
pub struct PackWriter<'b> {
    blob_type: BlobType,
    file: Box<dyn NewFile + 'b>,
    hasher: blake3::Hasher,
    entries: Vec<PackEntry>,
    len: usize,
}

impl<'b> PackWriter<'b> {
    /// Starts a pack of `blob_type` in `backend`.
    pub fn new(backend: &'b dyn Backend, blob_type: BlobType) -> crate::error::Result<Self> {
        Ok(PackWriter {
            blob_type,
            file: backend.create(FileKind::Pack)?,
            hasher: blake3::Hasher::new(),
            entries: Vec::new(),
            len: 0,
        })
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, id: BlobId, sealed: &[u8], raw_len: u32) -> crate::error::Result<()> {
        self.file.write(sealed)?;
        self.hasher.update(sealed);
        self.entries.push(PackEntry {
            id,
            offset: self.len as u32,
            length: sealed.len() as u32,
            raw_len,
        });
        self.len += sealed.len();
        Ok(())
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of blobs added so far.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the sealed header and trailer and stores the pack under its hash, durably.
    /// Returns its id, size and header.
    pub fn finish(mut self, key: &MasterKey) -> crate::error::Result<(PackId, u64, PackHeader)> {
        let header = PackHeader {
            blob_type: self.blob_type,
            entries: self.entries,
        };
        let mut tail = key.seal(HEADER_AAD, &header.encode());
        let sealed_len = tail.len() as u32;
        tail.extend_from_slice(&sealed_len.to_le_bytes());
        self.file.write(&tail)?;
        self.hasher.update(&tail);
        let id = PackId(*self.hasher.finalize().as_bytes());
        self.file.commit(&id.to_hex())?;
        Ok((id, (self.len + tail.len()) as u64, header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::blob::{open_blob, seal_blob};
    use crate::repo::config::Compression;
    use proptest::prelude::*;

    #[test]
    fn build_and_read_back() {
        let k = MasterKey::from_seed(1);
        let mut b = PackBuilder::new(BlobType::Data);
        let blobs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 1000 * (i + 1)]).collect();
        for d in &blobs {
            let id = k.blob_id(d);
            b.add(
                id,
                &seal_blob(&k, BlobType::Data, &id, d, Compression::Auto),
                d.len() as u32,
            );
        }
        let p = b.finish(&k);
        assert_eq!(p.id.0, *blake3::hash(&p.bytes).as_bytes());
        // Streaming the same blobs gives the same file (the header's seal is random, so only
        // the blob region and the header's plaintext can be compared).
        let mem = crate::backend::MemoryBackend::default();
        let mut w = PackWriter::new(&mem, BlobType::Data).unwrap();
        for e in &p.header.entries {
            let s = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
            w.add(e.id, s, e.raw_len).unwrap();
        }
        let (wid, wsize, wheader) = w.finish(&k).unwrap();
        let stored = mem.get(FileKind::Pack, &wid.to_hex()).unwrap();
        assert_eq!(wsize, stored.len() as u64);
        assert_eq!(wid.0, *blake3::hash(&stored).as_bytes());
        assert_eq!(wheader, p.header);
        assert_eq!(read_header(&k, &stored, wsize).unwrap(), p.header);
        assert_eq!(
            &stored[..p.header.data_len() as usize],
            &p.bytes[..p.header.data_len() as usize]
        );
        let h = read_header(&k, &p.bytes, p.bytes.len() as u64).unwrap();
        assert_eq!(h, p.header);
        for (e, d) in h.entries.iter().zip(&blobs) {
            let s = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(
                &open_blob(&k, BlobType::Data, &e.id, s, e.raw_len as usize).unwrap(),
                d
            );
        }
        for i in [0, p.bytes.len() / 2, p.bytes.len() - 3, p.bytes.len() - 30] {
            let mut bad = p.bytes.clone();
            bad[i] ^= 0x10;
            let h2 = read_header(&k, &bad, bad.len() as u64);
            if i < h.data_len() as usize {
                assert!(h2.is_ok(), "data damage leaves the header readable");
            } else {
                assert!(h2.is_err(), "flip at {i} detected");
            }
        }
        assert!(read_header(&k, &p.bytes, p.bytes.len() as u64 + 1).is_err());
    }

    proptest! {
        #[test]
        fn header_round_trip(entries in proptest::collection::vec((any::<[u8; 32]>(), 41u32..1 << 24, any::<u32>()), 0..50), tree in any::<bool>()) {
            let mut off = 0u32;
            let entries: Vec<PackEntry> = entries.into_iter().map(|(id, length, raw_len)| {
                let e = PackEntry { id: BlobId(id), offset: off, length, raw_len };
                off += length;
                e
            }).collect();
            let h = PackHeader { blob_type: if tree { BlobType::Tree } else { BlobType::Data }, entries };
            prop_assert_eq!(PackHeader::decode(&h.encode()).unwrap(), h);
        }

        #[test]
        fn header_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PackHeader::decode(&b);
        }
    }
}
