//! Snapshot files: metadata and the root tree id, written last.
//!
//! Stored as `seal_file("cairn snapshot v1", frame(JSON))` (zstd when it saves space). JSON keeps
//! the record readable by `cat snapshot` and lets fields be added freely: unknown fields are
//! ignored, and optional ones (everything but time, tree, paths, hostname, username) default.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BlobId, SnapshotId};

/// The figures a snapshot run reports, kept with the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files whose content was re-read because their metadata changed.
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored (compressed, sealed) bytes of new blobs.
    pub data_added_packed: u64,
    /// Number of source entries skipped because of errors.
    pub errors: u64,
    /// Total size of the files in the snapshot.
    pub total_bytes: u64,
    /// Total number of files in the snapshot.
    pub total_files: u64,
}

/// A snapshot record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the snapshot was taken (or `--time`).
    pub time: DateTime<Utc>,
    /// Root tree.
    pub tree: BlobId,
    /// The source paths as given (absolute).
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Effective uid of the writer.
    #[serde(default)]
    pub uid: u32,
    /// Effective gid of the writer.
    #[serde(default)]
    pub gid: u32,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The snapshot this one was compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// Version of cairn that wrote it.
    #[serde(default)]
    pub program_version: String,
    /// Run figures.
    #[serde(default)]
    pub summary: Summary,
    /// For a copy made by `copy`: the snapshot it was copied from, in the repository where
    /// that snapshot was first taken. Lets `copy` recognise what it already copied, since a
    /// copy's id (the hash of a file sealed under another key) says nothing of its origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<SnapshotId>,
    /// Why it was taken ("before upgrade to 1.2"), as given to `run --reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Snapshot {
    /// JSON plaintext.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: snapshot serialises")
    }

    /// Parses JSON plaintext.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(b).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(secs in 0i64..4_000_000_000, ns in 0u32..1_000_000_000, paths in proptest::collection::vec(".{0,30}", 0..4),
                      tags in proptest::collection::vec("[a-z-]{1,10}", 0..4), host in ".{0,20}", parent in proptest::option::of(any::<[u8; 32]>()),
                      files in any::<u64>(), original in proptest::option::of(any::<[u8; 32]>()),
                      reason in proptest::option::of(".{0,40}")) {
            let s = Snapshot {
                time: Utc.timestamp_opt(secs, ns).unwrap(),
                tree: BlobId([3; 32]),
                paths, hostname: host, username: "u".into(), uid: 1, gid: 2, tags,
                parent: parent.map(SnapshotId),
                program_version: "cairn 0".into(),
                summary: Summary { files_new: files, ..Summary::default() },
                original: original.map(SnapshotId),
                reason,
            };
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Snapshot::decode(&b);
        }
    }
}
