//! The site's records, in its state directory: the audit log (`audit.jsonl`, one JSON line
//! per operation, appended, never rewritten) and the state file (`state.json`, the latest
//! outcome per component and the alerts now active, rewritten atomically), which `status`
//! reads so that it needs no scan of the log.
//!
//! Appends use one `write` on a file opened with `O_APPEND`, so lines of concurrent runs never
//! interleave; the state file is replaced by rename under a lock, so a reader sees the old
//! file or the new.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One operation in the audit log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// When it ended.
    pub time: Option<DateTime<Utc>>,
    /// The host it ran on.
    pub host: String,
    /// The user it ran as.
    pub user: String,
    /// `run`, `rollback`, `recover`, `drill`, `forget`, `prune`, `check`, `copy`.
    pub operation: String,
    /// The components it concerned.
    pub components: Vec<String>,
    /// Snapshots it wrote or used.
    pub snapshots: Vec<String>,
    /// `ok` or `failed`.
    pub result: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time, seconds.
    pub duration_s: f64,
    /// The operation's own figures.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

impl Entry {
    /// An entry for `operation` by this host and user, dated now.
    pub fn new(operation: &str, host: &str) -> Entry {
        Entry {
            time: Some(Utc::now()),
            host: host.to_string(),
            user: crate::repo::whoami().1,
            operation: operation.to_string(),
            result: "ok".into(),
            ..Entry::default()
        }
    }
}

fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.jsonl")
}

fn ensure_dir(d: &Path) -> Result<()> {
    std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))
}

/// Appends `e` to the audit log.
pub fn append(state_dir: &Path, e: &Entry) -> Result<()> {
    ensure_dir(state_dir)?;
    let path = log_path(state_dir);
    let mut line = serde_json::to_vec(e).map_err(|err| Error::Invalid(err.to_string()))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(|err| Error::io(&path, err))?;
    // A line torn by a crash is left as it is, but never glued to this one.
    if ends_torn(&mut f) {
        line.insert(0, b'\n');
    }
    f.write_all(&line).map_err(|err| Error::io(&path, err))?;
    f.sync_data().map_err(|err| Error::io(&path, err))
}

fn ends_torn(f: &mut std::fs::File) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

/// The audit log's entries, oldest first (of `component` only, if given). Lines that do not
/// parse (a torn last line after a power cut) are skipped.
pub fn read(state_dir: &Path, component: Option<&str>) -> Result<Vec<Entry>> {
    let path = log_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| component.is_none_or(|c| e.components.iter().any(|x| x == c)))
        .collect())
}

/// How an operation on a component ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    /// When.
    pub time: DateTime<Utc>,
    /// Whether it succeeded.
    pub ok: bool,
    /// The snapshot it wrote or used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time, seconds.
    #[serde(default)]
    pub duration_s: f64,
}

/// The latest outcomes of one component.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentState {
    /// The last run's outcome.
    pub last_run: Option<Outcome>,
    /// The last failed run.
    pub last_failure: Option<Outcome>,
    /// The last drill.
    pub last_drill: Option<Outcome>,
    /// The last successful drill.
    pub last_good_drill: Option<Outcome>,
    /// The last check of its snapshots alone.
    pub last_verify: Option<Outcome>,
}

/// `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Per component.
    pub components: BTreeMap<String, ComponentState>,
    /// The last `check` through the site (a schedule or the daemon).
    pub last_check: Option<Outcome>,
    /// The alerts that fired and have not cleared, by key (`stale:db`, `disk`): each limit
    /// notifies when it is crossed, not on every evaluation.
    pub active_alerts: BTreeSet<String>,
}

fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// Reads the state file (empty when there is none or it is unreadable: it holds nothing the
/// repository and the log cannot give again).
pub fn state(state_dir: &Path) -> State {
    std::fs::read(state_path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Changes the state file under its lock; returns the new state.
pub fn update(state_dir: &Path, f: impl FnOnce(&mut State)) -> Result<State> {
    ensure_dir(state_dir)?;
    let lock_path = state_dir.join("state.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let _lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(&lock_path, std::io::Error::from(e)))?;
    let mut s = state(state_dir);
    f(&mut s);
    let path = state_path(state_dir);
    let tmp = state_dir.join(format!(".state.json.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(&s).map_err(|e| Error::Invalid(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Error::io(&path, e))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_append_and_filter_and_torn_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Entry::new("run", "h");
        a.components = vec!["db".into(), "etc".into()];
        append(d.path(), &a).unwrap();
        let mut b = Entry::new("drill", "h");
        b.components = vec!["etc".into()];
        b.result = "failed".into();
        b.error = Some("probe failed".into());
        append(d.path(), &b).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("audit.jsonl"))
            .unwrap();
        f.write_all(b"{\"time\": \"20").unwrap();
        assert_eq!(read(d.path(), None).unwrap(), vec![a.clone(), b.clone()]);
        let c = Entry::new("prune", "h");
        append(d.path(), &c).unwrap();
        assert_eq!(read(d.path(), None).unwrap(), vec![a.clone(), b.clone(), c]);
        assert_eq!(read(d.path(), Some("db")).unwrap(), vec![a]);
        assert_eq!(read(d.path(), Some("nope")).unwrap(), vec![]);
    }

    #[test]
    fn state_updates_persist() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(state(d.path()), State::default());
        update(d.path(), |s| {
            s.active_alerts.insert("disk".into());
        })
        .unwrap();
        let s = update(d.path(), |s| {
            s.components.entry("db".into()).or_default().last_run = Some(Outcome {
                time: Utc::now(),
                ok: true,
                snapshot: None,
                error: None,
                duration_s: 1.0,
            });
        })
        .unwrap();
        assert_eq!(state(d.path()), s);
        assert!(s.active_alerts.contains("disk"));
    }
}
