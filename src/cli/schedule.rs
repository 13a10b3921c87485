//! `schedule install|uninstall|status` and `daemon`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use cairn::site::daemon::{DaemonOptions, daemon as run_daemon};
use cairn::site::schedule::{ScheduleOptions, install, status, uninstall};

use super::Globals;

#[derive(Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    action: ScheduleAction,
    /// Write one cron file instead of systemd units.
    #[arg(long, global = true)]
    cron: bool,
    /// Folder for the systemd units [default: /etc/systemd/system as root,
    /// ~/.config/systemd/user otherwise]; given, the units are only written.
    #[arg(long, global = true, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
    /// The cron file [default: /etc/cron.d/cairn].
    #[arg(long, global = true, value_name = "FILE")]
    cron_file: Option<PathBuf>,
    /// Show what would be written or removed.
    #[arg(long, short = 'n', global = true)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum ScheduleAction {
    /// Write (and enable) a timer per schedule, replacing an earlier install.
    Install,
    /// Remove what install wrote.
    Uninstall,
    /// Each schedule's next time, command and timer.
    Status,
}

pub fn run(g: &Globals, a: ScheduleArgs) -> Result<i32> {
    let site = g.site()?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let o = ScheduleOptions {
        cron: a.cron,
        unit_dir: a.unit_dir,
        cron_file: a.cron_file,
        dry_run: a.dry_run,
    };
    let report = match a.action {
        ScheduleAction::Status => {
            let s = status(&site.config, &exe, &o)?;
            if g.json {
                g.print_json(&s)?;
                return Ok(0);
            }
            for s in &s {
                g.say(format!(
                    "{:<20} {:<14} next {}  {}  {}",
                    s.name,
                    s.cron,
                    s.next
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into()),
                    if s.installed {
                        "installed"
                    } else {
                        "not installed"
                    },
                    s.timer.clone().unwrap_or_default()
                ));
                g.say(format!("{:<20} {}", "", s.command.join(" ")));
            }
            return Ok(0);
        }
        ScheduleAction::Install => install(&site.config, &exe, &o)?,
        ScheduleAction::Uninstall => uninstall(&site.config, &o)?,
    };
    if g.json {
        g.print_json(&report)?;
        return Ok(0);
    }
    let (wrote, removed) = if a.dry_run {
        ("would write", "would remove")
    } else {
        ("wrote", "removed")
    };
    for (p, text) in &report.written {
        g.say(format!("{wrote} {}", p.display()));
        if a.dry_run {
            for l in text.lines() {
                g.say(format!("    {l}"));
            }
        }
    }
    for p in &report.removed {
        g.say(format!("{removed} {}", p.display()));
    }
    for n in &report.notes {
        g.say(n);
    }
    Ok(0)
}

#[derive(Args)]
pub struct DaemonArgs {
    /// Run every schedule once at start, then follow the schedules.
    #[arg(long)]
    run_now: bool,
    /// How often limits are evaluated and alerts sent.
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    status_every: std::time::Duration,
}

pub fn daemon(g: &Globals, a: DaemonArgs) -> Result<i32> {
    let site = g.site()?;
    if site.config.schedules.is_empty() {
        anyhow::bail!("the config has no [[schedules]]: nothing for the daemon to run");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot handle signals")?;
    }
    let opts = DaemonOptions {
        run_now: a.run_now,
        stop,
        status_every: a.status_every,
    };
    let mut log = |v: &serde_json::Value| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    // One unlock for every job the daemon runs.
    run_daemon(&site.clone().keep_open(), &opts, &mut log)?;
    Ok(0)
}
