//! `check`.

use anyhow::Result;
use clap::Args;

use cairn::ops::check::{CheckOptions, DataProof, DataSubset, check};

use super::Globals;

#[derive(Args)]
pub struct CheckArgs {
    /// Also read and verify all pack data.
    #[arg(long)]
    read_data: bool,
    /// Read only part of the packs (implies --read-data): N% (at random), n/t (group n of
    /// t), or a size such as 5G (oldest proof first). With --max-age, N%, n/t and a size are a
    /// budget for this run.
    #[arg(long, value_parser = DataSubset::parse)]
    read_data_subset: Option<DataSubset>,
    /// Read only packs never proven, or last proven longer ago than this (e.g. 30d), oldest
    /// proof first (implies --read-data). Proofs are kept in the local cache.
    #[arg(long, value_parser = super::parse_duration)]
    max_age: Option<std::time::Duration>,
    /// Check only this snapshot (id, prefix or `latest`; repeatable): its trees and, with
    /// --read-data, only the packs that hold its data.
    #[arg(long = "snapshot", value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// With --read-data: authenticate every blob of the packs read without decompressing and
    /// re-hashing it. Finds the same damage to stored bytes at about half the CPU; does not
    /// prove that the writer sealed the right content (the full read does).
    #[arg(long)]
    authenticate_only: bool,
}

pub fn run(g: &Globals, a: CheckArgs) -> Result<i32> {
    let repo = g.open()?;
    let read_data = a
        .read_data_subset
        .or(if a.read_data || a.max_age.is_some() {
            Some(DataSubset::All)
        } else {
            None
        });
    let scope = if a.snapshots.is_empty() {
        None
    } else {
        let mut ids = Vec::new();
        for s in &a.snapshots {
            ids.push(repo.resolve_snapshot(s)?.0);
        }
        Some(ids)
    };
    let scoped = scope.is_some();
    let (progress, bar) = super::progress::bar(g, "check", "packs");
    let started = std::time::Instant::now();
    let r = check(
        &repo,
        &CheckOptions {
            read_data,
            max_age: a.max_age,
            now: None,
            progress,
            snapshots: scope,
            proof: if a.authenticate_only {
                DataProof::Seal
            } else {
                DataProof::Content
            },
        },
    );
    if let Some(b) = bar {
        b.finish();
    }
    let r = r?;
    // Through a site's config, the check is its last verification (`status`, the log).
    if read_data.is_some()
        && !scoped
        && let Some(site) = g.own_site()
        && let Err(e) = cairn::site::upkeep::record_check(site, &r, started.elapsed())
    {
        eprintln!("cairn: warning: the check could not be recorded: {e}");
    }
    if g.json {
        g.print_json(&r)?;
    } else {
        for w in &r.warnings {
            if !g.quiet {
                eprintln!("cairn: note: {}: {}", w.what, w.problem);
            }
        }
        for e in &r.errors {
            eprintln!("cairn: error: {}: {}", e.what, e.problem);
        }
        g.say(format!(
            "{} snapshots, {} trees, {} packs checked",
            r.snapshots, r.trees, r.packs
        ));
        if read_data.is_some() {
            g.say(format!(
                "{} packs read ({}), {} blobs verified",
                r.packs_read,
                super::human(r.bytes_read),
                r.blobs_read
            ));
            if r.packs_due > 0 {
                g.say(format!(
                    "{} packs are due and left for the next runs",
                    r.packs_due
                ));
            }
            match (r.packs_unproven, r.oldest_proof) {
                (0, Some(t)) => g.say(format!(
                    "every pack proven; oldest proof {}",
                    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M")
                )),
                (n, _) => g.say(format!("{n} packs never proven yet")),
            }
        }
        if r.errors.is_empty() {
            g.say("no errors found");
        } else {
            eprintln!("cairn: {} errors found", r.errors.len());
        }
    }
    Ok(if r.errors.is_empty() { 0 } else { 1 })
}
