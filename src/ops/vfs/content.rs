//! Reading file content at any offset: where each chunk starts, a bounded cache of opened
//! blobs, and read-ahead for sequential readers.
//!
//! A file's content list gives its blob ids in order; their plaintext lengths (from the index)
//! give each chunk's start, so a read at offset X binary-searches the chunk holding X and
//! opens only the chunks that overlap the read. Opened blobs stay in an LRU bounded by bytes.
//! A cache slot is created before its blob is loaded and loads once (`OnceLock`), so a reader
//! and the read-ahead asking for the same blob at the same time share one backend read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crate::repo::cache::BlobLocation;

/// Where each chunk of one file is.
#[derive(Debug)]
pub struct ChunkMap {
    ids: Vec<BlobId>,
    locs: Vec<BlobLocation>,
    /// `ends[i]` is the offset just past chunk `i`.
    ends: Vec<u64>,
}

impl ChunkMap {
    /// The map of a content list; fails when a chunk is not indexed or the lengths do not add
    /// up to the file's size.
    pub fn new(repo: &Repository, content: &[BlobId], size: u64) -> Result<ChunkMap> {
        let mut locs = Vec::with_capacity(content.len());
        let mut ends = Vec::with_capacity(content.len());
        let mut end = 0u64;
        for id in content {
            let loc = repo
                .locate(id)?
                .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
            end += u64::from(loc.raw_len);
            ends.push(end);
            locs.push(loc);
        }
        if end != size {
            return Err(Error::corrupt(
                "file content",
                format!("chunks add up to {end} bytes but the file has {size}"),
            ));
        }
        Ok(ChunkMap {
            ids: content.to_vec(),
            locs,
            ends,
        })
    }

    /// File size.
    pub fn size(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The chunk holding byte `off` (`len()` when `off` is at or past the end).
    pub fn chunk_at(&self, off: u64) -> usize {
        self.ends.partition_point(|&e| e <= off)
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the file has no content.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn start(&self, i: usize) -> u64 {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }
}

/// One cached blob: created empty, filled once.
/// What was wrong with a blob: the `what` and `why` of a `Corrupt` error.
type Failure = (String, String);

pub(super) struct Slot {
    /// The blob, or what was wrong with it.
    data: OnceLock<std::result::Result<Arc<Vec<u8>>, Failure>>,
}

/// Values by blob id, least recently used first, with the bytes each accounts for and
/// their sum.
pub(super) type ByteLru<V> = (LruCache<BlobId, (V, u64)>, u64);

/// Opened blobs, least recently used out first, bounded by their plaintext bytes.
pub struct BlobCache {
    /// Slots with the plaintext size each accounts for, and the sum of those sizes.
    pub(super) slots: Mutex<ByteLru<Arc<Slot>>>,
    max_bytes: u64,
    /// Blobs loaded from the backend (for statistics and tests).
    loads: AtomicU64,
}

impl BlobCache {
    /// A cache holding up to `max_bytes` of plaintext (and always the blob being read).
    pub fn new(max_bytes: u64) -> BlobCache {
        BlobCache {
            slots: Mutex::new((LruCache::unbounded(), 0)),
            max_bytes,
            loads: AtomicU64::new(0),
        }
    }

    /// How many blobs were read from the backend so far.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn slot(&self, id: &BlobId, size: u64) -> Arc<Slot> {
        let mut g = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, _)) = g.0.get(id) {
            return s.clone();
        }
        let s = Arc::new(Slot {
            data: OnceLock::new(),
        });
        g.0.put(*id, (s.clone(), size));
        g.1 += size;
        // An evicted slot that is still being read stays alive with its readers only.
        while g.1 > self.max_bytes && g.0.len() > 1 {
            let Some((_, (_, n))) = g.0.pop_lru() else {
                break;
            };
            g.1 -= n;
        }
        s
    }

    fn forget_failed(&self, id: &BlobId, slot: &Arc<Slot>) {
        let mut g = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.peek(id).is_some_and(|(s, _)| Arc::ptr_eq(s, slot))
            && let Some((_, n)) = g.0.pop(id)
        {
            g.1 -= n;
        }
    }

    /// The plaintext of chunk `i` of `map`, from the cache or loaded (and proven) once.
    pub fn get(&self, repo: &Repository, map: &ChunkMap, i: usize) -> Result<Arc<Vec<u8>>> {
        let (id, loc) = (&map.ids[i], &map.locs[i]);
        let size = u64::from(loc.raw_len);
        let slot = self.slot(id, size);
        let r = slot.data.get_or_init(|| {
            self.loads.fetch_add(1, Ordering::Relaxed);
            repo.load_blob_at(id, loc)
                .map(Arc::new)
                .map_err(|e| match e {
                    Error::Corrupt { what, why } => (what, why),
                    e => (format!("blob {id} in pack {}", loc.pack), e.to_string()),
                })
        });
        match r {
            Ok(d) => Ok(d.clone()),
            Err((what, why)) => {
                let e = Error::corrupt(what.clone(), why.clone());
                self.forget_failed(id, &slot);
                Err(e)
            }
        }
    }

    /// Whether chunk `i` of `map` is cached or being loaded.
    fn has(&self, map: &ChunkMap, i: usize) -> bool {
        let g = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        g.0.contains(&map.ids[i])
    }
}

/// How far ahead a sequential reader is served.
#[derive(Clone, Copy, Debug)]
pub struct ReadAhead {
    /// Bytes of chunks loaded ahead of the reader.
    pub bytes: u64,
}

/// An open file: its chunk map and what its reader did last, to see sequential reading.
pub struct OpenFile {
    map: Arc<ChunkMap>,
    /// What the file is, for log lines: its name and snapshot.
    pub name: String,
    /// The offset just past the last read.
    next: AtomicU64,
    /// Chunks below this index have been handed to the read-ahead.
    ahead: AtomicUsize,
    /// Bytes read sequentially since the last jump.
    streak: AtomicU64,
}

impl OpenFile {
    /// An open file over `map`, called `name` in log lines.
    pub fn new(map: Arc<ChunkMap>, name: String) -> OpenFile {
        OpenFile {
            map,
            name,
            next: AtomicU64::new(u64::MAX),
            ahead: AtomicUsize::new(0),
            streak: AtomicU64::new(0),
        }
    }

    /// Reads up to `len` bytes at `off`, opening only the chunks that overlap the range; a
    /// read that continues the previous one starts loading the chunks after it.
    pub fn read(
        &self,
        repo: &Arc<Repository>,
        cache: &Arc<BlobCache>,
        ahead: ReadAhead,
        off: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let map = &self.map;
        let end = off.saturating_add(len as u64).min(map.size());
        if off >= end {
            return Ok(Vec::new());
        }
        let sequential = self.next.swap(end, Ordering::Relaxed).abs_diff(off) <= SEQUENTIAL_SLACK;
        let streak = if sequential {
            self.streak.fetch_add(end - off, Ordering::Relaxed) + (end - off)
        } else {
            // A jump: what was handed to the read-ahead before says nothing about here.
            self.streak.store(end - off, Ordering::Relaxed);
            self.ahead.store(0, Ordering::Relaxed);
            end - off
        };
        let first = map.chunk_at(off);
        let last = map.chunk_at(end - 1);
        // Only a reader that went on past the kernel's own read-ahead window is streaming:
        // a random read arrives as a few neighbouring requests too. The window then grows
        // with the streak, up to `ahead.bytes`.
        if sequential && streak > STREAMING {
            let bytes = ahead.bytes.min(streak);
            self.read_ahead(repo, cache, ReadAhead { bytes }, last + 1);
        }
        let mut out = Vec::with_capacity((end - off) as usize);
        for i in first..=last {
            let data = cache.get(repo, map, i)?;
            let start = map.start(i);
            let from = off.max(start) - start;
            let to = end.min(map.ends[i]) - start;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        Ok(out)
    }

    /// Starts loading chunks from `from` on, up to `ahead.bytes`, each on the pool.
    fn read_ahead(
        &self,
        repo: &Arc<Repository>,
        cache: &Arc<BlobCache>,
        ahead: ReadAhead,
        from: usize,
    ) {
        let map = &self.map;
        let start = self.ahead.load(Ordering::Relaxed).max(from);
        let limit = map.start(from.min(map.len())) + ahead.bytes;
        let mut i = start;
        while i < map.len() && map.start(i) < limit {
            if !cache.has(map, i) {
                let (repo, cache, map) = (repo.clone(), cache.clone(), map.clone());
                // Failures are not reported here: the reader that reaches the chunk loads it
                // again and gets the error for its own read.
                rayon::spawn(move || {
                    let _ = cache.get(&repo, &map, i);
                });
            }
            i += 1;
        }
        self.ahead.fetch_max(i, Ordering::Relaxed);
    }
}

/// The blob cache's size unless set: 64 MiB (what restic's mount keeps too). It needs room
/// for the read-ahead window; the kernel's page cache keeps what was read.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Reads within this distance of where the last one ended count as sequential: the kernel
/// sends read-ahead requests from several threads, not always in order.
const SEQUENTIAL_SLACK: u64 = 256 << 10;

/// Bytes read in a row after which a reader counts as streaming: more than the kernel's
/// read-ahead window (`max_readahead`, 1 MiB), which turns one random read into several
/// neighbouring requests.
const STREAMING: u64 = 2 << 20;
