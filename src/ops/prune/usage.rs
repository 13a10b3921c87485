//! Which blobs the snapshots use and where they lie, held in a private temporary SQLite
//! database rather than in memory: a prune of a repository with millions of blobs and
//! thousands of snapshots stays within a few megabytes of RAM (SQLite spills to a temporary
//! file that is deleted when the database closes).

use std::collections::HashSet;

use rusqlite::{Connection, params};

use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SessionId};
use crate::repo::blob::BlobType;
use crate::repo::index::{IndexFile, IndexPack};
use crate::repo::pack::PackEntry;

// `blobs_by_id` is made by `assign`, once every index file is in: one sort then, instead of
// an insertion at a random place per blob while the index files are read, which SQLite's
// small page cache turned into a page read and a page write per blob once the index
// outgrew it (a plan over 10^6 blobs: 6.1 → 2.0 s; a 32 MiB page cache gained nothing more).
const SCHEMA: &str = "
PRAGMA temp_store = FILE;
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE groups (n INTEGER PRIMARY KEY, marked_at INTEGER NOT NULL, sessions BLOB NOT NULL);
CREATE TABLE packs (id BLOB PRIMARY KEY, blob_type INTEGER NOT NULL, size INTEGER NOT NULL,
                    grp INTEGER) WITHOUT ROWID;
CREATE TABLE blobs (pack BLOB NOT NULL, id BLOB NOT NULL, offset INTEGER NOT NULL,
                    length INTEGER NOT NULL, raw_len INTEGER NOT NULL,
                    PRIMARY KEY (pack, id)) WITHOUT ROWID;
CREATE TABLE used (id BLOB PRIMARY KEY, pack BLOB) WITHOUT ROWID;
CREATE TABLE avoid (id BLOB PRIMARY KEY) WITHOUT ROWID;
";

/// How one pack is used, after [`Usage::assign`].
#[derive(Clone, Debug)]
pub struct PackUse {
    /// The pack.
    pub id: PackId,
    /// Its blob type.
    pub blob_type: BlobType,
    /// Its size in bytes.
    pub size: u64,
    /// The marked group it is in, if it is marked (`None`: in use).
    pub group: Option<i64>,
    /// Blobs it holds.
    pub blobs: u64,
    /// Their sealed bytes (the pack less its header).
    pub blob_bytes: u64,
    /// Blobs of it that snapshots use (a blob stored twice is used in one pack only).
    pub used_blobs: u64,
    /// Sealed bytes of those.
    pub used_bytes: u64,
}

/// A marked group as recorded.
#[derive(Clone, Debug)]
pub struct Group {
    /// Its number in this database.
    pub n: i64,
    /// When it was marked.
    pub marked_at: i64,
    /// Sessions then running.
    pub sessions: Vec<SessionId>,
}

/// The temporary database.
pub struct Usage {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> Error {
    Error::Invalid(format!("prune's temporary database failed: {e}"))
}

impl Usage {
    /// Creates an empty database in a temporary file.
    pub fn new() -> Result<Self> {
        let conn = Connection::open("").map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Usage { conn })
    }

    /// Runs `f` in one transaction (many small inserts are slow one by one).
    pub fn batch<T>(&mut self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN").map_err(err)?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(err)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Records an index file. A pack listed in use anywhere is in use; a pack marked in
    /// several files keeps its first group.
    pub fn add_index(&self, f: &IndexFile) -> Result<()> {
        for p in &f.packs {
            self.conn
                .prepare_cached(
                    "INSERT INTO packs (id, blob_type, size, grp) VALUES (?1, ?2, ?3, NULL) \
                     ON CONFLICT(id) DO UPDATE SET grp = NULL",
                )
                .map_err(err)?
                .execute(params![&p.id.0[..], p.blob_type as u8, p.size as i64])
                .map_err(err)?;
            self.add_blobs(p)?;
        }
        for g in &f.marked {
            let sessions: Vec<u8> = g.sessions.iter().flat_map(|s| s.0).collect();
            self.conn
                .prepare_cached("INSERT INTO groups (marked_at, sessions) VALUES (?1, ?2)")
                .map_err(err)?
                .execute(params![g.marked_at, sessions])
                .map_err(err)?;
            let n = self.conn.last_insert_rowid();
            for p in &g.packs {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO packs (id, blob_type, size, grp) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(err)?
                    .execute(params![&p.id.0[..], p.blob_type as u8, p.size as i64, n])
                    .map_err(err)?;
                self.add_blobs(p)?;
            }
        }
        Ok(())
    }

    fn add_blobs(&self, p: &IndexPack) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO blobs (pack, id, offset, length, raw_len) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(err)?;
        for b in &p.blobs {
            st.execute(params![
                &p.id.0[..],
                &b.id.0[..],
                b.offset,
                b.length,
                b.raw_len
            ])
            .map_err(err)?;
        }
        Ok(())
    }

    /// Forgets a pack (it no longer exists in storage).
    pub fn drop_pack(&self, id: &PackId) -> Result<()> {
        self.conn
            .execute("DELETE FROM packs WHERE id = ?1", params![&id.0[..]])
            .map_err(err)?;
        self.conn
            .execute("DELETE FROM blobs WHERE pack = ?1", params![&id.0[..]])
            .map_err(err)?;
        Ok(())
    }

    /// True when the index (as loaded, stored packs only) names the pack.
    pub fn has_pack(&self, id: &PackId) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM packs WHERE id = ?1)",
                params![&id.0[..]],
                |r| r.get::<_, bool>(0),
            )
            .map_err(err)
    }

    /// Records a blob as used; false when it already was (so a tree is walked once however
    /// many snapshots share it).
    pub fn use_blob(&self, id: &BlobId) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO used (id) VALUES (?1)")
            .map_err(err)?
            .execute(params![&id.0[..]])
            .map_err(err)?;
        Ok(n == 1)
    }

    /// Chooses, for every used blob, the one copy that is kept: one outside `avoid` (packs
    /// named with `--repack`, which hold damage) when there is one; then one in a pack in
    /// use if there is one, else one in a marked pack (which is then taken back into use).
    /// Returns the number of used blobs found in no pack at all.
    pub fn assign(&self, avoid: &HashSet<PackId>) -> Result<u64> {
        self.conn
            .execute_batch("CREATE INDEX IF NOT EXISTS blobs_by_id ON blobs (id)")
            .map_err(err)?;
        for id in avoid {
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO avoid (id) VALUES (?1)",
                    params![&id.0[..]],
                )
                .map_err(err)?;
        }
        self.conn
            .execute_batch(
                "UPDATE used SET pack = (SELECT b.pack FROM blobs b JOIN packs p ON p.id = b.pack \
                 WHERE b.id = used.id ORDER BY EXISTS (SELECT 1 FROM avoid a WHERE a.id = p.id), \
                 p.grp IS NOT NULL, p.id LIMIT 1)",
            )
            .map_err(err)?;
        self.conn
            .query_row("SELECT COUNT(*) FROM used WHERE pack IS NULL", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(err)
    }

    /// A few used blobs that are in no pack, for the error message.
    pub fn missing_sample(&self) -> Result<Vec<BlobId>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM used WHERE pack IS NULL LIMIT 5")
            .map_err(err)?;
        let rows = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(err)?
            .filter_map(|r| r.ok().and_then(|b| BlobId::from_slice(&b)))
            .collect();
        Ok(rows)
    }

    /// Number of used blobs.
    pub fn used_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM used", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(err)
    }

    /// Every pack with its use, in id order.
    pub fn packs(&self) -> Result<Vec<PackUse>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.id, p.blob_type, p.size, p.grp, COUNT(b.id), COALESCE(SUM(b.length), 0), \
                 COALESCE(SUM(u.pack IS NOT NULL), 0), COALESCE(SUM(CASE WHEN u.pack IS NOT NULL THEN b.length ELSE 0 END), 0) \
                 FROM packs p LEFT JOIN blobs b ON b.pack = p.id \
                 LEFT JOIN used u ON u.id = b.id AND u.pack = p.id \
                 GROUP BY p.id ORDER BY p.id",
            )
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u8>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, t, size, group, blobs, blob_bytes, used_blobs, used_bytes) =
                row.map_err(err)?;
            let (Some(id), Some(blob_type)) = (PackId::from_slice(&id), BlobType::from_u8(t))
            else {
                continue;
            };
            out.push(PackUse {
                id,
                blob_type,
                size: size as u64,
                group,
                blobs: blobs as u64,
                blob_bytes: blob_bytes as u64,
                used_blobs: used_blobs as u64,
                used_bytes: used_bytes as u64,
            });
        }
        Ok(out)
    }

    /// The marked groups as recorded.
    pub fn groups(&self) -> Result<Vec<Group>> {
        let mut st = self
            .conn
            .prepare("SELECT n, marked_at, sessions FROM groups ORDER BY n")
            .map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (n, marked_at, s) = row.map_err(err)?;
            let sessions = s
                .chunks_exact(32)
                .map(|c| SessionId(c.try_into().expect("invariant: 32 bytes")))
                .collect();
            out.push(Group {
                n,
                marked_at,
                sessions,
            });
        }
        Ok(out)
    }

    /// A pack's blobs in offset order; with `used_only`, just those kept in this pack.
    pub fn blobs_of(&self, pack: &PackId, used_only: bool) -> Result<Vec<PackEntry>> {
        let sql = if used_only {
            "SELECT b.id, b.offset, b.length, b.raw_len FROM blobs b JOIN used u \
             ON u.id = b.id AND u.pack = b.pack WHERE b.pack = ?1 ORDER BY b.offset"
        } else {
            "SELECT id, offset, length, raw_len FROM blobs WHERE pack = ?1 ORDER BY offset"
        };
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let rows = st
            .query_map(params![&pack.0[..]], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, offset, length, raw_len) = row.map_err(err)?;
            if let Some(id) = BlobId::from_slice(&id) {
                out.push(PackEntry {
                    id,
                    offset,
                    length,
                    raw_len,
                });
            }
        }
        Ok(out)
    }

    /// The pack holding the kept copy of a used blob.
    #[cfg(test)]
    pub fn pack_of(&self, id: &BlobId) -> Result<Option<PackId>> {
        use rusqlite::OptionalExtension;
        let p: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT pack FROM used WHERE id = ?1",
                params![&id.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        Ok(p.flatten().and_then(|b| PackId::from_slice(&b)))
    }
}

/// Builds an index pack entry from stored rows.
pub fn index_pack(p: &PackUse, blobs: Vec<PackEntry>) -> IndexPack {
    IndexPack {
        id: p.id,
        size: p.size,
        blob_type: p.blob_type,
        blobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::MarkedGroup;

    fn pack(id: u8, blobs: &[u8]) -> IndexPack {
        IndexPack {
            id: PackId([id; 32]),
            size: 1000,
            blob_type: BlobType::Data,
            blobs: blobs
                .iter()
                .enumerate()
                .map(|(i, b)| PackEntry {
                    id: BlobId([*b; 32]),
                    offset: 100 * i as u32,
                    length: 100,
                    raw_len: 90,
                })
                .collect(),
        }
    }

    #[test]
    fn live_copies_are_preferred_and_counts_add_up() {
        let mut u = Usage::new().unwrap();
        let f = IndexFile {
            packs: vec![pack(1, &[1, 2, 3]), pack(2, &[3, 4])],
            marked: vec![MarkedGroup {
                marked_at: 7,
                sessions: vec![SessionId([9; 32])],
                packs: vec![pack(0, &[1, 5])],
            }],
        };
        u.batch(|u| u.add_index(&f)).unwrap();
        for b in [1u8, 3, 5, 6] {
            assert!(u.use_blob(&BlobId([b; 32])).unwrap());
        }
        assert!(!u.use_blob(&BlobId([1; 32])).unwrap());
        assert_eq!(u.assign(&HashSet::new()).unwrap(), 1, "blob 6 is nowhere");
        assert_eq!(u.missing_sample().unwrap(), vec![BlobId([6; 32])]);
        // Blob 1 is in marked pack 0 and live pack 1: the live copy is kept.
        assert_eq!(u.pack_of(&BlobId([1; 32])).unwrap(), Some(PackId([1; 32])));
        // Blob 5 is only in the marked pack: that copy is kept.
        assert_eq!(u.pack_of(&BlobId([5; 32])).unwrap(), Some(PackId([0; 32])));
        let packs = u.packs().unwrap();
        let by = |i: u8| packs.iter().find(|p| p.id == PackId([i; 32])).unwrap();
        assert_eq!((by(0).used_blobs, by(0).group.is_some()), (1, true));
        assert_eq!(
            (by(1).blobs, by(1).used_blobs, by(1).used_bytes),
            (3, 2, 200)
        );
        // Blob 3 is in packs 1 and 2; one copy is kept (the first pack by id).
        assert_eq!(by(2).used_blobs, 0);
        let g = u.groups().unwrap();
        assert_eq!(
            (g[0].marked_at, g[0].sessions.clone()),
            (7, vec![SessionId([9; 32])])
        );
        let kept: Vec<_> = u.blobs_of(&PackId([1; 32]), true).unwrap();
        assert_eq!(
            kept.iter().map(|e| e.id.0[0]).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(u.blobs_of(&PackId([1; 32]), false).unwrap().len(), 3);
        u.drop_pack(&PackId([0; 32])).unwrap();
        assert_eq!(u.packs().unwrap().len(), 2);
    }

    #[test]
    fn a_copy_outside_the_packs_to_repack_is_preferred() {
        let mut u = Usage::new().unwrap();
        let f = IndexFile {
            packs: vec![pack(1, &[3]), pack(2, &[3])],
            ..IndexFile::default()
        };
        u.batch(|u| u.add_index(&f)).unwrap();
        u.use_blob(&BlobId([3; 32])).unwrap();
        // Pack 1 holds the damaged copy: the intact one in pack 2 is kept.
        u.assign(&HashSet::from([PackId([1; 32])])).unwrap();
        assert_eq!(u.pack_of(&BlobId([3; 32])).unwrap(), Some(PackId([2; 32])));
        assert!(u.has_pack(&PackId([2; 32])).unwrap());
        assert!(!u.has_pack(&PackId([9; 32])).unwrap());
    }
}
