//! The config file as written: serde types that refuse unknown keys and keep the spans of
//! the tables that [`resolve`](super::resolve) refers to in its messages.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A span of time written `90s`, `15m`, `25h` or `7d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::ops::parse_duration(&text)
            .map(Span)
            .map_err(de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&span_text(self.0))
    }
}

/// `25h`, `7d`, `90s`: the largest unit that divides the span.
pub fn span_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Shell commands: one string or a list of them, run in order with `sh -c`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Commands(pub Vec<String>);

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Commands;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a shell command (a string) or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Commands, E> {
                Ok(Commands(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Commands, A::Error> {
                let mut all = Vec::new();
                while let Some(c) = a.next_element::<String>()? {
                    all.push(c);
                }
                Ok(Commands(all))
            }
        }
        d.deserialize_any(V)
    }
}

/// A table of named entries kept in file order (`[components.db]`, `[components.etc]`): the
/// order is the default recovery order, so it must survive parsing.
#[derive(Clone, Debug)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of named tables")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Named<T>, A::Error> {
                let mut all = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, T>()? {
                    all.push((k, v));
                }
                Ok(Named(all))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `[repository]` and each `[offsite.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoSpec {
    /// The repository's path (relative: beside the config file).
    pub path: PathBuf,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// A shell command that prints the password.
    pub password_command: Option<String>,
    /// The local cache directory (default: `~/.cache/cairn`).
    pub cache_dir: Option<PathBuf>,
    /// For an offsite: copy only these components (default: all).
    #[serde(default)]
    pub components: Vec<Spanned<String>>,
}

/// One `[components.NAME]` table, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// Files and directories (a paths component).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Patterns left out of a paths component (as `snapshot --exclude`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Directories holding one of these files are left out (as `--exclude-if-present`).
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Stay on the filesystems of the paths.
    #[serde(default)]
    pub one_file_system: bool,
    /// A shell command whose standard output is the snapshot (a command component).
    pub command: Option<String>,
    /// A shell command that reads a command component's snapshot on its standard input.
    pub restore_command: Option<String>,
    /// The file name of a command component's stream in the snapshot.
    pub filename: Option<String>,
    /// An SQLite database file, copied through SQLite's online backup (an sqlite component).
    pub sqlite: Option<PathBuf>,
    /// Run before the snapshot or restore; a failure fails the component.
    #[serde(default)]
    pub before: Commands,
    /// Run after a successful snapshot or restore.
    #[serde(default)]
    pub after: Commands,
    /// Run when the component fails.
    #[serde(default)]
    pub on_failure: Commands,
    /// Where rollback and recover put the data: a directory for a paths component (the
    /// snapshot's absolute paths go below it; default `/`, in place), the database file for
    /// an sqlite component (default: the file itself).
    pub restore_target: Option<PathBuf>,
    /// A command a drill runs against the restored copy; it must succeed.
    pub probe: Option<String>,
    /// How a drill restores a command component.
    pub drill: Option<DrillSpec>,
    /// Freshness limit for this component (default: `[alerts] max_age`).
    pub max_age: Option<Span>,
    /// Size-change limit in percent for this component (default: `[alerts] size_change`).
    pub size_change: Option<f64>,
    /// healthchecks.io-style ping URLs for this component's runs.
    pub ping: Option<PingSpec>,
}

/// `[components.NAME.drill]`: how a drill of a command component restores into a scratch
/// target (a scratch database), and prepares and removes that target.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// Prepares the scratch target (e.g. `createdb scratch`).
    #[serde(default)]
    pub before: Commands,
    /// Reads the stream on standard input into the scratch target.
    pub restore_command: Option<String>,
    /// Removes the scratch target, whatever the drill's result (e.g. `dropdb scratch`).
    #[serde(default)]
    pub after: Commands,
}

/// `[alerts.ping]` or a component's `ping`: URLs called when a run starts, succeeds, fails.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PingSpec {
    /// Called when a run starts.
    pub start: Option<String>,
    /// Called when it succeeds.
    pub success: Option<String>,
    /// Called when it fails.
    pub fail: Option<String>,
}

/// `[alerts]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// URLs that receive a JSON POST for every failure and every limit crossed.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// The longest one notification may take, retries included.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
    /// A component whose newest snapshot is older than this is stale.
    #[serde(default = "default_max_age")]
    pub max_age: Span,
    /// A snapshot whose size differs from the median of the previous ones by more than this
    /// many percent is an anomaly.
    #[serde(default = "default_size_change")]
    pub size_change: f64,
    /// How many earlier snapshots the median is taken over.
    #[serde(default = "default_size_window")]
    pub size_window: usize,
    /// The repository's filesystem fuller than this many percent is an alert.
    #[serde(default = "default_disk_used")]
    pub disk_used: f64,
    /// A component whose last successful drill is older than this is an alert.
    #[serde(default = "default_drill_max_age")]
    pub drill_max_age: Span,
    /// healthchecks.io-style ping URLs for every run.
    pub ping: Option<PingSpec>,
}

fn default_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_max_age() -> Span {
    Span(Duration::from_secs(25 * 3600))
}
fn default_size_change() -> f64 {
    50.0
}
fn default_size_window() -> usize {
    7
}
fn default_disk_used() -> f64 {
    90.0
}
fn default_drill_max_age() -> Span {
    Span(Duration::from_secs(92 * 86400))
}

impl Default for AlertSpec {
    fn default() -> Self {
        AlertSpec {
            webhooks: Vec::new(),
            timeout: default_timeout(),
            max_age: default_max_age(),
            size_change: default_size_change(),
            size_window: default_size_window(),
            disk_used: default_disk_used(),
            drill_max_age: default_drill_max_age(),
            ping: None,
        }
    }
}

/// What a schedule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `cairn run`.
    #[default]
    Run,
    /// `cairn check --read-data --max-age … --read-data-subset …`.
    Check,
    /// `cairn prune`.
    Prune,
    /// `cairn drill`.
    Drill,
    /// `cairn status --notify`: the limits judged and alerts sent (stale components, overdue
    /// drills) where no daemon runs.
    Status,
}

impl Action {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::Check => "check",
            Action::Prune => "prune",
            Action::Drill => "drill",
            Action::Status => "status",
        }
    }
}

/// One `[[schedules]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unit name (default: from the action and the profile).
    pub name: Option<String>,
    /// Five-field cron expression, in local time.
    pub cron: String,
    /// What to do (default `run`).
    #[serde(default)]
    pub action: Action,
    /// A profile to run or drill.
    pub profile: Option<String>,
    /// Components to run or drill (instead of a profile).
    #[serde(default)]
    pub components: Vec<String>,
    /// The kind of snapshot a run takes (default `scheduled`).
    pub kind: Option<String>,
    /// For `check`: the share of the packs read per run (default `4%`).
    pub read_data_subset: Option<String>,
    /// For `check`: packs proven within this span are not read again (default `30d`).
    pub max_age: Option<Span>,
    /// For `check`: authenticate blobs without decompressing and re-hashing them.
    pub authenticate_only: Option<bool>,
}

/// What a bearer token may do on `cairn serve`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List, status, versions, jobs, metrics.
    #[default]
    Read,
    /// Also backup, verify, rollback, recover, drill and cancelling jobs.
    Operator,
}

/// One `[[server.tokens]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who uses it (in the audit log).
    pub name: String,
    /// The token itself (prefer `token_file`: a config is often readable by more people).
    pub token: Option<String>,
    /// A file whose first line is the token.
    pub token_file: Option<PathBuf>,
    /// `read` (default) or `operator`.
    #[serde(default)]
    pub role: Role,
}

/// Never prints the token.
impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("role", &self.role)
            .finish()
    }
}

/// `[server]`: the HTTP service of `cairn serve`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Address and port (default `127.0.0.1:8010`).
    pub listen: Option<String>,
    /// Bearer tokens; every endpoint but `/healthz` needs one.
    #[serde(default)]
    pub tokens: Vec<Spanned<TokenSpec>>,
    /// PEM certificate chain: with `tls_key`, the service speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
}

/// The file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// The repository.
    pub repository: RepoSpec,
    /// Repositories every run copies to.
    #[serde(default)]
    pub offsite: Named<Spanned<RepoSpec>>,
    /// Where the audit log, the state file and the locks are kept.
    pub state_dir: Option<PathBuf>,
    /// Where drills restore (default: the system's temporary directory).
    pub drill_dir: Option<PathBuf>,
    /// Host name recorded in snapshots (default: this host's).
    pub host: Option<String>,
    /// The components, in recovery order unless `recovery_order` says otherwise.
    #[serde(default)]
    pub components: Named<Spanned<ComponentSpec>>,
    /// Named lists of components.
    #[serde(default)]
    pub profiles: Named<Spanned<Vec<String>>>,
    /// Kinds of snapshot and their retention (merged over the defaults).
    #[serde(default)]
    pub kinds: Named<Spanned<toml::Table>>,
    /// When to run what.
    #[serde(default)]
    pub schedules: Vec<Spanned<ScheduleSpec>>,
    /// Limits and notifications.
    #[serde(default)]
    pub alerts: AlertSpec,
    /// Components restored first by `recover` (the others follow in file order).
    pub recovery_order: Option<Spanned<Vec<String>>>,
    /// The HTTP service.
    #[serde(default)]
    pub server: ServerSpec,
}
