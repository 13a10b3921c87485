//! `cairn.toml`: the repository, the offsite copies, the components, profiles, kinds of
//! snapshot with their retention, schedules and alerts of one site.
//!
//! Read in two steps. serde reads the file into the `*Spec` types, which refuse unknown keys
//! (a typo must never silently turn a setting off) and carry the source spans of the tables
//! that later checks refer to; [`resolve`] then checks what the types cannot (one source per
//! component, names that exist, cron expressions) and turns relative paths into paths beside
//! the file. Every error names the line, the key and the fix. Checks that run programs
//! (`cairn config check`) are in [`super::hooks::check_commands`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::cron::Cron;
use crate::error::{Error, Result};
use crate::ops::forget::{KindPolicy, Policy};

mod spec;
pub use spec::*;

/// Where a password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of a file.
    File(PathBuf),
    /// The first line a shell command prints.
    Command(String),
    /// Not in the config: the caller's own sources (environment, prompt).
    Caller,
}

/// A repository as the config names it.
#[derive(Clone, Debug)]
pub struct RepoRef {
    /// Its path.
    pub path: PathBuf,
    /// Its password.
    pub password: PasswordSource,
    /// Its cache directory, if the config names one.
    pub cache_dir: Option<PathBuf>,
}

/// An offsite repository.
#[derive(Clone, Debug)]
pub struct Offsite {
    /// Its name in the config.
    pub name: String,
    /// Where it is.
    pub repo: RepoRef,
    /// The components copied there (all when empty).
    pub components: Vec<String>,
}

/// What a component stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Files and directories.
    Paths {
        /// Absolute paths.
        paths: Vec<PathBuf>,
        /// Exclude patterns.
        exclude: Vec<String>,
        /// Marker file names.
        exclude_if_present: Vec<String>,
        /// Stay on one filesystem.
        one_file_system: bool,
    },
    /// A command's standard output.
    Command {
        /// The command (`sh -c`).
        command: String,
        /// The command that takes the stream back.
        restore_command: Option<String>,
        /// The stream's file name in the snapshot.
        filename: String,
    },
    /// An SQLite database.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

impl Source {
    /// `paths`, `command` or `sqlite`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Source::Paths { .. } => "paths",
            Source::Command { .. } => "command",
            Source::Sqlite { .. } => "sqlite",
        }
    }
}

/// A component, checked.
#[derive(Clone, Debug)]
pub struct Component {
    /// Its name (the `component=NAME` tag of its snapshots).
    pub name: String,
    /// The line of its table in the config file.
    pub line: usize,
    /// What it stores.
    pub source: Source,
    /// Hooks.
    pub before: Commands,
    /// Hooks.
    pub after: Commands,
    /// Hooks.
    pub on_failure: Commands,
    /// Where rollback and recover restore.
    pub restore_target: Option<PathBuf>,
    /// Drill probe.
    pub probe: Option<String>,
    /// Drill restore of a command component.
    pub drill: Option<DrillSpec>,
    /// Freshness limit.
    pub max_age: Duration,
    /// Size-change limit, percent.
    pub size_change: f64,
    /// Ping URLs of this component.
    pub ping: Option<PingSpec>,
}

/// A schedule, checked.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Unit name (`cairn-NAME.timer`).
    pub name: String,
    /// When.
    pub cron: Cron,
    /// What.
    pub action: Action,
    /// The profile or components given (empty: all).
    pub targets: Vec<String>,
    /// The kind a run takes.
    pub kind: String,
    /// For `check`.
    pub read_data_subset: String,
    /// For `check`.
    pub max_age: Duration,
    /// For `check`: prove seals only (`--authenticate-only`).
    pub authenticate_only: bool,
}

/// Where a server token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Written in the config.
    Inline(String),
    /// The first line of a file, read when the server starts.
    File(PathBuf),
}

/// Never prints an inline token.
impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// A server token, checked.
#[derive(Clone, Debug)]
pub struct Token {
    /// Its name.
    pub name: String,
    /// The secret.
    pub source: TokenSource,
    /// What it may do.
    pub role: Role,
}

/// The address `cairn serve` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8010";

/// `[server]`, checked.
#[derive(Clone, Debug, Default)]
pub struct Server {
    /// The address to listen on.
    pub listen: Option<std::net::SocketAddr>,
    /// The tokens.
    pub tokens: Vec<Token>,
    /// Certificate chain and key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A checked config file.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from (none for a config built in memory).
    pub file: Option<PathBuf>,
    /// The repository.
    pub repository: RepoRef,
    /// The offsite repositories.
    pub offsites: Vec<Offsite>,
    /// State directory (audit log, state file, locks).
    pub state_dir: PathBuf,
    /// Drill directory.
    pub drill_dir: PathBuf,
    /// Host name for snapshots.
    pub host: Option<String>,
    /// Components in file order.
    pub components: Vec<Component>,
    /// Profiles.
    pub profiles: Vec<(String, Vec<String>)>,
    /// Kinds and their policies (each selects the tag `kind=NAME`).
    pub kinds: Vec<(String, Policy)>,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Alerts.
    pub alerts: AlertSpec,
    /// Every component once, in recovery order.
    pub recovery_order: Vec<String>,
    /// The HTTP service.
    pub server: Server,
}

/// The kinds every config has unless it redefines them: the retention the seed scripts
/// used (pre-deploy 7 days, scheduled 30, manual 90, emergency 180), and the snapshots
/// rollback takes first.
pub const DEFAULT_KINDS: [(&str, &str); 5] = [
    ("pre-deploy", "7d"),
    ("scheduled", "30d"),
    ("manual", "90d"),
    ("emergency", "180d"),
    ("pre-rollback", "30d"),
];

/// A commented config covering every key (`cairn config template`).
pub const TEMPLATE: &str = include_str!("template.toml");

/// The kind of a run started by hand.
pub const MANUAL: &str = "manual";
/// The kind of a scheduled run.
pub const SCHEDULED: &str = "scheduled";
/// The kind of the snapshot a rollback takes first.
pub const PRE_ROLLBACK: &str = "pre-rollback";

/// The tag that marks a component's snapshots.
pub fn component_tag(name: &str) -> String {
    format!("component={name}")
}

/// The tag that marks a kind's snapshots.
pub fn kind_tag(kind: &str) -> String {
    format!("kind={kind}")
}

/// The config file to read: `explicit` (from `--config` or `CAIRN_CONFIG`), else
/// `$XDG_CONFIG_HOME/cairn/cairn.toml` (`~/.config/…`), else `/etc/cairn/cairn.toml` for
/// root; `None` when there is none.
pub fn locate(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        if !p.exists() {
            return Err(Error::Invalid(format!(
                "config file {} does not exist (print a commented one with `cairn config template`)",
                p.display()
            )));
        }
        return Ok(Some(p.to_path_buf()));
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(d) = xdg {
        let p = d.join("cairn/cairn.toml");
        if p.exists() {
            return Ok(Some(p));
        }
    }
    let etc = PathBuf::from("/etc/cairn/cairn.toml");
    if nix::unistd::geteuid().is_root() && etc.exists() {
        return Ok(Some(etc));
    }
    Ok(None)
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    let mut c =
        parse(&text, &base).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    c.file = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    Ok(c)
}

/// Parses and checks config text; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> std::result::Result<Config, String> {
    let spec: ConfigSpec =
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    resolve(spec, text, base)
}

/// The line (1-based) of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A component, profile, kind or schedule name: what can stand in a tag and a unit name.
fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?}: use letters, digits, '-', '_' and '.' (at most 64, not starting with '.')"
        ))
    }
}

/// `p` with its folders' symlinks resolved, when it exists (the last component is kept as
/// it is: a symlink named in the config is stored as a symlink). Snapshots then record real
/// folders, so a restore in place never replaces a symlinked folder on the way (`/srv` →
/// `/data/srv`) by a directory.
fn real(p: &Path) -> PathBuf {
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| p.to_path_buf()),
        _ => p.to_path_buf(),
    }
}

struct Resolver<'a> {
    text: &'a str,
    base: &'a Path,
}

impl Resolver<'_> {
    fn at(&self, span: std::ops::Range<usize>, key: &str, msg: impl std::fmt::Display) -> String {
        format!("line {}: {key}: {msg}", line_of(self.text, span.start))
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn server(&self, s: &ServerSpec) -> std::result::Result<Server, String> {
        let listen = match &s.listen {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| {
                format!(
                    "server.listen = {a:?}: give an address and port, e.g. \"{DEFAULT_LISTEN}\""
                )
            })?),
        };
        let mut tokens: Vec<Token> = Vec::new();
        for t in &s.tokens {
            let key = "server.tokens";
            let spec = t.get_ref();
            check_name("token", &spec.name).map_err(|m| self.at(t.span(), key, m))?;
            if tokens.iter().any(|o| o.name == spec.name) {
                return Err(self.at(
                    t.span(),
                    key,
                    format!("a second token named {:?}", spec.name),
                ));
            }
            let source = match (&spec.token, &spec.token_file) {
                (Some(tok), None) => {
                    if tok.len() < 16 {
                        return Err(self.at(
                            t.span(),
                            key,
                            format!("token {:?} is shorter than 16 characters: use a long random one (e.g. `openssl rand -hex 32`)", spec.name),
                        ));
                    }
                    TokenSource::Inline(tok.clone())
                }
                (None, Some(f)) => TokenSource::File(self.path(f)),
                _ => {
                    return Err(self.at(
                        t.span(),
                        key,
                        format!(
                            "token {:?}: give token or token_file (one of them)",
                            spec.name
                        ),
                    ));
                }
            };
            tokens.push(Token {
                name: spec.name.clone(),
                source,
                role: spec.role,
            });
        }
        let tls = match (&s.tls_cert, &s.tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((self.path(c), self.path(k))),
            _ => return Err("server: give tls_cert and tls_key together".into()),
        };
        Ok(Server {
            listen,
            tokens,
            tls,
        })
    }

    fn repo(&self, r: &RepoSpec, key: &str, line: usize) -> std::result::Result<RepoRef, String> {
        let password = match (&r.password_file, &r.password_command) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "line {line}: {key}: password_file and password_command exclude each other: keep one"
                ));
            }
            (Some(f), None) => PasswordSource::File(self.path(f)),
            (None, Some(c)) => PasswordSource::Command(c.clone()),
            (None, None) => PasswordSource::Caller,
        };
        Ok(RepoRef {
            // A server's address (`rest:…`, `s3:…`) is not a path below the config's folder.
            path: if crate::repo::is_remote(&r.path) {
                r.path.clone()
            } else {
                self.path(&r.path)
            },
            password,
            cache_dir: r.cache_dir.as_deref().map(|p| self.path(p)),
        })
    }

    fn component(
        &self,
        name: &str,
        spec: &Spanned<ComponentSpec>,
        alerts: &AlertSpec,
    ) -> std::result::Result<Component, String> {
        let key = format!("components.{name}");
        let err = |m: String| self.at(spec.span(), &key, m);
        check_name("component", name).map_err(err)?;
        let s = spec.get_ref();
        let given = [!s.paths.is_empty(), s.command.is_some(), s.sqlite.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(err(
                "give exactly one of paths = [...], command = \"...\" or sqlite = \"FILE\"".into(),
            ));
        }
        let paths_only =
            !s.exclude.is_empty() || !s.exclude_if_present.is_empty() || s.one_file_system;
        let source = if !s.paths.is_empty() {
            Source::Paths {
                paths: s.paths.iter().map(|p| real(&self.path(p))).collect(),
                exclude: s.exclude.clone(),
                exclude_if_present: s.exclude_if_present.clone(),
                one_file_system: s.one_file_system,
            }
        } else if paths_only {
            return Err(err(
                "exclude, exclude_if_present and one_file_system apply to paths components only"
                    .into(),
            ));
        } else if let Some(command) = &s.command {
            let filename = s.filename.clone().unwrap_or_else(|| name.to_string());
            if filename.is_empty() || filename.contains('/') || filename == "." || filename == ".."
            {
                return Err(err(format!(
                    "filename {filename:?}: give a plain file name"
                )));
            }
            Source::Command {
                command: command.clone(),
                restore_command: s.restore_command.clone(),
                filename,
            }
        } else {
            let path = real(&self.path(s.sqlite.as_deref().unwrap_or(Path::new(""))));
            Source::Sqlite { path }
        };
        if s.restore_command.is_some() && !matches!(source, Source::Command { .. }) {
            return Err(err(
                "restore_command applies to command components only".into()
            ));
        }
        if s.filename.is_some() && !matches!(source, Source::Command { .. }) {
            return Err(err("filename applies to command components only".into()));
        }
        if s.drill.is_some() && !matches!(source, Source::Command { .. }) {
            return Err(err(
                "[drill] applies to command components only (paths and sqlite components are drilled into a scratch directory)".into(),
            ));
        }
        if matches!(source, Source::Command { .. }) && s.restore_target.is_some() {
            return Err(err(
                "restore_target does not apply to a command component: its restore_command says where the data goes".into(),
            ));
        }
        let size_change = s.size_change.unwrap_or(alerts.size_change);
        if size_change.is_nan() || size_change <= 0.0 {
            return Err(err(format!(
                "size_change = {size_change}: give a percentage above 0, e.g. 50"
            )));
        }
        Ok(Component {
            name: name.to_string(),
            line: line_of(self.text, spec.span().start),
            source,
            before: s.before.clone(),
            after: s.after.clone(),
            on_failure: s.on_failure.clone(),
            restore_target: s.restore_target.as_deref().map(|p| self.path(p)),
            probe: s.probe.clone(),
            drill: s.drill.clone(),
            max_age: s.max_age.unwrap_or(alerts.max_age).0,
            size_change,
            ping: s.ping.clone(),
        })
    }

    fn kind(
        &self,
        name: &str,
        table: &Spanned<toml::Table>,
    ) -> std::result::Result<Policy, String> {
        let key = format!("kinds.{name}");
        check_name("kind", name).map_err(|m| self.at(table.span(), &key, m))?;
        // The policy-file reader checks the rules; it speaks the command line's kebab-case.
        let kebab: toml::Table = table
            .get_ref()
            .iter()
            .map(|(k, v)| (k.replace('_', "-"), v.clone()))
            .collect();
        if kebab.contains_key("tag") {
            return Err(self.at(
                table.span(),
                &key,
                "a kind selects the tag kind=NAME itself: remove `tag`",
            ));
        }
        KindPolicy::try_from(kebab)
            .map(|k| k.policy)
            .map_err(|m| self.at(table.span(), &key, m.replace("keep-", "keep_")))
    }
}

/// Checks `spec` (read from `text`) and resolves its paths against `base`.
pub fn resolve(spec: ConfigSpec, text: &str, base: &Path) -> std::result::Result<Config, String> {
    let r = Resolver { text, base };
    let repository = r.repo(&spec.repository, "repository", 1)?;
    if !spec.repository.components.is_empty() {
        return Err(
            "repository: components: only an [offsite.NAME] copies a subset of components".into(),
        );
    }
    let alerts = spec.alerts.clone();
    for url in &alerts.webhooks {
        check_url("alerts.webhooks", url)?;
    }
    if !(alerts.disk_used > 0.0 && alerts.disk_used <= 100.0) {
        return Err(format!(
            "alerts.disk_used = {}: give a percentage in 1-100, e.g. 90",
            alerts.disk_used
        ));
    }
    if alerts.size_window == 0 {
        return Err("alerts.size_window = 0: give at least 1 (default 7)".into());
    }
    for p in [&alerts.ping].into_iter().flatten() {
        check_ping("alerts.ping", p)?;
    }
    let mut components = Vec::new();
    let mut seen = HashSet::new();
    for (name, c) in &spec.components.0 {
        let comp = r.component(name, c, &alerts)?;
        if let Some(p) = &comp.ping {
            check_ping(&format!("components.{name}.ping"), p)?;
        }
        seen.insert(name.clone());
        components.push(comp);
    }
    let known =
        |key: &str, span: std::ops::Range<usize>, n: &str| -> std::result::Result<(), String> {
            if seen.contains(n) {
                Ok(())
            } else {
                let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
                Err(r.at(
                    span,
                    key,
                    format!("no component {n:?} (components: {})", names.join(", ")),
                ))
            }
        };
    let mut profiles = Vec::new();
    for (name, list) in &spec.profiles.0 {
        let key = format!("profiles.{name}");
        check_name("profile", name).map_err(|m| r.at(list.span(), &key, m))?;
        if seen.contains(name) {
            return Err(r.at(
                list.span(),
                &key,
                format!("{name:?} is also a component: give the profile another name"),
            ));
        }
        if list.get_ref().is_empty() {
            return Err(r.at(
                list.span(),
                &key,
                "an empty profile: list at least one component",
            ));
        }
        for n in list.get_ref() {
            known(&key, list.span(), n)?;
        }
        profiles.push((name.clone(), list.get_ref().clone()));
    }
    let mut kinds: BTreeMap<String, Policy> = DEFAULT_KINDS
        .iter()
        .map(|(k, within)| {
            let policy = Policy {
                keep_within: within.parse().ok(),
                ..Policy::default()
            };
            (k.to_string(), policy)
        })
        .collect();
    for (name, table) in &spec.kinds.0 {
        kinds.insert(name.clone(), r.kind(name, table)?);
    }
    let mut offsites = Vec::new();
    for (name, o) in &spec.offsite.0 {
        let key = format!("offsite.{name}");
        check_name("offsite", name).map_err(|m| r.at(o.span(), &key, m))?;
        let repo = r.repo(o.get_ref(), &key, line_of(text, o.span().start))?;
        let mut list = Vec::new();
        for c in &o.get_ref().components {
            known(&format!("{key}.components"), c.span(), c.get_ref())?;
            list.push(c.get_ref().clone());
        }
        offsites.push(Offsite {
            name: name.clone(),
            repo,
            components: list,
        });
    }
    let mut recovery_order = Vec::new();
    if let Some(order) = &spec.recovery_order {
        for n in order.get_ref() {
            known("recovery_order", order.span(), n)?;
            if recovery_order.contains(n) {
                return Err(r.at(
                    order.span(),
                    "recovery_order",
                    format!("{n:?} is listed twice"),
                ));
            }
            recovery_order.push(n.clone());
        }
    }
    for c in &components {
        if !recovery_order.contains(&c.name) {
            recovery_order.push(c.name.clone());
        }
    }
    let mut schedules: Vec<Schedule> = Vec::new();
    for (i, s) in spec.schedules.iter().enumerate() {
        let key = format!("schedules[{}]", i + 1);
        let at = |m: String| r.at(s.span(), &key, m);
        let spec = s.get_ref();
        let cron: Cron = spec
            .cron
            .parse()
            .map_err(|e: String| at(format!("cron {:?}: {e}", spec.cron)))?;
        let targets = match (&spec.profile, spec.components.is_empty()) {
            (Some(_), false) => return Err(at("give a profile or components, not both".into())),
            (Some(p), true) => {
                if !profiles.iter().any(|(n, _)| n == p) {
                    return Err(at(format!("no profile {p:?}")));
                }
                vec![p.clone()]
            }
            (None, _) => {
                for n in &spec.components {
                    known(&key, s.span(), n)?;
                }
                spec.components.clone()
            }
        };
        let only_run_drill =
            spec.profile.is_some() || !spec.components.is_empty() || spec.kind.is_some();
        if only_run_drill && matches!(spec.action, Action::Check | Action::Prune | Action::Status) {
            return Err(at(format!(
                "a {} covers the whole repository: remove profile, components and kind",
                spec.action.name()
            )));
        }
        if spec.action != Action::Check
            && (spec.read_data_subset.is_some()
                || spec.max_age.is_some()
                || spec.authenticate_only.is_some())
        {
            return Err(at(
                "read_data_subset, max_age and authenticate_only apply to action = \"check\" only"
                    .into(),
            ));
        }
        let kind = spec.kind.clone().unwrap_or_else(|| SCHEDULED.to_string());
        if spec.action == Action::Run && !kinds.contains_key(&kind) {
            return Err(at(format!("kind {kind:?} has no [kinds.{kind}] retention")));
        }
        let subset = spec.read_data_subset.clone().unwrap_or_else(|| "4%".into());
        crate::ops::check::DataSubset::parse(&subset)
            .map_err(|e| at(format!("read_data_subset: {e}")))?;
        let name = match &spec.name {
            Some(n) => n.clone(),
            None => {
                let what = if targets.is_empty() {
                    "all".to_string()
                } else {
                    targets.join("-")
                };
                match spec.action {
                    Action::Check | Action::Prune | Action::Status => {
                        spec.action.name().to_string()
                    }
                    _ => format!("{}-{what}", spec.action.name()),
                }
            }
        };
        check_name("schedule", &name).map_err(at)?;
        if schedules.iter().any(|o| o.name == name) {
            return Err(at(format!(
                "a second schedule named {name:?}: give each a distinct name = \"...\""
            )));
        }
        schedules.push(Schedule {
            name,
            cron,
            action: spec.action,
            targets,
            kind,
            read_data_subset: subset,
            max_age: spec
                .max_age
                .map(|s| s.0)
                .unwrap_or(Duration::from_secs(30 * 86400)),
            authenticate_only: spec.authenticate_only.unwrap_or(false),
        });
    }
    let state_dir = match &spec.state_dir {
        Some(d) => r.path(d),
        None => default_state_dir(),
    };
    let drill_dir = match &spec.drill_dir {
        Some(d) => r.path(d),
        None => std::env::temp_dir(),
    };
    if let Some(h) = &spec.host
        && h.trim().is_empty()
    {
        return Err("host: must not be empty".into());
    }
    let server = r.server(&spec.server)?;
    Ok(Config {
        server,
        file: None,
        repository,
        offsites,
        state_dir,
        drill_dir,
        host: spec.host.clone(),
        components,
        profiles,
        kinds: kinds.into_iter().collect(),
        schedules,
        alerts,
        recovery_order,
    })
}

fn check_url(key: &str, url: &str) -> std::result::Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{key}: {url:?} is not an http:// or https:// URL"))
    }
}

fn check_ping(key: &str, p: &PingSpec) -> std::result::Result<(), String> {
    for url in [&p.start, &p.success, &p.fail].into_iter().flatten() {
        check_url(key, url)?;
    }
    Ok(())
}

/// `$XDG_STATE_HOME/cairn` (`~/.local/state/cairn`), or `/var/lib/cairn` for root.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/cairn");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cairn");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/state/cairn")
}

impl Config {
    /// The component named `name`.
    pub fn component(&self, name: &str) -> Result<&Component> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.components.iter().map(|c| c.name.as_str()).collect();
                Error::Invalid(format!(
                    "no component {name:?} in the config (components: {})",
                    names.join(", ")
                ))
            })
    }

    /// The components that `names` (profiles or components) select, each once, in file
    /// order; every component when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Component>> {
        if names.is_empty() {
            return Ok(self.components.iter().collect());
        }
        let mut wanted = HashSet::new();
        for n in names {
            match self.profiles.iter().find(|(p, _)| p == n) {
                Some((_, members)) => wanted.extend(members.iter().cloned()),
                None => {
                    self.component(n).map_err(|_| {
                        let profiles: Vec<&str> =
                            self.profiles.iter().map(|(p, _)| p.as_str()).collect();
                        let comps: Vec<&str> =
                            self.components.iter().map(|c| c.name.as_str()).collect();
                        Error::Invalid(format!(
                            "{n:?} is neither a profile ({}) nor a component ({})",
                            profiles.join(", "),
                            comps.join(", ")
                        ))
                    })?;
                    wanted.insert(n.clone());
                }
            }
        }
        Ok(self
            .components
            .iter()
            .filter(|c| wanted.contains(&c.name))
            .collect())
    }

    /// The retention of `kind`, or an error naming the fix.
    pub fn kind(&self, kind: &str) -> Result<&Policy> {
        self.kinds
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, p)| p)
            .ok_or_else(|| {
                let names: Vec<&str> = self.kinds.iter().map(|(k, _)| k.as_str()).collect();
                Error::Invalid(format!(
                    "kind {kind:?} has no retention: add a [kinds.{kind}] table (kinds: {})",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests;
