//! `cairn serve`: the site's operations as an HTTP service (axum on tokio) — API v1 with its
//! OpenAPI document, Prometheus metrics, and a status page — and, unless told otherwise, the
//! config's schedules, in one process.
//!
//! Above [`site`](crate::site): every endpoint calls the same library function as the
//! command it mirrors (`run`, `check`, `rollback`, `recover`, `drill`, `status`), long ones as
//! [`jobs`] on threads of their own, so no request waits for a backup. The repository is
//! opened once ([`Site::keep_open`]) and shared by every job and request.
//!
//! A stop request (SIGTERM, SIGINT) closes the listener, refuses new jobs, drops queued ones,
//! stops running backups at their next entry (what they stored is durable and reused by the
//! next run), lets other running jobs finish, and returns.

pub mod api;
pub mod auth;
pub mod jobs;
pub mod metrics;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Error, Result};
use crate::site::Site;
use crate::site::config::DEFAULT_LISTEN;
use crate::site::status::StatusReport;
use api::ApiError;
use jobs::{JobKind, Jobs, NewJob};

/// The largest request body accepted (requests are small JSON objects).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The site (its repository kept open).
    pub site: Site,
    /// The jobs.
    pub jobs: Arc<Jobs>,
    /// The accepted tokens.
    pub tokens: Arc<Vec<auth::Credential>>,
    /// The last status, reused for [`api::STATUS_TTL`].
    pub status: Arc<StatusCache>,
    /// When the service started.
    pub started: chrono::DateTime<chrono::Utc>,
    /// Failed runs counted from the audit log.
    pub failures: Arc<metrics::Failures>,
}

/// One reading of the site: its status, and each component's last 30 snapshot sizes
/// (oldest first) for the page's charts.
pub struct Reading {
    /// What `status` reports.
    pub report: StatusReport,
    /// Per component, the sizes of its last 30 snapshots.
    pub sizes: std::collections::BTreeMap<String, Vec<u64>>,
}

/// The site's status, computed at most once per [`api::STATUS_TTL`] however many ask.
#[derive(Default)]
pub struct StatusCache {
    slot: tokio::sync::Mutex<Option<(Instant, Arc<Reading>)>>,
}

/// Each component's last 30 snapshot sizes, oldest first.
fn sizes(
    site: &Site,
    repo: &crate::repo::Repository,
) -> Result<std::collections::BTreeMap<String, Vec<u64>>> {
    let mut snaps = repo.snapshots()?;
    snaps.sort_by_key(|(_, s)| s.time);
    let mut out = std::collections::BTreeMap::new();
    for c in &site.config.components {
        let tag = crate::site::config::component_tag(&c.name);
        let all: Vec<u64> = snaps
            .iter()
            .filter(|(_, s)| s.tags.contains(&tag))
            .map(|(_, s)| s.summary.total_bytes)
            .collect();
        let from = all.len().saturating_sub(30);
        out.insert(c.name.clone(), all[from..].to_vec());
    }
    Ok(out)
}

impl StatusCache {
    /// The reading, fresh within the TTL.
    pub async fn get(&self, site: &Site) -> std::result::Result<Arc<Reading>, ApiError> {
        let mut g = self.slot.lock().await;
        if let Some((at, r)) = &*g
            && at.elapsed() < api::STATUS_TTL
        {
            return Ok(r.clone());
        }
        let site = site.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<Reading> {
            let repo = site.open()?;
            Ok(Reading {
                report: crate::site::status::status(&site, &repo, chrono::Utc::now())?,
                sizes: sizes(&site, &repo)?,
            })
        })
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the status cannot be read: {e}"),
            )
        })?;
        let r = Arc::new(r);
        *g = Some((Instant::now(), r.clone()));
        Ok(r)
    }

    /// Forgets the stored status (a job ended: the next caller sees its effect). Called
    /// from a job's thread, outside the runtime.
    pub fn forget(&self) {
        *self.slot.blocking_lock() = None;
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cairn",
        description = "The backup service of one site: backups, verification, rollback, recovery and drills of the components in its cairn.toml. Every endpoint but /healthz and this document needs `Authorization: Bearer TOKEN` with a token from [[server.tokens]]; operations that change anything need a token with role = \"operator\". Errors are JSON: {\"error\": CODE, \"detail\": TEXT}."
    ),
    modifiers(&Bearer),
    // Bodies named only through shared response sets (api::BackupsListed) are not collected
    // from the handlers: list them here.
    components(schemas(api::Backup, crate::site::status::Version)),
    tags(
        (name = "service", description = "Liveness and this document"),
        (name = "status", description = "What `cairn status` shows"),
        (name = "backups", description = "Snapshots of components"),
        (name = "jobs", description = "Long operations, run in the background"),
        (name = "aliases", description = "The paths of the backup scripts cairn replaces, served by the same handlers"),
    )
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The service's OpenAPI document (`GET /v1/openapi.json`).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "This document", body = Object)))]
async fn openapi_doc(
    axum::extract::State(doc): axum::extract::State<Arc<serde_json::Value>>,
) -> impl IntoResponse {
    Json((*doc).clone())
}

/// The service's routes and its OpenAPI document, made from the same handler list.
pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::healthz))
        .routes(routes!(api::status))
        .routes(routes!(api::create_backup, api::list_backups))
        .routes(routes!(api::versions))
        .routes(routes!(api::verify))
        .routes(routes!(api::rollback))
        .routes(routes!(api::recover))
        .routes(routes!(api::drill))
        .routes(routes!(api::list_jobs))
        .routes(routes!(api::get_job, api::cancel_job))
        .routes(routes!(metrics::metrics))
        .routes(routes!(api::alias_backup))
        .routes(routes!(api::alias_list))
        .routes(routes!(api::alias_verify))
        .routes(routes!(api::alias_rollback))
        .routes(routes!(api::alias_versions))
        .routes(routes!(api::alias_recover))
        .with_state(state.clone())
        .split_for_parts();
    let mut full = doc.clone();
    // The document describes itself too.
    let (_, spec_doc) = OpenApiRouter::<Arc<serde_json::Value>>::new()
        .routes(routes!(openapi_doc))
        .split_for_parts();
    full.merge(spec_doc);
    let json = Arc::new(serde_json::to_value(&full).unwrap_or_default());
    let spec = axum::Router::new()
        .route("/v1/openapi.json", axum::routing::get(openapi_doc))
        .with_state(json);
    let app = api
        .merge(spec)
        .merge(page::routes(state))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint (the API is described at /v1/openapi.json)",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    (app, full)
}

/// Options of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on (default: the config's, else 127.0.0.1:8010).
    pub listen: Option<SocketAddr>,
    /// Run the config's schedules too.
    pub schedules: bool,
    /// Set to stop (from a signal handler).
    pub stop: Arc<AtomicBool>,
    /// How often the schedules' limits are judged and alerts sent.
    pub status_every: Duration,
    /// Run every schedule once at start, then follow the schedules.
    pub run_now: bool,
}

/// Serves until `opts.stop` is set; `ready` is told the bound address first.
pub fn serve(site: Site, opts: &ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let site = site.keep_open();
    let tokens = auth::load(&site.config.server.tokens)?;
    if tokens.is_empty() {
        return Err(Error::Invalid(
            "the config has no [[server.tokens]]: add at least one (name, token_file, role = \"operator\") — every endpoint but /healthz needs one".into(),
        ));
    }
    let listen = match opts.listen.or(site.config.server.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse().expect("a valid default"),
    };
    let tls = match &site.config.server.tls {
        Some((cert, key)) => Some(tls::config(cert, key)?),
        None => None,
    };
    // Unlock the repository before taking requests: a wrong password stops the start.
    site.open()?;
    let status = Arc::new(StatusCache::default());
    let forget = status.clone();
    let jobs = Jobs::new(site.clone(), move || forget.forget());
    let state = AppState {
        site: site.clone(),
        jobs: jobs.clone(),
        tokens: Arc::new(tokens),
        status,
        started: chrono::Utc::now(),
        failures: Arc::new(metrics::Failures::default()),
    };
    let (app, _) = router(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start the service's runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot listen on {listen}: {e} (another process may hold the port; pick another with --listen or [server] listen)"
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    ready(bound);
    let schedules = opts.schedules.then(|| {
        let (site, jobs, stop, every, now) = (
            site.clone(),
            jobs.clone(),
            opts.stop.clone(),
            opts.status_every,
            opts.run_now,
        );
        std::thread::spawn(move || run_schedules(&site, &jobs, &stop, every, now))
    });
    let stop = opts.stop.clone();
    let shutdown = async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let served = rt.block_on(async move {
        match tls {
            None => axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| e.to_string()),
            Some(cfg) => axum::serve(tls::Listener::new(listener, cfg), app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(|e| e.to_string()),
        }
    });
    jobs.shut_down();
    if let Some(t) = schedules {
        let _ = t.join();
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    served.map_err(|e| Error::Invalid(format!("the service failed: {e}")))
}

/// The config's schedules, submitted as jobs when due (a schedule whose last job has not
/// ended is not submitted again); limits judged every `every`.
fn run_schedules(site: &Site, jobs: &Arc<Jobs>, stop: &AtomicBool, every: Duration, run_now: bool) {
    use crate::site::config::Action;
    let schedules = &site.config.schedules;
    let mut table = crate::site::daemon::Timetable::new(schedules, run_now);
    let mut last: Vec<Option<String>> = vec![None; schedules.len()];
    let mut judged: Option<Instant> = None;
    let mut log = |v: &serde_json::Value| println!("{v}");
    while !stop.load(Ordering::Relaxed) {
        if judged.is_none_or(|t| t.elapsed() >= every) {
            crate::site::daemon::evaluate(site, &mut log);
            judged = Some(Instant::now());
        }
        let Some(i) = table.due(chrono::Local::now()) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        table.done(schedules, i);
        let s = schedules[i].clone();
        if let Some(id) = &last[i]
            && jobs.get(id).is_some_and(|j| !j.state.is_final())
        {
            continue;
        }
        let components = match s.action {
            Action::Run | Action::Drill => site
                .config
                .select(&s.targets)
                .map(|v| v.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let job = NewJob {
            kind: match s.action {
                Action::Run => JobKind::Backup,
                Action::Drill => JobKind::Drill,
                Action::Check => JobKind::Verify,
                _ => JobKind::Schedule,
            },
            components,
            request: serde_json::json!({ "schedule": s.name, "action": s.action.name() }),
            requested_by: format!("schedule:{}", s.name),
            stoppable: s.action == Action::Run,
            work: Box::new(move |site, cancel, _| {
                let line = crate::site::daemon::run_schedule(site, &s, cancel);
                println!("{line}");
                let errors = if line["ok"] == true {
                    Vec::new()
                } else {
                    vec![line["error"].as_str().unwrap_or("failed").to_string()]
                };
                (line, errors)
            }),
        };
        if let Ok(j) = jobs.submit(job) {
            last[i] = Some(j.id);
        }
    }
}

mod tls;
