//! `copy`: snapshots from another repository, re-encrypted here, sending only the blobs this
//! repository lacks.
//!
//! ```text
//! pick source snapshots (refs, or all), filtered, oldest first
//! skip those already here: a snapshot whose `original` (or own id) is the source's origin
//! per snapshot:
//!     translate(tree):  source id mapped to an id whose blob is stored here → that id, not walked
//!                       else load it, translate each node's content ids and subtree, encode,
//!                       save as a tree blob (dedup against this repository)
//!     translate(data):  mapped and stored here → that id
//!                       else load the plaintext from the source, save it (hash with this
//!                       repository's key, dedup, seal once)
//!     finish packs and index → record the new mappings → snapshot file with `original`
//! ```
//!
//! Blob ids are keyed hashes, and the two repositories have different keys, so the same
//! content has a different id here and every tree that lists ids must be rewritten; the
//! hash of plaintext under this repository's key is the only way to know whether a blob is
//! already stored. That costs reading and decrypting every source blob once, which is what
//! the memo (`copy_map` in the local cache) saves on later copies: a source blob translated
//! before is not read again while its translation is still stored here. Blobs keep the
//! source's chunk boundaries: re-chunking would need whole files in memory and would buy
//! nothing for the next copy, which again starts from the source's chunks.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::ops::forget::Filter;
use crate::repo::Repository;
use crate::repo::blob::BlobType;
use crate::repo::saver::BlobSaver;
use crate::repo::snapshot::Snapshot;

/// Options of `copy`.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Source snapshots: id prefixes or `latest`; empty means all.
    pub snapshots: Vec<String>,
    /// Only source snapshots that pass this filter (hosts, tags, paths).
    pub filter: Filter,
    /// Read and count, write nothing.
    pub dry_run: bool,
}

/// A source snapshot and its copy here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopiedSnapshot {
    /// The snapshot in the source repository.
    pub source: SnapshotId,
    /// Its copy in the destination (none on a dry run that would write it).
    pub copy: Option<SnapshotId>,
}

/// What `copy` did (or, on a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots copied, in the order written.
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots left out because the destination already has a copy of them.
    pub skipped: Vec<CopiedSnapshot>,
    /// Blobs (data and tree) stored in the destination.
    pub blobs_copied: u64,
    /// Their plaintext bytes.
    pub bytes_copied: u64,
    /// Source blobs whose content the destination already held (found by an earlier copy's
    /// mapping or by its id here); a tree found this way is not walked, so its content is
    /// not counted.
    pub blobs_reused: u64,
    /// Plaintext bytes of source data blobs read and decrypted to translate them.
    pub data_read: u64,
    /// Source trees rewritten with destination ids.
    pub trees_rewritten: u64,
    /// Wall time.
    pub duration_s: f64,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// Copies snapshots from `src` into `dst` (see the module documentation).
pub fn copy(src: &Repository, dst: &Repository, opts: &CopyOptions) -> Result<CopyReport> {
    let started = Instant::now();
    if src.config().id == dst.config().id {
        return Err(Error::Invalid(format!(
            "{} and {} are the same repository; nothing to copy",
            src.root().display(),
            dst.root().display()
        )));
    }
    let dry_run = opts.dry_run || dst.is_dry_run();
    let _reading = src.begin_reader_session("copy");
    let session = if dry_run {
        None
    } else {
        dst.begin_session("copy")?
    };
    if !dry_run {
        // Repair around what a killed run left, so its packs are reused rather than resent.
        dst.backend().remove_stale_temps()?;
        dst.adopt_unindexed_packs()?;
    }
    let mut done = copies_present(dst)?;
    let mut report = CopyReport {
        dry_run,
        ..CopyReport::default()
    };
    let mut t = Translator::new(src, dst)?;
    let mut counter = Counter {
        dst,
        new: HashSet::new(),
    };
    for (id, snap) in select(src, opts)? {
        let origin = snap.original.unwrap_or(id);
        if let Some(existing) = done.get(&origin) {
            report.skipped.push(CopiedSnapshot {
                source: id,
                copy: *existing,
            });
            continue;
        }
        let tree = if dry_run {
            t.tree(&mut counter, &snap.tree)?
        } else {
            t.translate_stored(&snap.tree)?
        };
        let copy = copy_record(snap, tree, origin);
        let copy_id = match &session {
            Some(s) => {
                // Last: the snapshot file, once everything it references is indexed.
                s.ensure_current()?;
                Some(dst.save_snapshot(&copy)?)
            }
            None => None,
        };
        done.insert(origin, copy_id);
        report.copied.push(CopiedSnapshot {
            source: id,
            copy: copy_id,
        });
    }
    if let Some(s) = session {
        s.end()?;
    }
    t.fill(&mut report);
    report.duration_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The source snapshots asked for, oldest first, each once.
fn select(src: &Repository, opts: &CopyOptions) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let mut v = if opts.snapshots.is_empty() {
        src.snapshots()?
    } else {
        let mut v: Vec<(SnapshotId, Snapshot)> = Vec::new();
        for r in &opts.snapshots {
            let s = src.resolve_snapshot(r)?;
            if !v.iter().any(|(id, _)| *id == s.0) {
                v.push(s);
            }
        }
        v.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        v
    };
    v.retain(|(_, s)| opts.filter.matches(s));
    Ok(v)
}

/// For every snapshot already in `dst`, its origin → its id here. The origin is the
/// `original` a copy records, and a snapshot's own id too, so that copying copies back to
/// where they came from finds the originals.
fn copies_present(dst: &Repository) -> Result<HashMap<SnapshotId, Option<SnapshotId>>> {
    let mut m = HashMap::new();
    for (id, s) in dst.snapshots()? {
        m.insert(id, Some(id));
        if let Some(o) = s.original {
            m.insert(o, Some(id));
        }
    }
    Ok(m)
}

/// The record of the copy: the source's metadata over the translated tree. `parent` names a
/// snapshot of the other repository, so it is dropped.
fn copy_record(s: Snapshot, tree: BlobId, origin: SnapshotId) -> Snapshot {
    Snapshot {
        tree,
        parent: None,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        original: Some(origin),
        ..s
    }
}

/// Where translated blobs go: the destination's saver, or, on a dry run, a counter.
trait Put {
    /// Stores (or counts) a blob; returns its destination id and whether it is new there.
    fn put(&mut self, t: BlobType, data: &[u8]) -> Result<(BlobId, bool)>;
}

impl Put for BlobSaver<'_, '_> {
    fn put(&mut self, t: BlobType, data: &[u8]) -> Result<(BlobId, bool)> {
        self.save_new(t, data)
    }
}

/// A dry run's sink: what the destination lacks, each blob counted once over the run.
struct Counter<'r> {
    dst: &'r Repository,
    new: HashSet<BlobId>,
}

impl Put for Counter<'_> {
    fn put(&mut self, _: BlobType, data: &[u8]) -> Result<(BlobId, bool)> {
        let id = self.dst.key().blob_id(data);
        let new = !self.dst.cache().contains(&id)? && self.new.insert(id);
        Ok((id, new))
    }
}

/// A translation made in this run.
struct Seen {
    /// The destination id.
    dst: BlobId,
    /// True when it is not in the memo yet.
    record: bool,
}

/// Translates source blobs into destination blobs, memoised.
struct Translator<'a> {
    src: &'a Repository,
    dst: &'a Repository,
    /// The source's repository id, the memo's key next to the source blob id.
    src_repo: Vec<u8>,
    /// This snapshot's translations (the whole run's on a dry run, which records nothing).
    seen: HashMap<BlobId, Seen>,
    blobs_copied: u64,
    bytes_copied: u64,
    blobs_reused: u64,
    data_read: u64,
    trees_rewritten: u64,
}

impl<'a> Translator<'a> {
    fn new(src: &'a Repository, dst: &'a Repository) -> Result<Self> {
        let src_repo = hex::decode(&src.config().id).map_err(|_| {
            Error::corrupt(
                format!("{}/config", src.root().display()),
                "repository id is not hex",
            )
        })?;
        Ok(Translator {
            src,
            dst,
            src_repo,
            seen: HashMap::new(),
            blobs_copied: 0,
            bytes_copied: 0,
            blobs_reused: 0,
            data_read: 0,
            trees_rewritten: 0,
        })
    }

    /// Translates the tree `root` into the destination's packs. Mappings are recorded only
    /// once the saver has finished, i.e. once every blob they name is indexed.
    fn translate_stored(&mut self, root: &BlobId) -> Result<BlobId> {
        let dst = self.dst;
        let claims = BlobSaver::claims(dst);
        let tree = std::thread::scope(|threads| -> Result<BlobId> {
            let mut saver = BlobSaver::start(dst, &claims, threads);
            let tree = self.tree(&mut saver, root)?;
            saver.finish()?;
            Ok(tree)
        })?;
        self.record()?;
        Ok(tree)
    }

    /// Writes this snapshot's new translations to the memo and forgets them in memory.
    fn record(&mut self) -> Result<()> {
        let pairs = self
            .seen
            .iter()
            .filter(|(_, s)| s.record)
            .map(|(src, s)| (src, &s.dst));
        self.dst.cache().copy_record(&self.src_repo, pairs)?;
        self.seen.clear();
        Ok(())
    }

    /// The destination id of a source blob that needs no work: translated in this run, or
    /// mapped by an earlier copy to a blob still stored (and not marked by a prune) here.
    fn known(&mut self, id: &BlobId) -> Result<Option<BlobId>> {
        if let Some(s) = self.seen.get(id) {
            return Ok(Some(s.dst));
        }
        let found = {
            let cache = self.dst.cache();
            match cache.copy_lookup(&self.src_repo, id)? {
                Some(d) if cache.contains(&d)? => Some(d),
                _ => None,
            }
        };
        if let Some(d) = found {
            self.blobs_reused += 1;
            self.seen.insert(
                *id,
                Seen {
                    dst: d,
                    record: false,
                },
            );
        }
        Ok(found)
    }

    /// Stores a translated blob and remembers its translation.
    fn put(
        &mut self,
        out: &mut impl Put,
        t: BlobType,
        src_id: &BlobId,
        plain: &[u8],
    ) -> Result<BlobId> {
        let (d, new) = out.put(t, plain)?;
        if new {
            self.blobs_copied += 1;
            self.bytes_copied += plain.len() as u64;
        } else {
            self.blobs_reused += 1;
        }
        self.seen.insert(
            *src_id,
            Seen {
                dst: d,
                record: true,
            },
        );
        Ok(d)
    }

    /// Translates one data blob.
    fn data(&mut self, out: &mut impl Put, id: &BlobId) -> Result<BlobId> {
        if let Some(d) = self.known(id)? {
            return Ok(d);
        }
        let (t, plain) = self.src.load_blob(id)?;
        if t != BlobType::Data {
            return Err(Error::corrupt(
                format!("blob {id} in {}", self.src.root().display()),
                "is file content but indexed as a tree",
            ));
        }
        self.data_read += plain.len() as u64;
        self.put(out, BlobType::Data, id, &plain)
    }

    /// Translates a tree after everything it references, so that subtrees and content are
    /// stored before the trees that name them, as in a snapshot.
    fn tree(&mut self, out: &mut impl Put, id: &BlobId) -> Result<BlobId> {
        if let Some(d) = self.known(id)? {
            return Ok(d);
        }
        let mut tree = self.src.load_tree(id)?;
        for node in &mut tree.nodes {
            for c in &mut node.content {
                *c = self.data(out, c)?;
            }
            if let Some(s) = &mut node.subtree {
                *s = self.tree(out, s)?;
            }
        }
        self.trees_rewritten += 1;
        let bytes = tree.encode();
        self.put(out, BlobType::Tree, id, &bytes)
    }

    /// Copies the counts into the report.
    fn fill(&self, r: &mut CopyReport) {
        r.blobs_copied = self.blobs_copied;
        r.bytes_copied = self.bytes_copied;
        r.blobs_reused = self.blobs_reused;
        r.data_read = self.data_read;
        r.trees_rewritten = self.trees_rewritten;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::crypto::keyfile::KdfParams;
    use crate::ops::snapshot::{Input, SnapshotOptions, snapshot};
    use crate::ops::walk::walk;
    use crate::repo::InitOptions;
    use crate::tree::NodeKind;

    /// A repository at `dir/name` with its cache at `dir/cache` (shared, as in the CLI).
    fn repo(dir: &Path, name: &str) -> Repository {
        let opts = InitOptions {
            kdf: KdfParams::CHEAP,
            ..InitOptions::default()
        };
        Repository::init(&dir.join(name), name.as_bytes(), &opts, &dir.join("cache")).unwrap()
    }

    fn take(repo: &Repository, path: &Path) -> SnapshotId {
        let r = snapshot(
            repo,
            Input::Paths(vec![path.to_path_buf()]),
            &SnapshotOptions::default(),
        )
        .unwrap();
        r.snapshot_id.unwrap()
    }

    /// Every file below a snapshot's root with its content, and every other entry's kind.
    fn contents(repo: &Repository, snap: &SnapshotId) -> BTreeMap<String, Vec<u8>> {
        let root = repo.load_snapshot(snap).unwrap().tree;
        let mut out = BTreeMap::new();
        walk(repo, &root, &mut |p, n| {
            let mut v = Vec::new();
            if n.kind == NodeKind::File {
                for id in &n.content {
                    v.extend(repo.load_blob(id)?.1);
                }
            } else {
                v.extend(n.kind.as_str().as_bytes());
            }
            out.insert(p.display().to_string(), v);
            Ok(true)
        })
        .unwrap();
        out
    }

    fn sample(dir: &Path) -> std::path::PathBuf {
        let src = dir.join("files");
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        let mut big = vec![0u8; 3 << 20];
        crate::crypto::random_bytes(&mut big);
        std::fs::write(src.join("big"), &big).unwrap();
        std::fs::write(src.join("sub/small"), b"small file").unwrap();
        std::fs::write(src.join("sub/deeper/same"), b"small file").unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("big", src.join("link")).unwrap();
        src
    }

    /// All source blobs a snapshot references (trees included).
    fn blobs(repo: &Repository, tree: &BlobId, out: &mut HashSet<BlobId>) {
        if !out.insert(*tree) {
            return;
        }
        for n in repo.load_tree(tree).unwrap().nodes {
            out.extend(n.content.iter().copied());
            if let Some(s) = n.subtree {
                blobs(repo, &s, out);
            }
        }
    }

    #[test]
    fn copies_are_faithful_memoised_and_not_repeated() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (repo(d.path(), "src"), repo(d.path(), "dst"));
        let files = sample(d.path());
        let s1 = take(&src, &files);
        let r = copy(&src, &dst, &CopyOptions::default()).unwrap();
        assert_eq!(r.copied.len(), 1);
        let c1 = r.copied[0].copy.unwrap();
        assert_eq!(contents(&dst, &c1), contents(&src, &s1));
        let (a, b) = (
            src.load_snapshot(&s1).unwrap(),
            dst.load_snapshot(&c1).unwrap(),
        );
        assert_eq!(b.original, Some(s1));
        assert_eq!(
            (&b.paths, &b.hostname, b.time),
            (&a.paths, &a.hostname, a.time)
        );
        assert_ne!(a.tree, b.tree, "ids are keyed per repository");
        assert!(r.bytes_copied >= 3 << 20);
        assert_eq!(r.data_read, (3 << 20) + 10, "a repeated blob is read once");

        // Nothing twice.
        let again = copy(&src, &dst, &CopyOptions::default()).unwrap();
        assert!(again.copied.is_empty());
        assert_eq!(
            again.skipped,
            vec![CopiedSnapshot {
                source: s1,
                copy: Some(c1)
            }]
        );
        assert_eq!((again.blobs_copied, again.data_read), (0, 0));

        // A new snapshot with one changed small file: the big file is neither read nor sent.
        std::fs::write(files.join("sub/small"), b"changed").unwrap();
        let s2 = take(&src, &files);
        let r = copy(&src, &dst, &CopyOptions::default()).unwrap();
        assert_eq!(r.copied.len(), 1);
        assert_eq!(r.data_read, 7);
        assert!(r.bytes_copied < 4096, "{} bytes sent", r.bytes_copied);
        assert_eq!(
            contents(&dst, &r.copied[0].copy.unwrap()),
            contents(&src, &s2)
        );

        // Copying back finds the originals.
        let back = copy(&dst, &src, &CopyOptions::default()).unwrap();
        assert!(back.copied.is_empty());
        assert_eq!(back.skipped.len(), 2);
    }

    #[test]
    fn a_mapping_to_a_blob_no_longer_stored_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (repo(d.path(), "src"), repo(d.path(), "dst"));
        let s1 = take(&src, &sample(d.path()));
        let mut all = HashSet::new();
        blobs(&src, &src.load_snapshot(&s1).unwrap().tree, &mut all);
        let gone = BlobId([0xee; 32]);
        let src_repo = hex::decode(&src.config().id).unwrap();
        dst.cache()
            .copy_record(&src_repo, all.iter().map(|id| (id, &gone)))
            .unwrap();
        let r = copy(&src, &dst, &CopyOptions::default()).unwrap();
        let c1 = r.copied[0].copy.unwrap();
        assert_eq!(contents(&dst, &c1), contents(&src, &s1));
        // The mappings now name what was stored.
        let root = src.load_snapshot(&s1).unwrap().tree;
        assert_eq!(
            dst.cache().copy_lookup(&src_repo, &root).unwrap(),
            Some(dst.load_snapshot(&c1).unwrap().tree)
        );
    }

    #[test]
    fn a_dry_run_counts_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (repo(d.path(), "src"), repo(d.path(), "dst"));
        let files = sample(d.path());
        let s1 = take(&src, &files);
        std::fs::write(files.join("other"), b"more").unwrap();
        take(&src, &files);
        let listing = |r: &Repository| {
            let mut v = r.backend().list(crate::backend::FileKind::Pack).unwrap();
            v.extend(
                r.backend()
                    .list(crate::backend::FileKind::Snapshot)
                    .unwrap(),
            );
            v.extend(r.backend().list(crate::backend::FileKind::Session).unwrap());
            v
        };
        let before = listing(&dst);
        let opts = CopyOptions {
            dry_run: true,
            ..CopyOptions::default()
        };
        let dry = copy(&src, &dst, &opts).unwrap();
        assert_eq!(listing(&dst), before);
        assert!(dry.dry_run);
        assert_eq!(dry.copied.len(), 2);
        assert!(dry.copied.iter().all(|c| c.copy.is_none()));
        let real = copy(&src, &dst, &CopyOptions::default()).unwrap();
        assert_eq!(
            (dry.blobs_copied, dry.bytes_copied),
            (real.blobs_copied, real.bytes_copied)
        );
        // Selection by reference.
        let other = repo(d.path(), "other");
        let opts = CopyOptions {
            snapshots: vec![s1.to_hex()[..8].to_string()],
            ..CopyOptions::default()
        };
        let r = copy(&src, &other, &opts).unwrap();
        assert_eq!(r.copied.len(), 1);
        assert_eq!(r.copied[0].source, s1);
        assert!(copy(&src, &src, &CopyOptions::default()).is_err());
    }
}
