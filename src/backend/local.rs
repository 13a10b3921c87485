//! Repository on a local filesystem.
//!
//! `put` writes `.tmp-HOST-PID-RANDOM` inside the kind's folder, fsyncs it, renames it into
//! place and fsyncs the folder: after a crash either the whole file is there or only a
//! temporary file is, which `list` never shows and `remove_stale_temps` deletes once its writer
//! (a process on this host) is no longer alive. Files are created 0600 and folders 0700: key
//! files must not be readable by other local users.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Backend, FileKind, NewFile};
use crate::error::{Error, Result};

const TMP_PREFIX: &str = ".tmp-";

/// A repository rooted at a local directory.
pub struct LocalBackend {
    root: PathBuf,
    /// The folder a REST server keeps the repository in names packs `data/` and sessions
    /// `locks/` (restic's names); that folder opens as a local repository too, so that
    /// prune can run where the storage of an append-only server is.
    restic_names: bool,
}

impl LocalBackend {
    /// A backend over `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let restic_names = root.join("data").is_dir() && !root.join("packs").exists();
        LocalBackend { root, restic_names }
    }

    /// The folder of a kind of file, below the root.
    fn dir(&self, kind: FileKind) -> &'static str {
        match kind {
            FileKind::Pack if self.restic_names => "data",
            FileKind::Session if self.restic_names => "locks",
            k => k.dir(),
        }
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder layout: `keys/`, `snapshots/`, `index/`, `packs/00`…`packs/ff`.
    pub fn create_layout(&self) -> Result<()> {
        for kind in [
            FileKind::Key,
            FileKind::Snapshot,
            FileKind::Index,
            FileKind::Pack,
            FileKind::Session,
        ] {
            mkdir(&self.root.join(self.dir(kind)))?;
        }
        for i in 0..=255u8 {
            mkdir(
                &self
                    .root
                    .join(self.dir(FileKind::Pack))
                    .join(format!("{i:02x}")),
            )?;
        }
        sync_dir(&self.root)
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        let rel = kind.rel_path(name);
        match rel.strip_prefix(kind.dir()) {
            Some(rest) if !kind.dir().is_empty() => {
                self.root.join(format!("{}{rest}", self.dir(kind)))
            }
            _ => self.root.join(rel),
        }
    }

    fn dirs_of(&self, kind: FileKind) -> Result<Vec<PathBuf>> {
        match kind {
            FileKind::Config => Ok(vec![self.root.clone()]),
            FileKind::Pack => {
                let mut out = Vec::new();
                let base = self.root.join(self.dir(FileKind::Pack));
                for e in read_dir(&base)? {
                    let e = e.map_err(|err| Error::io(&base, err))?;
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        out.push(e.path());
                    }
                }
                out.sort();
                Ok(out)
            }
            k => Ok(vec![self.root.join(self.dir(k))]),
        }
    }
}

impl LocalBackend {
    fn remove_stale(&self) -> Result<usize> {
        let host = this_host();
        let mut removed = 0;
        for kind in [
            FileKind::Config,
            FileKind::Key,
            FileKind::Snapshot,
            FileKind::Index,
            FileKind::Pack,
            FileKind::Session,
        ] {
            let mut dirs = self.dirs_of(kind)?;
            if kind == FileKind::Pack {
                // Packs being streamed are written in `packs/` itself.
                dirs.push(self.root.join(self.dir(FileKind::Pack)));
            }
            for dir in dirs {
                if !dir.exists() {
                    continue;
                }
                for e in read_dir(&dir)?.flatten() {
                    let name = e.file_name();
                    let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
                        continue;
                    };
                    let mut parts = rest.rsplitn(3, '-');
                    let (_, pid, writer) = (parts.next(), parts.next(), parts.next());
                    let pid = pid.and_then(|p| p.parse::<i32>().ok());
                    if writer == Some(host.as_str())
                        && pid.is_some_and(|p| !process_alive(p))
                        && fs::remove_file(e.path()).is_ok()
                    {
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// This host's name as used in temporary file names (no `-` or `/`).
fn this_host() -> String {
    let h = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    h.replace(['-', '/', '.'], "_")
}

/// True unless `pid` is certainly not a running process of this host.
pub(crate) fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

fn read_dir(dir: &Path) -> Result<fs::ReadDir> {
    fs::read_dir(dir).map_err(|e| Error::io(dir, e))
}

fn mkdir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

fn sync_dir(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(p, e))
}

fn temp_name() -> String {
    let mut r = [0u8; 8];
    crate::crypto::random_bytes(&mut r);
    format!(
        "{TMP_PREFIX}{}-{}-{}",
        this_host(),
        std::process::id(),
        hex::encode(r)
    )
}

impl Backend for LocalBackend {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path(kind, name);
        let dir = path
            .parent()
            .expect("invariant: repository paths have a parent")
            .to_path_buf();
        if matches!(kind, FileKind::Pack | FileKind::Session) {
            // Repositories made before `sessions/` existed get it on first use.
            mkdir(&dir)?;
        }
        let tmp = dir.join(temp_name());
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        sync_dir(&dir)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        fs::read(&path).map_err(|e| not_found_or_io(kind, name, &path, e))
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.path(kind, name);
        let f = File::open(&path).map_err(|e| not_found_or_io(kind, name, &path, e))?;
        let size = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(
                kind.rel_path(name),
                format!("range {offset}+{len} is beyond the file's {size} bytes"),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&path, e))?;
        Ok(buf)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if kind == FileKind::Config {
            return Ok(self
                .stat(kind, "config")?
                .map(|s| ("config".to_string(), s))
                .into_iter()
                .collect());
        }
        for dir in self.dirs_of(kind)? {
            if kind == FileKind::Session && !dir.exists() {
                continue;
            }
            for e in read_dir(&dir)? {
                let e = e.map_err(|err| Error::io(&dir, err))?;
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                match e.metadata() {
                    Ok(m) if m.is_file() => out.push((name, m.len())),
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(Error::io(e.path(), err)),
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = self.path(kind, name);
        match fs::remove_file(&path) {
            // Packs are deleted last, after the index that no longer names them is durable
            // and the old index files are removed durably: a pack that comes back after a
            // crash is only an unindexed pack (adopted, then marked again), so prune's
            // thousands of pack deletes skip the folder fsync. Every other delete is made
            // durable: an old index file that came back could name deleted packs as in use,
            // a removed key must stay removed.
            Ok(()) if kind == FileKind::Pack => Ok(()),
            Ok(()) => sync_dir(path.parent().expect("invariant: has parent")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        let path = self.path(kind, name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn remove_stale_temps(&self) -> Result<usize> {
        self.remove_stale()
    }

    fn streams(&self) -> bool {
        true
    }

    fn create(&self, kind: FileKind) -> Result<Box<dyn NewFile + '_>> {
        use std::os::unix::fs::OpenOptionsExt;
        // In the kind's base folder (for packs, `packs/` itself, where nothing is listed).
        let tmp = self.root.join(self.dir(kind)).join(temp_name());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(Box::new(LocalNewFile {
            backend: self,
            kind,
            file: Some(file),
            tmp,
            written: 0,
        }))
    }
}

/// A file streamed to a temporary name, renamed into place at commit.
struct LocalNewFile<'b> {
    backend: &'b LocalBackend,
    kind: FileKind,
    /// `None` once committed.
    file: Option<File>,
    tmp: PathBuf,
    /// Bytes handed to `write`, compared with the synced file's length at commit.
    written: u64,
}

impl NewFile for LocalNewFile<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        let f = self
            .file
            .as_mut()
            .expect("invariant: written before commit");
        f.write_all(data).map_err(|e| Error::io(&self.tmp, e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn commit(mut self: Box<Self>, name: &str) -> Result<()> {
        // Synced and renamed, or removed: the temporary file is never left behind.
        let f = self.file.take().expect("invariant: committed once");
        let path = self.backend.path(self.kind, name);
        let dir = path
            .parent()
            .expect("invariant: repository paths have a parent");
        // The length of the synced file is checked as `put_checked` checks other stores: a
        // network file system that drops part of a write must not yield a named pack.
        let placed = f
            .sync_all()
            .and_then(|()| f.metadata())
            .map_err(|e| Error::io(&self.tmp, e))
            .and_then(|m| match m.len() {
                n if n == self.written => Ok(()),
                n => Err(Error::io(
                    &self.tmp,
                    std::io::Error::other(format!(
                        "the file system acknowledged {} bytes but kept {n}; check the \
                         storage for faults before the next run",
                        self.written
                    )),
                )),
            })
            .and_then(|()| {
                drop(f);
                if self.kind == FileKind::Pack {
                    mkdir(dir)?;
                }
                fs::rename(&self.tmp, &path).map_err(|e| Error::io(&path, e))
            });
        if let Err(e) = placed {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        sync_dir(dir)
    }
}

impl Drop for LocalNewFile<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn not_found_or_io(kind: FileKind, name: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::Missing(kind.rel_path(name))
    } else {
        Error::io(path, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        b.create_layout().unwrap();
        super::super::conformance(&b);
    }

    #[test]
    fn retries_ride_out_injected_faults() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        b.create_layout().unwrap();
        super::super::rides_out_faults(b);
    }

    #[test]
    fn a_rest_servers_folder_opens_with_restics_names() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["data/ab", "locks", "keys", "snapshots", "index"] {
            fs::create_dir_all(d.path().join(sub)).unwrap();
        }
        let b = LocalBackend::new(d.path());
        super::super::conformance(&b);
        let name = "ab".repeat(32);
        b.put(FileKind::Pack, &name, b"p").unwrap();
        assert!(d.path().join("data/ab").join(&name).exists());
        b.put(FileKind::Session, "s", b"s").unwrap();
        assert!(d.path().join("locks/s").exists());
        assert!(!d.path().join("packs").exists());
    }

    #[test]
    fn stale_temps_are_removed_and_never_listed() {
        let d = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(d.path());
        b.create_layout().unwrap();
        // PID 0x7fff_fff0 does not exist; our own PID does; another host's files stay.
        let h = this_host();
        let dead = d.path().join(format!("index/.tmp-{h}-2147483632-00"));
        let live = d
            .path()
            .join(format!("index/.tmp-{h}-{}-00", std::process::id()));
        let other = d.path().join("packs/ab/.tmp-otherhost-2147483632-00");
        let streamed = d.path().join(format!("packs/.tmp-{h}-2147483632-01"));
        for f in [&dead, &live, &other, &streamed] {
            fs::write(f, b"x").unwrap();
        }
        assert!(b.list(FileKind::Index).unwrap().is_empty());
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
        assert_eq!(b.remove_stale_temps().unwrap(), 2);
        assert!(!dead.exists() && live.exists() && other.exists() && !streamed.exists());
    }
}
