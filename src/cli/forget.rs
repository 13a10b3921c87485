//! `forget` and `tag`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use cairn::id::SnapshotId;
use cairn::ops::forget::{Filter, GroupBy, KeepDuration, Plan, Policy, PolicyFile, TagList, plan};
use cairn::ops::prune::prune;
use cairn::ops::tag::{TagChange, retag};

use super::FilterArgs;
use super::Globals;
use super::prune::{PruneTuning, print_report};

/// A kind (selecting tag, or every snapshot) and its policy.
type KindRule = (Option<String>, Policy);

#[derive(Args)]
pub struct ForgetArgs {
    /// Remove exactly these snapshots (id prefixes) instead of applying a policy.
    snapshots: Vec<String>,
    /// Keep the newest N snapshots (-1: all).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_last: Option<i64>,
    /// Keep the newest snapshot of each of the newest N hours that have one.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_hourly: Option<i64>,
    /// The same per day.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_daily: Option<i64>,
    /// The same per ISO week.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_weekly: Option<i64>,
    /// The same per month.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_monthly: Option<i64>,
    /// The same per year.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    keep_yearly: Option<i64>,
    /// Keep snapshots newer than this span before the newest one (e.g. 1y6m, 7d, 36h).
    #[arg(long, value_name = "SPAN")]
    keep_within: Option<KeepDuration>,
    /// Keep the newest snapshot of every hour within this span of the newest one.
    #[arg(long, value_name = "SPAN")]
    keep_within_hourly: Option<KeepDuration>,
    /// The same per day.
    #[arg(long, value_name = "SPAN")]
    keep_within_daily: Option<KeepDuration>,
    /// The same per ISO week.
    #[arg(long, value_name = "SPAN")]
    keep_within_weekly: Option<KeepDuration>,
    /// The same per month.
    #[arg(long, value_name = "SPAN")]
    keep_within_monthly: Option<KeepDuration>,
    /// The same per year.
    #[arg(long, value_name = "SPAN")]
    keep_within_yearly: Option<KeepDuration>,
    /// Keep snapshots with all of these tags (a,b); repeat for alternatives.
    #[arg(long = "keep-tag", value_name = "TAGS")]
    keep_tags: Vec<String>,
    /// Several policies, one per kind of snapshot (selected by tag), from a TOML file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily",
        "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_within_hourly",
        "keep_within_daily", "keep_within_weekly", "keep_within_monthly", "keep_within_yearly",
        "keep_tags"])]
    policy_file: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Decide per group of snapshots sharing these: host, paths, tags, or a subset
    /// (`""` for one group) [default: host,paths].
    #[arg(long, value_name = "FIELDS")]
    group_by: Option<String>,
    /// Report what would be removed, remove nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Run `prune` afterwards.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    tuning: PruneTuning,
}

impl ForgetArgs {
    fn policy(&self) -> Result<Policy> {
        Ok(Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_within_hourly: self.keep_within_hourly,
            keep_within_daily: self.keep_within_daily,
            keep_within_weekly: self.keep_within_weekly,
            keep_within_monthly: self.keep_within_monthly,
            keep_within_yearly: self.keep_within_yearly,
            keep_tags: self.keep_tags.iter().map(|t| TagList::parse(t)).collect(),
        })
    }

    /// The policies and grouping from the options or the policy file.
    fn policies(&self) -> Result<(Vec<KindRule>, GroupBy)> {
        let by_flag = self.group_by.as_deref().map(str::parse).transpose()?;
        match &self.policy_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read policy file {}", path.display()))?;
                let file =
                    PolicyFile::parse(&text).with_context(|| format!("in {}", path.display()))?;
                let by = match by_flag {
                    Some(b) => b,
                    None => file.grouping()?,
                };
                Ok((file.kinds(), by))
            }
            None => Ok((vec![(None, self.policy()?)], by_flag.unwrap_or_default())),
        }
    }
}

pub fn forget(g: &Globals, a: ForgetArgs) -> Result<i32> {
    let repo = g.open()?;
    let (remove, plan) = if a.snapshots.is_empty() {
        let (policies, by) = a.policies()?;
        let filter = a.filter.filter();
        let snaps = repo.snapshots()?;
        let p = plan(&snaps, &policies, &filter, by, &chrono::Local)?;
        (p.remove.clone(), Some(p))
    } else {
        if a.policy_file.is_some() || !a.policy()?.is_empty() || a.group_by.is_some() {
            bail!("give snapshot ids or a policy (--keep-*, --policy-file, --group-by), not both");
        }
        if a.filter.filter() != Filter::default() {
            bail!(
                "--tag, --host and --path select snapshots for a policy; they cannot narrow a list of ids"
            );
        }
        let mut ids: Vec<SnapshotId> = Vec::new();
        for r in &a.snapshots {
            ids.push(repo.resolve_snapshot(r)?.0);
        }
        ids.sort();
        ids.dedup();
        (ids, None)
    };
    if !a.dry_run {
        for id in &remove {
            repo.delete_snapshot(id)?;
        }
    }
    let pruned = if a.prune {
        Some(prune(&repo, &a.tuning.options(a.dry_run))?)
    } else {
        None
    };
    if g.json {
        g.print_json(&json!({
            "groups": plan.as_ref().map(|p| &p.groups),
            "remove": remove,
            "dry_run": a.dry_run,
            "prune": pruned,
        }))?;
        return Ok(0);
    }
    if let Some(p) = &plan {
        print_plan(g, p);
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    g.say(format!("{verb} {} snapshots", remove.len()));
    if let Some(r) = &pruned {
        print_report(g, r)?;
    }
    Ok(0)
}

fn print_plan(g: &Globals, p: &Plan) {
    for gp in &p.groups {
        let kind = gp
            .kind
            .as_ref()
            .map(|k| format!(" (kind: tag {k})"))
            .unwrap_or_default();
        g.say(format!("snapshots of {}{kind}:", gp.key));
        let (keep, drop): (Vec<_>, Vec<_>) = gp.decisions.iter().partition(|d| d.keep);
        g.say(format!("  keep {}:", keep.len()));
        let local = |t: chrono::DateTime<chrono::Utc>| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        for d in keep {
            let why = d.reasons.join(", ");
            g.say(format!("    {}  {}  {why}", d.id.short(), local(d.time)));
        }
        g.say(format!("  remove {}:", drop.len()));
        for d in drop {
            g.say(format!("    {}  {}", d.id.short(), local(d.time)));
        }
    }
}

#[derive(Args)]
pub struct TagArgs {
    /// Snapshots to change (id prefixes or `latest`).
    #[arg(required = true)]
    snapshots: Vec<String>,
    /// Add this tag (repeatable).
    #[arg(long)]
    add: Vec<String>,
    /// Remove this tag (repeatable).
    #[arg(long)]
    remove: Vec<String>,
    /// Replace all tags by these (repeatable; `--set ""` clears them).
    #[arg(long)]
    set: Vec<String>,
}

pub fn tag(g: &Globals, a: TagArgs) -> Result<i32> {
    if a.add.is_empty() && a.remove.is_empty() && a.set.is_empty() {
        bail!("nothing to change: give --add, --remove or --set");
    }
    let repo = g.open()?;
    let change = TagChange {
        add: a.add,
        remove: a.remove,
        set: (!a.set.is_empty()).then(|| a.set.into_iter().filter(|t| !t.is_empty()).collect()),
    };
    let done = retag(&repo, &a.snapshots, &change)?;
    if g.json {
        g.print_json(&done)?;
        return Ok(0);
    }
    for r in &done {
        g.say(format!(
            "{} -> {}  tags: {}",
            r.old.short(),
            r.new.short(),
            r.tags.join(",")
        ));
    }
    g.say(format!("{} snapshots changed", done.len()));
    Ok(0)
}
