//! [`Site`]: a checked config and the means to open its repositories.

use std::path::PathBuf;
use std::sync::Arc;

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
        }
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

    /// Opens the main repository.
    pub fn open(&self) -> Result<Repository> {
        self.open_ref(&self.config.repository, "the repository")
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
