//! `prune`.

use anyhow::Result;
use clap::Args;

use cairn::ops::prune::{MaxUnused, PruneOptions, PruneReport, prune};

use super::{Globals, human, parse_duration, parse_size};

#[derive(Args, Clone)]
pub struct PruneArgs {
    #[command(flatten)]
    pub tuning: PruneTuning,
    /// Report what would be done, change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Rewrite this pack whatever its unused share (repeatable; a full pack id): after
    /// `repair snapshots --read-data` has cut its damaged blobs out of every snapshot, the
    /// damage goes with it.
    #[arg(long = "repack", value_name = "PACK")]
    pub repack: Vec<cairn::id::PackId>,
}

/// The settings `prune` and `forget --prune` share.
#[derive(Args, Clone)]
pub struct PruneTuning {
    /// Unused space tolerated in partly used packs before they are repacked: a percentage of
    /// the data kept, a size, or `unlimited`.
    #[arg(long, default_value = "5%")]
    pub max_unused: MaxUnused,
    /// Read at most this much of partly used packs for repacking in one run (e.g. 10G).
    #[arg(long, value_parser = parse_size)]
    pub max_repack: Option<u64>,
    /// A running command whose session was not refreshed for this long is considered gone
    /// (e.g. 1h, 90m).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub stale_after: std::time::Duration,
    /// Keep packs marked as unused at least this long before deleting them (e.g. 24h), for
    /// storage whose listings may lag behind writes.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub keep_marked: std::time::Duration,
}

impl PruneTuning {
    pub fn options(&self, dry_run: bool) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused,
            max_repack: self.max_repack,
            dry_run,
            stale_after: self.stale_after,
            keep_marked: self.keep_marked,
            repack: Default::default(),
        }
    }
}

pub fn run(g: &Globals, a: PruneArgs) -> Result<i32> {
    let repo = g.open()?;
    let mut opts = a.tuning.options(a.dry_run);
    opts.repack = a.repack.into_iter().collect();
    let started = std::time::Instant::now();
    let r = prune(&repo, &opts);
    if !a.dry_run
        && let Some(site) = g.own_site()
        && let Err(e) = cairn::site::upkeep::record_prune(site, r.as_ref(), started.elapsed())
    {
        eprintln!("cairn: warning: the prune could not be recorded: {e}");
    }
    print_report(g, &r?)?;
    Ok(0)
}

pub fn print_report(g: &Globals, r: &PruneReport) -> Result<()> {
    if g.json {
        return g.print_json(r);
    }
    let would = if r.dry_run { "would be " } else { "" };
    g.say(format!(
        "{} snapshots use {} blobs; {} packs ({}) held {} unused",
        r.snapshots,
        r.used_blobs,
        r.packs_before,
        human(r.bytes_before),
        human(r.unused_bytes_before)
    ));
    g.say(format!(
        "{} packs {would}marked unused, {} {would}repacked ({} copied), {} {would}taken back into use",
        r.packs_marked,
        r.packs_repacked,
        human(r.bytes_repacked),
        r.packs_unmarked
    ));
    g.say(format!(
        "{} packs {would}deleted: {} {}freed",
        r.packs_deleted,
        human(r.bytes_freed),
        if r.dry_run { "would be " } else { "" }
    ));
    if r.packs_waiting > 0 {
        g.say(format!(
            "{} packs ({}) stay marked until these runs end; a later prune deletes them:",
            r.packs_waiting,
            human(r.bytes_waiting)
        ));
        for w in &r.waiting_for {
            g.say(format!("  {w}"));
        }
    }
    if r.stale_sessions_removed > 0 {
        g.say(format!(
            "{} sessions of runs that are gone were removed",
            r.stale_sessions_removed
        ));
    }
    Ok(())
}
