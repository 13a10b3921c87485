//! Jobs: the long operations the service runs for its callers (and its schedules), each on a
//! thread of its own, so that no request waits for one.
//!
//! A job names the components it writes. It starts when no job submitted before it that is
//! still queued or running writes one of them, so two jobs of one component run in the order
//! they were asked for, never together (and never trip over each other's component lock),
//! while jobs of other components, and read-only ones, run beside them.
//!
//! Cancelling a queued job drops it. A running job stops only where that is safe: a backup
//! at its next entry (what it stored stays durable and unreferenced, the next run reuses it);
//! a rollback only while it takes its pre-rollback snapshot. Verify, recover and drill jobs
//! cannot be stopped once running: they finish on their own.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ops::progress::{Cancel, Progress, ProgressSink};
use crate::site::Site;

/// Finished jobs kept for `GET /v1/jobs` (the audit log keeps everything).
const KEEP_FINISHED: usize = 500;

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `cairn run`: a snapshot of components.
    Backup,
    /// `cairn check`.
    Verify,
    /// `cairn rollback`.
    Rollback,
    /// `cairn recover`.
    Recover,
    /// `cairn drill`.
    Drill,
    /// A schedule's action (check, prune, status) run by the service.
    Schedule,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for an earlier job of one of its components.
    Queued,
    /// Running.
    Running,
    /// Finished, and everything it did succeeded.
    Succeeded,
    /// Finished with an error (see `errors`).
    Failed,
    /// Cancelled before it started, or stopped early at a safe point.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// How far a job is.
#[derive(Clone, Copy, Debug, Default, Serialize, ToSchema)]
pub struct JobProgress {
    /// Files (or packs, for a verify) done.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Bytes expected, when known (an estimate).
    pub total_bytes: u64,
}

/// A job as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// The components it writes (empty: none, e.g. a verify).
    pub components: Vec<String>,
    /// What was asked for.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// Who asked (a token's name, or `schedule:NAME`).
    pub requested_by: String,
    /// When it was asked for.
    pub created: DateTime<Utc>,
    /// When it started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// How far it is.
    pub progress: JobProgress,
    /// The operation's report (what the CLI prints with `--json`), once it ended.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// What went wrong.
    pub errors: Vec<String>,
    /// Whether `DELETE /v1/jobs/ID` can stop it now.
    pub cancellable: bool,
}

/// The audit line of an ended job: who asked for what through the service (the operation
/// itself writes its own line too).
fn record(site: &Site, j: &Job) {
    let mut e = crate::site::audit::Entry::new("job", &site.host());
    e.components = j.components.clone();
    e.result = match j.state {
        JobState::Succeeded => "ok",
        JobState::Cancelled => "cancelled",
        _ => "failed",
    }
    .into();
    e.error = j.errors.first().cloned();
    e.duration_s = match (j.started, j.finished) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    e.detail = serde_json::json!({
        "job": j.id, "kind": j.kind, "requested_by": j.requested_by, "request": j.request,
    });
    if let Err(err) = crate::site::audit::append(&site.config.state_dir, &e) {
        eprintln!("cairn: warning: job {} could not be logged: {err}", j.id);
    }
}

/// What a job's work returns: its report, and what failed in it (empty: success).
pub type Outcome = (serde_json::Value, Vec<String>);

/// A job's work: runs on its own thread with the site, a stop request and a progress sink.
pub type Work = Box<dyn FnOnce(&Site, &Cancel, &ProgressSink) -> Outcome + Send>;

/// Counts a job's progress.
#[derive(Default)]
struct Counter {
    files: AtomicU64,
    bytes: AtomicU64,
    total: AtomicU64,
}

impl Progress for Counter {
    fn total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }
    fn advance(&self, items: u64, bytes: u64) {
        self.files.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

struct Entry {
    job: Job,
    /// While queued.
    work: Option<Work>,
    stop: Arc<AtomicBool>,
    counter: Arc<Counter>,
    /// Whether running work looks at `stop`.
    stoppable: bool,
}

impl Entry {
    fn view(&self) -> Job {
        let mut j = self.job.clone();
        j.progress = JobProgress {
            files: self.counter.files.load(Ordering::Relaxed),
            bytes: self.counter.bytes.load(Ordering::Relaxed),
            total_bytes: self.counter.total.load(Ordering::Relaxed),
        };
        j.cancellable = match j.state {
            JobState::Queued => true,
            JobState::Running => self.stoppable && !self.stop.load(Ordering::Relaxed),
            _ => false,
        };
        j
    }
}

#[derive(Default)]
struct Inner {
    /// Oldest first.
    jobs: VecDeque<Entry>,
    next: u64,
    stopping: bool,
}

/// Why a job was not accepted or not cancelled.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such job.
    Unknown,
    /// It has ended already.
    Ended(JobState),
    /// It is running and cannot be stopped safely.
    NotStoppable(JobKind),
    /// The service is shutting down.
    Stopping,
}

/// The service's jobs.
pub struct Jobs {
    site: Site,
    /// Called on a job's thread after it ended (the service forgets its cached status).
    on_end: Box<dyn Fn() + Send + Sync>,
    inner: Mutex<Inner>,
    changed: Condvar,
    /// Used for ids: a restart never reuses one.
    epoch: String,
}

/// A new job, as handed to [`Jobs::submit`].
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// The components it writes.
    pub components: Vec<String>,
    /// What was asked for.
    pub request: serde_json::Value,
    /// Who asked.
    pub requested_by: String,
    /// Whether the work stops early when asked (it looks at its [`Cancel`]).
    pub stoppable: bool,
    /// The work.
    pub work: Work,
}

impl Jobs {
    /// No jobs yet, for `site`; `on_end` is called after each job ends.
    pub fn new(site: Site, on_end: impl Fn() + Send + Sync + 'static) -> Arc<Jobs> {
        let mut r = [0u8; 3];
        crate::crypto::random_bytes(&mut r);
        Arc::new(Jobs {
            site,
            on_end: Box::new(on_end),
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            epoch: hex::encode(r),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job and starts it if nothing earlier holds its components; returns it.
    pub fn submit(self: &Arc<Self>, n: NewJob) -> Result<Job, Refusal> {
        let mut g = self.lock();
        if g.stopping {
            return Err(Refusal::Stopping);
        }
        g.next += 1;
        let id = format!("{}-{}", self.epoch, g.next);
        let entry = Entry {
            job: Job {
                id: id.clone(),
                kind: n.kind,
                state: JobState::Queued,
                components: n.components,
                request: n.request,
                requested_by: n.requested_by,
                created: Utc::now(),
                started: None,
                finished: None,
                progress: JobProgress::default(),
                result: None,
                errors: Vec::new(),
                cancellable: true,
            },
            work: Some(n.work),
            stop: Arc::new(AtomicBool::new(false)),
            counter: Arc::new(Counter::default()),
            stoppable: n.stoppable,
        };
        g.jobs.push_back(entry);
        self.dispatch(&mut g);
        let e = g.jobs.iter().find(|e| e.job.id == id).expect("just added");
        Ok(e.view())
    }

    /// Starts every queued job that no earlier queued or running job blocks.
    fn dispatch(self: &Arc<Self>, g: &mut Inner) {
        let mut held: HashSet<String> = HashSet::new();
        for e in g.jobs.iter_mut() {
            match e.job.state {
                JobState::Running => held.extend(e.job.components.iter().cloned()),
                JobState::Queued => {
                    let free = e.job.components.iter().all(|c| !held.contains(c));
                    held.extend(e.job.components.iter().cloned());
                    if free && let Some(work) = e.work.take() {
                        e.job.state = JobState::Running;
                        e.job.started = Some(Utc::now());
                        if let Err(err) =
                            self.start(e.job.id.clone(), work, e.stop.clone(), e.counter.clone())
                        {
                            e.job.state = JobState::Failed;
                            e.job.finished = Some(Utc::now());
                            e.job.errors = vec![format!("cannot start the job's thread: {err}")];
                        }
                    }
                }
                _ => {}
            }
        }
        // Forget the oldest finished jobs beyond the limit.
        let finished = g.jobs.iter().filter(|e| e.job.state.is_final()).count();
        let mut drop = finished.saturating_sub(KEEP_FINISHED);
        g.jobs.retain(|e| {
            if drop > 0 && e.job.state.is_final() {
                drop -= 1;
                false
            } else {
                true
            }
        });
    }

    fn start(
        self: &Arc<Self>,
        id: String,
        work: Work,
        stop: Arc<AtomicBool>,
        c: Arc<Counter>,
    ) -> std::io::Result<()> {
        let jobs = self.clone();
        let name = format!("job-{id}");
        std::thread::Builder::new().name(name).spawn(move || {
            let cancel = Cancel::new(stop.clone());
            let sink = ProgressSink::new(c);
            let site = jobs.site.clone();
            let (result, errors) =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(&site, &cancel, &sink)
                })) {
                    Ok(r) => r,
                    Err(_) => (
                        serde_json::Value::Null,
                        vec![
                        "the job failed unexpectedly (an internal error); see the service's log"
                            .into(),
                    ],
                    ),
                };
            (jobs.on_end)();
            let mut g = jobs.lock();
            if let Some(e) = g.jobs.iter_mut().find(|e| e.job.id == id) {
                // Cancelled only when it stopped because it was asked to: any other error
                // after a stop request is still a failure.
                let asked = stop.load(Ordering::Relaxed);
                let why = crate::error::Error::Cancelled.to_string();
                e.job.state = if errors.is_empty() {
                    JobState::Succeeded
                } else if asked && errors.iter().all(|x| x.contains(&why)) {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                e.job.finished = Some(Utc::now());
                e.job.result = Some(result);
                e.job.errors = errors;
                record(&jobs.site, &e.job);
            }
            jobs.dispatch(&mut g);
            jobs.changed.notify_all();
        })?;
        Ok(())
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock()
            .jobs
            .iter()
            .find(|e| e.job.id == id)
            .map(Entry::view)
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<Job> {
        self.lock().jobs.iter().rev().map(Entry::view).collect()
    }

    /// How many jobs run now.
    pub fn running(&self) -> usize {
        self.lock()
            .jobs
            .iter()
            .filter(|e| e.job.state == JobState::Running)
            .count()
    }

    /// Cancels job `id`: a queued one at once, a running one at its next safe point.
    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<Job, Refusal> {
        let mut g = self.lock();
        let e = g
            .jobs
            .iter_mut()
            .find(|e| e.job.id == id)
            .ok_or(Refusal::Unknown)?;
        match e.job.state {
            JobState::Queued => {
                e.work = None;
                e.job.state = JobState::Cancelled;
                e.job.finished = Some(Utc::now());
                e.job.errors = vec!["cancelled before it started".into()];
            }
            JobState::Running if e.stoppable => e.stop.store(true, Ordering::Relaxed),
            JobState::Running => return Err(Refusal::NotStoppable(e.job.kind)),
            s => return Err(Refusal::Ended(s)),
        }
        let view = e.view();
        self.dispatch(&mut g);
        self.changed.notify_all();
        Ok(view)
    }

    /// Waits until job `id` has ended or `timeout` passed; returns it.
    pub fn wait(&self, id: &str, timeout: std::time::Duration) -> Option<Job> {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            let e = g.jobs.iter().find(|e| e.job.id == id)?;
            let now = std::time::Instant::now();
            if e.job.state.is_final() || now >= deadline {
                return Some(e.view());
            }
            g = self
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Refuses new jobs, drops queued ones, asks running ones to stop where they safely
    /// can, and waits until every running job has ended.
    pub fn shut_down(&self) {
        let mut g = self.lock();
        g.stopping = true;
        for e in g.jobs.iter_mut() {
            match e.job.state {
                JobState::Queued => {
                    e.work = None;
                    e.job.state = JobState::Cancelled;
                    e.job.finished = Some(Utc::now());
                    e.job.errors = vec!["cancelled: the service stopped".into()];
                }
                JobState::Running => e.stop.store(true, Ordering::Relaxed),
                _ => {}
            }
        }
        while g.jobs.iter().any(|e| e.job.state == JobState::Running) {
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A site whose state (the jobs' audit lines) goes to a folder removed with it.
    fn site() -> (Site, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::site::config::parse(
            "state_dir = \"state\"\n[repository]\npath = \"/nonexistent\"\n[components.a]\npaths = [\"/tmp\"]\n[components.b]\npaths = [\"/tmp\"]\n",
            dir.path(),
        )
        .unwrap();
        let site = Site::new(
            config,
            Arc::new(|| anyhow::bail!("no password")),
            dir.path().to_path_buf(),
            Arc::new(|_| {}),
        );
        (site, dir)
    }

    /// A job of `comps` that records its start and end in `log` and waits for `gate`.
    fn job(
        comps: &[&str],
        name: &'static str,
        log: &Arc<Mutex<Vec<String>>>,
        gate: &Arc<AtomicBool>,
    ) -> NewJob {
        let (log, gate) = (log.clone(), gate.clone());
        NewJob {
            kind: JobKind::Backup,
            components: comps.iter().map(|s| s.to_string()).collect(),
            request: serde_json::Value::Null,
            requested_by: "test".into(),
            stoppable: true,
            work: Box::new(move |_, cancel, _| {
                log.lock().unwrap().push(format!("start {name}"));
                while !gate.load(Ordering::Relaxed) && !cancel.is_set() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                log.lock().unwrap().push(format!("end {name}"));
                if cancel.is_set() {
                    let why = crate::error::Error::Cancelled.to_string();
                    (serde_json::Value::Null, vec![format!("{name}: {why}")])
                } else {
                    (serde_json::json!({ "ok": true }), Vec::new())
                }
            }),
        }
    }

    #[test]
    fn jobs_of_one_component_queue_and_others_run_beside_them() {
        let (site, dir) = site();
        let jobs = Jobs::new(site, || {});
        let log = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(AtomicBool::new(false));
        let a1 = jobs.submit(job(&["a"], "a1", &log, &gate)).unwrap();
        let a2 = jobs.submit(job(&["a"], "a2", &log, &gate)).unwrap();
        let b = jobs.submit(job(&["b"], "b", &log, &gate)).unwrap();
        assert_eq!(a1.state, JobState::Running);
        assert_eq!(a2.state, JobState::Queued);
        assert_eq!(b.state, JobState::Running);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!log.lock().unwrap().contains(&"start a2".to_string()));
        gate.store(true, Ordering::Relaxed);
        for j in [&a1, &a2, &b] {
            let done = jobs.wait(&j.id, Duration::from_secs(10)).unwrap();
            assert_eq!(done.state, JobState::Succeeded, "{done:?}");
        }
        let log = log.lock().unwrap();
        let at = |s: &str| log.iter().position(|l| l == s).unwrap();
        assert!(at("end a1") < at("start a2"), "{log:?}");
        let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
        assert_eq!(
            audit.lines().filter(|l| l.contains("\"job\"")).count(),
            3,
            "{audit}"
        );
    }

    #[test]
    fn cancelling_drops_a_queued_job_and_stops_a_running_one() {
        let ended = Arc::new(AtomicU64::new(0));
        let count = ended.clone();
        let (site, dir) = site();
        let jobs = Jobs::new(site, move || {
            count.fetch_add(1, Ordering::Relaxed);
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(AtomicBool::new(false));
        let a1 = jobs.submit(job(&["a"], "a1", &log, &gate)).unwrap();
        let a2 = jobs.submit(job(&["a"], "a2", &log, &gate)).unwrap();
        assert_eq!(jobs.cancel(&a2.id).unwrap().state, JobState::Cancelled);
        assert!(jobs.cancel(&a1.id).unwrap().state == JobState::Running);
        let done = jobs.wait(&a1.id, Duration::from_secs(10)).unwrap();
        assert_eq!(done.state, JobState::Cancelled);
        assert_eq!(
            jobs.cancel(&a1.id).unwrap_err(),
            Refusal::Ended(JobState::Cancelled)
        );
        assert_eq!(jobs.cancel("nope").unwrap_err(), Refusal::Unknown);
        assert!(!log.lock().unwrap().contains(&"start a2".to_string()));
        assert_eq!(ended.load(Ordering::Relaxed), 1, "the queued job never ran");
        let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap();
        assert!(audit.contains("\"cancelled\""), "{audit}");
        jobs.shut_down();
        assert_eq!(
            jobs.submit(job(&["a"], "a3", &log, &gate)).unwrap_err(),
            Refusal::Stopping
        );
    }
}
