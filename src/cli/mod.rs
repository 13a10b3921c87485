//! Command-line interface: clap arguments → library options → one library call → text or JSON.

mod check;
mod config;
mod copy;
mod forget;
mod inspect;
mod key;
mod mount;
mod progress;
mod prune;
mod repair;
mod restore;
mod schedule;
mod serve;
mod site;
mod snapshot;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

use cairn::repo::Repository;

/// Exit code of a snapshot that was written but skipped unreadable files.
pub const EXIT_PARTIAL: i32 = 3;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Content-addressed, deduplicating, encrypted backups",
    after_help = "Exit codes: 0 ok, 1 error, 3 snapshot written but some files could not be read, \
                  4 status: a limit does not hold, 10 no repository, 12 wrong password."
)]
struct Cli {
    /// The site's config file [default: ~/.config/cairn/cairn.toml, then /etc/cairn/cairn.toml
    /// as root]; it also names the repository for every command without -r.
    #[arg(
        long = "config",
        env = "CAIRN_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Repository: a folder, rest:http(s)://[user:pass@]host:port/path or s3:[http(s)://]host[:port]/bucket[/prefix] [default: ~/.local/share/cairn/repo]
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    repo: Option<PathBuf>,
    /// Read the password from this file (first line). Also: env CAIRN_PASSWORD,
    /// CAIRN_PASSWORD_COMMAND, or a prompt on a terminal.
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Local cache directory [default: ~/.cache/cairn]
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository.
    Init(key::InitArgs),
    /// Store a snapshot of files, directories, stdin or a command's output.
    #[command(alias = "backup")]
    Snapshot(snapshot::SnapshotArgs),
    /// List snapshots.
    Snapshots(inspect::SnapshotsArgs),
    /// List files in a snapshot.
    Ls(inspect::LsArgs),
    /// Find which snapshots hold entries matching a glob.
    Find(inspect::FindArgs),
    /// Restore a snapshot into a directory.
    Restore(restore::RestoreArgs),
    /// Write one file of a snapshot to stdout, or a folder as a tar or zip archive.
    Dump(restore::DumpArgs),
    /// Browse the snapshots as a read-only filesystem (FUSE) until unmounted.
    Mount(mount::MountArgs),
    /// Verify the repository's integrity.
    Check(check::CheckArgs),
    /// Show what changed between two snapshots.
    Diff(inspect::DiffArgs),
    /// Show sizes, counts and the dedup ratio.
    Stats(inspect::StatsArgs),
    /// Print a repository object as JSON (for debugging).
    Cat(inspect::CatArgs),
    /// Remove snapshots by a retention policy (or by id); `--prune` gives the space back.
    Forget(Box<forget::ForgetArgs>),
    /// Add, remove or set the tags of snapshots.
    Tag(forget::TagArgs),
    /// Delete data no snapshot uses (two-phase: safe while other commands run).
    Prune(prune::PruneArgs),
    /// Copy snapshots from another repository (re-encrypted; only missing data is sent).
    Copy(copy::CopyArgs),
    /// Rebuild the index from the packs, or cut lost data out of snapshots (`repair index|snapshots`).
    Repair(repair::RepairArgs),
    /// Manage the repository's keys (passwords).
    Key(key::KeyArgs),
    /// Back up components of the config: hooks, snapshot, retention by kind, offsite copies.
    Run(site::RunArgs),
    /// List a component's snapshots.
    Versions(site::VersionsArgs),
    /// Put a component back as a snapshot had it (after a pre-rollback snapshot).
    Rollback(site::RollbackArgs),
    /// Restore every component's newest snapshot, in recovery order (a new machine).
    Recover(site::RecoverArgs),
    /// Restore components into a scratch place, prove and probe them (a restore test).
    Drill(site::DrillArgs),
    /// Per component: last backup, age, size, drill; free space; exit 4 if a limit fails.
    Status(site::StatusArgs),
    /// Show the audit log.
    Log(site::LogArgs),
    /// Install, remove or show the config's schedules (systemd timers or cron).
    Schedule(schedule::ScheduleArgs),
    /// Run the config's schedules in the foreground (for containers).
    Daemon(schedule::DaemonArgs),
    /// Serve the site's operations over HTTP (API, metrics, status page) and its schedules.
    Serve(serve::ServeArgs),
    /// Check the config file, or print a commented one.
    Config(config::ConfigArgs),
}

/// Which snapshots a command sees (restic's `--tag`, `--host`, `--path`).
#[derive(clap::Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots with all of these tags (a,b); repeat for alternatives.
    #[arg(long = "tag", value_name = "TAGS")]
    tags: Vec<String>,
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Only snapshots that include this path (repeatable: all of them).
    #[arg(long = "path")]
    paths: Vec<String>,
}

impl FilterArgs {
    /// True when no filter was given.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.hosts.is_empty() && self.paths.is_empty()
    }

    pub fn filter(&self) -> cairn::ops::forget::Filter {
        cairn::ops::forget::Filter {
            tags: self
                .tags
                .iter()
                .map(|t| cairn::ops::forget::TagList::parse(t))
                .collect(),
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
        }
    }
}

/// Global settings every command sees.
pub struct Globals {
    config: Option<PathBuf>,
    site: std::cell::OnceCell<Option<cairn::site::Site>>,
    /// `-r` names another repository than the config's.
    foreign_repo: std::cell::Cell<bool>,
    repo: Option<PathBuf>,
    password_file: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    cache_dir: Option<PathBuf>,
}

fn home_dir(sub_env: &str, fallback: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(sub_env).filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cairn");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(fallback).join("cairn")
}

impl Globals {
    /// The site of the config file, if there is one (`--config`, `CAIRN_CONFIG` or a
    /// default location); read once.
    pub fn site_opt(&self) -> Result<Option<&cairn::site::Site>> {
        if let Some(s) = self.site.get() {
            return Ok(s.as_ref());
        }
        let site = match cairn::site::config::locate(self.config.as_deref())? {
            None => None,
            Some(path) => {
                let mut config = cairn::site::load(&path)?;
                if let Some(f) = &self.password_file {
                    config.repository.password =
                        cairn::site::config::PasswordSource::File(f.clone());
                }
                if let Some(r) = &self.repo {
                    let canon =
                        |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
                    self.foreign_repo
                        .set(canon(r) != canon(&config.repository.path));
                    config.repository.path = r.clone();
                }
                let fallback_file = self.password_file.clone();
                let fallback: cairn::site::PasswordFallback = std::sync::Arc::new(move || {
                    read_password(&PasswordSources {
                        file: fallback_file.as_deref(),
                        ..REPOSITORY_PASSWORD
                    })
                });
                let warn: cairn::site::WarningSink =
                    std::sync::Arc::new(|w| eprintln!("cairn: warning: {w}"));
                let cache = self
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| home_dir("XDG_CACHE_HOME", ".cache"));
                Some(cairn::site::Site::new(config, fallback, cache, warn))
            }
        };
        Ok(self.site.get_or_init(|| site).as_ref())
    }

    /// The site whose repository this command works on, if any: what a check or prune is
    /// recorded for. Best effort: a config that does not load records nothing.
    pub fn own_site(&self) -> Option<&cairn::site::Site> {
        let site = self.site_opt().ok().flatten()?;
        (!self.foreign_repo.get()).then_some(site)
    }

    /// The site of the config file; an error saying how to give one when there is none.
    pub fn site(&self) -> Result<&cairn::site::Site> {
        self.site_opt()?.context(
            "no config file: pass --config FILE, set CAIRN_CONFIG, or create \
             ~/.config/cairn/cairn.toml (`cairn config template` prints a commented one)",
        )
    }

    /// The repository path and whether it is the default one.
    pub fn repo_path(&self) -> (PathBuf, bool) {
        if let Some(r) = &self.repo {
            return (r.clone(), false);
        }
        if let Ok(Some(site)) = self.site_opt() {
            return (site.config.repository.path.clone(), false);
        }
        (home_dir("XDG_DATA_HOME", ".local/share").join("repo"), true)
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(d) = &self.cache_dir {
            return d.clone();
        }
        if let Ok(Some(site)) = self.site_opt() {
            return site.cache_dir();
        }
        home_dir("XDG_CACHE_HOME", ".cache")
    }

    /// The repository password from the first source that is set.
    pub fn password(&self) -> Result<Zeroizing<Vec<u8>>> {
        if self.password_file.is_none()
            && let Ok(Some(site)) = self.site_opt()
            && site.config.repository.password != cairn::site::config::PasswordSource::Caller
        {
            return cairn::site::read_password(
                &site.config.repository.password,
                "the repository",
                &|| read_password(&REPOSITORY_PASSWORD),
            );
        }
        read_password(&PasswordSources {
            file: self.password_file.as_deref(),
            ..REPOSITORY_PASSWORD
        })
    }

    /// Opens the repository.
    pub fn open(&self) -> Result<Repository> {
        let (path, _) = self.repo_path();
        let mut repo = Repository::open(&path, || self.password(), &self.cache_dir())?;
        repo.set_warning_handler(|w| eprintln!("cairn: warning: {w}"));
        for problem in repo.damaged_index_files() {
            eprintln!(
                "cairn: warning: {problem}; the blobs it lists cannot be found (run `cairn check`)"
            );
        }
        Ok(repo)
    }

    /// Prints a value as JSON on stdout.
    pub fn print_json(&self, v: &impl serde::Serialize) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, v)?;
        writeln!(out)?;
        Ok(())
    }

    /// Prints a line unless quiet or JSON output is on.
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            println!("{line}");
        }
    }
}

/// The repository password's sources besides a password file.
const REPOSITORY_PASSWORD: PasswordSources<'static> = PasswordSources {
    file: None,
    env: "CAIRN_PASSWORD",
    command_env: Some("CAIRN_PASSWORD_COMMAND"),
    prompt: "repository password: ",
    missing: "no password given: use --password-file, CAIRN_PASSWORD_FILE, CAIRN_PASSWORD, CAIRN_PASSWORD_COMMAND or the config's password_file (no terminal to prompt on)",
};

/// Where a password may come from, in order: a file, an environment variable, a command
/// named by an environment variable, a prompt on a terminal.
pub struct PasswordSources<'a> {
    /// Password file (its first line), from an option or its environment variable.
    pub file: Option<&'a Path>,
    /// Variable holding the password itself.
    pub env: &'a str,
    /// Variable holding a shell command that prints the password, if this password has one.
    pub command_env: Option<&'a str>,
    /// Prompt shown on a terminal.
    pub prompt: &'a str,
    /// The error when none is set and there is no terminal.
    pub missing: &'a str,
}

/// The password from the first of `s` that is set.
pub fn read_password(s: &PasswordSources<'_>) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(f) = s.file {
        let b = std::fs::read(f)
            .with_context(|| format!("cannot read password file {}", f.display()))?;
        return Ok(Zeroizing::new(first_line(&b)));
    }
    if let Some(p) = std::env::var_os(s.env) {
        use std::os::unix::ffi::OsStrExt;
        return Ok(Zeroizing::new(p.as_bytes().to_vec()));
    }
    if let Some(var) = s.command_env
        && let Some(cmd) = std::env::var_os(var)
    {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {var}"))?;
        if !out.status.success() {
            bail!("{var} failed ({})", out.status);
        }
        return Ok(Zeroizing::new(first_line(&out.stdout)));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(s.prompt).context("cannot read the password")?;
        return Ok(Zeroizing::new(p.into_bytes()));
    }
    bail!("{}", s.missing)
}

use cairn::site::first_line;

pub use cairn::ops::{parse_duration, parse_size};

/// Human-readable byte count.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Parses the command line and runs the command; returns the exit code.
pub fn run() -> Result<i32> {
    let cli = Cli::parse();
    let g = Globals {
        config: cli.config,
        site: std::cell::OnceCell::new(),
        foreign_repo: std::cell::Cell::new(false),
        repo: cli.repo,
        password_file: cli.password_file,
        json: cli.json,
        quiet: cli.quiet,
        cache_dir: cli.cache_dir,
    };
    match cli.command {
        Command::Init(a) => key::init(&g, a),
        Command::Snapshot(a) => snapshot::run(&g, a),
        Command::Snapshots(a) => inspect::snapshots(&g, a),
        Command::Ls(a) => inspect::ls(&g, a),
        Command::Find(a) => inspect::find(&g, a),
        Command::Restore(a) => restore::run(&g, a),
        Command::Dump(a) => restore::dump(&g, a),
        Command::Mount(a) => mount::run(&g, a),
        Command::Check(a) => check::run(&g, a),
        Command::Diff(a) => inspect::diff(&g, a),
        Command::Stats(a) => inspect::stats(&g, a),
        Command::Cat(a) => inspect::cat(&g, a),
        Command::Forget(a) => forget::forget(&g, *a),
        Command::Tag(a) => forget::tag(&g, a),
        Command::Prune(a) => prune::run(&g, a),
        Command::Copy(a) => copy::run(&g, a),
        Command::Repair(a) => repair::run(&g, a),
        Command::Key(a) => key::run(&g, a),
        Command::Run(a) => site::run(&g, a),
        Command::Versions(a) => site::versions(&g, a),
        Command::Rollback(a) => site::rollback(&g, a),
        Command::Recover(a) => site::recover(&g, a),
        Command::Drill(a) => site::drill(&g, a),
        Command::Status(a) => site::status(&g, a),
        Command::Log(a) => site::log(&g, a),
        Command::Schedule(a) => schedule::run(&g, a),
        Command::Daemon(a) => schedule::daemon(&g, a),
        Command::Serve(a) => serve::serve(&g, a),
        Command::Config(a) => config::run(&g, a),
    }
}

/// The message for an error: the library's own one-line message, with context in front.
pub fn describe(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// A value that must not be empty (a host name, say).
pub fn non_empty(s: &str) -> std::result::Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// The exit code for an error.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<cairn::Error>())
        .map(|e| e.exit_code())
        .unwrap_or(1)
}
