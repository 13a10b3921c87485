//! `versions`, `rollback` and `recover`: putting a component back as a snapshot had it.
//!
//! Both restore through [`restore_live`]: under the component's lock, `before` hooks (stop
//! the service), the restore (a paths component made identical to the snapshot in place, a
//! command component's stream piped into its `restore_command`, an sqlite database replaced
//! in one transaction), `after` hooks (start it again); `on_failure` hooks on any failure.
//! A rollback first takes a `pre-rollback` snapshot of the current state, so that it can
//! itself be undone; a recovery (a new machine) has no current state worth keeping.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::{self, Entry};
use super::component::{
    Destination, Restored, TakeOptions, component_of, kind_of, put_back, take, versions,
};
use super::config::{Component, PRE_ROLLBACK, Source};
use super::handle::Site;
use super::hooks::{HookEnv, run_hooks};
use super::lock::lock_component;
use super::status::Version;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::ops::progress::Cancel;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;

/// The snapshots of a component, oldest first, as `versions` lists them.
pub fn list_versions(site: &Site, component: &str) -> Result<Vec<Version>> {
    site.config.component(component)?;
    let repo = site.open()?;
    Ok(versions(&repo, component)?
        .iter()
        .map(|(id, s)| Version::of(id, s))
        .collect())
}

/// Restores `snap` of `comp` in place with its hooks, as `operation` (`rollback`,
/// `recover`); the caller holds the component's lock.
fn restore_live(
    site: &Site,
    repo: &Repository,
    comp: &Component,
    (id, snap): (&SnapshotId, &Snapshot),
    operation: &str,
) -> Result<Restored> {
    let env = HookEnv::new(&comp.name, operation).with("SNAPSHOT", id.to_hex());
    let done = (|| -> Result<Restored> {
        run_hooks("before", &comp.before, &env)?;
        let r = put_back(site, repo, comp, (id, snap), &Destination::Live, &env)?;
        run_hooks("after", &comp.after, &env)?;
        Ok(r)
    })();
    if let Err(e) = &done {
        let env = env.clone().with("ERROR", e.to_string());
        if let Err(h) = run_hooks("on_failure", &comp.on_failure, &env) {
            return Err(Error::Invalid(format!("{e} (and {h})")));
        }
    }
    done
}

/// What restoring `comp` in place does, in words.
fn restore_words(comp: &Component) -> String {
    match &comp.source {
        Source::Paths { paths, .. } => {
            let p: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            format!(
                "make {} identical to the snapshot (files added since are deleted)",
                p.join(", ")
            )
        }
        Source::Command {
            restore_command, ..
        } => match restore_command {
            Some(c) => format!("pipe the stream into `{c}`"),
            None => "(no restore_command: cannot be restored)".into(),
        },
        Source::Sqlite { path } => {
            let live = comp.restore_target.as_ref().unwrap_or(path);
            format!("replace the database {} in one transaction", live.display())
        }
    }
}

/// Options of `rollback`.
#[derive(Clone, Debug, Default)]
pub struct RollbackOptions {
    /// The component.
    pub component: String,
    /// The snapshot to return to (default: its newest that is not a pre-rollback one).
    pub snapshot: Option<String>,
    /// Print the plan only.
    pub dry_run: bool,
    /// Do not take the pre-rollback snapshot (when the current state cannot be read).
    pub no_pre_snapshot: bool,
    /// Asked whether to stop the pre-rollback snapshot early.
    pub cancel: Cancel,
}

/// What `rollback` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RollbackReport {
    /// The component.
    pub component: String,
    /// The snapshot returned to.
    pub snapshot: Option<Version>,
    /// The snapshot of the state before.
    pub pre_rollback: Option<SnapshotId>,
    /// What was restored.
    pub restored: Option<Restored>,
    /// The steps (a dry run's plan, or what was done).
    pub plan: Vec<String>,
    /// True for a dry run.
    pub dry_run: bool,
    /// Wall time, seconds.
    pub duration_s: f64,
}

/// The snapshot `r` names, which must be one of `comp`'s.
fn target(repo: &Repository, comp: &str, r: Option<&str>) -> Result<(SnapshotId, Snapshot)> {
    let Some(r) = r else {
        return versions(repo, comp)?
            .into_iter()
            .rev()
            .find(|(_, s)| kind_of(s) != Some(PRE_ROLLBACK))
            .ok_or_else(|| {
                Error::Invalid(format!("component {comp} has no snapshot to roll back to"))
            });
    };
    let (id, s) = if r == "latest" {
        versions(repo, comp)?
            .pop()
            .ok_or_else(|| Error::Invalid(format!("component {comp} has no snapshot")))?
    } else {
        repo.resolve_snapshot(r)?
    };
    match component_of(&s) {
        Some(c) if c == comp => Ok((id, s)),
        Some(other) => Err(Error::Invalid(format!(
            "snapshot {} is of component {other}, not {comp}: refusing to restore another \
             component's data (pick one from `cairn versions {comp}`)",
            id.short()
        ))),
        None => Err(Error::Invalid(format!(
            "snapshot {} belongs to no component (it was not taken by `cairn run`): \
             restore it with `cairn restore` instead",
            id.short()
        ))),
    }
}

/// Rolls a component back; see the module documentation. A failure after the pre-rollback
/// snapshot says how to return to it.
pub fn rollback(site: &Site, opts: &RollbackOptions) -> Result<RollbackReport> {
    let started = Instant::now();
    let comp = site.config.component(&opts.component)?;
    let repo = site.open()?;
    // Before the target is chosen, so a run's retention cannot remove it meanwhile.
    let _lock = match opts.dry_run {
        true => None,
        false => Some(lock_component(
            &site.config.state_dir,
            &comp.name,
            "rollback",
        )?),
    };
    let (id, snap) = target(&repo, &comp.name, opts.snapshot.as_deref())?;
    let mut report = RollbackReport {
        component: comp.name.clone(),
        snapshot: Some(Version::of(&id, &snap)),
        dry_run: opts.dry_run,
        ..RollbackReport::default()
    };
    let name = &comp.name;
    if !opts.no_pre_snapshot {
        report.plan.push(format!(
            "{name}: take a pre-rollback snapshot of the current state"
        ));
    }
    report.plan.extend(
        comp.before
            .0
            .iter()
            .map(|h| format!("{name}: before hook `{h}`")),
    );
    report.plan.push(format!(
        "{name}: restore snapshot {} of {}: {}",
        id.short(),
        snap.time.to_rfc3339(),
        restore_words(comp)
    ));
    report.plan.extend(
        comp.after
            .0
            .iter()
            .map(|h| format!("{name}: after hook `{h}`")),
    );
    if opts.dry_run {
        return Ok(report);
    }
    let mut entry = Entry::new("rollback", &site.host());
    entry.components = vec![name.clone()];
    entry.snapshots = vec![id.to_hex()];
    let outcome = (|| -> Result<()> {
        if !opts.no_pre_snapshot {
            let pre = take(
                site,
                &repo,
                comp,
                &TakeOptions {
                    kind: PRE_ROLLBACK.into(),
                    reason: Some(format!("before rollback to {}", id.short())),
                    time: None,
                    cancel: opts.cancel.clone(),
                    progress: Default::default(),
                },
            )
            .map_err(|e| {
                Error::Invalid(format!(
                    "the pre-rollback snapshot of {name} failed, so nothing was changed: {e} \
                     (to roll back without it: --no-pre-snapshot)"
                ))
            })?;
            report.pre_rollback = pre.snapshot_id;
        }
        let restored = restore_live(site, &repo, comp, (&id, &snap), "rollback").map_err(|e| {
            let undo = match &report.pre_rollback {
                Some(pre) => format!(
                    "; the state before is snapshot {}: return to it with `cairn rollback {name} {}`",
                    pre.short(),
                    pre.short()
                ),
                None => String::new(),
            };
            Error::Invalid(format!("rollback of {name} to {} failed: {e}{undo}", id.short()))
        })?;
        report.restored = Some(restored);
        Ok(())
    })();
    report.duration_s = started.elapsed().as_secs_f64();
    entry
        .snapshots
        .extend(report.pre_rollback.map(|p| p.to_hex()));
    entry.duration_s = report.duration_s;
    entry.detail =
        serde_json::json!({ "pre_rollback": report.pre_rollback, "restored": report.restored });
    if let Err(e) = &outcome {
        entry.result = "failed".into();
        entry.error = Some(e.to_string());
    }
    audit::append(&site.config.state_dir, &entry)?;
    outcome.map(|()| report)
}

/// Options of `recover`.
#[derive(Clone, Debug, Default)]
pub struct RecoverOptions {
    /// Components to recover (default: all), always in the configured recovery order.
    pub components: Vec<String>,
    /// Print the plan only.
    pub dry_run: bool,
}

/// One component's recovery.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recovered {
    /// The component.
    pub component: String,
    /// The snapshot restored.
    pub snapshot: Option<Version>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Bytes restored.
    pub bytes: u64,
    /// Wall time, seconds.
    pub duration_s: f64,
}

/// What `recover` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecoverReport {
    /// Per component, in recovery order.
    pub components: Vec<Recovered>,
    /// The steps (a dry run's plan).
    pub plan: Vec<String>,
    /// True for a dry run.
    pub dry_run: bool,
    /// True when every component was recovered.
    pub ok: bool,
    /// The time it all took: the recovery time achieved.
    pub duration_s: f64,
    /// When it started.
    pub started: Option<DateTime<Utc>>,
}

/// Restores every selected component's newest snapshot in recovery order; one failing does
/// not stop the others.
pub fn recover(site: &Site, opts: &RecoverOptions) -> Result<RecoverReport> {
    let started = Instant::now();
    let c = &site.config;
    for n in &opts.components {
        c.component(n)?;
    }
    let order: Vec<&Component> = c
        .recovery_order
        .iter()
        .filter(|n| opts.components.is_empty() || opts.components.contains(n))
        .filter_map(|n| c.component(n).ok())
        .collect();
    let repo = site.open()?;
    let mut report = RecoverReport {
        dry_run: opts.dry_run,
        started: Some(Utc::now()),
        ..RecoverReport::default()
    };
    for comp in order {
        let t0 = Instant::now();
        let latest = versions(&repo, &comp.name)?.pop();
        let mut r = Recovered {
            component: comp.name.clone(),
            snapshot: latest.as_ref().map(|(id, s)| Version::of(id, s)),
            ..Recovered::default()
        };
        let Some((id, snap)) = latest else {
            r.error = Some(format!("{} has no snapshot in the repository", comp.name));
            report.components.push(r);
            continue;
        };
        if opts.dry_run {
            report.plan.extend(
                comp.before
                    .0
                    .iter()
                    .map(|h| format!("{}: before hook `{h}`", comp.name)),
            );
            report.plan.push(format!(
                "{}: restore snapshot {} of {}: {}",
                comp.name,
                id.short(),
                snap.time.to_rfc3339(),
                restore_words(comp)
            ));
            report.plan.extend(
                comp.after
                    .0
                    .iter()
                    .map(|h| format!("{}: after hook `{h}`", comp.name)),
            );
            r.ok = true;
            report.components.push(r);
            continue;
        }
        let done = lock_component(&c.state_dir, &comp.name, "recover")
            .and_then(|_lock| restore_live(site, &repo, comp, (&id, &snap), "recover"));
        match done {
            Ok(rest) => {
                r.ok = true;
                r.bytes = rest.bytes;
            }
            Err(e) => r.error = Some(e.to_string()),
        }
        r.duration_s = t0.elapsed().as_secs_f64();
        report.components.push(r);
    }
    report.ok = report.components.iter().all(|r| r.ok);
    report.duration_s = started.elapsed().as_secs_f64();
    if !opts.dry_run {
        let mut entry = Entry::new("recover", &site.host());
        entry.components = report
            .components
            .iter()
            .map(|r| r.component.clone())
            .collect();
        entry.snapshots = report
            .components
            .iter()
            .filter_map(|r| r.snapshot.as_ref().map(|v| v.id.to_hex()))
            .collect();
        entry.result = if report.ok { "ok" } else { "failed" }.into();
        entry.error = report
            .components
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.component)))
            .reduce(|a, b| format!("{a}; {b}"));
        entry.duration_s = report.duration_s;
        entry.detail = serde_json::json!({ "components": report.components });
        audit::append(&c.state_dir, &entry)?;
    }
    Ok(report)
}
