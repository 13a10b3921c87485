//! `status`: per component the last success, its age, size and change against the median,
//! the last drill; for the repository the free space and the verification ledger; and
//! whether every limit holds. The same limits decide the alerts that `run`, `status
//! --notify` and the daemon send, each once when it is crossed and once when it holds again.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::alert::{Event, Notifier};
use super::audit::{self, Outcome};
use super::component::kind_of;
use super::config::{Component, span_text};
use super::handle::Site;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;

/// Exit code of `status` when a limit does not hold.
pub const EXIT_LIMIT: i32 = 4;

/// A limit that does not hold.
#[derive(Clone, Debug, Serialize, PartialEq, ToSchema)]
pub struct Breach {
    /// `stale`, `size_change`, `failed`, `drill_overdue`, `drill_failed`, `disk_full`.
    pub limit: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Breach {
    fn new(limit: &str, message: String) -> Breach {
        Breach {
            limit: limit.into(),
            message,
        }
    }
}

/// A snapshot, as status shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Version {
    /// Its id.
    #[schema(value_type = String)]
    pub id: SnapshotId,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its kind.
    pub kind: Option<String>,
    /// Why it was taken.
    pub reason: Option<String>,
    /// The size of its files.
    pub size: u64,
    /// New data it stored (plaintext).
    pub added: u64,
}

impl Version {
    /// The row for a snapshot.
    pub fn of(id: &SnapshotId, s: &Snapshot) -> Version {
        Version {
            id: *id,
            time: s.time,
            kind: kind_of(s).map(String::from),
            reason: s.reason.clone(),
            size: s.summary.total_bytes,
            added: s.summary.data_added,
        }
    }
}

/// One component's status.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ComponentStatus {
    /// Its name.
    pub component: String,
    /// `paths`, `command` or `sqlite`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its snapshots in the repository.
    pub snapshots: usize,
    /// The newest.
    pub last_success: Option<Version>,
    /// Its age, seconds.
    pub age_s: Option<i64>,
    /// The newest size's change against the median of the ones before, percent.
    pub size_change_pct: Option<f64>,
    /// The last run.
    pub last_run: Option<Outcome>,
    /// The last drill.
    pub last_drill: Option<Outcome>,
    /// The last check of its snapshots alone (the service's verify of a component; a check
    /// of the whole repository is the repository's `last_check`).
    pub last_verify: Option<Outcome>,
    /// The limits it breaks.
    pub breaches: Vec<Breach>,
}

/// The repository's status.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RepoStatus {
    /// Where it is.
    pub path: String,
    /// Snapshots in it.
    pub snapshots: usize,
    /// Bytes free on its filesystem (for unprivileged users); 0 for a repository on a
    /// server, which does not tell.
    pub free_bytes: u64,
    /// The filesystem's size.
    pub total_bytes: u64,
    /// Percent used.
    pub used_pct: f64,
    /// Packs in use.
    pub packs: u64,
    /// Packs never proven by `check --read-data`.
    pub packs_unproven: u64,
    /// The oldest proof of a pack in use.
    pub oldest_proof: Option<DateTime<Utc>>,
    /// The newest proof.
    pub newest_proof: Option<DateTime<Utc>>,
    /// The last check the site ran.
    pub last_check: Option<Outcome>,
    /// Its breaches (the disk).
    pub breaches: Vec<Breach>,
}

/// Everything `status` reports.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StatusReport {
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// True when every limit holds.
    pub ok: bool,
    /// Per component, in config order.
    pub components: Vec<ComponentStatus>,
    /// The repository.
    pub repository: RepoStatus,
}

/// The median of `v` (which must not be empty).
fn median(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
    }
}

/// The size change of the newest of `snaps` (oldest first) against the median of the
/// `window` before it, percent; `None` without history or with a zero median.
pub fn size_change(snaps: &[(SnapshotId, Snapshot)], window: usize) -> Option<f64> {
    let (newest, before) = snaps.split_last()?;
    let from = before.len().saturating_sub(window);
    let sizes: Vec<u64> = before[from..]
        .iter()
        .map(|(_, s)| s.summary.total_bytes)
        .collect();
    if sizes.is_empty() {
        return None;
    }
    let m = median(sizes);
    if m == 0.0 {
        return None;
    }
    Some((newest.1.summary.total_bytes as f64 - m) / m * 100.0)
}

/// How full the filesystem holding `path` is: (free bytes, total bytes, percent used), as
/// `df` counts (blocks reserved for root are not free).
pub fn disk(path: &Path) -> Result<(u64, u64, f64)> {
    let s =
        nix::sys::statvfs::statvfs(path).map_err(|e| Error::io(path, std::io::Error::from(e)))?;
    let frag = s.fragment_size() as u64;
    let (blocks, bfree, bavail) = (
        s.blocks() as u64,
        s.blocks_free() as u64,
        s.blocks_available() as u64,
    );
    let used = blocks.saturating_sub(bfree);
    let pct = if used + bavail == 0 {
        0.0
    } else {
        used as f64 * 100.0 / (used + bavail) as f64
    };
    Ok((bavail * frag, blocks * frag, pct))
}

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> i64 {
    (now - t).num_seconds()
}

fn component_status(
    site: &Site,
    comp: &Component,
    snaps: &[(SnapshotId, Snapshot)],
    state: &audit::ComponentState,
    now: DateTime<Utc>,
) -> ComponentStatus {
    let alerts = &site.config.alerts;
    let mut breaches = Vec::new();
    let last = snaps.last();
    let age_s = last.map(|(_, s)| age(now, s.time));
    match age_s {
        None => breaches.push(Breach::new(
            "stale",
            format!("{} has no snapshot yet", comp.name),
        )),
        Some(a) if a > comp.max_age.as_secs() as i64 => breaches.push(Breach::new(
            "stale",
            format!(
                "the newest snapshot of {} is {} old (limit {})",
                comp.name,
                span_text(Duration::from_secs(a as u64 / 60 * 60)),
                span_text(comp.max_age)
            ),
        )),
        Some(_) => {}
    }
    let change = size_change(snaps, alerts.size_window);
    if let Some(c) = change
        && c.abs() > comp.size_change
    {
        breaches.push(Breach::new(
            "size_change",
            format!(
                "the newest snapshot of {} is {c:+.0}% against the median of the {} before (limit ±{}%)",
                comp.name,
                (snaps.len() - 1).min(alerts.size_window),
                comp.size_change
            ),
        ));
    }
    if let Some(r) = &state.last_run
        && !r.ok
    {
        let why = r.error.clone().unwrap_or_default();
        breaches.push(Breach::new(
            "failed",
            format!("the last run of {} failed: {why}", comp.name),
        ));
    }
    if let Some(d) = &state.last_drill
        && !d.ok
    {
        let why = d.error.clone().unwrap_or_default();
        breaches.push(Breach::new(
            "drill_failed",
            format!("the last drill of {} failed: {why}", comp.name),
        ));
    }
    let limit = alerts.drill_max_age.0.as_secs() as i64;
    let overdue = match &state.last_good_drill {
        Some(d) => age(now, d.time) > limit,
        // Never drilled: overdue once the component has been backed up for that long.
        None => snaps.first().is_some_and(|(_, s)| age(now, s.time) > limit),
    };
    if overdue {
        breaches.push(Breach::new(
            "drill_overdue",
            format!(
                "{} has had no successful drill for {} (run `cairn drill {}`)",
                comp.name,
                span_text(alerts.drill_max_age.0),
                comp.name
            ),
        ));
    }
    ComponentStatus {
        component: comp.name.clone(),
        kind: comp.source.type_name().into(),
        snapshots: snaps.len(),
        last_success: last.map(|(id, s)| Version::of(id, s)),
        age_s,
        size_change_pct: change,
        last_run: state.last_run.clone(),
        last_drill: state.last_drill.clone(),
        last_verify: state.last_verify.clone(),
        breaches,
    }
}

fn repo_status(
    site: &Site,
    repo: &Repository,
    snapshots: usize,
    state: &audit::State,
) -> Result<RepoStatus> {
    // A server's free space is its own business (the protocol does not tell).
    let (free, total, used) = if repo.is_local() {
        disk(repo.root())?
    } else {
        (0, 0, 0.0)
    };
    let mut breaches = Vec::new();
    if repo.is_local() && used > site.config.alerts.disk_used {
        breaches.push(Breach::new(
            "disk_full",
            format!(
                "the repository's filesystem is {used:.0}% full (limit {}%)",
                site.config.alerts.disk_used
            ),
        ));
    }
    let packs = repo.cache().packs()?;
    let proofs = repo.cache().verified()?;
    let times: Vec<i64> = packs
        .iter()
        .filter_map(|(p, _, _)| proofs.get(p).copied())
        .collect();
    let at = |t: Option<&i64>| t.and_then(|t| DateTime::from_timestamp(*t, 0));
    Ok(RepoStatus {
        path: repo.root().display().to_string(),
        snapshots,
        free_bytes: free,
        total_bytes: total,
        used_pct: used,
        packs: packs.len() as u64,
        packs_unproven: (packs.len() - times.len()) as u64,
        oldest_proof: if times.len() == packs.len() {
            at(times.iter().min())
        } else {
            None
        },
        newest_proof: at(times.iter().max()),
        last_check: state.last_check.clone(),
        breaches,
    })
}

/// The site's status as of `now`.
pub fn status(site: &Site, repo: &Repository, now: DateTime<Utc>) -> Result<StatusReport> {
    let state = audit::state(&site.config.state_dir);
    let all = repo.snapshots()?;
    let mut components = Vec::new();
    for comp in &site.config.components {
        let tag = super::config::component_tag(&comp.name);
        let snaps: Vec<_> = all
            .iter()
            .filter(|(_, s)| s.tags.contains(&tag))
            .cloned()
            .collect();
        let st = state
            .components
            .get(&comp.name)
            .cloned()
            .unwrap_or_default();
        components.push(component_status(site, comp, &snaps, &st, now));
    }
    let repository = repo_status(site, repo, all.len(), &state)?;
    let ok = repository.breaches.is_empty() && components.iter().all(|c| c.breaches.is_empty());
    Ok(StatusReport {
        time: now,
        ok,
        components,
        repository,
    })
}

/// A breach as a notification: its key in the state's active set (`stale:db`,
/// `disk_full`) and the event to send when it becomes active.
#[derive(Clone, Debug)]
pub struct Alert {
    /// The key.
    pub key: String,
    /// The event.
    pub event: Event,
}

/// The alerts of a report. `failed` breaches are left out: `run` reports each failure when
/// it happens.
pub fn alerts(site: &Site, r: &StatusReport) -> Vec<Alert> {
    let host = site.host();
    let mut all = Vec::new();
    let mut add = |key: String, c: Option<&ComponentStatus>, b: &Breach| {
        all.push(Alert {
            key,
            event: Event {
                event: b.limit.clone(),
                component: c.map(|c| c.component.clone()),
                snapshot: c
                    .and_then(|c| c.last_success.as_ref())
                    .map(|v| v.id.to_hex()),
                error: Some(b.message.clone()),
                host: host.clone(),
                time: r.time,
                detail: serde_json::json!({
                    "age_s": c.and_then(|c| c.age_s),
                    "size": c.and_then(|c| c.last_success.as_ref()).map(|v| v.size),
                    "size_change_pct": c.and_then(|c| c.size_change_pct),
                    "disk_used_pct": r.repository.used_pct,
                }),
            },
        })
    };
    for c in &r.components {
        for b in c.breaches.iter().filter(|b| b.limit != "failed") {
            add(format!("{}:{}", b.limit, c.component), Some(c), b);
        }
    }
    for b in &r.repository.breaches {
        add(b.limit.clone(), None, b);
    }
    all
}

/// Sends the event of every alert not active yet, and a `recovered` event for every active
/// key within `in_scope` that is no longer among `now`; records the active set.
pub fn notify(
    site: &Site,
    now: Vec<Alert>,
    in_scope: &dyn Fn(&str) -> bool,
    n: &mut Notifier,
) -> Result<Vec<Event>> {
    let host = site.host();
    let mut sent = Vec::new();
    audit::update(&site.config.state_dir, |s| {
        for a in &now {
            if s.active_alerts.insert(a.key.clone()) {
                n.event(&a.event);
                sent.push(a.event.clone());
            }
        }
        let still: std::collections::BTreeSet<&str> = now.iter().map(|a| a.key.as_str()).collect();
        let cleared: Vec<String> = s
            .active_alerts
            .iter()
            .filter(|k| in_scope(k) && !still.contains(k.as_str()))
            .cloned()
            .collect();
        for key in cleared {
            s.active_alerts.remove(&key);
            let (limit, component) = match key.split_once(':') {
                Some((l, c)) => (l.to_string(), Some(c.to_string())),
                None => (key.clone(), None),
            };
            let e = Event {
                event: "recovered".into(),
                component,
                snapshot: None,
                error: None,
                host: host.clone(),
                time: Utc::now(),
                detail: serde_json::json!({ "limit": limit }),
            };
            n.event(&e);
            sent.push(e);
        }
    })?;
    Ok(sent)
}

/// The repository's disk limit alone, as an alert list for [`notify`] (scope: `disk_full`).
pub fn disk_alerts(site: &Site, repo: &Repository) -> Result<Vec<Alert>> {
    if !repo.is_local() {
        return Ok(Vec::new());
    }
    let (_, _, used) = disk(repo.root())?;
    if used <= site.config.alerts.disk_used {
        return Ok(Vec::new());
    }
    Ok(vec![Alert {
        key: "disk_full".into(),
        event: Event {
            event: "disk_full".into(),
            component: None,
            snapshot: None,
            error: Some(format!(
                "the repository's filesystem is {used:.0}% full (limit {}%)",
                site.config.alerts.disk_used
            )),
            host: site.host(),
            time: Utc::now(),
            detail: serde_json::json!({ "disk_used_pct": used }),
        },
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(sizes: &[u64]) -> Vec<(SnapshotId, Snapshot)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut s: Snapshot = serde_json::from_value(serde_json::json!({
                    "time": "2026-01-01T00:00:00Z", "tree": "00".repeat(32), "paths": ["/x"],
                    "hostname": "h", "username": "u"
                }))
                .unwrap();
                s.summary.total_bytes = *n;
                (SnapshotId([i as u8; 32]), s)
            })
            .collect()
    }

    #[test]
    fn size_change_is_against_the_median_of_the_window() {
        assert_eq!(size_change(&sized(&[]), 7), None);
        assert_eq!(size_change(&sized(&[100]), 7), None);
        assert_eq!(size_change(&sized(&[100, 150]), 7), Some(50.0));
        // Median of 100, 100, 1000 is 100, whatever the outlier.
        assert_eq!(size_change(&sized(&[100, 1000, 100, 40]), 7), Some(-60.0));
        // Only the last `window` before the newest count.
        assert_eq!(size_change(&sized(&[1, 1, 1, 200, 200, 200]), 2), Some(0.0));
        assert_eq!(size_change(&sized(&[0, 0, 5]), 7), None);
        assert_eq!(median(vec![4, 1, 3, 2]), 2.5);
    }

    #[test]
    fn disk_usage_is_read() {
        let (free, total, pct) = disk(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total && (0.0..=100.0).contains(&pct));
    }
}
