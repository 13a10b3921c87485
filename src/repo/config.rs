//! The repository `config` file: what a reader must know to parse the rest, nothing secret.
//!
//! Plain JSON so that the format version can be checked (and a clear error given) before any
//! password is asked for.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;

/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How blobs are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Store blobs as they are.
    Off,
    /// zstd level 3, keeping a blob uncompressed when that does not save at least 1/32; a
    /// blob of 128 KiB or more whose two 8 KiB samples do not shrink by 1/16 at level 1 is
    /// stored without the full attempt.
    Auto,
    /// zstd at this level (1–22), same keep-if-smaller rule.
    Level(i32),
}

impl Compression {
    /// Parses `off`, `auto` or a zstd level.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            n => match n.parse::<i32>() {
                Ok(l) if (1..=22).contains(&l) => Ok(Compression::Level(l)),
                _ => Err(format!(
                    "compression must be off, auto or a zstd level 1-22, not {n:?}"
                )),
            },
        }
    }

    /// The zstd level to try, or `None` for no compression.
    pub fn level(self) -> Option<i32> {
        match self {
            Compression::Off => None,
            Compression::Auto => Some(3),
            Compression::Level(l) => Some(l),
        }
    }
}

/// Contents of `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// Random repository id (hex), also the name of the local cache folder.
    pub id: String,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// Default compression for new blobs.
    pub compression: Compression,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Config {
    /// A new configuration with a random id.
    pub fn new(chunker: ChunkerParams, compression: Compression) -> Self {
        let mut id = [0u8; 32];
        crate::crypto::random_bytes(&mut id);
        Config {
            version: FORMAT_VERSION,
            id: hex::encode(id),
            chunker,
            compression,
            pack_size: 16 << 20,
        }
    }

    /// JSON bytes as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("invariant: config serialises")
    }

    /// Just the version, readable even when the rest of a newer config is not.
    pub fn peek_version(bytes: &[u8]) -> Option<u32> {
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        serde_json::from_slice::<V>(bytes).ok().map(|v| v.version)
    }

    /// Parses and validates stored bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let c: Config = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every field against what readers accept.
    pub fn validate(&self) -> Result<(), String> {
        let c = self;
        c.chunker.validate()?;
        if let Compression::Level(l) = c.compression
            && !(1..=22).contains(&l)
        {
            return Err(format!("compression level {l} is not 1-22"));
        }
        if c.id.len() != 64 || hex::decode(&c.id).is_err() {
            return Err("repository id is not 64 hex digits".into());
        }
        if !(1 << 16..=1 << 30).contains(&c.pack_size) {
            return Err("pack size must be between 64 KiB and 1 GiB".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_peek() {
        let c = Config::new(ChunkerParams::default(), Compression::Level(7));
        let b = c.encode();
        assert_eq!(Config::decode(&b).unwrap(), c);
        assert_eq!(Config::peek_version(br#"{"version":9,"x":1}"#), Some(9));
        assert!(Config::decode(b"{").is_err());
        assert_eq!(Compression::parse("auto").unwrap(), Compression::Auto);
        assert!(Compression::parse("99").is_err());
    }
}
