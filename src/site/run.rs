//! `run`: for each selected component, its hooks and its own snapshot, then retention by
//! kind for that component, then copies to the offsite repositories; with a summary, audit
//! lines, state, pings and webhooks.
//!
//! ```text
//! ping start
//! per component (file order), under the component's lock:
//!     before hooks → snapshot (component=NAME, kind=K, reason) → after hooks
//!     failure anywhere → on_failure hooks, webhook `failure`; the other components go on
//!     retention: every kind's policy over this component's snapshots alone
//!     size against the median of the component's last snapshots → webhook `size_change`
//! per offsite: copy the components' snapshots newer than its newest copy, then the same
//!     retention there
//! the repository's disk → webhook `disk_full`; state, audit line, ping success or fail
//! ```
//! Retention counts each component's snapshots on their own, so a component backed up
//! hourly never pushes out the daily one's history.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::alert::{Delivery, Event, Notifier};
use super::audit::{self, Entry, Outcome};
use super::component::{TakeOptions, take, versions};
use super::config::{Component, Config, PingSpec, Source, component_tag};
use super::handle::Site;
use super::hooks::{HookEnv, run_hooks};
use super::lock::lock_component;
use super::status::{self, size_change};
use crate::error::Result;
use crate::id::SnapshotId;
use crate::ops::copy::{CopyOptions, copy};
use crate::ops::forget::{Filter, GroupBy, plan_at};
use crate::ops::progress::{Cancel, ProgressSink};
use crate::repo::Repository;

/// Options of `run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Profiles or components (empty: every component).
    pub targets: Vec<String>,
    /// The kind of snapshot.
    pub kind: String,
    /// Why (kept in each snapshot).
    pub reason: Option<String>,
    /// Print the plan; run nothing, write nothing.
    pub dry_run: bool,
    /// The snapshots' time and retention's present (default now): for imports and tests.
    pub time: Option<DateTime<Utc>>,
    /// Asked between entries whether to stop.
    pub cancel: Cancel,
    /// Receives the files and bytes of every component's snapshot as they are read.
    pub progress: ProgressSink,
}

/// One component's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentResult {
    /// The component.
    pub component: String,
    /// `paths`, `command` or `sqlite`.
    #[serde(rename = "type")]
    pub source: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The snapshot written.
    pub snapshot: Option<SnapshotId>,
    /// Size of the snapshot's files.
    pub size: u64,
    /// New data (plaintext) stored.
    pub added: u64,
    /// Its stored size (compressed, sealed).
    pub stored: u64,
    /// Size change against the median of the previous snapshots, percent.
    pub size_change_pct: Option<f64>,
    /// Wall time, seconds.
    pub duration_s: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Source entries that could not be read and were left out (exit 3).
    pub skipped: u64,
    /// What those entries were.
    pub warnings: Vec<String>,
    /// Snapshots its retention removed.
    pub forgotten: Vec<SnapshotId>,
}

/// One offsite's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OffsiteResult {
    /// The offsite's name.
    pub offsite: String,
    /// Whether the copy and its retention succeeded.
    pub ok: bool,
    /// Snapshots copied.
    pub copied: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Snapshots its retention removed.
    pub forgotten: usize,
    /// Why it failed.
    pub error: Option<String>,
}

/// What `run` did (or, on a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// The kind taken.
    pub kind: String,
    /// The reason given.
    pub reason: Option<String>,
    /// True for a dry run.
    pub dry_run: bool,
    /// Every component, in config order.
    pub components: Vec<ComponentResult>,
    /// Every offsite.
    pub offsites: Vec<OffsiteResult>,
    /// A dry run's steps, in order.
    pub plan: Vec<String>,
    /// Notifications sent.
    pub notifications: Vec<Delivery>,
    /// Wall time, seconds.
    pub duration_s: f64,
    /// True when every component and offsite succeeded.
    pub ok: bool,
    /// True when some component skipped unreadable files.
    pub partial: bool,
}

impl RunReport {
    /// 0, 1 when something failed, 3 when only unreadable files were skipped.
    pub fn exit_code(&self) -> i32 {
        match (self.ok, self.partial) {
            (false, _) => 1,
            (true, true) => 3,
            (true, false) => 0,
        }
    }
}

/// Runs the components `opts.targets` select.
pub fn run(site: &Site, opts: &RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let c = &site.config;
    let comps = c.select(&opts.targets)?;
    c.kind(&opts.kind)?;
    let mut report = RunReport {
        kind: opts.kind.clone(),
        reason: opts.reason.clone(),
        dry_run: opts.dry_run,
        ..RunReport::default()
    };
    if opts.dry_run {
        report.plan = plan(c, &comps, opts);
        report.ok = true;
        return Ok(report);
    }
    let mut n = Notifier::new(&c.alerts);
    let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
    n.ping(
        ping_url(&c.alerts.ping, Ping::Start),
        &format!("run {} started", names.join(" ")),
    );
    for comp in &comps {
        n.ping(ping_url(&comp.ping, Ping::Start), "started");
    }
    let repo = site.open();
    for comp in &comps {
        let r = match &repo {
            Ok(repo) => run_component(site, repo, comp, opts, &mut n),
            Err(e) => failed(comp, format!("cannot open the repository: {e}")),
        };
        n.ping(
            ping_url(&comp.ping, Ping::end(r.ok)),
            &r.error.clone().unwrap_or_else(|| "ok".into()),
        );
        report.components.push(r);
    }
    if let Ok(repo) = &repo {
        for o in &c.offsites {
            let r = offsite(site, repo, o, &report.components, opts);
            if let Some(e) = &r.error {
                n.event(&event(
                    site,
                    "failure",
                    None,
                    None,
                    format!("offsite {}: {e}", o.name),
                ));
            }
            report.offsites.push(r);
        }
        // The disk limit, notified once when crossed; the components' limits are judged
        // by `status --notify` and the daemon, whose view does not depend on what ran.
        if let Ok(alerts) = status::disk_alerts(site, repo) {
            let _ = status::notify(site, alerts, &|k| k == "disk_full", &mut n);
        }
    }
    report.ok = report.components.iter().all(|r| r.ok) && report.offsites.iter().all(|o| o.ok);
    report.partial = report.components.iter().any(|r| r.ok && r.skipped > 0);
    let summary = if report.ok {
        "ok".to_string()
    } else {
        failures(&report)
    };
    n.ping(ping_url(&c.alerts.ping, Ping::end(report.ok)), &summary);
    report.duration_s = started.elapsed().as_secs_f64();
    let mut entry = Entry::new("run", &site.host());
    entry.components = comps.iter().map(|c| c.name.clone()).collect();
    entry.snapshots = report
        .components
        .iter()
        .filter_map(|r| r.snapshot.map(|s| s.to_hex()))
        .collect();
    entry.result = if report.ok { "ok" } else { "failed" }.into();
    entry.error = (!report.ok).then_some(summary);
    entry.duration_s = report.duration_s;
    entry.detail = serde_json::json!({ "kind": opts.kind, "reason": opts.reason, "components": report.components, "offsites": report.offsites });
    audit::append(&c.state_dir, &entry)?;
    report.notifications = n.finish();
    Ok(report)
}

/// Which ping URL.
#[derive(Clone, Copy)]
enum Ping {
    Start,
    Success,
    Fail,
}

impl Ping {
    fn end(ok: bool) -> Ping {
        if ok { Ping::Success } else { Ping::Fail }
    }
}

fn ping_url(p: &Option<PingSpec>, which: Ping) -> Option<&str> {
    let p = p.as_ref()?;
    match which {
        Ping::Start => p.start.as_deref(),
        Ping::Success => p.success.as_deref(),
        Ping::Fail => p.fail.as_deref(),
    }
}

fn failures(r: &RunReport) -> String {
    let comps = r
        .components
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.component, c.error.clone().unwrap_or_default()));
    let offs = r.offsites.iter().filter(|o| !o.ok).map(|o| {
        format!(
            "offsite {}: {}",
            o.offsite,
            o.error.clone().unwrap_or_default()
        )
    });
    comps.chain(offs).collect::<Vec<_>>().join("; ")
}

/// A webhook event from this host, now.
pub fn event(
    site: &Site,
    kind: &str,
    component: Option<&str>,
    snapshot: Option<&SnapshotId>,
    error: String,
) -> Event {
    Event {
        event: kind.into(),
        component: component.map(String::from),
        snapshot: snapshot.map(|s| s.to_hex()),
        error: Some(error),
        host: site.host(),
        time: Utc::now(),
        detail: serde_json::Value::Null,
    }
}

fn failed(comp: &Component, error: String) -> ComponentResult {
    ComponentResult {
        component: comp.name.clone(),
        source: comp.source.type_name().into(),
        ok: false,
        error: Some(error),
        ..ComponentResult::default()
    }
}

/// Hooks, snapshot, retention and limits of one component.
fn run_component(
    site: &Site,
    repo: &Repository,
    comp: &Component,
    opts: &RunOptions,
    n: &mut Notifier,
) -> ComponentResult {
    let started = Instant::now();
    let mut r = failed(comp, String::new());
    let env = HookEnv::new(&comp.name, "run")
        .with("KIND", &opts.kind)
        .with("REASON", opts.reason.clone().unwrap_or_default());
    // Held to the end: hooks, snapshot, on_failure and retention of one component never
    // overlap another operation on it.
    // A busy component runs none of its hooks: the operation holding it owns them.
    let _lock = match lock_component(&site.config.state_dir, &comp.name, "run") {
        Ok(l) => l,
        Err(e) => {
            let r = failed(comp, e.to_string());
            n.event(&event(
                site,
                "failure",
                Some(&comp.name),
                None,
                e.to_string(),
            ));
            return r;
        }
    };
    let outcome = (|| -> Result<()> {
        run_hooks("before", &comp.before, &env)?;
        let take_opts = TakeOptions {
            kind: opts.kind.clone(),
            reason: opts.reason.clone(),
            time: opts.time,
            cancel: opts.cancel.clone(),
            progress: opts.progress.clone(),
        };
        let s = take(site, repo, comp, &take_opts)?;
        r.snapshot = s.snapshot_id;
        r.size = s.summary.total_bytes;
        r.added = s.summary.data_added;
        r.stored = s.summary.data_added_packed;
        r.skipped = s.summary.errors;
        r.warnings = s
            .error_details
            .iter()
            .map(|e| format!("{}: {}", e.path, e.error))
            .collect();
        let env = env.clone().with(
            "SNAPSHOT",
            s.snapshot_id.map(|i| i.to_hex()).unwrap_or_default(),
        );
        run_hooks("after", &comp.after, &env)?;
        Ok(())
    })();
    match outcome {
        Ok(()) => {
            r.ok = true;
            r.error = None;
        }
        Err(e) => {
            let e = e.to_string();
            let env = env.clone().with("ERROR", e.clone());
            let hook = run_hooks("on_failure", &comp.on_failure, &env).err();
            r.error = Some(match hook {
                Some(h) => format!("{e} (and {h})"),
                None => e,
            });
        }
    }
    if r.ok {
        let now = opts.time.unwrap_or_else(Utc::now);
        match forget_component(&site.config, repo, &comp.name, now) {
            Ok(gone) => r.forgotten = gone,
            Err(e) => {
                // The snapshot is stored, but the kept history is not what the config says.
                r.ok = false;
                r.error = Some(format!("retention: {e}"));
            }
        }
        if !r.forgotten.is_empty() {
            let mut entry = Entry::new("forget", &site.host());
            entry.components = vec![comp.name.clone()];
            entry.snapshots = r.forgotten.iter().map(|s| s.to_hex()).collect();
            let _ = audit::append(&site.config.state_dir, &entry);
        }
        if let Ok(snaps) = versions(repo, &comp.name) {
            r.size_change_pct = size_change(&snaps, site.config.alerts.size_window);
        }
        if let Some(c) = r.size_change_pct
            && c.abs() > comp.size_change
        {
            let mut e = event(
                site,
                "size_change",
                Some(&comp.name),
                r.snapshot.as_ref(),
                format!(
                    "{} is {c:+.0}% against the median of its previous snapshots (limit ±{}%)",
                    comp.name, comp.size_change
                ),
            );
            e.detail = serde_json::json!({ "size": r.size, "size_change_pct": c });
            n.event(&e);
        }
    } else {
        let e = event(
            site,
            "failure",
            Some(&comp.name),
            None,
            r.error.clone().unwrap_or_default(),
        );
        n.event(&e);
    }
    r.duration_s = started.elapsed().as_secs_f64();
    let outcome = Outcome {
        time: Utc::now(),
        ok: r.ok,
        snapshot: r.snapshot.map(|s| s.to_hex()),
        error: r.error.clone(),
        duration_s: r.duration_s,
    };
    let _ = audit::update(&site.config.state_dir, |s| {
        let st = s.components.entry(comp.name.clone()).or_default();
        st.last_run = Some(outcome.clone());
    });
    r
}

/// Applies every kind's retention to the snapshots of component `name` in `repo`, as of
/// `now`; returns the snapshots removed. Snapshots of kinds the config does not name are
/// kept.
pub fn forget_component(
    c: &Config,
    repo: &Repository,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<SnapshotId>> {
    let snaps = versions(repo, name)?;
    if snaps.is_empty() {
        return Ok(Vec::new());
    }
    let policies: Vec<_> = c
        .kinds
        .iter()
        .map(|(k, p)| (Some(super::config::kind_tag(k)), p.clone()))
        .filter(|(tag, _)| {
            snaps
                .iter()
                .any(|(_, s)| tag.as_ref().is_some_and(|t| s.tags.contains(t)))
        })
        .collect();
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let one_group: GroupBy = "".parse()?;
    let p = plan_at(
        &snaps,
        &policies,
        &Filter::default(),
        one_group,
        &chrono::Local,
        now,
    )?;
    for id in &p.remove {
        repo.delete_snapshot(id)?;
    }
    Ok(p.remove)
}

/// Copies the successful components' new snapshots to offsite `o`, then applies retention
/// there.
fn offsite(
    site: &Site,
    repo: &Repository,
    o: &super::config::Offsite,
    done: &[ComponentResult],
    opts: &RunOptions,
) -> OffsiteResult {
    let mut r = OffsiteResult {
        offsite: o.name.clone(),
        ..OffsiteResult::default()
    };
    let started = Instant::now();
    let names: Vec<&str> = done
        .iter()
        .filter(|c| c.ok && (o.components.is_empty() || o.components.contains(&c.component)))
        .map(|c| c.component.as_str())
        .collect();
    let outcome = (|| -> Result<()> {
        let dst = site.open_offsite(o)?;
        for name in &names {
            let there = versions(&dst, name)?;
            let newest = there.last().map(|(_, s)| s.time);
            let ids: Vec<String> = versions(repo, name)?
                .into_iter()
                .filter(|(_, s)| newest.is_none_or(|t| s.time > t))
                .map(|(id, _)| id.to_hex())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let rep = copy(
                repo,
                &dst,
                &CopyOptions {
                    snapshots: ids,
                    filter: Filter {
                        tags: vec![crate::ops::forget::TagList(vec![component_tag(name)])],
                        ..Filter::default()
                    },
                    dry_run: false,
                },
            )?;
            r.copied += rep.copied.len();
            r.bytes += rep.bytes_copied;
            let now = opts.time.unwrap_or_else(Utc::now);
            r.forgotten += forget_component(&site.config, &dst, name, now)?.len();
        }
        Ok(())
    })();
    match outcome {
        Ok(()) => r.ok = true,
        Err(e) => r.error = Some(e.to_string()),
    }
    let mut entry = Entry::new("copy", &site.host());
    entry.components = names.iter().map(|s| s.to_string()).collect();
    entry.result = if r.ok { "ok" } else { "failed" }.into();
    entry.error = r.error.clone();
    entry.duration_s = started.elapsed().as_secs_f64();
    entry.detail = serde_json::json!({ "offsite": o.name, "copied": r.copied, "bytes": r.bytes, "forgotten": r.forgotten });
    let _ = audit::append(&site.config.state_dir, &entry);
    r
}

/// The steps a run would take, in words.
fn plan(c: &Config, comps: &[&Component], opts: &RunOptions) -> Vec<String> {
    let mut steps = Vec::new();
    let reason = opts
        .reason
        .as_deref()
        .map(|r| format!(", reason {r:?}"))
        .unwrap_or_default();
    for comp in comps {
        let name = &comp.name;
        for h in &comp.before.0 {
            steps.push(format!("{name}: before hook `{h}`"));
        }
        let what = match &comp.source {
            Source::Paths { paths, exclude, .. } => {
                let p: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                let ex = if exclude.is_empty() {
                    String::new()
                } else {
                    format!(" excluding {}", exclude.join(", "))
                };
                format!("snapshot of {}{ex}", p.join(", "))
            }
            Source::Command {
                command, filename, ..
            } => format!("snapshot of the output of `{command}` as {filename}"),
            Source::Sqlite { path } => {
                format!("snapshot of an online-backup image of {}", path.display())
            }
        };
        steps.push(format!(
            "{name}: {what}, tagged component={name} kind={}{reason}",
            opts.kind
        ));
        for h in &comp.after.0 {
            steps.push(format!("{name}: after hook `{h}`"));
        }
        steps.push(format!("{name}: retention by kind over {name}'s snapshots"));
    }
    for o in &c.offsites {
        steps.push(format!(
            "copy new snapshots to offsite {} ({}), then retention there",
            o.name,
            o.repo.path.display()
        ));
    }
    steps
}
