//! `restore` and `dump`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use cairn::ops::archive::{ArchiveFormat, dump_archive};
use cairn::ops::browse;
use cairn::ops::restore::{Overwrite, RestoreOptions, restore};
use cairn::tree::NodeKind;

use super::{Globals, human};

#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id prefix or `latest`.
    snap: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// Restore only matching paths (repeatable).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Leave out matching paths (repeatable).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
    /// Re-read restored files and compare them with the snapshot.
    #[arg(long)]
    verify: bool,
    /// Show what would be restored.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// What to do with existing files: `if-changed` keeps those whose size and mtime match
    /// (and with --verify their content), so running a killed restore again resumes it.
    #[arg(long, value_enum, default_value_t = Overwrite::IfChanged)]
    overwrite: Overwrite,
    /// Make the target identical to the snapshot: remove what it lacks (within --include,
    /// never what --exclude matches). Files whose size and mtime match are kept as they are
    /// unless --verify (or --overwrite always) is given.
    #[arg(long)]
    delete: bool,
    /// Allow --delete with a target of /.
    #[arg(long)]
    force: bool,
}

pub fn run(g: &Globals, a: RestoreArgs) -> Result<i32> {
    let repo = g.open()?;
    let (id, snap) = repo.resolve_snapshot(&a.snap)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        include: a.include,
        exclude: a.exclude,
        verify: a.verify,
        dry_run: a.dry_run,
        overwrite: a.overwrite,
        progress: Default::default(),
        delete: a.delete,
        force: a.force,
        ..RestoreOptions::default()
    };
    let (sink, bar) = super::progress::bar(g, "restore", "files");
    sink.total(snap.summary.total_bytes);
    let opts = RestoreOptions {
        progress: sink,
        ..opts
    };
    let r = restore(&repo, &snap.tree, &opts);
    if let Some(b) = bar {
        b.finish();
    }
    let r = r?;
    for w in &r.warnings {
        if !g.quiet {
            eprintln!("cairn: warning: {}: {}", w.path, w.error);
        }
    }
    for e in &r.errors {
        eprintln!("cairn: error: {}: {}", e.path, e.error);
    }
    if g.json {
        g.print_json(&serde_json::json!({ "snapshot_id": id, "target": a.target, "dry_run": a.dry_run, "report": r }))?;
    } else {
        let verb = if a.dry_run {
            "would restore"
        } else {
            "restored"
        };
        g.say(format!(
            "{verb} snapshot {} to {}: {} files ({}), {} dirs, {} other entries, {} skipped{}{}",
            id.short(),
            a.target.display(),
            r.files,
            human(r.bytes),
            r.dirs,
            r.others,
            r.skipped,
            if a.verify {
                format!(", {} verified", r.verified)
            } else {
                String::new()
            },
            if a.delete {
                let verb = if a.dry_run { "to delete" } else { "deleted" };
                format!(", {} {verb}", r.deleted)
            } else {
                String::new()
            }
        ));
    }
    if !r.errors.is_empty() {
        eprintln!("cairn: {} entries could not be restored", r.errors.len());
        return Ok(1);
    }
    Ok(0)
}

#[derive(Args)]
pub struct DumpArgs {
    /// Snapshot id prefix or `latest`.
    snap: String,
    /// Path inside the snapshot: a file is written as it is, a directory (`/` for all) as an
    /// archive.
    path: PathBuf,
    /// Archive format for a directory [default: tar]; with a file, an archive of that one file.
    #[arg(long, value_enum)]
    archive: Option<ArchiveFormat>,
}

pub fn dump(g: &Globals, a: DumpArgs) -> Result<i32> {
    let repo = g.open()?;
    let (_, snap) = repo.resolve_snapshot(&a.snap)?;
    let node = cairn::ops::walk::find(&repo, &snap.tree, &a.path)?;
    let is_file = node.as_ref().is_some_and(|n| n.kind == NodeKind::File);
    let mut out = std::io::stdout().lock();
    let format = match a.archive {
        None if is_file => {
            browse::dump(&repo, &snap.tree, &a.path, &mut out)?;
            return Ok(0);
        }
        None => ArchiveFormat::Tar,
        Some(f) => f,
    };
    if out.is_terminal() {
        bail!(
            "{} would be written to the terminal as a {} archive: redirect stdout to a file or a pipe",
            a.path.display(),
            if format == ArchiveFormat::Tar {
                "tar"
            } else {
                "zip"
            }
        );
    }
    let r = dump_archive(&repo, &snap.tree, &a.path, format, &mut out)?;
    for s in &r.skipped {
        eprintln!("cairn: warning: {s}; left out");
    }
    Ok(0)
}
