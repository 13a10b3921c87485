//! `daemon`: the config's schedules run in the foreground, for containers and hosts without
//! systemd. One job runs at a time, so two jobs of one component never overlap here (and the
//! component locks keep out runs started elsewhere). Each job ends in one JSON log line.
//! Limits are evaluated at start and every `status_every`, and alerts sent as they cross.
//!
//! A stop request (SIGTERM, SIGINT) cancels a running snapshot at its next entry, which
//! leaves the repository consistent: what was stored is durable and unreferenced, and the
//! next run reuses it. Check, prune and drill jobs finish first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use serde_json::json;

use super::alert::Notifier;
use super::config::{Action, Schedule};
use super::drill::drill;
use super::handle::Site;
use super::run::{RunOptions, run};
use super::status::{alerts, notify, status};
use super::upkeep::{scheduled_check, scheduled_prune};
use crate::error::Result;
use crate::ops::progress::Cancel;

/// Options of `daemon`.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// Run every schedule once at start, then follow the schedules.
    pub run_now: bool,
    /// Set to stop (from a signal handler).
    pub stop: Arc<AtomicBool>,
    /// How often limits are evaluated.
    pub status_every: Duration,
}

/// One job of a schedule: its log line's fields (`ok`, `error` and the action's figures).
/// The daemon and `cairn serve` run schedules through this.
pub fn run_schedule(site: &Site, s: &Schedule, cancel: &Cancel) -> serde_json::Value {
    let started = Instant::now();
    let result: Result<serde_json::Value> = (|| match s.action {
        Action::Run => {
            let r = run(
                site,
                &RunOptions {
                    targets: s.targets.clone(),
                    kind: s.kind.clone(),
                    cancel: cancel.clone(),
                    ..RunOptions::default()
                },
            )?;
            let failed: Vec<String> = r
                .components
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.component, c.error.clone().unwrap_or_default()))
                .collect();
            Ok(json!({
                "ok": r.ok,
                "error": (!failed.is_empty()).then(|| failed.join("; ")),
                "snapshots": r.components.iter().filter_map(|c| c.snapshot).collect::<Vec<_>>(),
                "components": r.components.iter().map(|c| &c.component).collect::<Vec<_>>(),
            }))
        }
        Action::Drill => {
            let r = drill(site, &s.targets)?;
            Ok(
                json!({ "ok": r.ok, "components": r.components.iter().map(|c| &c.component).collect::<Vec<_>>(),
                       "error": r.components.iter().find_map(|c| c.error.clone()) }),
            )
        }
        Action::Check => {
            let repo = site.open()?;
            let r = scheduled_check(site, &repo, s)?;
            Ok(
                json!({ "ok": r.errors.is_empty(), "packs_read": r.packs_read,
                       "error": r.errors.first().map(|f| format!("{}: {}", f.what, f.problem)) }),
            )
        }
        Action::Status => {
            let repo = site.open()?;
            let r = status(site, &repo, Utc::now())?;
            let mut n = Notifier::new(&site.config.alerts);
            let sent = notify(site, alerts(site, &r), &|_| true, &mut n)?;
            n.finish();
            Ok(json!({ "ok": true, "limits_hold": r.ok, "alerts_sent": sent.len() }))
        }
        Action::Prune => {
            let repo = site.open()?;
            let r = scheduled_prune(site, &repo)?;
            Ok(json!({ "ok": true, "packs_deleted": r.packs_deleted }))
        }
    })();
    let mut line = match result {
        Ok(v) => v,
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    };
    line["schedule"] = json!(s.name);
    line["action"] = json!(s.action.name());
    line["time"] = json!(Utc::now());
    line["duration_s"] = json!(started.elapsed().as_secs_f64());
    line
}

/// Judges the limits and sends the alerts that crossed; logs a line when any was sent or
/// the evaluation failed.
pub fn evaluate(site: &Site, log: &mut dyn FnMut(&serde_json::Value)) {
    let done = (|| -> Result<usize> {
        let repo = site.open()?;
        let r = status(site, &repo, Utc::now())?;
        let mut n = Notifier::new(&site.config.alerts);
        let sent = notify(site, alerts(site, &r), &|_| true, &mut n)?;
        n.finish();
        Ok(sent.len())
    })();
    match done {
        Ok(0) => {}
        Ok(n) => {
            log(&json!({ "time": Utc::now(), "action": "status", "ok": true, "alerts_sent": n }))
        }
        Err(e) => log(
            &json!({ "time": Utc::now(), "action": "status", "ok": false, "error": e.to_string() }),
        ),
    }
}

/// When each schedule runs next.
pub struct Timetable {
    next: Vec<Option<DateTime<Local>>>,
}

impl Timetable {
    /// The next times of `schedules` after now (or now, with `run_now`).
    pub fn new(schedules: &[Schedule], run_now: bool) -> Timetable {
        let now = Local::now();
        Timetable {
            next: schedules
                .iter()
                .map(|s| {
                    if run_now {
                        Some(now)
                    } else {
                        s.cron.next_after(&now)
                    }
                })
                .collect(),
        }
    }

    /// The start line: every schedule and its next time.
    pub fn describe(&self, schedules: &[Schedule]) -> serde_json::Value {
        json!(
            schedules
                .iter()
                .zip(&self.next)
                .map(|(s, n)| json!({ "name": s.name, "cron": s.cron.to_string(), "next": n }))
                .collect::<Vec<_>>()
        )
    }

    /// The schedule due first at `now`, if any.
    pub fn due(&self, now: DateTime<Local>) -> Option<usize> {
        self.next
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.map(|t| (t, i)))
            .filter(|(t, _)| *t <= now)
            .min()
            .map(|(_, i)| i)
    }

    /// Schedule `i` has run (or been started): its next time is after now. A run that
    /// overran its next times fires once, not once per missed time.
    pub fn done(&mut self, schedules: &[Schedule], i: usize) {
        self.next[i] = schedules[i].cron.next_after(&Local::now());
    }
}

/// Runs the schedules until `opts.stop` is set; `log` receives one JSON value per job.
pub fn daemon(
    site: &Site,
    opts: &DaemonOptions,
    log: &mut dyn FnMut(&serde_json::Value),
) -> Result<()> {
    let schedules = &site.config.schedules;
    let mut table = Timetable::new(schedules, opts.run_now);
    log(&json!({
        "time": Utc::now(), "action": "start", "ok": true,
        "schedules": table.describe(schedules),
    }));
    let cancel = Cancel::new(opts.stop.clone());
    let mut last_status: Option<Instant> = None;
    while !opts.stop.load(Ordering::Relaxed) {
        if last_status.is_none_or(|t| t.elapsed() >= opts.status_every) {
            evaluate(site, log);
            last_status = Some(Instant::now());
        }
        match table.due(Local::now()) {
            Some(i) => {
                log(&run_schedule(site, &schedules[i], &cancel));
                table.done(schedules, i);
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    log(&json!({ "time": Utc::now(), "action": "stop", "ok": true }));
    Ok(())
}
