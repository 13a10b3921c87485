//! `snapshot` (alias `backup`).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use cairn::ops::snapshot::{Input, SnapshotOptions, SnapshotReport, snapshot, snapshot_command};
use cairn::repo::{InitOptions, Repository};

use super::{EXIT_PARTIAL, Globals, human};

#[derive(Args)]
pub struct SnapshotArgs {
    /// Files and directories to store (with --stdin-from-command: the command and its arguments).
    #[arg(allow_hyphen_values = false)]
    paths: Vec<OsString>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record.
    #[arg(long, value_parser = super::non_empty)]
    host: Option<String>,
    /// Leave out matching paths (repeatable); a pattern with / matches the absolute path.
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Read exclude patterns from a file (one per line, # comments).
    #[arg(long = "exclude-file")]
    exclude_files: Vec<PathBuf>,
    /// Leave out directories that contain a file with this name.
    #[arg(long = "exclude-if-present")]
    exclude_if_present: Vec<String>,
    /// Stay on the filesystems of the given paths.
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Compare against this snapshot instead of the latest with the same host and paths.
    #[arg(long)]
    parent: Option<String>,
    /// Re-read every file.
    #[arg(long)]
    force: bool,
    /// Do everything but write to the repository.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Snapshot time (RFC 3339), instead of now.
    #[arg(long)]
    time: Option<String>,
    /// Why the snapshot is taken (kept in the snapshot, shown by `snapshots`).
    #[arg(long)]
    reason: Option<String>,
    /// Store standard input as one file.
    #[arg(long)]
    stdin: bool,
    /// File name for --stdin / --stdin-from-command.
    #[arg(long, default_value = "stdin")]
    stdin_filename: String,
    /// Run the command given after `--` and store its output; fails if it exits non-zero.
    #[arg(long)]
    stdin_from_command: bool,
}

fn options(g: &Globals, a: &SnapshotArgs) -> Result<SnapshotOptions> {
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read exclude file {}", f.display()))?;
        excludes.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let time = match &a.time {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| {
                    format!("--time {t:?} is not an RFC 3339 time (e.g. 2024-01-31T12:00:00Z)")
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    Ok(SnapshotOptions {
        tags: a.tags.clone(),
        host: a.host.clone(),
        excludes,
        exclude_if_present: a.exclude_if_present.clone(),
        one_file_system: a.one_file_system,
        parent: a.parent.clone(),
        force: a.force,
        time,
        skip: [g.repo_path().0, g.cache_dir()]
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect(),
        progress: Default::default(),
        reason: a.reason.clone(),
        cancel: Default::default(),
    })
}

/// Opens the repository, creating the default one on first use.
fn open_or_create(g: &Globals) -> Result<Repository> {
    let (path, is_default) = g.repo_path();
    if is_default && !path.join("config").exists() {
        let password = super::key::new_password(g)?;
        eprintln!(
            "cairn: note: creating the default repository at {} (set -r/--repo or CAIRN_REPOSITORY to use another)",
            path.display()
        );
        let mut repo = Repository::init(&path, &password, &InitOptions::default(), &g.cache_dir())?;
        repo.set_warning_handler(|w| eprintln!("cairn: warning: {w}"));
        return Ok(repo);
    }
    g.open()
}

pub fn run(g: &Globals, a: SnapshotArgs) -> Result<i32> {
    let mut opts = options(g, &a)?;
    if a.stdin && a.stdin_from_command {
        bail!("--stdin and --stdin-from-command exclude each other");
    }
    if a.stdin && !a.paths.is_empty() {
        bail!("--stdin takes no paths");
    }
    if !a.stdin && !a.stdin_from_command && a.paths.is_empty() {
        bail!("nothing to snapshot: give paths, --stdin or --stdin-from-command -- CMD");
    }
    let paths: Vec<PathBuf> = a.paths.iter().map(PathBuf::from).collect();
    if !a.stdin && !a.stdin_from_command {
        // Before anything is created or written.
        cairn::ops::snapshot::check_sources(&paths)?;
    }
    let mut repo = if a.dry_run {
        g.open()?
    } else {
        open_or_create(g)?
    };
    if a.dry_run {
        repo = repo.into_dry_run();
    }
    let (sink, bar) = super::progress::bar(g, "snapshot", "files");
    opts.progress = sink;
    let report = if a.stdin {
        let input = Input::Stream {
            name: a.stdin_filename.clone(),
            reader: Box::new(std::io::stdin().lock()),
            finish: Box::new(|| Ok(())),
        };
        snapshot(&repo, input, &opts).map_err(anyhow::Error::from)
    } else if a.stdin_from_command {
        from_command(&repo, &a, &opts)
    } else {
        snapshot(&repo, Input::Paths(paths), &opts).map_err(anyhow::Error::from)
    };
    if let Some(b) = bar {
        b.finish();
    }
    let report = report?;
    for e in &report.error_details {
        eprintln!("cairn: warning: {}: {}", e.path, e.error);
    }
    print_report(g, &report)?;
    Ok(if report.summary.errors > 0 {
        EXIT_PARTIAL
    } else {
        0
    })
}

fn from_command(
    repo: &Repository,
    a: &SnapshotArgs,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport> {
    let Some((cmd, args)) = a.paths.split_first() else {
        bail!("--stdin-from-command needs a command after `--`, e.g. -- pg_dump mydb");
    };
    let label = format!("command {}", cmd.to_string_lossy());
    let mut command = std::process::Command::new(cmd);
    command.args(args);
    Ok(snapshot_command(
        repo,
        &mut command,
        &label,
        &a.stdin_filename,
        false,
        opts,
    )?)
}

fn print_report(g: &Globals, r: &SnapshotReport) -> Result<()> {
    if g.json {
        return g.print_json(r);
    }
    g.say(format!(
        "files: {} new, {} changed, {} unmodified; {} dirs",
        r.summary.files_new, r.summary.files_changed, r.summary.files_unmodified, r.summary.dirs
    ));
    g.say(format!(
        "read {}, added {} ({} stored) in {:.2}s",
        human(r.summary.bytes_read),
        human(r.summary.data_added),
        human(r.summary.data_added_packed),
        r.duration_s
    ));
    match &r.snapshot_id {
        Some(id) => g.say(format!("snapshot {} saved", id.short())),
        None => g.say("dry run: nothing written"),
    }
    if r.summary.errors > 0 && !g.quiet {
        eprintln!(
            "cairn: {} entries could not be read and were skipped (listed above)",
            r.summary.errors
        );
    }
    Ok(())
}
