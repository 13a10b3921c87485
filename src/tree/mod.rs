//! Nodes and trees: the Merkle structure of a snapshot.
//!
//! A tree is one directory's listing, sorted by raw name bytes. Its encoding is canonical —
//! the same directory always yields the same bytes, hence the same keyed blob id — so an
//! unchanged directory costs one reference in the next snapshot and `check` can skip subtrees
//! it has already proven.
//!
//! Encoding: `version (1 byte, = 1) ‖ CBOR array of nodes`, each node a CBOR map keyed by small
//! integers (see docs/FORMAT.md). Readers ignore keys they do not know, so new optional keys
//! can be added without a format break. `decode` rejects trees whose names are not strictly
//! sorted or not plain names; the bytes themselves are authenticated and re-hashed on load.

mod node;

pub use node::{Node, NodeKind, Xattr};

use crate::id::BlobId;

/// Current tree encoding version.
pub const TREE_VERSION: u8 = 1;

/// One directory's listing, sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries, strictly increasing by `name`.
    pub nodes: Vec<Node>,
}

/// Why bytes are not a valid tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Empty input or an unknown version byte.
    #[error("unknown tree version {0:?}")]
    Version(Option<u8>),
    /// CBOR decode failure.
    #[error("bad tree encoding: {0}")]
    Cbor(String),
    /// Names not strictly sorted, empty, or containing `/` or NUL.
    #[error("tree entry names are not canonical: {0}")]
    Names(String),
}

impl Tree {
    /// Adds a node; callers add in any order and [`encode`](Self::encode) sorts.
    pub fn push(&mut self, n: Node) {
        self.nodes.push(n);
    }

    /// The canonical bytes of this tree (sorts the nodes by name first).
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = vec![TREE_VERSION];
        minicbor::encode(&self.nodes, &mut out).expect("invariant: writing to a Vec cannot fail");
        out
    }

    /// Parses and validates tree bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeError> {
        match bytes.first() {
            Some(&TREE_VERSION) => {}
            v => return Err(TreeError::Version(v.copied())),
        }
        let nodes: Vec<Node> =
            minicbor::decode(&bytes[1..]).map_err(|e| TreeError::Cbor(e.to_string()))?;
        for n in &nodes {
            if n.name.is_empty()
                || n.name.contains(&b'/')
                || n.name.contains(&0)
                || n.name == b"."
                || n.name == b".."
            {
                return Err(TreeError::Names(format!(
                    "invalid name {:?}",
                    n.name_lossy()
                )));
            }
        }
        if nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(TreeError::Names("entries are not strictly sorted".into()));
        }
        Ok(Tree { nodes })
    }

    /// The node with this exact name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Every blob this tree references directly (subtrees and file content).
    pub fn blob_refs(&self) -> impl Iterator<Item = &BlobId> {
        self.nodes
            .iter()
            .flat_map(|n| n.subtree.iter().chain(n.content.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_node() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(
                any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
                1..20,
            ),
            0u8..7,
            any::<u32>(),
            any::<(u32, u32, i64, i64, u64, u64)>(),
            proptest::option::of("[a-z]{0,8}"),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 1..8),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ),
                0..3,
            ),
            proptest::collection::vec(any::<u8>(), 0..10),
        )
            .prop_filter("not . or ..", |t| t.0 != b"." && t.0 != b"..")
            .prop_map(
                |(
                    name,
                    k,
                    mode,
                    (uid, gid, mt, ct, size, ino),
                    user,
                    content,
                    subtree,
                    xattrs,
                    link,
                )| Node {
                    name,
                    kind: NodeKind::from_u8(k),
                    mode,
                    uid,
                    gid,
                    user: user.clone(),
                    group: user,
                    mtime_ns: mt,
                    ctime_ns: ct,
                    size,
                    inode: ino,
                    device: ino / 3,
                    nlink: 1 + (ino % 3),
                    link_target: link,
                    rdev: 0,
                    xattrs: xattrs
                        .into_iter()
                        .map(|(name, value)| Xattr { name, value })
                        .collect(),
                    content: content.into_iter().map(BlobId).collect(),
                    subtree: subtree.map(BlobId),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip_and_canonical(nodes in proptest::collection::vec(arb_node(), 0..12)) {
            let mut t = Tree::default();
            let mut seen = std::collections::HashSet::new();
            for n in nodes {
                if seen.insert(n.name.clone()) { t.push(n); }
            }
            let mut rev = Tree { nodes: t.nodes.iter().rev().cloned().collect() };
            let bytes = t.encode();
            prop_assert_eq!(&bytes, &rev.encode());
            let back = Tree::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &t);
            let mut again = back.clone();
            prop_assert_eq!(again.encode(), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Tree::decode(&bytes);
        }
    }

    #[test]
    fn rejects_unsorted_and_bad_version() {
        let n = |name: &[u8]| Node {
            name: name.to_vec(),
            ..Node::default()
        };
        let mut out = vec![TREE_VERSION];
        minicbor::encode(vec![n(b"b"), n(b"a")], &mut out).unwrap();
        assert!(matches!(Tree::decode(&out), Err(TreeError::Names(_))));
        assert!(matches!(
            Tree::decode(&[9]),
            Err(TreeError::Version(Some(9)))
        ));
        assert!(matches!(Tree::decode(&[]), Err(TreeError::Version(None))));
        let mut t = Tree {
            nodes: vec![n(b"x"), n(b"a")],
        };
        let b = t.encode();
        assert_eq!(Tree::decode(&b).unwrap().get(b"x").unwrap().name, b"x");
    }
}
