//! Key files: the master key wrapped under a password with Argon2id.
//!
//! A key file is JSON (it is small, read once, and benefits from being inspectable):
//! `{"version":1,"created":…,"host":…,"user":…,"kdf":{"algorithm":"argon2id","memory_kib":…,
//! "iterations":…,"parallelism":…,"salt":hex},"data":hex}` where `data` is
//! `nonce(24) ‖ XChaCha20-Poly1305(master key bytes) ‖ tag(16)` under the Argon2id output, with
//! the associated data `cairn key v1`. Several key files may wrap the same master key.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{MasterKey, open_with, random_bytes, seal_with};

const KEY_AAD: &[u8] = b"cairn key v1";
/// The only key-file version this build writes and reads.
pub const KEY_VERSION: u32 = 1;

/// Argon2id cost parameters. Stored in each key file so they can change per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The cheapest parameters Argon2id accepts, which protect nothing: for tests and
    /// benchmarks that create many repositories.
    pub const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: about a quarter second on a current core.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// A decoded key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key-file format version.
    pub version: u32,
    /// When the key was added (RFC 3339).
    pub created: String,
    /// Host that added the key.
    pub host: String,
    /// User that added the key.
    pub user: String,
    kdf: Kdf,
    data: String,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Not valid JSON or missing fields.
    #[error("not a valid key file: {0}")]
    Malformed(String),
    /// A version this build does not know.
    #[error("key file version {0} is not supported")]
    Version(u32),
    /// The password does not open this key.
    #[error("password does not open this key")]
    WrongPassword,
}

fn derive(password: &[u8], salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| KeyFileError::Malformed(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, out.as_mut())
        .map_err(|e| KeyFileError::Malformed(format!("argon2: {e}")))?;
    Ok(out)
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        host: &str,
        user: &str,
    ) -> Result<Self, KeyFileError> {
        let mut salt = [0u8; 32];
        random_bytes(&mut salt);
        let kek = derive(password, &salt, params)?;
        let data = seal_with(&kek, KEY_AAD, master.to_bytes().as_ref());
        Ok(KeyFile {
            version: KEY_VERSION,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: host.to_string(),
            user: user.to_string(),
            kdf: Kdf {
                algorithm: "argon2id".into(),
                params,
                salt: hex::encode(salt),
            },
            data: hex::encode(data),
        })
    }

    /// Unwraps the master key; `WrongPassword` when the seal does not authenticate.
    pub fn unwrap_key(&self, password: &[u8]) -> Result<MasterKey, KeyFileError> {
        if self.version != KEY_VERSION {
            return Err(KeyFileError::Version(self.version));
        }
        if self.kdf.algorithm != "argon2id" {
            return Err(KeyFileError::Malformed(format!(
                "unknown kdf {:?}",
                self.kdf.algorithm
            )));
        }
        let salt =
            hex::decode(&self.kdf.salt).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        let data = hex::decode(&self.data).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        let kek = derive(password, &salt, self.kdf.params)?;
        let plain = Zeroizing::new(
            open_with(&kek, KEY_AAD, &data).map_err(|_| KeyFileError::WrongPassword)?,
        );
        let bytes: &[u8; 96] = plain
            .as_slice()
            .try_into()
            .map_err(|_| KeyFileError::Malformed("wrapped key has the wrong length".into()))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// The KDF parameters this key was wrapped with.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf.params
    }

    /// JSON bytes as stored under `keys/`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("invariant: key file serialises")
    }

    /// Parses stored bytes; rejects anything but a complete, well-formed key file.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyFileError> {
        let k: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| KeyFileError::Malformed(e.to_string()))?;
        // Argon2 rejects absurd costs itself, but refuse ones that would take minutes or GiBs
        // before a hostile key file gets that far.
        let p = k.kdf.params;
        if p.memory_kib > 4 * 1024 * 1024 || p.iterations > 100 || p.parallelism > 64 {
            return Err(KeyFileError::Malformed(
                "KDF parameters out of range".into(),
            ));
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHEAP: KdfParams = KdfParams::CHEAP;

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate();
        let k = KeyFile::wrap(&m, b"pw", CHEAP, "h", "u").unwrap();
        let k2 = KeyFile::decode(&k.encode()).unwrap();
        assert_eq!(k, k2);
        assert_eq!(k2.unwrap_key(b"pw").unwrap().blob_id(b"a"), m.blob_id(b"a"));
        assert!(matches!(
            k2.unwrap_key(b"nope"),
            Err(KeyFileError::WrongPassword)
        ));
    }

    #[test]
    fn truncated_is_malformed() {
        let m = MasterKey::generate();
        let enc = KeyFile::wrap(&m, b"pw", CHEAP, "h", "u").unwrap().encode();
        for n in [0, 1, enc.len() / 2, enc.len() - 2] {
            assert!(matches!(
                KeyFile::decode(&enc[..n]),
                Err(KeyFileError::Malformed(_))
            ));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn encoding_round_trips(host in ".{0,20}", user in "[a-z]{0,8}", m in 8u32..200, t in 1u32..4) {
            let master = MasterKey::from_seed(3);
            let params = KdfParams { memory_kib: m.max(8), iterations: t, parallelism: 1 };
            let k = KeyFile::wrap(&master, b"pw", params, &host, &user).unwrap();
            let d = KeyFile::decode(&k.encode()).unwrap();
            prop_assert_eq!(&d, &k);
            prop_assert_eq!(d.kdf_params(), params);
        }
    }
}
