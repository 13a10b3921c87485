//! Content-defined chunking (FastCDC 2020) with a per-repository gear table.
//!
//! fastcdc's own seed only XORs one value into its built-in table, which leaves chunk
//! boundaries — and so file fingerprints — predictable. We derive all 256 gear entries from
//! the repository's chunker key and call the crate's `cut_gear` directly on a slice (a mapped
//! file or a read buffer), which is also the fastest way to drive it.

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use serde::{Deserialize, Serialize};

/// Chunk size bounds, stored in the repository `config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk (except a file's last) is smaller.
    pub min_size: u32,
    /// The target average.
    pub avg_size: u32,
    /// No chunk is larger.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB: large enough to keep the index small, small enough that an
    /// edit in a big file costs about a megabyte.
    fn default() -> Self {
        ChunkerParams {
            min_size: 512 * 1024,
            avg_size: 1024 * 1024,
            max_size: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds against what FastCDC supports; the message names the violated rule.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (
            self.min_size as usize,
            self.avg_size as usize,
            self.max_size as usize,
        );
        if !(MINIMUM_MIN..=MINIMUM_MAX).contains(&min) {
            return Err(format!(
                "chunk-min must be between {MINIMUM_MIN} and {MINIMUM_MAX} bytes"
            ));
        }
        if !(AVERAGE_MIN..=AVERAGE_MAX).contains(&avg) || !avg.is_power_of_two() {
            return Err(format!(
                "chunk-avg must be a power of two between {AVERAGE_MIN} and {AVERAGE_MAX} bytes"
            ));
        }
        if max > MAXIMUM_MAX {
            return Err(format!("chunk-max must be at most {MAXIMUM_MAX} bytes"));
        }
        if !(min < avg && avg < max) {
            return Err("chunk sizes must satisfy min < avg < max".into());
        }
        if min % 2 != 0 || max % 2 != 0 {
            return Err("chunk-min and chunk-max must be even".into());
        }
        Ok(())
    }
}

/// A keyed chunker; cheap to share between threads.
pub struct Chunker {
    params: ChunkerParams,
    masks: (u64, u64),
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Chunker {
    /// A chunker with the given bounds and gear tables (from `MasterKey::gear_tables`).
    pub fn new(params: ChunkerParams, gear: Box<[u64; 256]>, gear_ls: Box<[u64; 256]>) -> Self {
        let masks = select_masks(params.avg_size as usize, Normalization::Level1);
        Chunker {
            params,
            masks,
            gear,
            gear_ls,
        }
    }

    /// Length of the first chunk of `data` (all of it when `data` is shorter than the minimum).
    /// When `data` is a window of a longer stream and `last` is false, the returned cut is only
    /// final if it is below `data.len()`.
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        let (_, len) = cut_gear(
            data,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.masks.0,
            self.masks.1,
            self.masks.0 << 1,
            self.masks.1 << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        len.max(1).min(data.len())
    }

    /// Splits a whole in-memory buffer into chunk ranges.
    pub fn chunks<'a>(
        &'a self,
        data: &'a [u8],
    ) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= data.len() {
                return None;
            }
            let len = self.next_cut(&data[pos..]);
            let r = pos..pos + len;
            pos += len;
            Some(r)
        })
    }

    /// The largest chunk this chunker produces.
    pub fn max_size(&self) -> usize {
        self.params.max_size as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn chunker(seed: u64) -> Chunker {
        let (g, gl) = MasterKey::from_seed(seed).gear_tables();
        Chunker::new(
            ChunkerParams {
                min_size: 2048,
                avg_size: 8192,
                max_size: 65536,
            },
            g,
            gl,
        )
    }

    fn data(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        let mut h = blake3::Hasher::new();
        h.update(b"chunker test");
        h.finalize_xof().fill(&mut v);
        v
    }

    #[test]
    fn covers_input_and_respects_bounds() {
        let c = chunker(1);
        let d = data(1 << 20);
        let ranges: Vec<_> = c.chunks(&d).collect();
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, d.len());
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &ranges[..ranges.len() - 1] {
            assert!(r.len() >= 2048 && r.len() <= 65536, "{}", r.len());
        }
        assert!(ranges.len() > 60 && ranges.len() < 400, "{}", ranges.len());
    }

    #[test]
    fn boundaries_depend_on_key_and_resync_after_edit() {
        let d = data(1 << 20);
        let a: Vec<_> = chunker(1).chunks(&d).collect();
        let b: Vec<_> = chunker(2).chunks(&d).collect();
        assert_ne!(a, b);
        let mut e = d.clone();
        e[500_000] ^= 0xff;
        let c = chunker(1);
        let edited: Vec<_> = c.chunks(&e).collect();
        let same = edited.iter().filter(|r| a.contains(r)).count();
        assert!(
            same + 3 >= a.len(),
            "only {same} of {} chunks kept",
            a.len()
        );
    }

    #[test]
    fn validate_rejects_bad_bounds() {
        assert!(ChunkerParams::default().validate().is_ok());
        let bad = ChunkerParams {
            min_size: 4096,
            avg_size: 3000,
            max_size: 65536,
        };
        assert!(bad.validate().is_err());
        let bad = ChunkerParams {
            min_size: 8192,
            avg_size: 4096,
            max_size: 65536,
        };
        assert!(bad.validate().is_err());
    }
}
