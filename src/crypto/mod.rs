//! Master keys, authenticated encryption and keyed blob ids.
//!
//! One random [`MasterKey`] per repository holds three independent 32-byte secrets: the data
//! key (XChaCha20-Poly1305 for every blob and file), the id key (keyed BLAKE3 for blob ids, so
//! holding the repository does not let anyone test whether it contains a known file), and the
//! chunker key (the FastCDC gear table, so chunk boundaries do not leak file fingerprints).
//! The master key is stored only wrapped under a password (see [`keyfile`]).

pub mod keyfile;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::id::BlobId;

/// Bytes added by [`MasterKey::seal`]: 24-byte nonce in front, 16-byte tag behind.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes to reserve in front of a plaintext for [`MasterKey::seal_in_place`].
pub const SEAL_NONCE_ROOM: usize = NONCE_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Authentication failed: the bytes were altered, truncated, or sealed under another key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authentication failed (data altered or wrong key)")]
pub struct OpenError;

/// The repository's secrets. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    data: [u8; 32],
    id: [u8; 32],
    chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("invariant: the OS random number generator is available");
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        let mut b = [0u8; 96];
        random_bytes(&mut b);
        let k = Self::from_bytes(&b);
        b.zeroize();
        k
    }

    /// A master key derived from a fixed seed; for tests and benchmarks only.
    pub fn from_seed(seed: u64) -> Self {
        let mut b = [0u8; 96];
        let mut h = blake3::Hasher::new_derive_key("cairn test master key");
        h.update(&seed.to_le_bytes());
        h.finalize_xof().fill(&mut b);
        Self::from_bytes(&b)
    }

    /// Rebuilds a key from its 96-byte serialisation (data ‖ id ‖ chunker).
    pub fn from_bytes(b: &[u8; 96]) -> Self {
        let mut k = MasterKey {
            data: [0; 32],
            id: [0; 32],
            chunker: [0; 32],
        };
        k.data.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..64]);
        k.chunker.copy_from_slice(&b[64..]);
        k
    }

    /// The 96-byte serialisation wrapped in key files.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 96]> {
        let mut b = zeroize::Zeroizing::new([0u8; 96]);
        b[..32].copy_from_slice(&self.data);
        b[32..64].copy_from_slice(&self.id);
        b[64..].copy_from_slice(&self.chunker);
        b
    }

    /// The keyed BLAKE3 id of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// Encrypts `plaintext` with a random nonce; `aad` is authenticated but not stored.
    /// Output: `nonce(24) ‖ ciphertext ‖ tag(16)`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.data, aad, plaintext)
    }

    /// Like [`seal`](Self::seal) for a plaintext the caller already placed after
    /// [`SEAL_NONCE_ROOM`] reserved bytes of `buf`; `buf` becomes the sealed form.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut Vec<u8>) {
        assert!(
            buf.len() >= NONCE_LEN,
            "invariant: room for the nonce was reserved"
        );
        seal_in_place_with(&self.data, aad, buf);
    }

    /// Decrypts and authenticates the output of [`seal`](Self::seal) under the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        open_with(&self.data, aad, sealed)
    }

    /// The 256-entry FastCDC gear table derived from the chunker key, and its left-shifted twin.
    pub fn gear_tables(&self) -> (Box<[u64; 256]>, Box<[u64; 256]>) {
        let mut bytes = [0u8; 256 * 8];
        let mut h = blake3::Hasher::new_keyed(&self.chunker);
        h.update(b"cairn fastcdc gear table v1");
        h.finalize_xof().fill(&mut bytes);
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(c.try_into().expect("invariant: 8-byte chunk"));
            gear[i] = v;
            gear_ls[i] = v << 1;
        }
        bytes.zeroize();
        (gear, gear_ls)
    }
}

/// Seals under a raw 32-byte key (the master key's data key, or a password-derived key).
pub(crate) fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.resize(NONCE_LEN, 0);
    out.extend_from_slice(plaintext);
    seal_in_place_with(key, aad, &mut out);
    out
}

/// Seals `buf[NONCE_LEN..]` in place: writes a fresh nonce into the first `NONCE_LEN` bytes
/// (reserved by the caller) and appends the tag. Saves a copy of large plaintexts.
fn seal_in_place_with(key: &[u8; 32], aad: &[u8], buf: &mut Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut buf[NONCE_LEN..]).into())
        .expect("invariant: plaintext below the AEAD length limit");
    buf.extend_from_slice(tag.as_slice());
}

/// Opens the output of [`seal_with`].
pub(crate) fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(OpenError);
    }
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().map_err(|_| OpenError)?;
    let body_end = sealed.len() - TAG_LEN;
    let tag_bytes: [u8; TAG_LEN] = sealed[body_end..].try_into().map_err(|_| OpenError)?;
    let mut buf = sealed[NONCE_LEN..body_end].to_vec();
    cipher
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            buf.as_mut_slice().into(),
            &Tag::from(tag_bytes),
        )
        .map_err(|_| OpenError)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::from_seed(1);
        let s = k.seal(b"aad", b"hello world");
        assert_eq!(s.len(), 11 + SEAL_OVERHEAD);
        assert_eq!(k.open(b"aad", &s).unwrap(), b"hello world");
        assert_eq!(k.open(b"other", &s), Err(OpenError));
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert_eq!(k.open(b"aad", &t), Err(OpenError), "flip at {i}");
        }
        assert_eq!(k.open(b"aad", &s[..10]), Err(OpenError));
        assert_eq!(MasterKey::from_seed(2).open(b"aad", &s), Err(OpenError));
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::from_seed(1);
        let b = MasterKey::from_seed(2);
        assert_ne!(a.blob_id(b"x"), b.blob_id(b"x"));
        assert_eq!(a.blob_id(b"x"), a.blob_id(b"x"));
        assert_ne!(a.blob_id(b"x").0, *blake3::hash(b"x").as_bytes());
    }

    #[test]
    fn key_bytes_round_trip() {
        let k = MasterKey::generate();
        let k2 = MasterKey::from_bytes(&k.to_bytes());
        assert_eq!(k.blob_id(b"z"), k2.blob_id(b"z"));
        let (g, gl) = k.gear_tables();
        assert!(g.iter().zip(gl.iter()).all(|(a, b)| *b == a << 1));
    }
}
