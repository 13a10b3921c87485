//! The site's commands: `run`, `versions`, `rollback`, `recover`, `drill`, `status`, `log`.

use anyhow::{Context, Result};
use chrono::{DateTime, Local, Utc};
use clap::Args;

use cairn::site::audit;
use cairn::site::config::MANUAL;
use cairn::site::drill::drill as drill_components;
use cairn::site::rollback::{
    RecoverOptions, RollbackOptions, list_versions, recover as recover_all, rollback as roll_back,
};
use cairn::site::run::{RunOptions, RunReport, run as run_components};
use cairn::site::status::{EXIT_LIMIT, alerts, notify, status as site_status};

use super::{Globals, human};

fn parse_time(t: &Option<String>) -> Result<Option<DateTime<Utc>>> {
    t.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .with_context(|| {
                    format!("--time {t:?} is not an RFC 3339 time (e.g. 2024-01-31T12:00:00Z)")
                })
        })
        .transpose()
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `3h 20m` for seconds.
fn age(s: i64) -> String {
    let s = s.max(0);
    match s {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Profiles or components to run [default: every component].
    targets: Vec<String>,
    /// The kind of snapshot (its retention comes from [kinds.KIND]).
    #[arg(long, default_value = MANUAL)]
    kind: String,
    /// Why (kept in each snapshot, shown by `versions`).
    #[arg(long)]
    reason: Option<String>,
    /// Print the steps; run no hook, write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// The snapshots' time and retention's present (RFC 3339) instead of now.
    #[arg(long)]
    time: Option<String>,
}

pub fn run(g: &Globals, a: RunArgs) -> Result<i32> {
    let site = g.site()?;
    let opts = RunOptions {
        targets: a.targets,
        kind: a.kind,
        reason: a.reason,
        dry_run: a.dry_run,
        time: parse_time(&a.time)?,
        cancel: Default::default(),
        progress: Default::default(),
    };
    let r = run_components(site, &opts)?;
    if g.json {
        g.print_json(&r)?;
    } else {
        print_run(g, &r);
    }
    Ok(r.exit_code())
}

fn print_run(g: &Globals, r: &RunReport) {
    if r.dry_run {
        g.say(format!(
            "dry run: kind {}; nothing is run or written",
            r.kind
        ));
        for step in &r.plan {
            g.say(format!("  {step}"));
        }
        return;
    }
    for c in &r.components {
        match (&c.error, c.snapshot) {
            (None, Some(id)) => {
                let change = c
                    .size_change_pct
                    .map(|p| format!(" ({p:+.0}%)"))
                    .unwrap_or_default();
                g.say(format!(
                    "{:<16} ok      snapshot {}  size {}{change}  added {}  {:.1}s",
                    c.component,
                    id.short(),
                    human(c.size),
                    human(c.added),
                    c.duration_s
                ));
                for gone in &c.forgotten {
                    g.say(format!(
                        "{:<16}         retention removed {}",
                        "",
                        gone.short()
                    ));
                }
            }
            (e, _) => eprintln!(
                "cairn: {:<16} FAILED  {}",
                c.component,
                e.clone().unwrap_or_default()
            ),
        }
        for w in &c.warnings {
            eprintln!("cairn: warning: {}: {w}", c.component);
        }
    }
    for o in &r.offsites {
        match &o.error {
            None => g.say(format!(
                "offsite {:<8} ok      {} snapshots copied ({}), {} removed by retention",
                o.offsite,
                o.copied,
                human(o.bytes),
                o.forgotten
            )),
            Some(e) => eprintln!("cairn: offsite {} FAILED  {e}", o.offsite),
        }
    }
    for d in r.notifications.iter().filter(|d| !d.ok) {
        eprintln!(
            "cairn: warning: notification to {} failed after {} attempts: {}",
            d.url,
            d.attempts,
            d.error.clone().unwrap_or_default()
        );
    }
    let failed = r.components.iter().filter(|c| !c.ok).count();
    g.say(format!(
        "{} components, {} failed, kind {}, in {:.1}s",
        r.components.len(),
        failed,
        r.kind,
        r.duration_s
    ));
}

#[derive(Args)]
pub struct VersionsArgs {
    /// The component.
    component: String,
}

pub fn versions(g: &Globals, a: VersionsArgs) -> Result<i32> {
    let v = list_versions(g.site()?, &a.component)?;
    if g.json {
        g.print_json(&v)?;
        return Ok(0);
    }
    g.say(format!(
        "{:<10} {:<19} {:<13} {:>10} {:>10}  reason",
        "id", "time", "kind", "size", "added"
    ));
    for s in &v {
        g.say(format!(
            "{:<10} {:<19} {:<13} {:>10} {:>10}  {}",
            s.id.short(),
            local(s.time),
            s.kind.clone().unwrap_or_default(),
            human(s.size),
            human(s.added),
            s.reason.clone().unwrap_or_default()
        ));
    }
    g.say(format!("{} snapshots of {}", v.len(), a.component));
    Ok(0)
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The component.
    component: String,
    /// The snapshot to return to (id prefix or `latest`) [default: its newest that is not a
    /// pre-rollback snapshot].
    snapshot: Option<String>,
    /// Print the steps; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Do not snapshot the current state first (when it cannot be read).
    #[arg(long)]
    no_pre_snapshot: bool,
}

pub fn rollback(g: &Globals, a: RollbackArgs) -> Result<i32> {
    let r = roll_back(
        g.site()?,
        &RollbackOptions {
            component: a.component,
            snapshot: a.snapshot,
            dry_run: a.dry_run,
            no_pre_snapshot: a.no_pre_snapshot,
            cancel: Default::default(),
        },
    )?;
    if g.json {
        g.print_json(&r)?;
        return Ok(0);
    }
    let head = if r.dry_run {
        "dry run: rollback would"
    } else {
        "rollback:"
    };
    g.say(head);
    for step in &r.plan {
        g.say(format!("  {step}"));
    }
    if !r.dry_run {
        if let Some(pre) = r.pre_rollback {
            g.say(format!(
                "pre-rollback snapshot {} (undo with `cairn rollback {} {}`)",
                pre.short(),
                r.component,
                pre.short()
            ));
        }
        if let (Some(s), Some(done)) = (&r.snapshot, &r.restored) {
            g.say(format!(
                "{} is back at snapshot {} of {}: {} restored, {} files, {} deleted, in {:.1}s",
                r.component,
                s.id.short(),
                local(s.time),
                human(done.bytes),
                done.files,
                done.deleted,
                r.duration_s
            ));
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct RecoverArgs {
    /// Only these components (comma-separated) [default: all], in the recovery order.
    #[arg(long, value_delimiter = ',')]
    components: Vec<String>,
    /// Print the steps; change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
}

pub fn recover(g: &Globals, a: RecoverArgs) -> Result<i32> {
    let r = recover_all(
        g.site()?,
        &RecoverOptions {
            components: a.components,
            dry_run: a.dry_run,
        },
    )?;
    if g.json {
        g.print_json(&r)?;
    } else if r.dry_run {
        g.say("dry run: recover would");
        for step in &r.plan {
            g.say(format!("  {step}"));
        }
    } else {
        for c in &r.components {
            match (&c.error, &c.snapshot) {
                (None, Some(s)) => g.say(format!(
                    "{:<16} ok      snapshot {} of {}  {}  {:.1}s",
                    c.component,
                    s.id.short(),
                    local(s.time),
                    human(c.bytes),
                    c.duration_s
                )),
                (e, _) => eprintln!(
                    "cairn: {:<16} FAILED  {}",
                    c.component,
                    e.clone().unwrap_or_default()
                ),
            }
        }
        let failed = r.components.iter().filter(|c| !c.ok).count();
        g.say(format!(
            "recovered {} of {} components in {:.1}s (the recovery time achieved)",
            r.components.len() - failed,
            r.components.len(),
            r.duration_s
        ));
    }
    Ok(if r.ok { 0 } else { 1 })
}

#[derive(Args)]
pub struct DrillArgs {
    /// Profiles or components to drill [default: every component].
    targets: Vec<String>,
}

pub fn drill(g: &Globals, a: DrillArgs) -> Result<i32> {
    let r = drill_components(g.site()?, &a.targets)?;
    if g.json {
        g.print_json(&r)?;
    } else {
        for c in &r.components {
            let snap = c
                .snapshot
                .as_ref()
                .map(|s| format!("snapshot {} of {}", s.id.short(), local(s.time)));
            match &c.error {
                None => g.say(format!(
                    "{:<16} ok      {}  {} restored, {} proven, probe {}  {:.1}s",
                    c.component,
                    snap.unwrap_or_default(),
                    human(c.bytes),
                    c.verified,
                    if c.probe_output.is_some() {
                        "passed"
                    } else {
                        "none"
                    },
                    c.duration_s
                )),
                Some(e) => eprintln!("cairn: {:<16} FAILED  {e}", c.component),
            }
        }
    }
    Ok(if r.ok { 0 } else { 1 })
}

#[derive(Args)]
pub struct StatusArgs {
    /// Send webhooks for limits newly crossed (and cleared) since the last evaluation.
    #[arg(long)]
    notify: bool,
    /// Judge as of this time (RFC 3339) instead of now.
    #[arg(long)]
    time: Option<String>,
}

pub fn status(g: &Globals, a: StatusArgs) -> Result<i32> {
    let site = g.site()?;
    let repo = site.open()?;
    let now = parse_time(&a.time)?.unwrap_or_else(Utc::now);
    let r = site_status(site, &repo, now)?;
    if a.notify {
        let mut n = cairn::site::alert::Notifier::new(&site.config.alerts);
        notify(site, alerts(site, &r), &|_| true, &mut n)?;
        for d in n.finish().iter().filter(|d| !d.ok) {
            eprintln!(
                "cairn: warning: notification to {} failed: {}",
                d.url,
                d.error.clone().unwrap_or_default()
            );
        }
    }
    if g.json {
        g.print_json(&r)?;
    } else {
        g.say(format!(
            "{:<16} {:<8} {:<19} {:>8} {:>10} {:>7}  {}",
            "component", "type", "last backup", "age", "size", "change", "last drill"
        ));
        for c in &r.components {
            let last = c.last_success.as_ref();
            let drill = match &c.last_drill {
                Some(d) => format!("{} {}", local(d.time), if d.ok { "ok" } else { "FAILED" }),
                None => "never".into(),
            };
            g.say(format!(
                "{:<16} {:<8} {:<19} {:>8} {:>10} {:>7}  {}",
                c.component,
                c.kind,
                last.map(|v| local(v.time))
                    .unwrap_or_else(|| "never".into()),
                c.age_s.map(age).unwrap_or_default(),
                last.map(|v| human(v.size)).unwrap_or_default(),
                c.size_change_pct
                    .map(|p| format!("{p:+.0}%"))
                    .unwrap_or_default(),
                drill
            ));
        }
        let repo = &r.repository;
        let space = if repo.total_bytes == 0 {
            "free space not known (on a server)".to_string()
        } else {
            format!(
                "{} free of {} ({:.0}% used)",
                human(repo.free_bytes),
                human(repo.total_bytes),
                repo.used_pct
            )
        };
        g.say(format!(
            "repository {}: {} snapshots, {space}; {} packs, {} never proven{}",
            repo.path,
            repo.snapshots,
            repo.packs,
            repo.packs_unproven,
            repo.oldest_proof
                .map(|t| format!(", oldest proof {}", local(t)))
                .unwrap_or_default()
        ));
        let breaches = r
            .components
            .iter()
            .flat_map(|c| &c.breaches)
            .chain(&repo.breaches);
        for b in breaches {
            g.say(format!("LIMIT {}: {}", b.limit, b.message));
        }
        g.say(if r.ok {
            "all limits hold"
        } else {
            "some limits do not hold"
        });
    }
    Ok(if r.ok { 0 } else { EXIT_LIMIT })
}

#[derive(Args)]
pub struct LogArgs {
    /// Only operations on this component.
    #[arg(long)]
    component: Option<String>,
    /// Only the last N entries.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub fn log(g: &Globals, a: LogArgs) -> Result<i32> {
    let site = g.site()?;
    let all = audit::read(&site.config.state_dir, a.component.as_deref())?;
    let from = all.len().saturating_sub(a.limit);
    let shown = &all[from..];
    if g.json {
        g.print_json(&shown)?;
        return Ok(0);
    }
    for e in shown {
        let snaps: Vec<&str> = e.snapshots.iter().map(|s| &s[..s.len().min(8)]).collect();
        g.say(format!(
            "{}  {:<8} {:<6} {:<24} {:<20} {:>6.1}s {}@{}{}",
            e.time.map(local).unwrap_or_default(),
            e.operation,
            e.result,
            e.components.join(","),
            snaps.join(","),
            e.duration_s,
            e.user,
            e.host,
            e.error
                .as_ref()
                .map(|x| format!("  {x}"))
                .unwrap_or_default()
        ));
    }
    Ok(0)
}
