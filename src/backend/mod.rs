//! Storage of repository files by (kind, name).
//!
//! The contract is the one object stores give: whole-object `put` that is atomic (a reader
//! sees all of the bytes or none), `get` and `get_range`, `list` with sizes, `delete`. No
//! renames, appends or in-place edits, so every repository file is immutable once written and
//! a repeated `put` of the same content-named file is harmless. (Session files are the one
//! exception: a running command rewrites its own, whole, to show it is alive.)

pub mod faulty;
mod local;
mod memory;
mod rest;
mod retry;
mod s3;
/// `weed mini` for the tests (shared with the CLI tests).
#[cfg(test)]
#[path = "../../tests/common/seaweed.rs"]
pub(crate) mod seaweed;

pub use local::LocalBackend;
pub(crate) use local::process_alive;
pub use memory::MemoryBackend;
pub use rest::RestBackend;
pub use retry::{RetryBackend, is_transient};
pub use s3::{S3Backend, S3Credentials, S3Location};

use crate::error::Result;

/// Packs a server takes at once from one writer, where `CAIRN_CONNECTIONS` does not say.
pub const CONNECTIONS: usize = 4;

/// The uploads a server backend keeps in flight: `CAIRN_CONNECTIONS`, else [`CONNECTIONS`].
pub fn connections_from_env() -> Result<usize> {
    match std::env::var("CAIRN_CONNECTIONS") {
        Ok(n) => match n.parse::<usize>() {
            Ok(n @ 1..=64) => Ok(n),
            _ => Err(crate::Error::Invalid(format!(
                "CAIRN_CONNECTIONS={n} is not a number of connections from 1 to 64"
            ))),
        },
        Err(_) => Ok(CONNECTIONS),
    }
}

/// Writes [`Backend::put_checked`] makes of one file before it gives up.
pub const PUT_ATTEMPTS: u32 = 3;

/// The kinds of repository file, each in its own folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// The single `config` file.
    Config,
    /// `keys/ID`: wrapped master keys.
    Key,
    /// `snapshots/ID`.
    Snapshot,
    /// `index/ID`.
    Index,
    /// `packs/XX/ID`.
    Pack,
    /// `sessions/ID`: one per running writer, refreshed while it runs (see `repo::session`).
    /// The only files that are rewritten in place (whole, by `put`).
    Session,
}

impl FileKind {
    /// Folder name under the repository root (empty for `config`).
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "packs",
            FileKind::Session => "sessions",
        }
    }

    /// The path of a file of this kind relative to the repository root.
    pub fn rel_path(self, name: &str) -> String {
        match self {
            FileKind::Config => "config".to_string(),
            FileKind::Pack => format!("packs/{}/{}", name.get(..2).unwrap_or("00"), name),
            k => format!("{}/{}", k.dir(), name),
        }
    }
}

/// Where repository files are kept. Implementations must be safe to call from many threads.
pub trait Backend: Send + Sync {
    /// Stores `data` under (kind, name) atomically and durably: when this returns, the file is
    /// complete and survives a crash; before, no reader sees a partial file.
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()>;
    /// `put` without any retry a decorator would add: for a write whose late repetition
    /// could undo a delete made meanwhile (a session refresh must never bring back a session
    /// file a prune removed).
    fn put_once(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        self.put(kind, name, data)
    }
    /// `put`, then confirms with `stat` that the store kept the whole length, writing again
    /// (up to [`PUT_ATTEMPTS`] times in all) when it did not. A store that acknowledges a
    /// write it truncated would otherwise leave an index naming a pack that cannot be read;
    /// one `stat` per file is the price. When every attempt comes up short the file is
    /// deleted (its name is random or the hash of sealed bytes with a fresh nonce, so it is
    /// nobody else's), so a truncated session file cannot hold a prune back, nor a truncated
    /// pack stand in no index. Every repository write but session refreshes goes through here
    /// (a streamed pack through its `commit`).
    fn put_checked(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        write_checked(self, kind, name, data.len(), || self.put(kind, name, data))
    }
    /// Reads a whole file. A missing file is `Error::Missing`.
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; a short read is an error.
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Names and sizes of all complete files of a kind (temporary files are never listed).
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>>;
    /// Removes a file; removing a missing file is not an error.
    fn delete(&self, kind: FileKind, name: &str) -> Result<()>;
    /// Size of a file, or `None` when it does not exist.
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>>;
    /// Deletes what crashed writers of this host left behind (temporary files); returns the
    /// number removed. Backends whose `put` leaves nothing behind keep the default.
    fn remove_stale_temps(&self) -> Result<usize> {
        Ok(0)
    }
    /// Starts a file of `kind` that is written piece by piece and named when complete (a pack
    /// is named by the hash of all its bytes). Nothing is visible under any name before
    /// [`NewFile::commit`]; dropping it uncommitted discards it. The default gathers the bytes
    /// in memory and `put`s them; the local backend streams them to a temporary file, so a
    /// pack being filled costs no memory.
    fn create(&self, kind: FileKind) -> Result<Box<dyn NewFile + '_>> {
        Ok(Box::new(BufferedFile {
            backend: self,
            kind,
            buf: Vec::new(),
        }))
    }
    /// True when [`create`](Self::create) writes straight to storage instead of buffering
    /// and `put`ting: a decorator then forwards `create` (a pack is never held whole in
    /// memory), at the cost of not adding its behaviour to those writes.
    fn streams(&self) -> bool {
        false
    }
    /// Packs a writer may have in flight at once: 1 where a write costs no round trip (a
    /// disk), more on a server, so the pack writer never waits on one request.
    fn uploads(&self) -> usize {
        1
    }
    /// Readies the place of a new repository before `init` writes its first file (a REST
    /// server makes its folders); the default has nothing to do.
    fn create_layout(&self) -> Result<()> {
        Ok(())
    }
}

/// A file being written; see [`Backend::create`].
pub trait NewFile: Send {
    /// Appends bytes.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the file durable under `name`, atomically, as `put` does.
    fn commit(self: Box<Self>, name: &str) -> Result<()>;
}

/// The body of [`Backend::put_checked`], for a write of `len` bytes made by `put`: written,
/// then its length confirmed by `stat`, again up to [`PUT_ATTEMPTS`] times, and removed when
/// it never was.
pub(crate) fn write_checked<B: Backend + ?Sized>(
    b: &B,
    kind: FileKind,
    name: &str,
    len: usize,
    mut put: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut kept = None;
    for _ in 0..PUT_ATTEMPTS {
        put()?;
        kept = b.stat(kind, name)?;
        if kept == Some(len as u64) {
            return Ok(());
        }
    }
    let _ = b.delete(kind, name);
    Err(crate::Error::io(
        kind.rel_path(name),
        std::io::Error::other(format!(
            "the store acknowledged {len} bytes but kept {} ({PUT_ATTEMPTS} attempts; the file \
             was removed); check the storage for faults before the next run",
            kept.map_or_else(|| "none".to_string(), |k| k.to_string()),
        )),
    ))
}

/// The listing of `config` on a server that lists only folders: one `stat`.
pub(crate) fn list_config<B: Backend + ?Sized>(b: &B) -> Result<Vec<(String, u64)>> {
    Ok(b.stat(FileKind::Config, "config")?
        .map(|n| vec![("config".to_string(), n)])
        .unwrap_or_default())
}

/// `data`, read at `offset` for `len` bytes, when the store gave all of them; else the
/// short read as corruption of the file.
pub(crate) fn whole_range(
    kind: FileKind,
    name: &str,
    offset: u64,
    len: u64,
    data: Vec<u8>,
) -> Result<Vec<u8>> {
    if data.len() as u64 != len {
        return Err(crate::Error::corrupt(
            kind.rel_path(name),
            format!("short read at {offset}+{len}: {} bytes", data.len()),
        ));
    }
    Ok(data)
}

/// [`NewFile`] for backends without streaming writes: buffered, then one `put`.
struct BufferedFile<'b, B: Backend + ?Sized> {
    backend: &'b B,
    kind: FileKind,
    buf: Vec<u8>,
}

impl<B: Backend + ?Sized> NewFile for BufferedFile<'_, B> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn commit(self: Box<Self>, name: &str) -> Result<()> {
        self.backend.put_checked(self.kind, name, &self.buf)
    }
}

/// A [`NewFile`] that keeps nothing (dry runs).
struct DiscardFile;

impl NewFile for DiscardFile {
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn commit(self: Box<Self>, _: &str) -> Result<()> {
        Ok(())
    }
}

/// A decorator that reads through to `inner` and discards every write: `snapshot --dry-run`.
pub struct DryRunBackend<B>(pub B);

impl<B: Backend> Backend for DryRunBackend<B> {
    fn put(&self, _: FileKind, _: &str, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn put_checked(&self, _: FileKind, _: &str, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        self.0.get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.0.get_range(kind, name, offset, len)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        self.0.list(kind)
    }
    fn delete(&self, _: FileKind, _: &str) -> Result<()> {
        Ok(())
    }
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        self.0.stat(kind, name)
    }
    fn create(&self, _: FileKind) -> Result<Box<dyn NewFile + '_>> {
        Ok(Box::new(DiscardFile))
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).put(kind, name, data)
    }
    fn put_checked(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).put_checked(kind, name, data)
    }
    fn put_once(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        (**self).put_once(kind, name, data)
    }
    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        (**self).get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).get_range(kind, name, offset, len)
    }
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        (**self).list(kind)
    }
    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        (**self).delete(kind, name)
    }
    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        (**self).stat(kind, name)
    }
    fn remove_stale_temps(&self) -> Result<usize> {
        (**self).remove_stale_temps()
    }
    fn create(&self, kind: FileKind) -> Result<Box<dyn NewFile + '_>> {
        (**self).create(kind)
    }
    fn streams(&self) -> bool {
        (**self).streams()
    }
    fn create_layout(&self) -> Result<()> {
        (**self).create_layout()
    }
    fn uploads(&self) -> usize {
        (**self).uploads()
    }
}

/// Under injected faults (failed writes and reads, writes cut short and reported done) the
/// retrying decorator and `put_checked` still store and read back every file: run against
/// every backend.
#[cfg(test)]
pub(crate) fn rides_out_faults<B: Backend>(inner: B) {
    use std::sync::atomic::Ordering;
    let faults = faulty::Faults {
        fail_write: 200_000,
        fail_read: 200_000,
        short_write: 150_000,
        ..faulty::Faults::default()
    };
    let f = faulty::FaultyBackend::new(inner, 11, faults);
    let r = RetryBackend::new(f, 12, std::time::Duration::ZERO);
    for i in 0..30usize {
        let name = format!("{i:064x}");
        let data = vec![i as u8; 1000 + i];
        r.put_checked(FileKind::Index, &name, &data).unwrap();
        assert_eq!(r.get(FileKind::Index, &name).unwrap(), data);
        assert_eq!(
            r.get_range(FileKind::Index, &name, 10, 5).unwrap(),
            &data[10..15]
        );
    }
    assert!(
        r.retries.load(Ordering::Relaxed) > 0,
        "no fault was injected"
    );
    assert_eq!(r.list(FileKind::Index).unwrap().len(), 30);
}

/// A conformance suite every backend must pass.
#[cfg(test)]
pub(crate) fn conformance(b: &dyn Backend) {
    let name = "ab".repeat(32);
    assert_eq!(b.stat(FileKind::Pack, &name).unwrap(), None);
    assert!(matches!(
        b.get(FileKind::Pack, &name),
        Err(crate::Error::Missing(_))
    ));
    b.put(FileKind::Pack, &name, b"0123456789").unwrap();
    b.put(FileKind::Pack, &name, b"0123456789").unwrap();
    assert_eq!(b.get(FileKind::Pack, &name).unwrap(), b"0123456789");
    assert_eq!(b.get_range(FileKind::Pack, &name, 2, 3).unwrap(), b"234");
    assert!(b.get_range(FileKind::Pack, &name, 8, 5).is_err());
    assert_eq!(b.list(FileKind::Pack).unwrap(), vec![(name.clone(), 10)]);
    assert_eq!(b.stat(FileKind::Pack, &name).unwrap(), Some(10));
    b.put(FileKind::Config, "config", b"{}").unwrap();
    assert_eq!(b.get(FileKind::Config, "config").unwrap(), b"{}");
    b.delete(FileKind::Pack, &name).unwrap();
    b.delete(FileKind::Pack, &name).unwrap();
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    // Streamed files appear only when committed; dropped ones never.
    let mut f = b.create(FileKind::Pack).unwrap();
    f.write(b"01234").unwrap();
    f.write(b"56789").unwrap();
    assert!(b.list(FileKind::Pack).unwrap().is_empty());
    f.commit(&name).unwrap();
    assert_eq!(b.get(FileKind::Pack, &name).unwrap(), b"0123456789");
    let mut g = b.create(FileKind::Pack).unwrap();
    g.write(b"lost").unwrap();
    drop(g);
    assert_eq!(b.list(FileKind::Pack).unwrap(), vec![(name.clone(), 10)]);
    b.delete(FileKind::Pack, &name).unwrap();
}
