//! Writer sessions: how `prune` learns who may still rely on what it is about to delete.
//!
//! Every run that can make a new snapshot reference existing blobs (snapshot, copy, tag) or
//! that reads packs for a while (restore, dump, check, prune) announces itself with a small
//! sealed file
//! `sessions/ID`, refreshed every [`REFRESH`] while it runs and deleted when it ends. Sessions
//! never block anything: `prune` only *marks* packs that no snapshot needs, records which
//! sessions were running at that moment, and deletes a marked pack in a later run once every
//! one of those sessions has ended (see `ops::prune`). A session is over when its file is
//! gone, when it belongs to this host and its process is dead, or when it was not refreshed
//! for the prune's `stale_after` (clocks of hosts must agree to within that margin).
//!
//! A session that finds its own file deleted (a prune judged it stale, e.g. after the machine
//! slept for hours) must not write a snapshot: the blobs it deduplicated against may be gone.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::repo::blob;
use crate::repo::config::Compression;

const SESSION_AAD: &[u8] = b"cairn session v1";
/// How often a running session rewrites its file.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// Upper bound on a decoded session file (hostile input guard).
const MAX_SESSION_PLAINTEXT: usize = 1 << 16;

/// What a session file says (sealed: host and user names are not for the storage provider).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Host of the process.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// Its user.
    pub user: String,
    /// The command (`snapshot`, `prune`, …).
    pub command: String,
    /// When it began.
    pub started: DateTime<Utc>,
    /// Its last refresh.
    pub refreshed: DateTime<Utc>,
}

impl SessionInfo {
    /// Decodes an authenticated session record (its JSON plaintext).
    pub fn decode(plain: &[u8]) -> std::result::Result<SessionInfo, String> {
        serde_json::from_slice(plain).map_err(|e| e.to_string())
    }

    /// Encodes the record's JSON plaintext.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: session record serialises")
    }

    /// True while the session may still be running: judged by its process when it is on
    /// this host, by its last refresh otherwise.
    pub fn is_live(&self, now: DateTime<Utc>, stale_after: Duration, this_host: &str) -> bool {
        if self.host == this_host && !crate::backend::process_alive(self.pid) {
            return false;
        }
        let age = now.signed_duration_since(self.refreshed);
        age.to_std().map_or(true, |a| a < stale_after)
    }
}

/// Seals a session record.
pub fn seal(key: &MasterKey, info: &SessionInfo) -> Vec<u8> {
    blob::seal_file(key, SESSION_AAD, &info.encode(), Compression::Off)
}

/// Opens a sealed session record.
pub fn open(key: &MasterKey, bytes: &[u8]) -> std::result::Result<SessionInfo, String> {
    let plain = blob::open_file(key, SESSION_AAD, bytes, MAX_SESSION_PLAINTEXT)?;
    SessionInfo::decode(&plain)
}

/// A running session; ends (its file deleted) when dropped or by [`Session::end`].
pub struct Session {
    backend: Arc<dyn Backend>,
    id: SessionId,
    stop: Arc<(Mutex<bool>, Condvar)>,
    beat: Option<JoinHandle<()>>,
}

impl Session {
    /// Writes the session file and starts refreshing it.
    pub(crate) fn begin(backend: Arc<dyn Backend>, key: &MasterKey, command: &str) -> Result<Self> {
        let mut raw = [0u8; 32];
        crate::crypto::random_bytes(&mut raw);
        let id = SessionId(raw);
        let (host, user) = crate::repo::whoami();
        let now = Utc::now();
        let mut info = SessionInfo {
            host,
            pid: std::process::id() as i32,
            user,
            command: command.to_string(),
            started: now,
            refreshed: now,
        };
        backend.put_checked(FileKind::Session, &id.to_hex(), &seal(key, &info))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let beat = {
            let (backend, stop, key) = (backend.clone(), stop.clone(), key.clone());
            std::thread::Builder::new()
                .name("session".into())
                .spawn(move || {
                    let (lock, cv) = &*stop;
                    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        // `_while` checks the flag before sleeping: a session ended before
                        // this thread first got the lock must not keep `end` waiting a beat.
                        let (g, _) = cv
                            .wait_timeout_while(stopped, REFRESH, |stopped| !*stopped)
                            .unwrap_or_else(|e| e.into_inner());
                        stopped = g;
                        if *stopped {
                            return;
                        }
                        // A prune that judged the session over removed its file: putting it
                        // back would hide that from `ensure_current`.
                        if let Ok(None) = backend.stat(FileKind::Session, &id.to_hex()) {
                            return;
                        }
                        info.refreshed = Utc::now();
                        // A failed refresh is retried at the next beat; only a prune that
                        // sees no refresh for `stale_after` treats the session as over. One
                        // plain write, neither checked nor retried: a second or a late write
                        // could recreate a file a prune has just removed.
                        let _ =
                            backend.put_once(FileKind::Session, &id.to_hex(), &seal(&key, &info));
                    }
                })
                .map_err(|e| Error::io("session thread", e))?
        };
        Ok(Session {
            backend,
            id,
            stop,
            beat: Some(beat),
        })
    }

    /// The session's file name.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Fails when the session file is gone: a prune judged this run stale and may have
    /// deleted data it relies on, so it must not write a snapshot.
    pub fn ensure_current(&self) -> Result<()> {
        match self.backend.stat(FileKind::Session, &self.id.to_hex())? {
            Some(_) => Ok(()),
            None => Err(Error::Invalid(format!(
                "this run's session file sessions/{} was removed by a prune that found it \
                 stale (no refresh for too long, e.g. the machine slept); data it relies on may \
                 have been deleted, so nothing was recorded: run it again",
                self.id.short()
            ))),
        }
    }

    fn stop_beat(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.beat.take() {
            let _ = t.join();
        }
    }

    /// Stops refreshing and deletes the session file.
    pub fn end(mut self) -> Result<()> {
        self.stop_beat();
        self.backend.delete(FileKind::Session, &self.id.to_hex())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.beat.is_some() {
            self.stop_beat();
            let _ = self.backend.delete(FileKind::Session, &self.id.to_hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn info(host: &str, pid: i32, refreshed: DateTime<Utc>) -> SessionInfo {
        SessionInfo {
            host: host.into(),
            pid,
            user: "u".into(),
            command: "snapshot".into(),
            started: refreshed,
            refreshed,
        }
    }

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let k = MasterKey::from_seed(1);
        let i = info("h", 1, Utc::now());
        assert_eq!(open(&k, &seal(&k, &i)).unwrap(), i);
        assert!(open(&MasterKey::from_seed(2), &seal(&k, &i)).is_err());
        assert!(open(&k, b"garbage").is_err());
    }

    #[test]
    fn liveness() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let me = std::process::id() as i32;
        // Another host: judged by the refresh time only.
        assert!(info("other", 1, now).is_live(now, hour, "here"));
        let old = now - chrono::Duration::hours(2);
        assert!(!info("other", 1, old).is_live(now, hour, "here"));
        // A refresh from the future (clock skew) still counts as live.
        let ahead = now + chrono::Duration::minutes(5);
        assert!(info("other", 1, ahead).is_live(now, hour, "here"));
        // This host: a dead process ends it at once.
        assert!(info("here", me, now).is_live(now, hour, "here"));
        assert!(!info("here", i32::MAX - 1, now).is_live(now, hour, "here"));
    }

    #[test]
    fn begin_end_and_drop_remove_the_file() {
        let b: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let k = MasterKey::from_seed(3);
        let s = Session::begin(b.clone(), &k, "snapshot").unwrap();
        let name = s.id().to_hex();
        let got = open(&k, &b.get(FileKind::Session, &name).unwrap()).unwrap();
        assert_eq!(got.command, "snapshot");
        assert_eq!(got.pid, std::process::id() as i32);
        s.ensure_current().unwrap();
        s.end().unwrap();
        assert!(b.list(FileKind::Session).unwrap().is_empty());
        let s = Session::begin(b.clone(), &k, "restore").unwrap();
        b.delete(FileKind::Session, &s.id().to_hex()).unwrap();
        assert!(
            s.ensure_current().is_err(),
            "a removed session must not go on"
        );
        drop(s);
        let s = Session::begin(b.clone(), &k, "check").unwrap();
        drop(s);
        assert!(b.list(FileKind::Session).unwrap().is_empty());
    }
}
