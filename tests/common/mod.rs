//! Helpers for end-to-end tests: run the real `cairn` binary against temporary repositories.
#![allow(dead_code)]

pub mod browser;
pub mod fidelity;
pub mod seaweed;
pub mod serve;
pub mod servers;
pub mod site;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary workspace with a repository, a cache and room for sources and restores.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub password: String,
    /// The repository's address when it is in a bucket (`s3:…`) rather than at [`Env::repo`].
    pub url: Option<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

impl Env {
    /// A workspace with an initialised repository (cheap KDF, small chunks for fast tests).
    pub fn new() -> Env {
        Env::with_init_args(&[])
    }

    /// Like [`Env::new`], with more `init` arguments.
    pub fn with_init_args(extra: &[&str]) -> Env {
        let e = Env::bare();
        e.init(extra);
        e
    }

    /// Like [`Env::new`], with another password.
    pub fn with_password(password: &str) -> Env {
        let mut e = Env::bare();
        e.password = password.into();
        e.init(&[]);
        e
    }

    /// Initialises the repository (cheap KDF, small chunks) with more `init` arguments.
    fn init(&self, extra: &[&str]) {
        let mut args = vec!["init", "--kdf-memory", "64", "--kdf-iterations", "1"];
        args.extend([
            "--chunk-min",
            "16K",
            "--chunk-avg",
            "64K",
            "--chunk-max",
            "256K",
        ]);
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// Adds a key for `password` (cheap KDF) and returns its id.
    pub fn add_key(&self, password: &str) -> String {
        let o = self
            .cmd(&[
                "--json",
                "key",
                "add",
                "--kdf-memory",
                "64",
                "--kdf-iterations",
                "1",
            ])
            .env("CAIRN_NEW_PASSWORD", password)
            .output()
            .expect("run cairn");
        assert!(
            o.status.success(),
            "key add: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["key"].as_str().expect("key id").to_string()
    }

    /// A workspace without a repository.
    pub fn bare() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .expect("tempdir");
        Env {
            dir,
            password: "correct horse".into(),
            url: None,
        }
    }

    /// A workspace whose repository is in a new bucket of `server`, initialised with `extra`
    /// `init` arguments; commands get the server's credentials.
    pub fn in_bucket(server: &seaweed::Seaweed, extra: &[&str]) -> Env {
        let mut e = Env::bare();
        e.url = Some(server.url(&server.bucket(), "repo"));
        e.init(extra);
        e
    }

    /// The repository's files as its store sees them (a folder or a bucket), for tests that
    /// damage or inspect them whatever the backend.
    pub fn store(&self) -> Box<dyn cairn::backend::Backend> {
        match &self.url {
            None => Box::new(cairn::backend::LocalBackend::new(self.repo())),
            Some(url) => Box::new(bucket_store(url)),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// A command with the repository, password and cache set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        match &self.url {
            Some(url) => {
                c.arg("-r").arg(url);
                c.env("AWS_ACCESS_KEY_ID", seaweed::ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", seaweed::SECRET_KEY)
                    .env_remove("AWS_PROFILE")
                    .env_remove("AWS_SESSION_TOKEN")
                    .env("CAIRN_S3_RETRIES", "2");
            }
            None => {
                c.arg("-r").arg(self.repo());
            }
        }
        c.args(args);
        c.env("CAIRN_PASSWORD", &self.password)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env_remove("CAIRN_REPOSITORY")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env("HOME", self.path("home"))
            // Calendar rules (forget) count days in the local zone: make it fixed.
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        c
    }

    /// `wrapper`, which is to run `inner` (from [`Env::cmd`]), given `inner`'s environment:
    /// for cairn under a shell with limits or on a pseudo-terminal.
    pub fn with_env_of(wrapper: &mut Command, inner: &Command) {
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => wrapper.env(k, v),
                None => wrapper.env_remove(k),
            };
        }
    }

    /// [`Env::cmd`] run under an open-file limit of `n` (soft and hard, by `prlimit`): a
    /// restore then writes its files in batches of `n / 4`.
    #[allow(dead_code)] // not every test binary restores in small batches
    pub fn cmd_with_file_limit(&self, args: &[&str], n: u32) -> Command {
        let inner = self.cmd(args);
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={n}:{n}"))
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null());
        Env::with_env_of(&mut c, &inner);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cairn")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cairn {args:?} failed: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs with --json and parses stdout; asserts the exit code.
    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert_eq!(
            o.status.code(),
            Some(code),
            "cairn {a:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "bad json from {a:?}: {e}: {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    /// Takes a snapshot of `paths` and flips one byte in the middle of the largest pack it
    /// added (a data pack); returns that pack's path in the repository (`packs/XX/ID`).
    pub fn snapshot_with_damaged_pack(&self, paths: &[&Path]) -> String {
        let before = self.repo_files();
        self.snapshot(paths);
        let after = self.repo_files();
        let pack = added(&before, &after)
            .into_iter()
            .filter(|p| p.starts_with("packs/"))
            .max_by_key(|p| std::fs::metadata(self.repo().join(p)).unwrap().len())
            .expect("the snapshot added a pack");
        let path = self.repo().join(&pack);
        let mut b = std::fs::read(&path).unwrap();
        b[1000] ^= 0x40;
        std::fs::write(&path, b).unwrap();
        pack
    }

    /// Takes a snapshot of `paths` and returns the JSON summary.
    pub fn snapshot(&self, paths: &[&Path]) -> serde_json::Value {
        let mut a = vec!["snapshot"];
        let ps: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        a.extend(ps.iter().map(String::as_str));
        self.json(&a, 0)
    }

    /// Restores the latest snapshot into `target` with `extra` options; asserts exit 0 and
    /// returns the JSON report.
    pub fn restore(&self, target: &Path, extra: &[&str]) -> serde_json::Value {
        let t = target.to_str().expect("utf-8 target");
        let mut args = vec!["restore", "latest", "--target", t];
        args.extend_from_slice(extra);
        self.json(&args, 0)
    }

    /// The `name` of every entry `ls --json ARGS` lists.
    pub fn ls_names(&self, args: &[&str]) -> Vec<String> {
        let listing = self.json(args, 0);
        listing
            .as_array()
            .expect("ls --json prints an array")
            .iter()
            .map(|n| n["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// Total size of the repository's packs.
    pub fn pack_bytes(&self) -> u64 {
        self.repo_files()
            .iter()
            .filter(|(n, _)| n.starts_with("packs/"))
            .map(|(_, s)| s)
            .sum()
    }

    /// Every file of the repository with its size.
    pub fn repo_files(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(&self.repo(), &self.repo(), &mut out);
        out.sort();
        out
    }
}

/// The repository at `url` (`s3:…` on the test server) through cairn's own S3 client.
pub fn bucket_store(url: &str) -> cairn::backend::S3Backend {
    let l = cairn::backend::S3Location::parse(url.strip_prefix("s3:").expect("an s3: url"), None)
        .unwrap();
    let c = cairn::backend::S3Credentials {
        access_key_id: seaweed::ACCESS_KEY.into(),
        secret_access_key: seaweed::SECRET_KEY.into(),
        session_token: None,
        region: None,
    };
    cairn::backend::S3Backend::with(l, c, 2).unwrap()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            walk(root, &e.path(), out);
        } else {
            out.push((
                e.path().strip_prefix(root).unwrap().display().to_string(),
                m.len(),
            ));
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut v);
    v
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Files in the repository that changed between two listings (added or resized).
pub fn added(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<String> {
    after
        .iter()
        .filter(|f| !before.contains(f))
        .map(|f| f.0.clone())
        .collect()
}

/// Every regular file under `root` by relative path, with its content.
pub fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Unpacks a tar archive into `to` with GNU tar, keeping owners, modes and extended
/// attributes.
pub fn untar(archive: &[u8], to: &Path) {
    use std::io::Write;
    std::fs::create_dir_all(to).unwrap();
    let mut tar = Command::new("tar")
        .args([
            "-x",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-p",
            "-f",
            "-",
        ])
        .arg("-C")
        .arg(to)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(archive).unwrap();
    assert!(tar.wait().unwrap().success());
}

/// Writes `data` to `dir/name`, creating the folders on the way.
pub fn write(dir: &Path, name: &str, data: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}
