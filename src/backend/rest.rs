//! A repository on a server speaking restic's REST protocol, version 2 (rest-server,
//! `rclone serve restic`), over HTTP or HTTPS through ureq.
//!
//! cairn's files map onto the protocol's types: `config` → `/config`, keys → `/keys/`,
//! snapshots → `/snapshots/`, index files → `/index/`, packs → `/data/`, sessions →
//! `/locks/`, the one type an append-only server still lets a client delete. The server
//! makes each upload atomic (it writes to a temporary file and renames), so `put` is one
//! POST. Status codes become errors that say what to fix: 401 the credentials, 403 an
//! append-only server (or one without write access), 404 a missing file.

use std::io::ErrorKind;
use std::time::Duration;

use super::{Backend, FileKind};
use crate::error::{Error, Result};

/// The media type that asks for a version 2 listing (names with sizes).
const V2: &str = "application/vnd.x.restic.rest.v2";

/// A REST server repository.
pub struct RestBackend {
    agent: ureq::Agent,
    /// The repository's URL, without a trailing `/` (credentials included, if any).
    base: String,
    /// The URL as shown in messages: without the password.
    shown: String,
    /// Uploads in flight at once ([`Backend::uploads`]).
    connections: usize,
}

/// One entry of a version 2 listing.
#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

impl RestBackend {
    /// A backend for the repository at `url` (`http://[user:pass@]host:port/path` or
    /// `https://…`). Nothing is sent yet.
    pub fn new(url: &str) -> Result<RestBackend> {
        let base = url.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{url} is not a REST server address: use rest:http://host:port/path or \
                     rest:https://…"
                ))
            })?;
        let scheme = &base[..base.len() - rest.len()];
        let shown = match rest.split_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}{user}:***@{host}")
            }
            None => base.clone(),
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .build();
        Ok(RestBackend {
            agent: config.into(),
            base,
            shown,
            connections: super::connections_from_env()?,
        })
    }

    /// The repository's address as messages show it: without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Asks the server to create the repository's folders (`POST /?create=true`), as
    /// `init` must before the first file is written.
    pub fn create_repository(&self) -> Result<()> {
        let url = format!("{}/?create=true", self.base);
        let r = self
            .agent
            .post(&url)
            .send(&[][..])
            .map_err(|e| self.transport("/", e))?;
        self.check(r.status().as_u16(), "/", "create the repository")
    }

    fn kind_dir(kind: FileKind) -> &'static str {
        match kind {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Session => "locks",
        }
    }

    /// The path of a file on the server, below the repository.
    fn path(kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => "/config".to_string(),
            k => format!("/{}/{name}", Self::kind_dir(k)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A transport failure (no answer): transient kinds are kept, so that the retrying
    /// decorator tries again.
    fn transport(&self, path: &str, e: ureq::Error) -> Error {
        let kind = match &e {
            ureq::Error::Timeout(_) => ErrorKind::TimedOut,
            ureq::Error::Io(io) => io.kind(),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                ErrorKind::ConnectionRefused
            }
            _ => ErrorKind::Other,
        };
        Error::io(
            format!("{}{path}", self.shown),
            std::io::Error::new(
                kind,
                format!("{e} (is the REST server running and reachable?)"),
            ),
        )
    }

    /// A response's whole body.
    fn body(&self, r: &mut ureq::http::Response<ureq::Body>, path: &str) -> Result<Vec<u8>> {
        r.body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| self.transport(path, e))
    }

    /// The error for an unexpected status, saying what to fix.
    fn check(&self, status: u16, path: &str, doing: &str) -> Result<()> {
        let at = format!("{}{path}", self.shown);
        let io = |kind: ErrorKind, msg: String| {
            Err(Error::io(at.clone(), std::io::Error::new(kind, msg)))
        };
        match status {
            200..=299 => Ok(()),
            401 => io(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot {doing}: the server wants credentials (401): put the right user and \
                     password in the URL, rest:http://user:password@host:port/path"
                ),
            ),
            403 => io(
                ErrorKind::PermissionDenied,
                format!(
                    "cannot {doing}: the server refused (403); an append-only server refuses \
                     every delete and overwrite but of locks: run forget and prune where the \
                     storage is (e.g. against the server's directory as a local repository)"
                ),
            ),
            404 => Err(Error::Missing(at)),
            429 | 500..=599 => io(
                ErrorKind::Interrupted,
                format!("cannot {doing}: the server answered {status}; trying again may help"),
            ),
            s => io(
                ErrorKind::Other,
                format!("cannot {doing}: the server answered {s}"),
            ),
        }
    }
}

impl Backend for RestBackend {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<()> {
        let path = Self::path(kind, name);
        let r = self
            .agent
            .post(&self.url(&path))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .map_err(|e| self.transport(&path, e))?;
        self.check(r.status().as_u16(), &path, "write")
    }

    fn create_layout(&self) -> Result<()> {
        self.create_repository()
    }

    fn uploads(&self) -> usize {
        self.connections
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let path = Self::path(kind, name);
        let mut r = self
            .agent
            .get(&self.url(&path))
            .call()
            .map_err(|e| self.transport(&path, e))?;
        self.check(r.status().as_u16(), &path, "read")?;
        self.body(&mut r, &path)
    }

    fn get_range(&self, kind: FileKind, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = Self::path(kind, name);
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut r = self
            .agent
            .get(&self.url(&path))
            .header("Range", format!("bytes={offset}-{}", offset + len - 1))
            .call()
            .map_err(|e| self.transport(&path, e))?;
        let status = r.status().as_u16();
        if status == 416 {
            return Err(Error::corrupt(
                kind.rel_path(name),
                format!("short read at {offset}+{len}"),
            ));
        }
        self.check(status, &path, "read")?;
        let body = self.body(&mut r, &path)?;
        // A server that ignores ranges sends the whole file.
        let data = if status == 200 {
            let end = offset.saturating_add(len).min(body.len() as u64) as usize;
            body.get(offset as usize..end).unwrap_or_default().to_vec()
        } else {
            body
        };
        super::whole_range(kind, name, offset, len, data)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>> {
        if kind == FileKind::Config {
            return super::list_config(self);
        }
        let path = format!("/{}/", Self::kind_dir(kind));
        let mut r = self
            .agent
            .get(&self.url(&path))
            .header("Accept", V2)
            .call()
            .map_err(|e| self.transport(&path, e))?;
        match self.check(r.status().as_u16(), &path, "list") {
            Err(Error::Missing(_)) => return Ok(Vec::new()),
            other => other?,
        }
        let body = self.body(&mut r, &path)?;
        let listed: Vec<Listed> = serde_json::from_slice(&body).map_err(|e| {
            Error::corrupt(
                format!("the listing of {}{path}", self.shown),
                format!("{e} (is this a REST server of protocol version 2?)"),
            )
        })?;
        Ok(listed.into_iter().map(|l| (l.name, l.size)).collect())
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<()> {
        let path = Self::path(kind, name);
        let r = self
            .agent
            .delete(&self.url(&path))
            .call()
            .map_err(|e| self.transport(&path, e))?;
        match self.check(r.status().as_u16(), &path, "delete") {
            Err(Error::Missing(_)) => Ok(()),
            other => other,
        }
    }

    fn stat(&self, kind: FileKind, name: &str) -> Result<Option<u64>> {
        let path = Self::path(kind, name);
        let r = self
            .agent
            .head(&self.url(&path))
            .call()
            .map_err(|e| self.transport(&path, e))?;
        match self.check(r.status().as_u16(), &path, "look up") {
            Err(Error::Missing(_)) => return Ok(None),
            other => other?,
        }
        let len = r
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::corrupt(
                    format!("{}{path}", self.shown),
                    "the server gave no Content-Length",
                )
            })?;
        Ok(Some(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_hide_the_password_and_bad_ones_are_refused() {
        let b = RestBackend::new("http://u:secret@127.0.0.1:8000/repo/").unwrap();
        assert_eq!(b.shown, "http://u:***@127.0.0.1:8000/repo");
        assert_eq!(b.base, "http://u:secret@127.0.0.1:8000/repo");
        assert!(RestBackend::new("ftp://host/repo").is_err());
        assert_eq!(RestBackend::path(FileKind::Pack, "ab"), "/data/ab");
        assert_eq!(RestBackend::path(FileKind::Session, "s"), "/locks/s");
        assert_eq!(RestBackend::path(FileKind::Config, "config"), "/config");
    }
}

/// `rclone serve restic` on 127.0.0.1 over a temporary folder, for the tests.
#[cfg(test)]
pub(crate) mod server {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A running server; killed on drop.
    pub struct Rclone {
        child: Child,
        /// The repository URL, `http://127.0.0.1:PORT/repo`.
        pub url: String,
        /// The folder behind it.
        pub dir: tempfile::TempDir,
    }

    impl Rclone {
        /// Starts one (`append_only`: `--append-only`); `None`, with the reason printed,
        /// where rclone is not installed and CI is not set (in CI a missing rclone fails).
        pub fn start(append_only: bool) -> Option<Rclone> {
            if Command::new("rclone").arg("version").output().is_err() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "rclone is needed (Debian package rclone)"
                );
                eprintln!("skipped: rclone is not installed");
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = Command::new("rclone");
            cmd.args(["serve", "restic", "--addr"])
                .arg(format!("127.0.0.1:{port}"))
                .arg(dir.path())
                .args(["--config", "/dev/null"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if append_only {
                cmd.arg("--append-only");
            }
            let child = cmd.spawn().unwrap();
            let t = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "rclone did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(Rclone {
                child,
                url: format!("http://127.0.0.1:{port}/repo"),
                dir,
            })
        }
    }

    impl Drop for Rclone {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod against_rclone {
    use super::server::Rclone;
    use super::*;

    #[test]
    fn conformance_against_rclone_serve_restic() {
        let Some(s) = Rclone::start(false) else {
            return;
        };
        let b = RestBackend::new(&s.url).unwrap();
        b.create_repository().unwrap();
        crate::backend::conformance(&b);
        // The files land where restic would put them.
        b.put(FileKind::Session, "s1", b"x").unwrap();
        assert!(s.dir.path().join("repo/locks/s1").exists());
        assert_eq!(b.list(FileKind::Session).unwrap(), vec![("s1".into(), 1)]);
        b.put(FileKind::Session, "s1", b"again").unwrap();
        assert_eq!(b.get(FileKind::Session, "s1").unwrap(), b"again");
    }

    #[test]
    fn retries_ride_out_injected_faults_on_rclone() {
        let Some(s) = Rclone::start(false) else {
            return;
        };
        let b = RestBackend::new(&s.url).unwrap();
        b.create_repository().unwrap();
        crate::backend::rides_out_faults(b);
    }

    #[test]
    fn an_append_only_server_takes_new_files_and_refuses_deletes_clearly() {
        let Some(s) = Rclone::start(true) else {
            return;
        };
        let b = RestBackend::new(&s.url).unwrap();
        b.create_repository().unwrap();
        let name = "cd".repeat(32);
        b.put(FileKind::Pack, &name, b"pack").unwrap();
        assert_eq!(b.get(FileKind::Pack, &name).unwrap(), b"pack");
        let e = b.delete(FileKind::Pack, &name).unwrap_err().to_string();
        assert!(e.contains("append-only") && e.contains("prune"), "{e}");
        // Sessions are locks, which an append-only server lets a client remove.
        b.put(FileKind::Session, "s1", b"x").unwrap();
        b.delete(FileKind::Session, "s1").unwrap();
        assert!(b.list(FileKind::Session).unwrap().is_empty());
    }

    #[test]
    fn a_server_that_is_down_gives_a_clear_error_without_the_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let b = RestBackend::new(&format!("http://u:pw@127.0.0.1:{port}/repo")).unwrap();
        let e = b.get(FileKind::Config, "config").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("REST server running"), "{msg}");
        assert!(!msg.contains("pw@"), "no password in messages: {msg}");
    }
}
