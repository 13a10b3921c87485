//! `repair`.

use anyhow::Result;
use clap::{Args, Subcommand};

use cairn::ops::repair::repair_index;

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
    }
}
