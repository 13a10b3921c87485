//! `dump --archive`: a directory of a snapshot streamed as a tar or zip archive.
//!
//! Both formats are written front to back, so the archive can go to a pipe. Tar keeps what a
//! snapshot holds: modes, owners (ids and names), nanosecond mtimes and extended attributes
//! as PAX records (GNU tar's and bsdtar's `SCHILY.xattr.`), symlinks, hardlinks, FIFOs and
//! devices. Zip has no owners, hardlinks, devices, extended attributes or setuid, setgid and
//! sticky bits (it keeps the rwx bits): hardlinked files are stored once per name; FIFOs,
//! sockets and devices are left out and reported.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::ops::walk::{find, walk_from};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind};

/// The archive formats `dump` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// POSIX tar with GNU long names and PAX records.
    Tar,
    /// Zip (deflate), written as a stream.
    Zip,
}

/// What went into an archive.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ArchiveReport {
    /// Entries written (directories, files, links, special files).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries the format cannot hold, left out (zip: FIFOs, sockets, devices).
    pub skipped: Vec<String>,
}

/// How many blobs are fetched at once while a file's content is streamed.
const PREFETCH_BLOBS: usize = 8;

/// Writes the directory `path` of the snapshot with root `root` (or the whole snapshot for
/// `/` or an empty path) to `out` as an archive. Entry names are the snapshot paths without
/// the leading `/`, as `tar c /etc` writes them; a file path gives a one-entry archive.
pub fn dump_archive(
    repo: &Repository,
    root: &BlobId,
    path: &Path,
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<ArchiveReport> {
    let _session = repo.begin_reader_session("dump");
    let mut sink: Box<dyn Sink + '_> = match format {
        ArchiveFormat::Tar => Box::new(TarSink {
            tar: tar::Builder::new(out),
            first_links: HashMap::new(),
        }),
        ArchiveFormat::Zip => Box::new(ZipSink {
            zip: zip::ZipWriter::new_stream(out),
        }),
    };
    let mut report = ArchiveReport::default();
    let top = find(repo, root, path)?;
    let rel = |p: &Path| -> PathBuf { p.strip_prefix("/").unwrap_or(p).to_path_buf() };
    let start = match &top {
        None => Some(*root),
        Some(n) => {
            let name = rel(&Path::new("/").join(path));
            emit(repo, sink.as_mut(), &name, n, &mut report)?;
            n.subtree.filter(|_| n.kind == NodeKind::Dir)
        }
    };
    if let Some(tree) = start {
        let base = Path::new("/").join(path);
        walk_from(repo, &tree, &base, &mut |p, n| {
            emit(repo, sink.as_mut(), &rel(p), n, &mut report)?;
            Ok(true)
        })?;
    }
    sink.finish()?;
    Ok(report)
}

fn emit(
    repo: &Repository,
    sink: &mut dyn Sink,
    name: &Path,
    n: &Node,
    report: &mut ArchiveReport,
) -> Result<()> {
    let written = match n.kind {
        NodeKind::File => {
            let mut content = Content::new(repo, &n.content);
            let r = sink.file(name, n, &mut content);
            content.check(r, name, n.size)?
        }
        _ => sink.other(name, n)?,
    };
    match written {
        Written::Entry(bytes) => {
            report.entries += 1;
            report.bytes += bytes;
        }
        Written::Link => report.entries += 1,
        Written::Skipped => report.skipped.push(format!(
            "{}: a {} has no place in this archive format",
            name.display(),
            n.kind.as_str()
        )),
    }
    Ok(())
}

/// What a sink did with an entry.
enum Written {
    /// Written, with this many content bytes.
    Entry(u64),
    /// A hardlink to a file written before: no content.
    Link,
    Skipped,
}

/// One archive format's writer.
trait Sink {
    /// A regular file, whose content `data` yields.
    fn file(&mut self, name: &Path, n: &Node, data: &mut dyn Read) -> Result<Written>;
    /// Anything but a regular file.
    fn other(&mut self, name: &Path, n: &Node) -> Result<Written>;
    /// Writes the archive's end.
    fn finish(self: Box<Self>) -> Result<()>;
}

fn stdout_error(e: io::Error) -> Error {
    Error::io("<stdout>", e)
}

/// A tar error about entry `name`: one the header cannot hold (tar's `InvalidInput`) names
/// the entry; anything else is writing the archive.
fn tar_error(name: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::InvalidInput {
        Error::Invalid(format!(
            "{} cannot be stored in a tar archive: {e}",
            name.display()
        ))
    } else {
        stdout_error(e)
    }
}

/// A file's content read blob by blob, a few blobs fetched at once. A blob that cannot be
/// read stops the archive: the error is kept and reported instead of the I/O error it causes.
struct Content<'a> {
    repo: &'a Repository,
    ids: &'a [BlobId],
    next: usize,
    ready: std::collections::VecDeque<Vec<u8>>,
    pos: usize,
    total: u64,
    error: Option<Error>,
}

impl<'a> Content<'a> {
    fn new(repo: &'a Repository, ids: &'a [BlobId]) -> Self {
        Content {
            repo,
            ids,
            next: 0,
            ready: Default::default(),
            pos: 0,
            total: 0,
            error: None,
        }
    }

    /// The result of writing the file: the blob error if there was one, and an error when the
    /// content does not have the size the tree records (a tar header would then be wrong).
    fn check(self, r: Result<Written>, name: &Path, size: u64) -> Result<Written> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let w = r?;
        let wanted = match w {
            Written::Entry(_) => size,
            Written::Link | Written::Skipped => 0,
        };
        if self.total != wanted {
            return Err(Error::corrupt(
                name.display().to_string(),
                format!("content is {} bytes, the tree says {size}", self.total),
            ));
        }
        Ok(w)
    }

    fn fill(&mut self) -> io::Result<()> {
        let end = (self.next + PREFETCH_BLOBS).min(self.ids.len());
        let loaded: Vec<Result<Vec<u8>>> = self.ids[self.next..end]
            .par_iter()
            .map(|id| self.repo.load_blob(id).map(|(_, d)| d))
            .collect();
        self.next = end;
        for b in loaded {
            match b {
                Ok(d) => self.ready.push_back(d),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        Ok(())
    }
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(front) = self.ready.front() {
                if self.pos < front.len() {
                    let n = buf.len().min(front.len() - self.pos);
                    buf[..n].copy_from_slice(&front[self.pos..self.pos + n]);
                    self.pos += n;
                    self.total += n as u64;
                    return Ok(n);
                }
                self.ready.pop_front();
                self.pos = 0;
                continue;
            }
            if self.next >= self.ids.len() {
                return Ok(0);
            }
            self.fill()?;
        }
    }
}

struct TarSink<'w> {
    tar: tar::Builder<&'w mut dyn Write>,
    /// The first name of each hardlinked file, by (device, inode).
    first_links: HashMap<(u64, u64), PathBuf>,
}

/// The glibc encoding of a device number's major and minor parts.
fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// A PAX time: seconds with a nanosecond fraction, signed.
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    format!("{sign}{}.{:09}", a / 1_000_000_000, a % 1_000_000_000)
}

/// One PAX record, `LEN key=value\n`, whose length counts its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

impl TarSink<'_> {
    fn header(
        &mut self,
        name: &Path,
        n: &Node,
        kind: tar::EntryType,
        size: u64,
    ) -> Result<tar::Header> {
        let mut pax = Vec::new();
        if n.mtime_ns < 0 || n.mtime_ns % 1_000_000_000 != 0 {
            pax_record(&mut pax, "mtime", pax_time(n.mtime_ns).as_bytes());
        }
        for x in &n.xattrs {
            let key = format!("SCHILY.xattr.{}", String::from_utf8_lossy(&x.name));
            pax_record(&mut pax, &key, &x.value);
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(n.mode & 0o7777);
        h.set_uid(n.uid.into());
        h.set_gid(n.gid.into());
        h.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        h.set_size(size);
        for (name, set, key) in [(&n.user, true, "uname"), (&n.group, false, "gname")] {
            if let Some(name) = name {
                let r = if set {
                    h.set_username(name)
                } else {
                    h.set_groupname(name)
                };
                if r.is_err() {
                    pax_record(&mut pax, key, name.as_bytes());
                }
            }
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            let (major, minor) = major_minor(n.rdev);
            h.set_device_major(major).map_err(|e| tar_error(name, e))?;
            h.set_device_minor(minor).map_err(|e| tar_error(name, e))?;
        }
        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_path("././@PaxHeader").map_err(stdout_error)?;
            x.set_mode(0o644);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.tar.append(&x, pax.as_slice()).map_err(stdout_error)?;
        }
        Ok(h)
    }
}

impl Sink for TarSink<'_> {
    fn file(&mut self, name: &Path, n: &Node, data: &mut dyn Read) -> Result<Written> {
        if n.nlink > 1 {
            let key = (n.device, n.inode);
            if let Some(first) = self.first_links.get(&key).cloned() {
                let mut h = self.header(name, n, tar::EntryType::Link, 0)?;
                self.tar
                    .append_link(&mut h, name, first)
                    .map_err(|e| tar_error(name, e))?;
                return Ok(Written::Link);
            }
            self.first_links.insert(key, name.to_path_buf());
        }
        let mut h = self.header(name, n, tar::EntryType::Regular, n.size)?;
        // Exactly the header's size goes in, so a content of the wrong length cannot shift
        // the entries after it; `Content::check` reports the mismatch.
        let mut limited = data.take(n.size);
        self.tar
            .append_data(&mut h, name, &mut limited)
            .map_err(|e| tar_error(name, e))?;
        Ok(Written::Entry(n.size))
    }

    fn other(&mut self, name: &Path, n: &Node) -> Result<Written> {
        let kind = match n.kind {
            NodeKind::Dir => tar::EntryType::Directory,
            NodeKind::Symlink => tar::EntryType::Symlink,
            NodeKind::Fifo => tar::EntryType::Fifo,
            NodeKind::CharDevice => tar::EntryType::Char,
            NodeKind::BlockDevice => tar::EntryType::Block,
            // Files come through `Sink::file`, sockets cannot be archived.
            NodeKind::Socket | NodeKind::File => return Ok(Written::Skipped),
        };
        let mut h = self.header(name, n, kind, 0)?;
        let r = if kind == tar::EntryType::Symlink {
            self.tar
                .append_link(&mut h, name, OsStr::from_bytes(&n.link_target))
        } else {
            let mut dir_name = name.as_os_str().as_bytes().to_vec();
            if kind == tar::EntryType::Directory {
                dir_name.push(b'/');
            }
            self.tar
                .append_data(&mut h, OsStr::from_bytes(&dir_name), io::empty())
        };
        r.map_err(|e| tar_error(name, e))?;
        Ok(Written::Entry(0))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let out = self.tar.into_inner().map_err(stdout_error)?;
        out.flush().map_err(stdout_error)
    }
}

struct ZipSink<'w> {
    zip: zip::ZipWriter<zip::write::StreamWriter<&'w mut dyn Write>>,
}

/// A zip error about entry `name`: writing the archive, or an entry zip cannot hold (a
/// name that repeats once made UTF-8, say), which names the entry.
fn zip_error(name: &Path, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(e) => stdout_error(e),
        e => Error::Invalid(format!(
            "{} cannot be stored in a zip archive: {e}",
            name.display()
        )),
    }
}

/// Zip's options for an entry: its permissions and its mtime in local time (zip's clock
/// runs from 1980 to 2107; times outside it are clamped to the ends).
fn zip_options(n: &Node) -> zip::write::SimpleFileOptions {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_nanos(n.mtime_ns).with_timezone(&chrono::Local);
    let when = if t.year() < 1980 {
        zip::DateTime::default()
    } else {
        zip::DateTime::from_date_and_time(
            t.year().min(2107) as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
        )
        .unwrap_or_default()
    };
    zip::write::SimpleFileOptions::default()
        .unix_permissions(n.mode & 0o7777)
        .last_modified_time(when)
}

fn zip_name(name: &Path) -> String {
    String::from_utf8_lossy(name.as_os_str().as_bytes()).into_owned()
}

impl Sink for ZipSink<'_> {
    fn file(&mut self, name: &Path, n: &Node, data: &mut dyn Read) -> Result<Written> {
        let opts = zip_options(n)
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(n.size >= u32::MAX as u64);
        self.zip
            .start_file(zip_name(name), opts)
            .map_err(|e| zip_error(name, e))?;
        let copied = io::copy(&mut data.take(n.size), &mut self.zip).map_err(stdout_error)?;
        Ok(Written::Entry(copied))
    }

    fn other(&mut self, name: &Path, n: &Node) -> Result<Written> {
        match n.kind {
            NodeKind::Dir => self
                .zip
                .add_directory(zip_name(name), zip_options(n))
                .map_err(|e| zip_error(name, e))?,
            NodeKind::Symlink => self
                .zip
                .add_symlink(
                    zip_name(name),
                    String::from_utf8_lossy(&n.link_target),
                    zip_options(n),
                )
                .map_err(|e| zip_error(name, e))?,
            _ => return Ok(Written::Skipped),
        }
        Ok(Written::Entry(0))
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut w = self
            .zip
            .finish()
            .map_err(|e| zip_error(Path::new("the archive's directory"), e))?;
        w.flush().map_err(stdout_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut v = Vec::new();
        pax_record(&mut v, "mtime", b"1.5");
        assert_eq!(v, b"13 mtime=1.5\n");
        let mut w = Vec::new();
        pax_record(&mut w, "k", &[b'x'; 94]); // 94+1+3 = 98, +2 digits = 100, then 3 digits
        assert_eq!(w.len(), 101);
        assert!(w.starts_with(b"101 k="));
        assert_eq!(pax_time(1_500_000_000), "1.500000000");
        assert_eq!(pax_time(-1_500_000_000), "-1.500000000");
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        assert_eq!(major_minor(libc::makedev(8, 1)), (8, 1));
        assert_eq!(major_minor(libc::makedev(259, 70000)), (259, 70000));
    }
}
