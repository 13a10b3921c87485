//! Typed 32-byte identifiers.
//!
//! Every id kind gets its own newtype so a pack id can never be passed where a blob id is
//! expected. Blob ids are keyed BLAKE3 of the plaintext (see `crypto`); the ids of stored files
//! (packs, index files, snapshots) are the unkeyed BLAKE3 of their exact bytes, which lets
//! `b3sum` audit a repository without the key.

use std::fmt;
use std::str::FromStr;

/// Error returned when a string is not 64 lowercase or uppercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a 64-digit hex id")]
pub struct ParseIdError(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, for tables and messages.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// Reads an id from a 32-byte slice; `None` if the length is wrong.
            pub fn from_slice(b: &[u8]) -> Option<Self> {
                <[u8; 32]>::try_from(b).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; 32];
                if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
                    return Err(ParseIdError(s.to_string()));
                }
                Ok(Self(out))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl<C> minicbor::Encode<C> for $name {
            fn encode<W: minicbor::encode::Write>(
                &self,
                e: &mut minicbor::Encoder<W>,
                _: &mut C,
            ) -> Result<(), minicbor::encode::Error<W::Error>> {
                e.bytes(&self.0)?;
                Ok(())
            }
        }

        impl<'b, C> minicbor::Decode<'b, C> for $name {
            fn decode(
                d: &mut minicbor::Decoder<'b>,
                _: &mut C,
            ) -> Result<Self, minicbor::decode::Error> {
                let b = d.bytes()?;
                Self::from_slice(b)
                    .ok_or_else(|| minicbor::decode::Error::message("id must be 32 bytes"))
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a blob's plaintext (a data chunk or an encoded tree).
    BlobId
);
id_type!(
    /// BLAKE3 of a pack file's bytes.
    PackId
);
id_type!(
    /// BLAKE3 of an index file's bytes.
    IndexId
);
id_type!(
    /// BLAKE3 of a snapshot file's bytes.
    SnapshotId
);
id_type!(
    /// Random name of a key file.
    KeyId
);
id_type!(
    /// Random name of a writer session file.
    SessionId
);

/// Hex of the unkeyed BLAKE3 of `bytes`: the name of every content-addressed repository file.
pub fn file_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = BlobId([7u8; 32]);
        let s = id.to_hex();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<BlobId>().unwrap(), id);
        assert_eq!(id.short(), "07070707");
        assert!("xyz".parse::<BlobId>().is_err());
        assert!("0".repeat(63).parse::<BlobId>().is_err());
    }
}
