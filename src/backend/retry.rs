//! The retrying decorator every repository is opened through: what a store reports as
//! transient (interrupted, timed out, reset, would block) is tried again a bounded number of
//! times with exponential backoff. A local disk rarely gives such errors; a network mount
//! (NFS, SMB) or a remote store does. Tests drive it with `FaultyBackend`.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Backend, FileKind, NewFile};
use crate::error::{Error, Result};

/// Retries what a store reports as transient: up to `attempts` tries per call, sleeping
/// `base`, `2 × base`, `4 × base`… in between. Anything else, and the last transient error,
/// is returned as it is.
pub struct RetryBackend<B> {
    inner: B,
    attempts: u32,
    base: Duration,
    /// Retries made so far.
    pub retries: AtomicU64,
}

impl<B: Backend> RetryBackend<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, attempts: u32, base: Duration) -> Self {
        RetryBackend {
            inner,
            attempts: attempts.max(1),
            base,
            retries: AtomicU64::new(0),
        }
    }

    fn with<T>(&self, f: impl Fn() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            match f() {
                Err(e) if is_transient(&e) && tries + 1 < self.attempts => {
                    std::thread::sleep(self.base * 2u32.saturating_pow(tries));
                    tries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                r => return r,
            }
        }
    }
}

/// True for the errors worth another try.
pub fn is_transient(e: &Error) -> bool {
    matches!(e, Error::Io { err, .. } if matches!(
        err.kind(),
        ErrorKind::Interrupted
            | ErrorKind::TimedOut
            | ErrorKind::WouldBlock
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
    ))
}

impl<B: Backend> Backend for RetryBackend<B> {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.with(|| self.inner.put(kind, name, data))
    }
    fn put_once(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.inner.put_once(kind, name, data)
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.with(|| self.inner.get(kind, name))
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.with(|| self.inner.get_range(kind, name, offset, len))
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.with(|| self.inner.list(kind))
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.with(|| self.inner.delete(kind, name))
    }
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        self.with(|| self.inner.stat(kind, name))
    }
    fn remove_stale_temps(&self) -> Result<usize> {
        self.with(|| self.inner.remove_stale_temps())
    }
    /// Streamed writes go straight to a store that streams (a pack is never buffered whole
    /// to make it retryable; a transient failure there fails its run). Other stores get the
    /// buffered file, whose one `put` is retried.
    fn create(&self, kind: FileKind) -> Result<Box<dyn NewFile + '_>> {
        if self.inner.streams() {
            self.with(|| self.inner.create(kind))
        } else {
            Ok(Box::new(super::BufferedFile {
                backend: self,
                kind,
                buf: Vec::new(),
            }))
        }
    }
    fn streams(&self) -> bool {
        self.inner.streams()
    }
    fn uploads(&self) -> usize {
        self.inner.uploads()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{LocalBackend, MemoryBackend};

    #[test]
    fn streamed_writes_stay_streamed_and_buffered_ones_are_retried() {
        let d = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(d.path());
        local.create_layout().unwrap();
        let r = RetryBackend::new(local, 3, Duration::ZERO);
        assert!(
            r.streams(),
            "a local pack is streamed to disk, not buffered"
        );
        let mut f = r.create(FileKind::Pack).unwrap();
        f.write(b"abc").unwrap();
        f.commit(&"ab".repeat(32)).unwrap();
        assert_eq!(r.get(FileKind::Pack, &"ab".repeat(32)).unwrap(), b"abc");
        // A store that buffers: the pack's one `put` goes through the retries.
        let flaky = crate::backend::faulty::FaultyBackend::new(
            MemoryBackend::default(),
            5,
            crate::backend::faulty::Faults {
                fail_write: 500_000,
                ..Default::default()
            },
        );
        let m = RetryBackend::new(flaky, 20, Duration::ZERO);
        assert!(!m.streams());
        for i in 0..20 {
            let mut f = m.create(FileKind::Pack).unwrap();
            f.write(b"abc").unwrap();
            f.commit(&format!("{i:064}")).unwrap();
        }
        assert!(
            m.retries.load(Ordering::Relaxed) > 0,
            "no write was retried"
        );
    }
}
