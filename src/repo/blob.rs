//! Blob sealing: `nonce ‖ XChaCha20-Poly1305(codec ‖ payload) ‖ tag`, with the blob's type and
//! id as associated data so a blob cannot be passed off under another id or type.
//!
//! `codec` is 0 for stored bytes and 1 for zstd. Unpacked files (index, snapshot) use the same
//! envelope with a fixed associated data per kind.

use std::cell::RefCell;

use crate::crypto::{MasterKey, SEAL_NONCE_ROOM, SEAL_OVERHEAD};
use crate::id::BlobId;
use crate::repo::config::Compression;

/// Blob types; one pack holds blobs of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlobType {
    /// A chunk of file content.
    Data = 0,
    /// An encoded tree.
    Tree = 1,
}

impl BlobType {
    /// From its stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }

    /// Lowercase name for messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

thread_local! {
    /// One decompression context per thread: creating one per blob costs more than
    /// decompressing a small one. (Compression contexts are not kept: a fresh one is sized to
    /// its input, a kept one stays at its largest, and per-blob creation measured no slower.)
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `auto` first compresses two samples of a blob this large at level 1 ...
const TRIAL_MIN: usize = 128 << 10;
/// ... of this size each (the start and the middle) ...
const TRIAL_SAMPLE: usize = 8 << 10;

/// ... and stores the blob as it is when they shrink by less than 1/16: already-compressed
/// data (archives, media, compressed packages) then costs one cheap trial instead of a full
/// level-3 pass that would be thrown away.
fn looks_incompressible(data: &[u8]) -> bool {
    let mid = data.len() / 2;
    let mut packed = 0;
    for sample in [&data[..TRIAL_SAMPLE], &data[mid..mid + TRIAL_SAMPLE]] {
        packed += zstd::bulk::compress(sample, 1).map_or(sample.len(), |c| c.len());
    }
    packed + 2 * TRIAL_SAMPLE / 16 > 2 * TRIAL_SAMPLE
}

/// Appends `data` framed with a codec byte to `out`, compressing when it pays (saves at
/// least 1/32).
pub fn frame_into(out: &mut Vec<u8>, data: &[u8], compression: Compression) {
    let start = out.len();
    let skip =
        compression == Compression::Auto && data.len() >= TRIAL_MIN && looks_incompressible(data);
    if let Some(level) = compression.level()
        && data.len() >= 64
        && !skip
    {
        out.resize(start + 1 + zstd::zstd_safe::compress_bound(data.len()), 0);
        if let Ok(n) = zstd::bulk::compress_to_buffer(data, &mut out[start + 1..], level)
            && n + data.len() / 32 < data.len()
        {
            out[start] = CODEC_ZSTD;
            out.truncate(start + 1 + n);
            return;
        }
        out.truncate(start);
    }
    out.push(CODEC_RAW);
    out.extend_from_slice(data);
}

/// Frames `data` with a codec byte (see [`frame_into`]).
pub fn frame(data: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    frame_into(&mut out, data, compression);
    out
}

/// Reverses [`frame`]; `raw_len` bounds the decompressed size.
pub fn unframe(framed: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    match framed.split_first() {
        Some((&CODEC_RAW, rest)) => Ok(rest.to_vec()),
        Some((&CODEC_ZSTD, rest)) => DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
            }
            let d = d.as_mut().expect("invariant: set above");
            d.decompress(rest, raw_len)
                .map_err(|e| format!("zstd: {e}"))
        }),
        Some((c, _)) => Err(format!("unknown codec {c}")),
        None => Err("empty blob".into()),
    }
}

fn blob_aad(t: BlobType, id: &BlobId) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = t as u8;
    aad[1..].copy_from_slice(&id.0);
    aad
}

/// Compresses and seals one blob.
pub fn seal_blob(
    key: &MasterKey,
    t: BlobType,
    id: &BlobId,
    data: &[u8],
    c: Compression,
) -> Vec<u8> {
    let bound = zstd::zstd_safe::compress_bound(data.len()).max(data.len());
    let mut buf = Vec::with_capacity(SEAL_OVERHEAD + 1 + bound);
    buf.resize(SEAL_NONCE_ROOM, 0);
    frame_into(&mut buf, data, c);
    key.seal_in_place(&blob_aad(t, id), &mut buf);
    // Sealed blobs wait in memory until packed: keep them at their real size.
    buf.shrink_to_fit();
    buf
}

/// Opens one blob and proves its id: the seal must authenticate under (type, id) and the
/// keyed hash of the plaintext must equal `id`.
pub fn open_blob(
    key: &MasterKey,
    t: BlobType,
    id: &BlobId,
    sealed: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, String> {
    let framed = key
        .open(&blob_aad(t, id), sealed)
        .map_err(|e| e.to_string())?;
    let data = unframe(&framed, raw_len)?;
    if data.len() != raw_len {
        return Err(format!("length {} instead of {raw_len}", data.len()));
    }
    if key.blob_id(&data) != *id {
        return Err("content does not match its id".into());
    }
    Ok(data)
}

/// The cheaper half of [`open_blob`]: authenticates a sealed blob (its key, type and id) and
/// its codec, without decompressing or re-hashing the content. Proves that the bytes are
/// the ones the key's holder sealed for this id; what it does not prove is that the writer
/// compressed the right content (which `open_blob` does, at about twice the cost).
pub fn authenticate_blob(
    key: &MasterKey,
    t: BlobType,
    id: &BlobId,
    sealed: &[u8],
) -> Result<(), String> {
    let framed = key
        .open(&blob_aad(t, id), sealed)
        .map_err(|e| e.to_string())?;
    match framed.first() {
        Some(&CODEC_RAW | &CODEC_ZSTD) => Ok(()),
        Some(c) => Err(format!("unknown codec {c}")),
        None => Err("empty blob".into()),
    }
}

/// Seals an unpacked repository file: `version(1) ‖ seal(aad, frame(payload))`.
pub fn seal_file(key: &MasterKey, aad: &[u8], payload: &[u8], c: Compression) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&key.seal(aad, &frame(payload, c)));
    out
}

/// Opens what [`seal_file`] wrote. `max_len` bounds decompression (hostile input).
pub fn open_file(
    key: &MasterKey,
    aad: &[u8],
    bytes: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, String> {
    match bytes.split_first() {
        Some((1, rest)) => {
            let framed = key.open(aad, rest).map_err(|e| e.to_string())?;
            unframe(&framed, max_len)
        }
        Some((v, _)) => Err(format!("unknown file version {v}")),
        None => Err("empty file".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip_and_binding() {
        let k = MasterKey::from_seed(1);
        let data = b"abc".repeat(1000);
        let id = k.blob_id(&data);
        for c in [Compression::Off, Compression::Auto, Compression::Level(1)] {
            let s = seal_blob(&k, BlobType::Data, &id, &data, c);
            assert_eq!(
                open_blob(&k, BlobType::Data, &id, &s, data.len()).unwrap(),
                data
            );
            assert!(open_blob(&k, BlobType::Tree, &id, &s, data.len()).is_err());
            let other = k.blob_id(b"x");
            assert!(open_blob(&k, BlobType::Data, &other, &s, data.len()).is_err());
        }
        let s = seal_blob(&k, BlobType::Data, &id, &data, Compression::Auto);
        assert!(s.len() < 200, "compressible data is compressed");
    }

    #[test]
    fn incompressible_stays_raw() {
        let mut d = vec![0u8; 4096];
        crate::crypto::random_bytes(&mut d);
        assert_eq!(frame(&d, Compression::Auto)[0], CODEC_RAW);
        // The trial: random data skips compression, text is compressed.
        let mut big = vec![0u8; 1 << 20];
        blake3::Hasher::new().finalize_xof().fill(&mut big);
        assert!(looks_incompressible(&big));
        assert_eq!(frame(&big, Compression::Auto)[0], CODEC_RAW);
        let text: Vec<u8> = b"the quick brown fox "
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        assert!(!looks_incompressible(&text));
        assert_eq!(frame(&text, Compression::Auto)[0], CODEC_ZSTD);
        // An explicit level always makes the full attempt.
        assert_eq!(frame(&text, Compression::Level(3))[0], CODEC_ZSTD);
        assert_eq!(unframe(&frame(&d, Compression::Auto), d.len()).unwrap(), d);
    }
}
