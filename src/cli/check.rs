//! `check`.

use anyhow::Result;
use clap::Args;

use cairn::ops::check::{CheckOptions, DataSubset, check};

use super::Globals;

#[derive(Args)]
pub struct CheckArgs {
    /// Also read and verify all pack data.
    #[arg(long)]
    read_data: bool,
    /// Read only a subset of packs: N% (random) or n/t (group n of t; implies --read-data).
    #[arg(long, value_parser = DataSubset::parse)]
    read_data_subset: Option<DataSubset>,
}

pub fn run(g: &Globals, a: CheckArgs) -> Result<i32> {
    let repo = g.open()?;
    let read_data = a.read_data_subset.or(if a.read_data {
        Some(DataSubset::All)
    } else {
        None
    });
    let (progress, bar) = super::progress::bar(g, "check", "packs");
    let r = check(
        &repo,
        &CheckOptions {
            read_data,
            progress,
        },
    );
    if let Some(b) = bar {
        b.finish();
    }
    let r = r?;
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
                "{} packs read, {} blobs verified",
                r.packs_read, r.blobs_read
            ));
        }
        if r.errors.is_empty() {
            g.say("no errors found");
        } else {
            eprintln!("cairn: {} errors found", r.errors.len());
        }
    }
    Ok(if r.errors.is_empty() { 0 } else { 1 })
}
