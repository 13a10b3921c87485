//! `repair`.

use anyhow::Result;
use clap::{Args, Subcommand};

use cairn::ops::repair::{RepairSnapshotsOptions, repair_index, repair_snapshots};

use super::Globals;

#[derive(Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    what: RepairWhat,
}

#[derive(Subcommand)]
enum RepairWhat {
    /// Rebuild the index from the headers of the packs (when index files are lost or
    /// damaged).
    Index {
        /// Report what would be indexed; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Rewrite snapshots that need lost data: files are cut at their first lost blob,
    /// directories whose listing is lost are emptied; the copies are tagged `repaired`.
    Snapshots {
        /// Remove each damaged snapshot once its repaired copy is written.
        #[arg(long)]
        forget: bool,
        /// Report what is lost; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Read every pack first: blobs that are present but damaged count as lost too
        /// (without it, only missing data and unreadable directory listings are found).
        #[arg(long)]
        read_data: bool,
    },
}

pub fn run(g: &Globals, a: RepairArgs) -> Result<i32> {
    let repo = g.open()?;
    match a.what {
        RepairWhat::Index { dry_run } => {
            let r = repair_index(&repo, dry_run)?;
            if g.json {
                g.print_json(&r)?;
            } else {
                for (id, why) in &r.unreadable {
                    eprintln!("cairn: pack {id}: {why}; its blobs are left out of the index");
                }
                let would = if dry_run { "would be " } else { "" };
                g.say(format!(
                    "{} packs ({} blobs) {would}indexed in {} files; {} old index files {would}removed",
                    r.packs, r.blobs, r.index_written, r.index_removed
                ));
                if !r.unreadable.is_empty() {
                    g.say(format!(
                        "{} packs could not be read: run `cairn check` to see which snapshots need them",
                        r.unreadable.len()
                    ));
                }
            }
            Ok(if r.unreadable.is_empty() { 0 } else { 1 })
        }
        RepairWhat::Snapshots {
            forget,
            dry_run,
            read_data,
        } => {
            let r = repair_snapshots(
                &repo,
                &RepairSnapshotsOptions {
                    forget,
                    dry_run,
                    read_data,
                },
            )?;
            if g.json {
                g.print_json(&r)?;
                return Ok(0);
            }
            if read_data {
                let elsewhere = match r.intact_elsewhere {
                    0 => String::new(),
                    n => format!(" ({n} with an intact copy in another pack, kept)"),
                };
                g.say(format!(
                    "{} packs read; {} blobs in them are damaged{elsewhere}",
                    r.packs_read, r.damaged_blobs
                ));
            }
            if !r.damaged_packs.is_empty() && !dry_run {
                let args: Vec<String> = r
                    .damaged_packs
                    .iter()
                    .map(|p| format!("--repack {p}"))
                    .collect();
                let olds: Vec<String> = r.repaired.iter().map(|s| s.old.short()).collect();
                if r.forgot || olds.is_empty() {
                    g.say(format!(
                        "the damaged blobs stay in their packs until a prune rewrites them: \
                         `cairn prune {}` does it now",
                        args.join(" ")
                    ));
                } else {
                    // The damaged originals still use those blobs: a repack would stop on them.
                    g.say(format!(
                        "the damaged blobs stay in their packs until a prune rewrites them, \
                         which it can once no snapshot uses them: `cairn forget {}` (the \
                         damaged originals), then `cairn prune {}`",
                        olds.join(" "),
                        args.join(" ")
                    ));
                }
            }
            for s in &r.repaired {
                let new = s
                    .new
                    .map(|n| n.short())
                    .unwrap_or_else(|| "(dry run)".into());
                g.say(format!("snapshot {} -> {new}; lost:", s.old.short()));
                for l in &s.lost {
                    g.say(format!("  {l}"));
                }
            }
            g.say(format!(
                "{} of {} snapshots {}repaired{}",
                r.repaired.len(),
                r.snapshots,
                if dry_run { "would be " } else { "" },
                if r.forgot {
                    "; the damaged ones were removed"
                } else {
                    ""
                }
            ));
            Ok(0)
        }
    }
}
