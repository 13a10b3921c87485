//! `copy`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use zeroize::Zeroizing;

use cairn::ops::copy::{CopyOptions, CopyReport, copy};
use cairn::ops::forget::{Filter, TagList};
use cairn::repo::Repository;

use super::{Globals, PasswordSources, human, read_password};

#[derive(Args)]
pub struct CopyArgs {
    /// The repository to copy from (the one given by -r/--repo receives the copies).
    #[arg(long, value_name = "PATH")]
    from_repo: PathBuf,
    /// Read the source repository's password from this file (first line). Also: env
    /// CAIRN_FROM_PASSWORD, or a prompt on a terminal.
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// Only snapshots of this host (repeatable: any of them).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only snapshots with these tags (`a,b`: all of them; repeatable: any of the lists).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable: all of them).
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// Show what would be copied; write nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Source snapshots (id prefixes or `latest`); all when none is given.
    #[arg(value_name = "SNAP")]
    snapshots: Vec<String>,
}

impl CopyArgs {
    fn options(&self) -> CopyOptions {
        CopyOptions {
            snapshots: self.snapshots.clone(),
            filter: Filter {
                tags: self.tags.iter().map(|t| TagList::parse(t)).collect(),
                hosts: self.hosts.clone(),
                paths: self.paths.clone(),
            },
            dry_run: self.dry_run,
        }
    }

    /// The source password from the first source that is set.
    fn password(&self) -> Result<Zeroizing<Vec<u8>>> {
        read_password(&PasswordSources {
            file: self.from_password_file.as_deref(),
            env: "CAIRN_FROM_PASSWORD",
            command_env: None,
            prompt: "source repository password: ",
            missing: "no password for the source repository: use --from-password-file, \
                      CAIRN_FROM_PASSWORD_FILE or CAIRN_FROM_PASSWORD (no terminal to prompt on)",
        })
    }

    /// Opens the source repository, with its cache in the same cache directory (caches are
    /// kept apart by repository id).
    fn open_source(&self, g: &Globals) -> Result<Repository> {
        let mut repo = Repository::open(&self.from_repo, || self.password(), &g.cache_dir())
            .context("source repository")?;
        repo.set_warning_handler(|w| eprintln!("cairn: warning: source: {w}"));
        for problem in repo.damaged_index_files() {
            eprintln!(
                "cairn: warning: source: {problem}; the blobs it lists cannot be found (run `cairn check` on it)"
            );
        }
        Ok(repo)
    }
}

pub fn run(g: &Globals, a: CopyArgs) -> Result<i32> {
    let dst = g.open()?;
    let src = a.open_source(g)?;
    let r = copy(&src, &dst, &a.options())?;
    print_report(g, &r)?;
    Ok(0)
}

fn print_report(g: &Globals, r: &CopyReport) -> Result<()> {
    if g.json {
        return g.print_json(r);
    }
    let short = |id: &Option<cairn::id::SnapshotId>| id.map_or_else(|| "-".into(), |i| i.short());
    for c in &r.copied {
        if r.dry_run {
            g.say(format!("would copy {}", c.source.short()));
        } else {
            g.say(format!("copied {} -> {}", c.source.short(), short(&c.copy)));
        }
    }
    for c in &r.skipped {
        g.say(format!(
            "skipped {} (already copied as {})",
            c.source.short(),
            short(&c.copy)
        ));
    }
    let would = if r.dry_run { "would be " } else { "" };
    g.say(format!(
        "{} snapshots {would}copied, {} skipped; {} blobs ({}) {would}sent, {} already present, \
         {} trees rewritten, {} read from the source in {:.1}s",
        r.copied.len(),
        r.skipped.len(),
        r.blobs_copied,
        human(r.bytes_copied),
        r.blobs_reused,
        r.trees_rewritten,
        human(r.data_read),
        r.duration_s
    ));
    Ok(())
}
