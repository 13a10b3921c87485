//! Restore planning: the blobs a batch of files needs, grouped by pack and coalesced into read
//! runs, so each needed range of a pack is read once — however many files, or places in one
//! file, hold the blob — and packs are read in parallel.

use std::collections::HashMap;

use crate::id::{BlobId, PackId};
use crate::repo::blob::BlobType;
use crate::repo::cache::BlobLocation;

/// How reads of one pack are coalesced: two needed blobs closer than `max_gap` are read in one
/// request (the gap is read and dropped: one larger read beats two round trips), and a run
/// grows no longer than `max_run` (a single larger blob still makes a run of its own).
#[derive(Clone, Copy, Debug)]
pub(super) struct Coalesce {
    pub(super) max_gap: u64,
    pub(super) max_run: u64,
}

impl Coalesce {
    /// On a disk: short runs, a small gap.
    pub(super) const LOCAL: Coalesce = Coalesce {
        max_gap: 256 << 10,
        max_run: 8 << 20,
    };
    /// On a server, where a request costs a round trip (and on object storage, money): up
    /// to a whole 32 MiB pack in one ranged GET, gaps up to 1 MiB read through.
    pub(super) const REMOTE: Coalesce = Coalesce {
        max_gap: 1 << 20,
        max_run: 32 << 20,
    };
}

/// Where a blob's plaintext goes: file `file` of the batch, at byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) file: usize,
    pub(super) offset: u64,
}

/// One blob to read, and every place it goes.
#[derive(Debug)]
pub(super) struct Need {
    pub(super) id: BlobId,
    pub(super) blob_type: BlobType,
    pub(super) offset: u64,
    pub(super) length: u64,
    pub(super) raw_len: usize,
    pub(super) places: Vec<Place>,
}

/// One contiguous read of a pack.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) pack: PackId,
    pub(super) start: u64,
    pub(super) len: u64,
    /// In offset order, each within `start..start + len`.
    pub(super) needs: Vec<Need>,
}

/// Collects needs, then turns them into runs.
#[derive(Default)]
pub(super) struct Planner {
    packs: HashMap<PackId, HashMap<BlobId, Need>>,
}

impl Planner {
    /// Blob `id`, stored at `loc`, goes to `place`.
    pub(super) fn add(&mut self, id: BlobId, loc: &BlobLocation, place: Place) {
        self.packs
            .entry(loc.pack)
            .or_default()
            .entry(id)
            .or_insert_with(|| Need {
                id,
                blob_type: loc.blob_type,
                offset: loc.offset.into(),
                length: loc.length.into(),
                raw_len: loc.raw_len as usize,
                places: Vec::new(),
            })
            .places
            .push(place);
    }

    /// The reads, ordered by pack and offset.
    pub(super) fn runs(self, c: Coalesce) -> Vec<Run> {
        let mut packs: Vec<_> = self.packs.into_iter().collect();
        packs.sort_by_key(|(p, _)| *p);
        let mut runs = Vec::new();
        for (pack, needs) in packs {
            let mut needs: Vec<Need> = needs.into_values().collect();
            needs.sort_by_key(|n| n.offset);
            let mut cur: Option<Run> = None;
            for n in needs {
                let end = n.offset + n.length;
                match &mut cur {
                    Some(r)
                        if n.offset <= r.start + r.len + c.max_gap
                            && end.max(r.start + r.len) - r.start <= c.max_run =>
                    {
                        r.len = end.max(r.start + r.len) - r.start;
                        r.needs.push(n);
                    }
                    _ => {
                        runs.extend(cur.take());
                        cur = Some(Run {
                            pack,
                            start: n.offset,
                            len: n.length,
                            needs: vec![n],
                        });
                    }
                }
            }
            runs.extend(cur);
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(pack: u8, offset: u32, length: u32) -> BlobLocation {
        BlobLocation {
            pack: PackId([pack; 32]),
            blob_type: BlobType::Data,
            offset,
            length,
            raw_len: length,
        }
    }

    #[test]
    fn runs_read_each_needed_blob_once_and_coalesce_neighbours() {
        let mut p = Planner::default();
        let id = |i: u8| BlobId([i; 32]);
        // Pack 1: two neighbours, one far away; blob 2 is needed in two places.
        p.add(id(1), &loc(1, 0, 1000), Place { file: 0, offset: 0 });
        p.add(
            id(2),
            &loc(1, 1000, 500),
            Place {
                file: 0,
                offset: 1000,
            },
        );
        p.add(id(2), &loc(1, 1000, 500), Place { file: 3, offset: 0 });
        p.add(id(3), &loc(1, 10 << 20, 100), Place { file: 1, offset: 0 });
        // Pack 2: blobs larger than a run together.
        p.add(id(4), &loc(2, 0, 6 << 20), Place { file: 2, offset: 0 });
        p.add(
            id(5),
            &loc(2, 6 << 20, 6 << 20),
            Place {
                file: 2,
                offset: 6 << 20,
            },
        );
        let runs = p.runs(Coalesce::LOCAL);
        let shape: Vec<(u8, u64, u64, usize)> = runs
            .iter()
            .map(|r| (r.pack.0[0], r.start, r.len, r.needs.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, 0, 1500, 2),
                (1, 10 << 20, 100, 1),
                (2, 0, 6 << 20, 1),
                (2, 6 << 20, 6 << 20, 1),
            ]
        );
        assert_eq!(runs[0].needs[1].places.len(), 2);
        // On a server, runs grow to a whole pack: pack 2 is one read.
        let mut q = Planner::default();
        q.add(id(4), &loc(2, 0, 6 << 20), Place { file: 2, offset: 0 });
        q.add(
            id(5),
            &loc(2, (6 << 20) + (512 << 10), 6 << 20),
            Place {
                file: 2,
                offset: 6 << 20,
            },
        );
        let remote = q.runs(Coalesce::REMOTE);
        assert_eq!(remote.len(), 1);
        assert_eq!(remote[0].len, (12 << 20) + (512 << 10));
        for r in &runs {
            for n in &r.needs {
                assert!(n.offset >= r.start && n.offset + n.length <= r.start + r.len);
            }
        }
    }
}
