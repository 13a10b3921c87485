//! [`Site`]: a checked config and the means to open its repositories.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use super::config::{Config, Offsite, PasswordSource, RepoRef};
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Where a password comes from when the config names none (the environment, a prompt): the
/// front end's own sources.
pub type PasswordFallback = Arc<dyn Fn() -> anyhow::Result<Zeroizing<Vec<u8>>> + Send + Sync>;

/// Receives warnings the library does not print (damaged snapshot files skipped, …).
pub type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// A site: its config and how to reach its repositories.
#[derive(Clone)]
pub struct Site {
    /// The checked config.
    pub config: Config,
    fallback: PasswordFallback,
    warn: WarningSink,
    cache_dir: PathBuf,
    /// The main repository once opened, for a long-running process that keeps it open
    /// ([`Site::keep_open`]): one unlock instead of one per job.
    opened: Option<Arc<Mutex<Option<Arc<Repository>>>>>,
}

impl Site {
    /// A site over `config`; `fallback` supplies the main repository's password when the
    /// config names no source; `cache_dir` is used unless the config names one.
    pub fn new(
        config: Config,
        fallback: PasswordFallback,
        cache_dir: PathBuf,
        warn: WarningSink,
    ) -> Site {
        Site {
            config,
            fallback,
            warn,
            cache_dir,
            opened: None,
        }
    }

    /// The same site, keeping the main repository open after its first [`Site::open`]: a
    /// daemon or server unlocks the key once (Argon2id costs its memory and a second or so)
    /// and every job after shares the handle, which re-reads the index and the snapshot
    /// listing as each operation begins.
    pub fn keep_open(mut self) -> Site {
        self.opened = Some(Arc::new(Mutex::new(None)));
        self
    }

    /// The host name recorded in snapshots.
    pub fn host(&self) -> String {
        self.config
            .host
            .clone()
            .unwrap_or_else(|| crate::repo::whoami().0)
    }

    fn open_ref(&self, r: &RepoRef, what: &str) -> Result<Repository> {
        let cache = r
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir.clone());
        let fallback = self.fallback.clone();
        let mut repo = Repository::open(
            &r.path,
            || read_password(&r.password, what, &*fallback),
            &cache,
        )?;
        let warn = self.warn.clone();
        repo.set_warning_handler(move |w| warn(w));
        for problem in repo.damaged_index_files() {
            (self.warn)(&format!(
                "{problem}; the blobs it lists cannot be found (run `cairn check`)"
            ));
        }
        Ok(repo)
    }

    /// Opens the main repository (or, for a site that keeps it open, returns the handle).
    pub fn open(&self) -> Result<Arc<Repository>> {
        let Some(slot) = &self.opened else {
            return Ok(Arc::new(
                self.open_ref(&self.config.repository, "the repository")?,
            ));
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let r = Arc::new(self.open_ref(&self.config.repository, "the repository")?);
        *slot = Some(r.clone());
        Ok(r)
    }

    /// Opens an offsite repository. Its password must come from the config: an offsite
    /// copy runs unattended.
    pub fn open_offsite(&self, o: &Offsite) -> Result<Repository> {
        if o.repo.password == PasswordSource::Caller {
            return Err(Error::Invalid(format!(
                "offsite.{}: give password_file or password_command",
                o.name
            )));
        }
        self.open_ref(&o.repo, &format!("offsite {}", o.name))
    }

    /// The cache directory of the main repository.
    pub fn cache_dir(&self) -> PathBuf {
        self.config
            .repository
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.cache_dir.clone())
    }
}

/// Reads a password from `source` (`what` names the repository in errors).
pub fn read_password(
    source: &PasswordSource,
    what: &str,
    fallback: &(dyn Fn() -> anyhow::Result<Zeroizing<Vec<u8>>> + Send + Sync),
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    match source {
        PasswordSource::File(f) => {
            let b = std::fs::read(f).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the password file of {what}, {}: {e}",
                    f.display()
                )
            })?;
            Ok(Zeroizing::new(first_line(&b)))
        }
        PasswordSource::Command(cmd) => {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| anyhow::anyhow!("cannot run the password_command of {what}: {e}"))?;
            if !out.status.success() {
                anyhow::bail!("the password_command of {what} failed ({})", out.status);
            }
            Ok(Zeroizing::new(first_line(&out.stdout)))
        }
        PasswordSource::Caller => fallback(),
    }
}

/// The first line of `b`, without its line ending.
pub fn first_line(b: &[u8]) -> Vec<u8> {
    let end = b.iter().position(|c| *c == b'\n').unwrap_or(b.len());
    let line = &b[..end];
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}
