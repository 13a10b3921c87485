//! `schedule install|uninstall|status`: the config's schedules as systemd timers (or one
//! `/etc/cron.d` file), each calling this binary with `--config FILE` and the job's command.
//!
//! Every file written starts with a marker line naming the config, so `uninstall` and a
//! later `install` remove exactly what an earlier install of the same config wrote (a
//! schedule taken out of the config loses its timer) and nothing else. A cron expression
//! becomes one or more `OnCalendar=` lines (their union is cron's meaning, see
//! [`Cron::on_calendar`](super::cron::Cron::on_calendar)), each checked with
//! `systemd-analyze calendar` where it is installed. Timers are `Persistent=`, so a run
//! missed while the machine was off happens at the next boot, as anacron would.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Local};
use serde::Serialize;

use super::config::{Action, Config, Schedule, span_text};
use crate::error::{Error, Result};

const MARKER: &str = "# cairn schedule of ";

/// Where units go.
#[derive(Clone, Debug, Default)]
pub struct ScheduleOptions {
    /// Write one cron file instead of systemd units.
    pub cron: bool,
    /// The folder for systemd units (default `/etc/systemd/system` for root,
    /// `~/.config/systemd/user` otherwise).
    pub unit_dir: Option<PathBuf>,
    /// The cron file (default `/etc/cron.d/cairn`).
    pub cron_file: Option<PathBuf>,
    /// Show what would be written.
    pub dry_run: bool,
}

/// What install or uninstall did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScheduleReport {
    /// Files written (or, on a dry run, to be written), with their content.
    pub written: Vec<(PathBuf, String)>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// What was done beyond files (systemctl), or why not.
    pub notes: Vec<String>,
}

/// One schedule's status.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleStatus {
    /// Its name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// `OnCalendar=` equivalents.
    pub on_calendar: Vec<String>,
    /// What it runs.
    pub command: Vec<String>,
    /// The next time it fires, by cron's rules in local time.
    pub next: Option<DateTime<Local>>,
    /// Whether its timer unit is installed in the unit folder.
    pub installed: bool,
    /// `systemctl is-active` of its timer, where systemd runs.
    pub timer: Option<String>,
}

fn config_file(c: &Config) -> Result<&Path> {
    c.file
        .as_deref()
        .ok_or_else(|| Error::Invalid("schedules need a config file".into()))
}

fn unit_dir(o: &ScheduleOptions) -> PathBuf {
    if let Some(d) = &o.unit_dir {
        return d.clone();
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/etc/systemd/system");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".config/systemd/user")
}

fn cron_path(o: &ScheduleOptions) -> PathBuf {
    o.cron_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/cron.d/cairn"))
}

fn user_units(o: &ScheduleOptions) -> bool {
    o.unit_dir.is_none() && !nix::unistd::geteuid().is_root()
}

/// The command a schedule runs.
pub fn command(exe: &Path, config: &Path, s: &Schedule) -> Vec<String> {
    let mut v = vec![
        exe.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    match s.action {
        Action::Run => {
            v.push("run".into());
            v.extend(s.targets.iter().cloned());
            v.extend(["--kind".into(), s.kind.clone()]);
        }
        Action::Drill => {
            v.push("drill".into());
            v.extend(s.targets.iter().cloned());
        }
        Action::Check => {
            v.extend([
                "check".into(),
                "--read-data".into(),
                "--max-age".into(),
                span_text(s.max_age),
                "--read-data-subset".into(),
                s.read_data_subset.clone(),
            ]);
            if s.authenticate_only {
                v.push("--authenticate-only".into());
            }
        }
        Action::Prune => v.push("prune".into()),
        Action::Status => v.extend(["status".into(), "--notify".into()]),
    }
    v
}

/// A word as systemd and sh read it: quoted when it holds anything but plain characters.
fn quote(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+%@".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Checks an `OnCalendar=` expression with `systemd-analyze calendar` where it exists.
pub fn check_calendar(expr: &str) -> Result<()> {
    let out = match Command::new("systemd-analyze")
        .args(["calendar", expr])
        .output()
    {
        Ok(o) => o,
        Err(_) => return Ok(()),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "systemd-analyze calendar refuses {expr:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The unit files of every schedule: (file name, content).
pub fn systemd_units(c: &Config, exe: &Path) -> Result<Vec<(String, String)>> {
    let cfg = config_file(c)?;
    let mut files = Vec::new();
    for s in &c.schedules {
        let cmd: Vec<String> = command(exe, cfg, s).iter().map(|w| quote(w)).collect();
        let what = if s.targets.is_empty() {
            String::new()
        } else {
            format!(" {}", s.targets.join(" "))
        };
        let service = format!(
            "{MARKER}{cfg}\n[Unit]\nDescription=cairn {}{what} ({})\nAfter=network-online.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart={}\nNice=10\nIOSchedulingClass=idle\n",
            s.action.name(),
            s.cron,
            cmd.join(" "),
            cfg = cfg.display()
        );
        let mut timer = format!(
            "{MARKER}{cfg}\n[Unit]\nDescription=cairn schedule {} ({})\n\n[Timer]\n",
            s.name,
            s.cron,
            cfg = cfg.display()
        );
        for cal in s.cron.on_calendar() {
            check_calendar(&cal)?;
            timer.push_str(&format!("OnCalendar={cal}\n"));
        }
        timer.push_str(&format!(
            "Persistent=true\nUnit=cairn-{}.service\n\n[Install]\nWantedBy=timers.target\n",
            s.name
        ));
        files.push((format!("cairn-{}.service", s.name), service));
        files.push((format!("cairn-{}.timer", s.name), timer));
    }
    Ok(files)
}

/// The `/etc/cron.d` file of every schedule.
pub fn cron_file(c: &Config, exe: &Path) -> Result<String> {
    let cfg = config_file(c)?;
    let path = std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let mut text = format!("{MARKER}{}\nSHELL=/bin/sh\nPATH={path}\n", cfg.display());
    for s in &c.schedules {
        let cmd: Vec<String> = command(exe, cfg, s).iter().map(|w| quote(w)).collect();
        // `%` ends a cron command line unless escaped.
        let line = cmd.join(" ").replace('%', "\\%");
        text.push_str(&format!(
            "# {}\n{} root {line}\n",
            s.name,
            cron_fields(&s.cron.to_string())
        ));
    }
    Ok(text)
}

/// Cron's five fields for an expression (macros as cron.d understands them too).
fn cron_fields(expr: &str) -> String {
    expr.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Files in `dir` that an install of config `cfg` wrote.
fn ours(dir: &Path, cfg: &Path) -> Vec<PathBuf> {
    let marker = format!("{MARKER}{}", cfg.display());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("cairn")
                && std::fs::read_to_string(p)
                    .is_ok_and(|t| t.lines().next() == Some(marker.as_str()))
        })
        .collect();
    v.sort();
    v
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(user: bool, args: &[&str]) -> std::result::Result<String, String> {
    let mut c = Command::new("systemctl");
    if user {
        c.arg("--user");
    }
    match c.args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn write_file(p: &Path, text: &str) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let tmp = p.with_extension("cairn-tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, p).map_err(|e| Error::io(p, e))
}

/// Removes a unit file an install wrote, disabling its timer first where systemd runs.
fn remove_unit(old: &Path, o: &ScheduleOptions, user: bool, r: &mut ScheduleReport) -> Result<()> {
    if !o.dry_run {
        if old.extension().is_some_and(|e| e == "timer")
            && systemd_running()
            && o.unit_dir.is_none()
        {
            let name = old
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Err(e) = systemctl(user, &["disable", "--now", &name]) {
                r.notes
                    .push(format!("systemctl disable --now {name} failed: {e}"));
            }
        }
        std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
    }
    r.removed.push(old.to_path_buf());
    Ok(())
}

/// Writes the units (or the cron file) of the config's schedules, replacing what an earlier
/// install of it wrote, and enables the timers where systemd runs.
pub fn install(c: &Config, exe: &Path, o: &ScheduleOptions) -> Result<ScheduleReport> {
    let cfg = config_file(c)?.to_path_buf();
    let mut r = ScheduleReport::default();
    if o.cron {
        let path = cron_path(o);
        let text = cron_file(c, exe)?;
        let foreign = std::fs::read_to_string(&path)
            .is_ok_and(|t| !t.is_empty() && !t.starts_with(&format!("{MARKER}{}", cfg.display())));
        if foreign {
            return Err(Error::Invalid(format!(
                "{} exists and was not written for {}: give another --cron-file",
                path.display(),
                cfg.display()
            )));
        }
        if !o.dry_run {
            write_file(&path, &text)?;
        }
        r.written.push((path, text));
        return Ok(r);
    }
    let dir = unit_dir(o);
    let units = systemd_units(c, exe)?;
    let keep: Vec<PathBuf> = units.iter().map(|(n, _)| dir.join(n)).collect();
    let user = user_units(o);
    for old in ours(&dir, &cfg).into_iter().filter(|p| !keep.contains(p)) {
        remove_unit(&old, o, user, &mut r)?;
    }
    for (name, text) in units {
        let p = dir.join(&name);
        if !o.dry_run {
            write_file(&p, &text)?;
        }
        r.written.push((p, text));
    }
    if o.dry_run {
        return Ok(r);
    }
    if o.unit_dir.is_some() {
        r.notes.push(format!(
            "units written to {}; enable them with systemctl",
            dir.display()
        ));
    } else if !systemd_running() {
        r.notes.push("systemd is not running here: units written, not enabled (use `cairn daemon` or --cron)".into());
    } else {
        match systemctl(user, &["daemon-reload"]) {
            Ok(_) => {}
            Err(e) => r.notes.push(format!("systemctl daemon-reload failed: {e}")),
        }
        for s in &c.schedules {
            let timer = format!("cairn-{}.timer", s.name);
            match systemctl(user, &["enable", "--now", &timer]) {
                Ok(_) => r.notes.push(format!("enabled {timer}")),
                Err(e) => r
                    .notes
                    .push(format!("systemctl enable --now {timer} failed: {e}")),
            }
        }
    }
    Ok(r)
}

/// Removes what [`install`] wrote for this config.
pub fn uninstall(c: &Config, o: &ScheduleOptions) -> Result<ScheduleReport> {
    let cfg = config_file(c)?.to_path_buf();
    let mut r = ScheduleReport::default();
    if o.cron {
        let path = cron_path(o);
        let dir = path.parent().unwrap_or(Path::new("/"));
        if ours(dir, &cfg).contains(&path) {
            if !o.dry_run {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
            r.removed.push(path);
        }
        return Ok(r);
    }
    let dir = unit_dir(o);
    let user = user_units(o);
    for old in ours(&dir, &cfg) {
        remove_unit(&old, o, user, &mut r)?;
    }
    if !o.dry_run && systemd_running() && o.unit_dir.is_none() && !r.removed.is_empty() {
        let _ = systemctl(user, &["daemon-reload"]);
    }
    Ok(r)
}

/// Every schedule: when it fires next, what it runs, whether its timer is installed.
pub fn status(c: &Config, exe: &Path, o: &ScheduleOptions) -> Result<Vec<ScheduleStatus>> {
    let cfg = config_file(c)?;
    let dir = unit_dir(o);
    let now = Local::now();
    Ok(c.schedules
        .iter()
        .map(|s| {
            let timer = format!("cairn-{}.timer", s.name);
            let active = (systemd_running() && o.unit_dir.is_none())
                .then(|| systemctl(user_units(o), &["is-active", &timer]).unwrap_or_else(|e| e))
                .filter(|t| !t.is_empty());
            ScheduleStatus {
                name: s.name.clone(),
                cron: s.cron.to_string(),
                on_calendar: s.cron.on_calendar(),
                command: command(exe, cfg, s),
                next: s.cron.next_after(&now),
                installed: dir.join(&timer).exists(),
                timer: active,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("/usr/bin/cairn"), "/usr/bin/cairn");
        assert_eq!(quote("4%"), "4%");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
