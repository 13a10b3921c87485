//! The repository: the only module that knows the on-disk format.
//!
//! Write order is what makes a crash harmless: packs are stored first, then the index files
//! that name them, then the snapshot that references their blobs. Nothing ever references
//! data that is not durable, and data left unreferenced by a crash is adopted or ignored.

pub mod blob;
pub mod cache;
pub mod config;
pub mod index;
pub mod localcopy;
pub mod pack;
pub mod saver;
pub mod session;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::backend::{Backend, FileKind, LocalBackend, RestBackend, RetryBackend, S3Backend};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::MasterKey;
use crate::crypto::keyfile::{KdfParams, KeyFile, KeyFileError};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, KeyId, PackId, SessionId, SnapshotId, file_hash};
use crate::tree::Tree;
use blob::BlobType;
use cache::{BlobLocation, Cache};
use config::{Compression, Config, FORMAT_VERSION};
use index::{IndexFile, IndexPack};
use session::{Session, SessionInfo};
use snapshot::Snapshot;

const INDEX_AAD: &[u8] = b"cairn index v1";
const SNAPSHOT_AAD: &[u8] = b"cairn snapshot v1";
/// Upper bound on a decoded snapshot or index file (hostile input guard).
const MAX_FILE_PLAINTEXT: usize = 1 << 30;
/// Tries of a store call that fails transiently.
const RETRY_ATTEMPTS: u32 = 4;
/// The first pause between two tries, doubled each time (0.2 + 0.4 + 0.8 s at most).
const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(200);

/// The store every repository handle works through: the disk or server behind the retrying
/// decorator. The one place both `init` and `open` get it from.
fn store(b: impl Backend + 'static) -> Arc<dyn Backend> {
    Arc::new(RetryBackend::new(b, RETRY_ATTEMPTS, RETRY_BASE))
}

/// True when `root` names a repository on a server (`rest:URL` or `s3:URL`), not a folder.
pub fn is_remote(root: &Path) -> bool {
    root.to_str()
        .is_some_and(|r| r.starts_with("rest:") || r.starts_with("s3:"))
}

/// The pack size `init` gives a repository where none is asked for: larger on a server,
/// where every request costs a round trip (and, on object storage, money).
pub fn default_pack_size(root: &Path) -> u32 {
    if is_remote(root) { 32 << 20 } else { 16 << 20 }
}

/// The store of a repository on a server, with its address as messages show it (no
/// password), when `root` names one.
fn remote(root: &Path) -> Result<Option<(Arc<dyn Backend>, PathBuf)>> {
    let Some(r) = root.to_str() else {
        return Ok(None);
    };
    if let Some(url) = r.strip_prefix("rest:") {
        let b = RestBackend::new(url)?;
        let shown = PathBuf::from(format!("rest:{}", b.shown()));
        return Ok(Some((Arc::new(b), shown)));
    }
    if let Some(url) = r.strip_prefix("s3:") {
        let b = S3Backend::new(url)?;
        let shown = PathBuf::from(b.shown());
        return Ok(Some((Arc::new(b), shown)));
    }
    Ok(None)
}

/// Parameters of `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// Default compression.
    pub compression: Compression,
    /// Argon2id cost of the first key.
    pub kdf: KdfParams,
    /// Pack target size (bytes).
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression: Compression::Auto,
            kdf: KdfParams::default(),
            pack_size: 16 << 20,
        }
    }
}

/// A key file as listed by `key list`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    /// Key file name.
    pub id: KeyId,
    /// True for the key that opened this session.
    pub current: bool,
    /// Creation time as recorded.
    pub created: String,
    /// Host that added it.
    pub host: String,
    /// User that added it.
    pub user: String,
    /// Why the key file cannot be read, when it is damaged (it can still be removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// An open, unlocked repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    root: PathBuf,
    config: Config,
    key: MasterKey,
    key_id: KeyId,
    cache: Mutex<Cache>,
    chunker: Chunker,
    dry_run: bool,
    damaged_index: Mutex<Vec<String>>,
    warn: Box<dyn Fn(&str) + Send + Sync>,
    /// Local copies of tree packs, for a repository on a server (`None` on a disk).
    trees: Option<localcopy::TreePacks>,
    /// Local copies of snapshot files, likewise.
    snapshot_copies: Option<localcopy::SnapshotFiles>,
}

/// The user and host names recorded in keys and snapshots.
pub fn whoami() -> (String, String) {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    (host, user)
}

fn random_key_id() -> KeyId {
    let mut b = [0u8; 32];
    crate::crypto::random_bytes(&mut b);
    KeyId(b)
}

/// True when `root` is missing, empty, or holds only what an `init` killed before writing
/// `config` leaves: the folder layout, key files and temporary files, and no data.
fn empty_or_interrupted_init(root: &Path) -> Result<bool> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io(root, e)),
    };
    for e in rd {
        let e = e.map_err(|err| Error::io(root, err))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") || name == "keys" {
            continue;
        }
        if !matches!(name.as_ref(), "snapshots" | "index" | "packs" | "sessions") {
            return Ok(false);
        }
        let has_files = walk_has_file(&e.path()).map_err(|err| Error::io(e.path(), err))?;
        if has_files {
            return Ok(false);
        }
    }
    Ok(true)
}

fn walk_has_file(dir: &Path) -> std::io::Result<bool> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            if walk_has_file(&e.path())? {
                return Ok(true);
            }
        } else {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks that `root` can hold a repository or is one; the error names the problem.
fn check_root(root: &Path) -> Result<bool> {
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => Err(Error::Invalid(format!(
            "{} is a file, not a repository directory",
            root.display()
        ))),
        Ok(_) => Ok(root.join("config").exists()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(root, e)),
    }
}

impl Repository {
    /// Creates a new repository at `root` (which must not exist or be an empty directory).
    pub fn init(
        root: &Path,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
    ) -> Result<Self> {
        let mut config = Config::new(opts.chunker, opts.compression);
        config.pack_size = opts.pack_size;
        config.validate().map_err(Error::Invalid)?;
        if let Some((b, shown)) = remote(root)? {
            if b.stat(FileKind::Config, "config")?.is_some() {
                return Err(Error::AlreadyExists(shown));
            }
            b.create_layout()?;
            return Self::init_in(b, &shown, config, password, opts, cache_dir);
        }
        if check_root(root)? {
            return Err(Error::AlreadyExists(root.to_path_buf()));
        }
        if !empty_or_interrupted_init(root)? {
            return Err(Error::AlreadyExists(root.to_path_buf()));
        }
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        let local = LocalBackend::new(root);
        local.create_layout()?;
        Self::init_in(local, root, config, password, opts, cache_dir)
    }

    /// The part of `init` every store shares: a fresh master key, its key file, `config`.
    fn init_in(
        b: impl Backend + 'static,
        root: &Path,
        config: Config,
        password: &[u8],
        opts: &InitOptions,
        cache_dir: &Path,
    ) -> Result<Self> {
        // Keys left by an interrupted init wrap a master key that never protected anything.
        for (name, _) in b.list(FileKind::Key)? {
            b.delete(FileKind::Key, &name)?;
        }
        let key = MasterKey::generate();
        let (host, user) = whoami();
        let kf = KeyFile::wrap(&key, password, opts.kdf, &host, &user)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let key_id = random_key_id();
        b.put_checked(FileKind::Key, &key_id.to_hex(), &kf.encode())?;
        // `config` last: its presence is what makes the directory a repository.
        b.put_checked(FileKind::Config, "config", &config.encode())?;
        Self::assemble(store(b), root, config, key, key_id, cache_dir)
    }

    /// Opens the repository at `root`. `password` is asked for only once the repository is
    /// known to exist and to be of a supported version.
    pub fn open(
        root: &Path,
        password: impl FnOnce() -> anyhow::Result<Zeroizing<Vec<u8>>>,
        cache_dir: &Path,
    ) -> Result<Self> {
        if let Some((b, shown)) = remote(root)? {
            let bytes = match b.get(FileKind::Config, "config") {
                Err(Error::Missing(_)) => return Err(Error::NoRepository(shown)),
                other => other?,
            };
            return Self::open_in(b, &shown, &bytes, password, cache_dir);
        }
        if !check_root(root)? {
            return Err(Error::NoRepository(root.to_path_buf()));
        }
        let local = LocalBackend::new(root);
        let bytes = local.get(FileKind::Config, "config")?;
        Self::open_in(local, root, &bytes, password, cache_dir)
    }

    /// The part of `open` every store shares: the version check, the config, the unlock.
    fn open_in(
        local: impl Backend + 'static,
        root: &Path,
        bytes: &[u8],
        password: impl FnOnce() -> anyhow::Result<Zeroizing<Vec<u8>>>,
        cache_dir: &Path,
    ) -> Result<Self> {
        match Config::peek_version(bytes) {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::UnsupportedVersion {
                    path: root.to_path_buf(),
                    found: v,
                    supported: FORMAT_VERSION,
                });
            }
            None => {}
        }
        let config = Config::decode(bytes)
            .map_err(|why| Error::corrupt(format!("{}/config", root.display()), why))?;
        let password = password().map_err(|e| Error::Invalid(format!("{e:#}")))?;
        let (key, key_id) = Self::unlock(&local, root, &password)?;
        Self::assemble(store(local), root, config, key, key_id, cache_dir)
    }

    fn unlock(b: &dyn Backend, root: &Path, password: &[u8]) -> Result<(MasterKey, KeyId)> {
        let keys = b.list(FileKind::Key)?;
        let mut malformed = None;
        let mut wrong = false;
        for (name, _) in keys {
            let Ok(id) = name.parse::<KeyId>() else {
                continue;
            };
            let bytes = b.get(FileKind::Key, &name)?;
            match KeyFile::decode(&bytes).and_then(|k| k.unwrap_key(password)) {
                Ok(k) => return Ok((k, id)),
                Err(KeyFileError::WrongPassword) => wrong = true,
                Err(e) => {
                    malformed = Some(Error::corrupt(
                        format!(
                            "key file {}",
                            root.join(FileKind::Key.rel_path(&name)).display()
                        ),
                        e.to_string(),
                    ))
                }
            }
        }
        match (wrong, malformed) {
            (false, Some(e)) => Err(e),
            (false, None) => Err(Error::Missing(format!(
                "every key file (keys/ in {} is empty)",
                root.display()
            ))),
            (true, _) => Err(Error::WrongPassword(root.to_path_buf())),
        }
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        root: &Path,
        config: Config,
        key: MasterKey,
        key_id: KeyId,
        cache_dir: &Path,
    ) -> Result<Self> {
        let cache = Cache::open(&cache_dir.join(&config.id).join("index.sqlite"))?;
        let config_id = config.id.clone();
        let (g, gl) = key.gear_tables();
        let chunker = Chunker::new(config.chunker, g, gl);
        let repo = Repository {
            backend,
            root: root.to_path_buf(),
            config,
            key,
            key_id,
            cache: Mutex::new(cache),
            chunker,
            dry_run: false,
            damaged_index: Mutex::new(Vec::new()),
            warn: Box::new(|_| {}),
            trees: is_remote(root)
                .then(|| localcopy::TreePacks::new(cache_dir.join(&config_id).join("trees"))),
            snapshot_copies: is_remote(root).then(|| {
                localcopy::SnapshotFiles::new(cache_dir.join(&config_id).join("snapshots"))
            }),
        };
        repo.sync_index()?;
        Ok(repo)
    }

    /// Replaces the backend (e.g. with a fault-injecting decorator in tests).
    pub fn with_backend(mut self, f: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>) -> Self {
        self.backend = f(self.backend);
        self
    }

    /// Turns every later write into a no-op (reads still see the repository): `--dry-run`.
    pub fn into_dry_run(mut self) -> Self {
        self.backend = Arc::new(crate::backend::DryRunBackend(self.backend));
        self.dry_run = true;
        self
    }

    /// Sets where problems that do not stop an operation are reported (the library never
    /// prints): e.g. a damaged snapshot file skipped while looking for a parent.
    pub fn set_warning_handler(&mut self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.warn = Box::new(f);
    }

    /// Reports a problem that does not stop the operation (see
    /// [`set_warning_handler`](Self::set_warning_handler)).
    pub fn warn(&self, message: &str) {
        (self.warn)(message)
    }

    /// True when writes are discarded.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Forgets the cache and rebuilds it from every index file, verifying each.
    pub fn rebuild_cache(&self) -> Result<()> {
        self.sync_index_with(true)
    }

    /// The repository location, for messages.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True for a repository in a local directory (whose filesystem can be asked for free
    /// space); false on a server.
    pub fn is_local(&self) -> bool {
        !is_remote(&self.root)
    }
    /// The decoded `config`.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.key
    }
    /// The keyed chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// The storage backend.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }
    /// The local cache (one connection, shared behind a lock).
    pub fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mirrors new index files into the cache; rebuilds it if index files disappeared.
    /// A prune may replace index files while this runs: a file that vanishes between the
    /// listing and its read means the listing is stale, so it is taken again.
    pub fn sync_index(&self) -> Result<()> {
        self.sync_index_with(false)
    }

    fn sync_index_with(&self, rebuild: bool) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.sync_index_once(rebuild) {
                Err(Error::Missing(_)) if tries < 10 => tries += 1,
                r => return r,
            }
        }
    }

    fn sync_index_once(&self, rebuild: bool) -> Result<()> {
        let listed: Vec<IndexId> = self
            .backend
            .list(FileKind::Index)?
            .iter()
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        let mut cache = self.cache();
        let known: std::collections::HashSet<IndexId> =
            cache.known_index_files()?.into_iter().collect();
        let listed_set: std::collections::HashSet<IndexId> = listed.iter().copied().collect();
        let stale = rebuild || known.iter().any(|k| !listed_set.contains(k));
        if stale {
            // One transaction: another process sharing the cache sees the old mirror or the
            // new one, never an empty one in between.
            cache.begin_rebuild()?;
        }
        let mut damaged = Vec::new();
        let load = || -> Result<()> {
            for id in listed {
                if stale || !known.contains(&id) {
                    match self.load_index(&id) {
                        Ok(f) => cache.add_index_file(&id, &f)?,
                        // A damaged index file must not make the whole repository unusable:
                        // its packs still exist (their headers can rebuild it), so go on
                        // without it and let callers report it.
                        Err(e @ Error::Corrupt { .. }) => damaged.push(e.to_string()),
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        };
        let r = load();
        if stale {
            match &r {
                Ok(()) => cache.commit_rebuild()?,
                Err(_) => cache.abort_rebuild(),
            }
        }
        r?;
        // Index files were replaced (a prune): copies of tree packs it removed go too.
        if stale && let Some(trees) = &self.trees {
            trees.retain(|p| cache.has_pack(p).unwrap_or(true));
        }
        *self.damaged_index.lock().unwrap_or_else(|e| e.into_inner()) = damaged;
        Ok(())
    }

    /// Index files that failed to load in the last [`sync_index`](Self::sync_index), one
    /// message each. Blobs they name are not found until the files are repaired.
    pub fn damaged_index_files(&self) -> Vec<String> {
        self.damaged_index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads, verifies (name hash and seal) and decodes one index file.
    pub fn load_index(&self, id: &IndexId) -> Result<IndexFile> {
        let what = || format!("index/{id}");
        let bytes = self.backend.get(FileKind::Index, &id.to_hex())?;
        if file_hash(&bytes) != id.0 {
            return Err(Error::corrupt(
                what(),
                "content does not match its name (bit rot or tampering)",
            ));
        }
        let plain = blob::open_file(&self.key, INDEX_AAD, &bytes, MAX_FILE_PLAINTEXT)
            .map_err(|e| Error::corrupt(what(), e))?;
        IndexFile::decode(&plain).map_err(|e| Error::corrupt(what(), e))
    }

    /// Stores an index file (after its packs are durable) and mirrors it into the cache.
    pub fn save_index(&self, f: &IndexFile) -> Result<IndexId> {
        let bytes = blob::seal_file(&self.key, INDEX_AAD, &f.encode(), Compression::Off);
        let id = IndexId(file_hash(&bytes));
        self.backend
            .put_checked(FileKind::Index, &id.to_hex(), &bytes)?;
        if !self.dry_run {
            self.cache().add_index_file(&id, f)?;
        }
        Ok(id)
    }

    /// Starts filling index files of at most `max_blobs` entries each (for rewrites of the
    /// whole index: prune, repair). With `dry_run`, files are counted, not written.
    pub fn index_writer(&self, max_blobs: usize, dry_run: bool) -> IndexWriter<'_> {
        IndexWriter {
            repo: self,
            file: IndexFile::default(),
            blobs: 0,
            max_blobs,
            dry_run,
            written: Vec::new(),
            count: 0,
        }
    }

    /// Indexes packs that exist but no index file names — left by a run that was killed
    /// between storing packs and writing their index — by reading their headers. Returns the
    /// number of packs adopted. Packs whose header cannot be read are left alone (`check`
    /// reports them).
    pub fn adopt_unindexed_packs(&self) -> Result<usize> {
        let mut adopted = IndexFile::default();
        for (name, size) in self.backend.list(FileKind::Pack)? {
            let Ok(id) = name.parse::<PackId>() else {
                continue;
            };
            if self.cache().has_pack(&id)? {
                continue;
            }
            if let Ok(h) = self.read_pack_header(&id, size) {
                adopted.packs.push(IndexPack {
                    id,
                    size,
                    blob_type: h.blob_type,
                    blobs: h.entries,
                });
            }
        }
        let n = adopted.packs.len();
        if n > 0 {
            self.save_index(&adopted)?;
        }
        Ok(n)
    }

    /// Reads and authenticates a pack's header with two range reads.
    pub fn read_pack_header(&self, id: &PackId, size: u64) -> Result<pack::PackHeader> {
        let what = || format!("pack {id}");
        if size < 4 {
            return Err(Error::corrupt(what(), "shorter than its trailer"));
        }
        let trailer = self
            .backend
            .get_range(FileKind::Pack, &id.to_hex(), size - 4, 4)?;
        let hlen = pack::header_len_from_trailer(&trailer.try_into().expect("invariant: 4 bytes"));
        if hlen + 4 > size {
            return Err(Error::corrupt(
                what(),
                format!("header length {hlen} exceeds the pack"),
            ));
        }
        let tail =
            self.backend
                .get_range(FileKind::Pack, &id.to_hex(), size - 4 - hlen, hlen + 4)?;
        pack::read_header(&self.key, &tail, size).map_err(|e| Error::corrupt(what(), e))
    }

    /// Where a blob is stored, if indexed.
    pub fn locate(&self, id: &BlobId) -> Result<Option<BlobLocation>> {
        self.cache().lookup(id)
    }

    /// [`locate`](Self::locate) for each of `ids`, in one read of the cache.
    pub fn locate_each(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobLocation>>> {
        self.cache().lookup_each(ids)
    }

    /// Loads, authenticates and verifies one blob.
    pub fn load_blob(&self, id: &BlobId) -> Result<(BlobType, Vec<u8>)> {
        let loc = self
            .locate(id)?
            .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
        Ok((loc.blob_type, self.load_blob_at(id, &loc)?))
    }

    /// Loads, authenticates and verifies one blob whose location the caller already has.
    pub fn load_blob_at(&self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>> {
        let open = |sealed: &[u8]| {
            blob::open_blob(&self.key, loc.blob_type, id, sealed, loc.raw_len as usize)
                .map_err(|e| Error::corrupt(format!("blob {id} in pack {}", loc.pack), e))
        };
        if let (Some(trees), BlobType::Tree) = (&self.trees, loc.blob_type) {
            let (at, len) = (loc.offset.into(), loc.length.into());
            let sealed = trees.read(self.backend.as_ref(), &loc.pack, at, len, false)?;
            return match open(&sealed) {
                Ok(data) => Ok(data),
                // The local copy went bad, or the pack was replaced: read the server's.
                Err(_) => open(&trees.read(self.backend.as_ref(), &loc.pack, at, len, true)?),
            };
        }
        let sealed = self.backend.get_range(
            FileKind::Pack,
            &loc.pack.to_hex(),
            loc.offset.into(),
            loc.length.into(),
        )?;
        open(&sealed)
    }

    /// Loads and decodes a tree blob.
    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        let loc = self
            .locate(id)?
            .ok_or_else(|| Error::BlobNotIndexed(id.to_hex()))?;
        self.load_tree_at(id, &loc)
    }

    /// [`load_tree`](Self::load_tree) of a tree whose location the caller already has.
    pub fn load_tree_at(&self, id: &BlobId, loc: &BlobLocation) -> Result<Tree> {
        let data = self.load_blob_at(id, loc)?;
        if loc.blob_type != BlobType::Tree {
            return Err(Error::corrupt(
                format!("tree {id}"),
                "is indexed as a data blob",
            ));
        }
        Tree::decode(&data).map_err(|e| Error::corrupt(format!("tree {id}"), e.to_string()))
    }

    /// Stores a snapshot file. Call only after every blob it references is indexed.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        let bytes = blob::seal_file(&self.key, SNAPSHOT_AAD, &s.encode(), Compression::Auto);
        let id = SnapshotId(file_hash(&bytes));
        self.backend
            .put_checked(FileKind::Snapshot, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Removes a snapshot file (`forget`); what only it used is given back by `prune`.
    pub fn delete_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.backend.delete(FileKind::Snapshot, &id.to_hex())
    }

    /// Reads and verifies one snapshot file (on a server, from its local copy when intact).
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let bytes = match &self.snapshot_copies {
            Some(c) => c.get(self.backend.as_ref(), &id.to_hex(), &id.0)?,
            None => self.backend.get(FileKind::Snapshot, &id.to_hex())?,
        };
        self.decode_snapshot(id, &bytes)
    }

    /// Reads and verifies one snapshot file from the store itself, never a local copy: what
    /// `check` proves.
    pub fn load_snapshot_from_store(&self, id: &SnapshotId) -> Result<Snapshot> {
        let bytes = self.backend.get(FileKind::Snapshot, &id.to_hex())?;
        self.decode_snapshot(id, &bytes)
    }

    fn decode_snapshot(&self, id: &SnapshotId, bytes: &[u8]) -> Result<Snapshot> {
        let what = || format!("snapshot {id}");
        if file_hash(bytes) != id.0 {
            return Err(Error::corrupt(
                what(),
                "content does not match its name (bit rot or tampering)",
            ));
        }
        let plain = blob::open_file(&self.key, SNAPSHOT_AAD, bytes, MAX_FILE_PLAINTEXT)
            .map_err(|e| Error::corrupt(what(), e))?;
        Snapshot::decode(&plain).map_err(|e| Error::corrupt(what(), e))
    }

    /// Ids of all snapshot files.
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .backend
            .list(FileKind::Snapshot)?
            .iter()
            .filter_map(|(n, _)| n.parse().ok())
            .collect())
    }

    /// All readable snapshots, oldest first. A damaged snapshot file is reported to the
    /// warning handler and skipped, so that one bad file never stops new snapshots (`check`
    /// reports it as an error).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut v = Vec::new();
        let ids = self.snapshot_ids()?;
        if let Some(c) = &self.snapshot_copies {
            let listed: std::collections::HashSet<String> =
                ids.iter().map(|i| i.to_hex()).collect();
            c.retain(|n| listed.contains(n));
        }
        for id in ids {
            match self.load_snapshot(&id) {
                Ok(s) => v.push((id, s)),
                Err(e @ Error::Corrupt { .. }) => (self.warn)(&format!("{e}; skipped")),
                // Removed by a `forget` since the listing.
                Err(Error::Missing(_)) => {}
                Err(e) => return Err(e),
            }
        }
        v.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(v)
    }

    /// Resolves `latest` or a unique hex prefix of a snapshot id.
    pub fn resolve_snapshot(&self, r: &str) -> Result<(SnapshotId, Snapshot)> {
        if r == "latest" {
            return self.snapshots()?.pop().ok_or_else(|| {
                Error::SnapshotRef(format!("no snapshots in {}", self.root.display()))
            });
        }
        let r = r.to_ascii_lowercase();
        if r.is_empty() || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::SnapshotRef(format!(
                "{r:?} is neither `latest` nor a snapshot id prefix"
            )));
        }
        let m: Vec<SnapshotId> = self
            .snapshot_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&r))
            .collect();
        match m.as_slice() {
            [id] => Ok((*id, self.load_snapshot(id)?)),
            [] => Err(Error::SnapshotRef(format!(
                "no snapshot matches {r:?} (see `cairn snapshots`)"
            ))),
            _ => Err(Error::SnapshotRef(format!(
                "{r:?} matches {} snapshots; give more digits",
                m.len()
            ))),
        }
    }

    /// Announces a run that may rely on existing packs (see [`session`]); it ends when the
    /// returned guard is dropped. Dry runs announce nothing.
    pub fn begin_session(&self, command: &str) -> Result<Option<Session>> {
        if self.dry_run {
            return Ok(None);
        }
        let s = Session::begin(self.backend.clone(), &self.key, command)?;
        // The index is read again now that the session is visible: a prune that marks packs
        // after this point records this session, one that marked them before has its marks
        // seen here, so dedup never relies on a pack a prune may delete.
        self.sync_index()?;
        Ok(Some(s))
    }

    /// A session for a run that only reads (restore, check): it keeps a concurrent prune from
    /// deleting packs under the reader. A repository that cannot be written to (read-only
    /// media) is still readable, so failing to announce the session is reported, not fatal.
    pub fn begin_reader_session(&self, command: &str) -> Option<Session> {
        match self.begin_session(command) {
            Ok(s) => s,
            Err(e) => {
                (self.warn)(&format!(
                    "cannot announce this {command} in the repository ({e}); a prune running at the same time may remove data it reads"
                ));
                None
            }
        }
    }

    /// Every session file, decoded; a file that cannot be read gives its reason.
    pub fn sessions(&self) -> Result<Vec<(SessionId, std::result::Result<SessionInfo, String>)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(FileKind::Session)? {
            let Ok(id) = name.parse::<SessionId>() else {
                continue;
            };
            match self.backend.get(FileKind::Session, &name) {
                Ok(bytes) => out.push((id, session::open(&self.key, &bytes))),
                // Ended between the listing and the read.
                Err(Error::Missing(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Lists key files; damaged ones are listed with the reason, so they can be removed.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(FileKind::Key)? {
            let Ok(id) = name.parse::<KeyId>() else {
                continue;
            };
            let info = match KeyFile::decode(&self.backend.get(FileKind::Key, &name)?) {
                Ok(kf) => KeyInfo {
                    id,
                    current: id == self.key_id,
                    created: kf.created,
                    host: kf.host,
                    user: kf.user,
                    damaged: None,
                },
                Err(e) => KeyInfo {
                    id,
                    current: false,
                    created: String::new(),
                    host: String::new(),
                    user: String::new(),
                    damaged: Some(e.to_string()),
                },
            };
            out.push(info);
        }
        Ok(out)
    }

    /// Wraps the master key under another password; returns the new key's id.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let (host, user) = whoami();
        let kf = KeyFile::wrap(&self.key, password, kdf, &host, &user)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let id = random_key_id();
        self.backend
            .put_checked(FileKind::Key, &id.to_hex(), &kf.encode())?;
        Ok(id)
    }

    /// Removes a key file; refuses to remove the key in use (use `passwd` for that).
    pub fn remove_key(&self, prefix: &str) -> Result<KeyId> {
        let keys = self.keys()?;
        let m: Vec<&KeyInfo> = keys
            .iter()
            .filter(|k| k.id.to_hex().starts_with(&prefix.to_ascii_lowercase()))
            .collect();
        let k = match m.as_slice() {
            [k] => *k,
            [] => {
                return Err(Error::Invalid(format!(
                    "no key matches {prefix:?} (see `cairn key list`)"
                )));
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "{prefix:?} matches several keys; give more digits"
                )));
            }
        };
        if k.current {
            return Err(Error::Invalid(
                "refusing to remove the key in use; use `cairn key passwd` to change its password"
                    .into(),
            ));
        }
        self.backend.delete(FileKind::Key, &k.id.to_hex())?;
        Ok(k.id)
    }

    /// Replaces the current key by one under a new password (the new key is durable before the
    /// old one is removed).
    pub fn change_password(&mut self, password: &[u8], kdf: KdfParams) -> Result<KeyId> {
        let new = self.add_key(password, kdf)?;
        self.backend.delete(FileKind::Key, &self.key_id.to_hex())?;
        self.key_id = new;
        Ok(new)
    }
}

/// Fills index files pack by pack, so a rewrite of the whole index never holds more than one
/// file's entries; a marked pack goes into the group of its mark. See
/// [`Repository::index_writer`].
pub struct IndexWriter<'r> {
    repo: &'r Repository,
    file: IndexFile,
    blobs: usize,
    max_blobs: usize,
    dry_run: bool,
    written: Vec<IndexId>,
    count: u64,
}

impl IndexWriter<'_> {
    /// Adds a pack, in use (`mark` `None`) or marked at a time with the sessions then running.
    pub fn add(&mut self, p: IndexPack, mark: Option<(i64, &[SessionId])>) -> Result<()> {
        self.blobs += p.blobs.len();
        match mark {
            None => self.file.packs.push(p),
            Some((at, sessions)) => {
                match self
                    .file
                    .marked
                    .iter_mut()
                    .find(|g| g.marked_at == at && g.sessions == sessions)
                {
                    Some(g) => g.packs.push(p),
                    None => self.file.marked.push(index::MarkedGroup {
                        marked_at: at,
                        sessions: sessions.to_vec(),
                        packs: vec![p],
                    }),
                }
            }
        }
        if self.blobs >= self.max_blobs {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.file.packs.is_empty() && self.file.marked.is_empty() {
            return Ok(());
        }
        let f = std::mem::take(&mut self.file);
        if !self.dry_run {
            self.written.push(self.repo.save_index(&f)?);
        }
        self.count += 1;
        self.blobs = 0;
        Ok(())
    }

    /// Writes what is left; returns the files written and how many there are (or would be).
    pub fn finish(mut self) -> Result<(Vec<IndexId>, u64)> {
        self.flush()?;
        Ok((self.written, self.count))
    }
}
