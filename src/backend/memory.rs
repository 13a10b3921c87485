//! An in-memory backend for tests, counting operations so tests can assert on I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, FileKind};
use crate::error::{Error, Result};

/// Files in a map behind a lock.
#[derive(Default)]
pub struct MemoryBackend {
    files: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    /// Number of `put` calls so far.
    pub puts: AtomicU64,
    /// Number of `get`/`get_range` calls so far.
    pub gets: AtomicU64,
}

fn key(kind: FileKind, name: &str) -> (String, String) {
    (kind.dir().to_string(), name.to_string())
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Vec<u8>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key(kind, name), data.to_vec());
        Ok(())
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .get(&key(kind, name))
            .cloned()
            .ok_or_else(|| Error::Missing(kind.rel_path(name)))
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.get(kind, name)?;
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= all.len() as u64)
            .ok_or_else(|| {
                Error::corrupt(kind.rel_path(name), format!("short read at {offset}+{len}"))
            })?;
        Ok(all[offset as usize..end as usize].to_vec())
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let dir = kind.dir();
        Ok(self
            .lock()
            .iter()
            .filter(|((d, _), _)| d == dir)
            .map(|((_, n), v)| (n.clone(), v.len() as u64))
            .collect())
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        self.lock().remove(&key(kind, name));
        Ok(())
    }
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        Ok(self.lock().get(&key(kind, name)).map(|v| v.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance(&super::MemoryBackend::default());
    }

    #[test]
    fn retries_ride_out_injected_faults() {
        super::super::rides_out_faults(super::MemoryBackend::default());
    }
}
