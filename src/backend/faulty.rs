//! A backend that breaks on purpose, for tests.
//!
//! [`FaultyBackend`] wraps any backend and, decided by a seed, fails writes and reads,
//! writes short files that it reports as complete, flips a bit of what it reads, slows calls
//! down, or "crashes" after a number of operations (every later call fails, as if the process
//! had died with what was written so far). Tests run snapshot, restore, check and prune on it
//! to show that transient faults are ridden out (by [`super::RetryBackend`] over it),
//! permanent ones stop a run with an error, and damage is reported rather than restored.

use std::io::ErrorKind;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Backend, FileKind};
use crate::error::{Error, Result};

/// Which faults to inject, each as a probability per call in parts per million.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// `put` fails (nothing written) with a transient error.
    pub fail_write: u32,
    /// `put` writes only a prefix of the data and reports success (a lying store).
    pub short_write: u32,
    /// `get`/`get_range` fail with a transient error.
    pub fail_read: u32,
    /// `get`/`get_range` return the data with one bit flipped.
    pub flip_read: u32,
    /// Every call sleeps this long.
    pub delay: Option<Duration>,
    /// After this many calls, every call fails with a permanent error.
    pub crash_after: Option<u64>,
    /// When set, the per-call faults (not delays or the crash) hit only files of this kind.
    pub only: Option<FileKind>,
}

/// What a [`FaultyBackend`] did, for tests to assert on.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Calls made.
    pub calls: AtomicU64,
    /// Faults injected.
    pub injected: AtomicU64,
}

/// A backend that injects [`Faults`], reproducibly for a given seed and call order.
pub struct FaultyBackend<B> {
    inner: B,
    faults: Faults,
    rng: Mutex<u64>,
    /// What was done so far.
    pub counts: FaultCounts,
}

fn transient(what: &str) -> Error {
    Error::io(
        format!("injected fault: {what}"),
        std::io::Error::new(ErrorKind::Interrupted, "transient fault"),
    )
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, seed: u64, faults: Faults) -> Self {
        FaultyBackend {
            inner,
            faults,
            rng: Mutex::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            counts: FaultCounts::default(),
        }
    }

    /// splitmix64: small, fast and reproducible.
    fn next(&self) -> u64 {
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hit(&self, ppm: u32) -> bool {
        ppm > 0 && self.next() % 1_000_000 < u64::from(ppm) && {
            self.counts.injected.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    /// Counts the call, sleeps if asked, and fails for good once crashed.
    fn enter(&self) -> Result<()> {
        let n = self.counts.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = self.faults.delay {
            std::thread::sleep(d);
        }
        match self.faults.crash_after {
            Some(limit) if n >= limit => Err(Error::io(
                "injected fault: crashed",
                std::io::Error::other("the store went away"),
            )),
            _ => Ok(()),
        }
    }

    /// True when the per-call faults apply to files of `kind`.
    fn targets(&self, kind: FileKind) -> bool {
        self.faults.only.is_none_or(|k| k == kind)
    }

    fn read(&self, kind: FileKind, mut data: Vec<u8>) -> Result<Vec<u8>> {
        if !self.targets(kind) {
            return Ok(data);
        }
        if self.hit(self.faults.fail_read) {
            return Err(transient("read"));
        }
        if !data.is_empty() && self.hit(self.faults.flip_read) {
            let bit = self.next() as usize % (data.len() * 8);
            data[bit / 8] ^= 1 << (bit % 8);
        }
        Ok(data)
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.enter()?;
        if !self.targets(kind) {
            return self.inner.put(kind, name, data);
        }
        if self.hit(self.faults.fail_write) {
            return Err(transient("write"));
        }
        if data.len() > 1 && self.hit(self.faults.short_write) {
            let keep = self.next() as usize % data.len();
            return self.inner.put(kind, name, &data[..keep]);
        }
        self.inner.put(kind, name, data)
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.enter()?;
        let data = self.inner.get(kind, name)?;
        self.read(kind, data)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.enter()?;
        let data = self.inner.get_range(kind, name, offset, len)?;
        self.read(kind, data)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.enter()?;
        self.inner.list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.enter()?;
        self.inner.delete(kind, name)
    }
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        self.enter()?;
        self.inner.stat(kind, name)
    }
    fn remove_stale_temps(&self) -> Result<usize> {
        self.enter()?;
        self.inner.remove_stale_temps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MemoryBackend, RetryBackend};

    #[test]
    fn faults_are_reproducible_and_retries_ride_them_out() {
        let faults = Faults {
            fail_write: 300_000,
            fail_read: 300_000,
            ..Faults::default()
        };
        let outcome = |seed| {
            let b = FaultyBackend::new(MemoryBackend::default(), seed, faults.clone());
            (0..50)
                .map(|i| b.put(FileKind::Index, &format!("{i}"), b"x").is_ok())
                .collect::<Vec<_>>()
        };
        assert_eq!(outcome(7), outcome(7));
        assert_ne!(outcome(7), outcome(8));
        assert!(outcome(7).contains(&false));
        let r = RetryBackend::new(
            FaultyBackend::new(MemoryBackend::default(), 7, faults),
            12,
            Duration::ZERO,
        );
        for i in 0..50 {
            r.put(FileKind::Index, &format!("{i}"), b"x").unwrap();
            assert_eq!(r.get(FileKind::Index, &format!("{i}")).unwrap(), b"x");
        }
        assert!(r.retries.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn a_crash_is_permanent_and_not_retried() {
        let b = RetryBackend::new(
            FaultyBackend::new(
                MemoryBackend::default(),
                1,
                Faults {
                    crash_after: Some(3),
                    ..Faults::default()
                },
            ),
            5,
            Duration::ZERO,
        );
        for i in 0..3 {
            b.put(FileKind::Index, &format!("{i}"), b"x").unwrap();
        }
        assert!(b.put(FileKind::Index, "3", b"x").is_err());
        assert!(b.get(FileKind::Index, "0").is_err());
        assert_eq!(b.retries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn flips_and_short_writes_change_the_bytes() {
        let b = FaultyBackend::new(
            MemoryBackend::default(),
            3,
            Faults {
                flip_read: 1_000_000,
                short_write: 1_000_000,
                ..Faults::default()
            },
        );
        b.put(FileKind::Pack, "p", &[0u8; 100]).unwrap();
        let stored = b.inner.get(FileKind::Pack, "p").unwrap();
        assert!(stored.len() < 100, "short write reported as complete");
        b.inner.put(FileKind::Pack, "q", &[0u8; 100]).unwrap();
        let read = b.get(FileKind::Pack, "q").unwrap();
        assert_eq!(read.iter().map(|x| x.count_ones()).sum::<u32>(), 1);
    }
}
