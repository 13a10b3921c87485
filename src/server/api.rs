//! API v1: JSON over HTTP. Each handler checks its caller's token, checks the request, and
//! either answers from the site (status, lists) or hands the site's own operation to a job
//! (backup = `cairn run`, verify = `cairn check`, rollback, recover, drill), answering
//! `202 Accepted` with the job at once. Every error is a JSON body `{error, detail}`.
//!
//! The paths of the scripts cairn replaces (`/backup`, `/list`, `/verify`, `/rollback`,
//! `/versions`, `/recover`) are served too, by the same handlers.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::{Operator, Reader};
use super::jobs::{Job, JobKind, NewJob, Outcome, Refusal};
use crate::error::Error;
use crate::site::Site;
use crate::site::config::{MANUAL, component_tag, kind_tag};
use crate::site::status::{StatusReport, Version};

/// An error: a short code and what to do about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// A short code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `unprocessable`, `unavailable`,
    /// `internal`.
    pub error: String,
    /// What is wrong and how to fix it.
    pub detail: String,
    #[serde(skip)]
    status: StatusCode,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            error: error.into(),
            detail: detail.into(),
            status,
        }
    }

    fn bad(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// A library error, with the status its kind calls for.
    fn of(e: Error) -> ApiError {
        match &e {
            Error::SnapshotRef(_) => ApiError::not_found(e.to_string()),
            Error::Invalid(_) => ApiError::bad(e.to_string()),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(self)).into_response()
    }
}

/// A JSON body whose rejections are JSON errors too.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Through a value first: serde would take an array for a struct's fields.
        let v = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(r) => return Err(json_rejection(r)),
        };
        if !v.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "the body must be a JSON object (see /v1/openapi.json)",
            ));
        }
        serde_json::from_value(v).map(Body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                format!("the body does not match the request's schema: {e} (see /v1/openapi.json)"),
            )
        })
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ => "bad_request",
    };
    let detail = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with `Content-Type: application/json`".to_string()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body is larger than {} bytes", super::BODY_LIMIT)
        }
        _ => r.body_text(),
    };
    ApiError::new(status, code, detail)
}

/// Query parameters whose rejections are JSON errors.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Params(q.0)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad(r.body_text())
}

/// Runs blocking site work off the request threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request failed unexpectedly: {e}"),
        ))
    })
}

fn known_component(site: &Site, name: &str) -> Result<(), ApiError> {
    site.config
        .component(name)
        .map(|_| ())
        .map_err(|e| ApiError::not_found(e.to_string()))
}

/// The job as a `202 Accepted` answer, with its address.
fn accepted(j: Result<Job, Refusal>) -> Result<Response, ApiError> {
    match j {
        Ok(job) => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/jobs/{}", job.id))],
            Json(job),
        )
            .into_response()),
        Err(r) => Err(refusal(r)),
    }
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Unknown => ApiError::not_found(
            "no such job (finished jobs are kept for a while; the audit log keeps everything)",
        ),
        Refusal::Ended(s) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the job has ended ({})",
                serde_json::to_value(s)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            ),
        ),
        Refusal::NotStoppable(k) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "a running {} job cannot be stopped safely; it finishes on its own",
                serde_json::to_value(k)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            ),
        ),
        Refusal::Stopping => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is shutting down; try again once it is back",
        ),
    }
}

/// The answers of every endpoint that starts a job (documented once for all of them and
/// their aliases).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the OpenAPI derive only
enum JobStarted {
    /// The job, queued or running.
    #[response(status = 202, description = "The job, queued or running",
        headers(("Location" = String, description = "The job's address")))]
    Accepted(Job),
    #[response(
        status = 400,
        description = "A malformed request, a wrong duration, or a snapshot of another component"
    )]
    BadRequest(ApiError),
    #[response(status = 401, description = "No or unknown token")]
    Unauthorized(ApiError),
    #[response(status = 403, description = "A read-only token")]
    Forbidden(ApiError),
    #[response(
        status = 404,
        description = "No such component, profile, kind or snapshot"
    )]
    NotFound(ApiError),
    #[response(status = 413, description = "The body is too large")]
    TooLarge(ApiError),
    #[response(status = 415, description = "The body is not JSON")]
    NotJson(ApiError),
    #[response(status = 422, description = "The body does not match the schema")]
    Unprocessable(ApiError),
    #[response(status = 500, description = "The repository cannot be read")]
    Internal(ApiError),
    #[response(status = 503, description = "The service is shutting down")]
    Unavailable(ApiError),
}

/// The answers of the backup list and its alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the OpenAPI derive only
enum BackupsListed {
    #[response(status = 200, description = "Snapshots, newest first")]
    Listed(Vec<Backup>),
    #[response(status = 400, description = "A malformed query")]
    BadRequest(ApiError),
    #[response(status = 401, description = "No or unknown token")]
    Unauthorized(ApiError),
    #[response(status = 404, description = "No such component")]
    NotFound(ApiError),
    #[response(status = 500, description = "The repository cannot be read")]
    Internal(ApiError),
}

/// The answers of the versions list and its alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the OpenAPI derive only
enum VersionsListed {
    #[response(status = 200, description = "The component's snapshots, oldest first")]
    Listed(Vec<Version>),
    #[response(status = 400, description = "A malformed query")]
    BadRequest(ApiError),
    #[response(status = 401, description = "No or unknown token")]
    Unauthorized(ApiError),
    #[response(status = 404, description = "No such component")]
    NotFound(ApiError),
    #[response(status = 500, description = "The repository cannot be read")]
    Internal(ApiError),
}

/// The JSON of a report.
fn report<T: Serialize>(r: &T) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Health and status

/// The service's liveness.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// cairn's version.
    pub version: String,
}

/// Liveness: answers without a token (for load balancers and container health checks).
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The service runs", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// What `cairn status --json` prints: per component the last backup, its age, size and
/// change, the last drill and the limits it breaks; the repository's space and proofs.
#[utoipa::path(get, path = "/v1/status", tag = "status", security(("bearer" = [])),
    responses(
        (status = 200, description = "The site's status", body = StatusReport),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 500, description = "The repository cannot be read", body = ApiError),
    ))]
pub async fn status(_: Reader, State(s): State<AppState>) -> Result<Json<StatusReport>, ApiError> {
    s.status.get(&s.site).await.map(|r| Json(r.report.clone()))
}

// ---------------------------------------------------------------------------------------
// Backups

/// A backup to take: `cairn run COMPONENT|PROFILE --kind KIND --reason REASON`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BackupRequest {
    /// One component.
    Component(ComponentBackup),
    /// The components of a profile.
    Profile(ProfileBackup),
}

/// A backup of one component.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentBackup {
    /// The component.
    pub component: String,
    /// The kind of snapshot, whose retention applies (default `manual`).
    pub kind: Option<String>,
    /// The same as `kind` (the field name of the scripts cairn replaces).
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Why (kept in the snapshot).
    pub reason: Option<String>,
}

/// A backup of a profile's components.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBackup {
    /// The profile.
    pub profile: String,
    /// The kind of snapshot, whose retention applies (default `manual`).
    pub kind: Option<String>,
    /// The same as `kind`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Why (kept in the snapshot).
    pub reason: Option<String>,
}

impl BackupRequest {
    /// The component or profile, the kind and the reason.
    fn parts(&self) -> (Result<&str, &str>, Option<&String>, Option<&String>) {
        match self {
            BackupRequest::Component(c) => (
                Ok(c.component.as_str()),
                c.kind.as_ref().or(c.type_.as_ref()),
                c.reason.as_ref(),
            ),
            BackupRequest::Profile(p) => (
                Err(p.profile.as_str()),
                p.kind.as_ref().or(p.type_.as_ref()),
                p.reason.as_ref(),
            ),
        }
    }
}

/// Starts a backup job.
#[utoipa::path(post, path = "/v1/backups", tag = "backups", security(("bearer" = [])),
    request_body = BackupRequest,
    responses(JobStarted))]
pub async fn create_backup(
    Operator(who): Operator,
    State(s): State<AppState>,
    Body(req): Body<BackupRequest>,
) -> Result<Response, ApiError> {
    let (which, kind, reason) = req.parts();
    let target = match which {
        Ok(c) => {
            known_component(&s.site, c)?;
            c.to_string()
        }
        Err(p) => {
            if !s.site.config.profiles.iter().any(|(n, _)| n == p) {
                return Err(ApiError::not_found(format!(
                    "no profile {p:?} in the config"
                )));
            }
            p.to_string()
        }
    };
    let kind = kind.cloned().unwrap_or_else(|| MANUAL.to_string());
    let reason = reason.cloned();
    s.site
        .config
        .kind(&kind)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let components: Vec<String> = s
        .site
        .config
        .select(std::slice::from_ref(&target))
        .map_err(|e| ApiError::not_found(e.to_string()))?
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let job = NewJob {
        kind: JobKind::Backup,
        components,
        request: report(&req),
        requested_by: who,
        stoppable: true,
        work: Box::new(move |site, cancel, progress| {
            backup_work(site, vec![target], kind, reason, cancel, progress)
        }),
    };
    accepted(s.jobs.submit(job))
}

/// `cairn run` as a job's work.
pub fn backup_work(
    site: &Site,
    targets: Vec<String>,
    kind: String,
    reason: Option<String>,
    cancel: &crate::ops::progress::Cancel,
    progress: &crate::ops::progress::ProgressSink,
) -> Outcome {
    let opts = crate::site::run::RunOptions {
        targets,
        kind,
        reason,
        cancel: cancel.clone(),
        progress: progress.clone(),
        ..Default::default()
    };
    match crate::site::run::run(site, &opts) {
        Ok(r) => {
            let mut errors: Vec<String> = r
                .components
                .iter()
                .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.component)))
                .collect();
            errors.extend(r.offsites.iter().filter_map(|o| {
                o.error
                    .as_ref()
                    .map(|e| format!("offsite {}: {e}", o.offsite))
            }));
            (report(&r), errors)
        }
        Err(e) => (serde_json::Value::Null, vec![e.to_string()]),
    }
}

/// A snapshot of a component, as the backup list shows it.
#[derive(Serialize, ToSchema)]
pub struct Backup {
    /// The snapshot's id.
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its component.
    pub component: Option<String>,
    /// Its kind.
    pub kind: Option<String>,
    /// Why it was taken.
    pub reason: Option<String>,
    /// The size of its files.
    pub size: u64,
    /// New data it stored.
    pub added: u64,
}

/// Filters of the backup list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Only this component's snapshots.
    pub component: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<u32>,
}

/// The site's snapshots, newest first.
#[utoipa::path(get, path = "/v1/backups", tag = "backups", security(("bearer" = [])),
    params(BackupQuery),
    responses(BackupsListed))]
pub async fn list_backups(
    _: Reader,
    State(s): State<AppState>,
    Params(q): Params<BackupQuery>,
) -> Result<Json<Vec<Backup>>, ApiError> {
    if let Some(c) = &q.component {
        known_component(&s.site, c)?;
    }
    if q.limit == Some(0) || q.limit.is_some_and(|l| l > 100_000) {
        return Err(ApiError::bad("limit: give 1 to 100000"));
    }
    let site = s.site.clone();
    blocking(move || {
        let repo = site.open().map_err(ApiError::of)?;
        let all = repo.snapshots().map_err(ApiError::of)?;
        let ctag = q.component.as_deref().map(component_tag);
        let ktag = q.kind.as_deref().map(kind_tag);
        let mut rows: Vec<Backup> = all
            .iter()
            .filter(|(_, s)| ctag.as_ref().is_none_or(|t| s.tags.contains(t)))
            .filter(|(_, s)| ktag.as_ref().is_none_or(|t| s.tags.contains(t)))
            .map(|(id, s)| Backup {
                id: id.to_hex(),
                time: s.time,
                component: crate::site::component::component_of(s).map(String::from),
                kind: crate::site::component::kind_of(s).map(String::from),
                reason: s.reason.clone(),
                size: s.summary.total_bytes,
                added: s.summary.data_added,
            })
            .collect();
        rows.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        rows.truncate(q.limit.unwrap_or(100) as usize);
        Ok(Json(rows))
    })
    .await
}

/// Which component's versions.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// The component.
    pub component: String,
}

/// What `cairn versions COMPONENT` lists: the component's snapshots, oldest first.
#[utoipa::path(get, path = "/v1/versions", tag = "backups", security(("bearer" = [])),
    params(VersionsQuery),
    responses(VersionsListed))]
pub async fn versions(
    _: Reader,
    State(s): State<AppState>,
    Params(q): Params<VersionsQuery>,
) -> Result<Json<Vec<Version>>, ApiError> {
    known_component(&s.site, &q.component)?;
    let site = s.site.clone();
    blocking(move || {
        crate::site::rollback::list_versions(&site, &q.component)
            .map(Json)
            .map_err(ApiError::of)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Verify, rollback, recover, drills

/// What to verify: the whole repository, one snapshot, or one component's snapshots (with
/// both, the snapshot, which must be the component's).
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A snapshot id (or a unique prefix, or `latest`).
    pub snapshot: Option<String>,
    /// A component: all its snapshots.
    pub component: Option<String>,
    /// Also read and authenticate the packs (of the snapshots chosen).
    #[serde(default)]
    pub read_data: bool,
    /// Read only packs never proven or proven longer ago than this (`30d`, `12h`).
    #[schema(pattern = "^[0-9]{1,9}[smhd]$")]
    pub max_age: Option<String>,
}

/// Starts a verify job: `cairn check` (with `read_data`, `--read-data`).
#[utoipa::path(post, path = "/v1/verify", tag = "jobs", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses(JobStarted))]
pub async fn verify(
    Operator(who): Operator,
    State(s): State<AppState>,
    Body(req): Body<VerifyRequest>,
) -> Result<Response, ApiError> {
    let max_age = match &req.max_age {
        None => None,
        Some(t) => Some(
            crate::ops::parse_duration(t)
                .map_err(|e| ApiError::bad(format!("max_age {t:?}: {e}")))?,
        ),
    };
    if let Some(c) = &req.component {
        known_component(&s.site, c)?;
    }
    // Resolve the snapshots now, so that a wrong one is a 404 and not a failed job.
    let site = s.site.clone();
    let (snap, comp) = (req.snapshot.clone(), req.component.clone());
    let scope = blocking(move || -> Result<Option<Vec<crate::id::SnapshotId>>, ApiError> {
        let repo = site.open().map_err(ApiError::of)?;
        Ok(match (snap, comp) {
            (Some(r), comp) => {
                let (id, snap) = repo.resolve_snapshot(&r).map_err(ApiError::of)?;
                if let Some(c) = comp
                    && crate::site::component::component_of(&snap) != Some(c.as_str())
                {
                    return Err(ApiError::not_found(format!(
                        "snapshot {} is not one of component {c}'s (see GET /v1/versions?component={c})",
                        id.short()
                    )));
                }
                Some(vec![id])
            }
            (_, Some(c)) => {
                let ids: Vec<_> = crate::site::component::versions(&repo, &c)
                    .map_err(ApiError::of)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                if ids.is_empty() {
                    return Err(ApiError::not_found(format!(
                        "component {c} has no snapshot to verify yet"
                    )));
                }
                Some(ids)
            }
            _ => None,
        })
    })
    .await?;
    let read_data = req.read_data;
    let component = req.component.clone();
    let job = NewJob {
        kind: JobKind::Verify,
        components: Vec::new(),
        request: report(&req),
        requested_by: who,
        stoppable: false,
        work: Box::new(move |site, _, progress| {
            let o = crate::site::upkeep::VerifyOptions {
                snapshots: scope,
                read_data,
                max_age,
                progress: progress.clone(),
                component,
            };
            match site
                .open()
                .and_then(|repo| crate::site::upkeep::verify(site, &repo, &o))
            {
                Ok(r) => {
                    let errors = r
                        .errors
                        .iter()
                        .map(|f| format!("{}: {}", f.what, f.problem))
                        .collect();
                    (report(&r), errors)
                }
                Err(e) => (serde_json::Value::Null, vec![e.to_string()]),
            }
        }),
    };
    accepted(s.jobs.submit(job))
}

/// A rollback: `cairn rollback COMPONENT [SNAPSHOT]` (a pre-rollback snapshot first).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The component.
    pub component: String,
    /// The snapshot to return to (id, prefix or `latest`; default the newest that is not a
    /// pre-rollback one); `backup_id` is accepted too.
    #[serde(alias = "backup_id")]
    pub snapshot: Option<String>,
}

/// Starts a rollback job.
#[utoipa::path(post, path = "/v1/rollback", tag = "jobs", security(("bearer" = [])),
    request_body = RollbackRequest,
    responses(JobStarted))]
pub async fn rollback(
    Operator(who): Operator,
    State(s): State<AppState>,
    Body(req): Body<RollbackRequest>,
) -> Result<Response, ApiError> {
    known_component(&s.site, &req.component)?;
    // The dry run resolves the snapshot and checks that it is the component's.
    // The job restores exactly that snapshot, whatever runs before it in the queue (a
    // backup would otherwise become the "newest").
    let site = s.site.clone();
    let (comp, snap) = (req.component.clone(), req.snapshot.clone());
    let plan = blocking(move || {
        crate::site::rollback::rollback(
            &site,
            &crate::site::rollback::RollbackOptions {
                component: comp,
                snapshot: snap,
                dry_run: true,
                ..Default::default()
            },
        )
        .map_err(ApiError::of)
    })
    .await?;
    let snap = plan.snapshot.map(|v| v.id.to_hex());
    let comp = req.component.clone();
    // Once the pre-rollback snapshot is taken the restore in place must finish: a rollback
    // is not stopped by a cancel (it finishes on its own, as a recover does).
    let job = NewJob {
        kind: JobKind::Rollback,
        components: vec![comp.clone()],
        request: report(&req),
        requested_by: who,
        stoppable: false,
        work: Box::new(move |site, cancel, _| {
            let o = crate::site::rollback::RollbackOptions {
                component: comp,
                snapshot: snap,
                cancel: cancel.clone(),
                ..Default::default()
            };
            match crate::site::rollback::rollback(site, &o) {
                Ok(r) => (report(&r), Vec::new()),
                Err(e) => (serde_json::Value::Null, vec![e.to_string()]),
            }
        }),
    };
    accepted(s.jobs.submit(job))
}

/// A recovery: `cairn recover [COMPONENT…]`, in the configured recovery order.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// The components (default: all).
    #[serde(default)]
    pub components: Vec<String>,
}

/// Starts a recover job.
#[utoipa::path(post, path = "/v1/recover", tag = "jobs", security(("bearer" = [])),
    request_body = RecoverRequest,
    responses(JobStarted))]
pub async fn recover(
    Operator(who): Operator,
    State(s): State<AppState>,
    Body(req): Body<RecoverRequest>,
) -> Result<Response, ApiError> {
    for c in &req.components {
        known_component(&s.site, c)?;
    }
    let components = if req.components.is_empty() {
        s.site.config.recovery_order.clone()
    } else {
        req.components.clone()
    };
    let chosen = req.components.clone();
    let job = NewJob {
        kind: JobKind::Recover,
        components,
        request: report(&req),
        requested_by: who,
        stoppable: false,
        work: Box::new(move |site, _, _| {
            let o = crate::site::rollback::RecoverOptions {
                components: chosen,
                dry_run: false,
            };
            match crate::site::rollback::recover(site, &o) {
                Ok(r) => {
                    let errors = r
                        .components
                        .iter()
                        .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.component)))
                        .collect();
                    (report(&r), errors)
                }
                Err(e) => (serde_json::Value::Null, vec![e.to_string()]),
            }
        }),
    };
    accepted(s.jobs.submit(job))
}

/// A restore drill: `cairn drill [COMPONENT]`.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// The component (default: all).
    pub component: Option<String>,
}

/// Starts a drill job: the newest snapshot restored into scratch space, proven and probed.
#[utoipa::path(post, path = "/v1/drills", tag = "jobs", security(("bearer" = [])),
    request_body = DrillRequest,
    responses(JobStarted))]
pub async fn drill(
    Operator(who): Operator,
    State(s): State<AppState>,
    Body(req): Body<DrillRequest>,
) -> Result<Response, ApiError> {
    let targets: Vec<String> = req.component.iter().cloned().collect();
    for c in &targets {
        known_component(&s.site, c)?;
    }
    let components = if targets.is_empty() {
        s.site.config.recovery_order.clone()
    } else {
        targets.clone()
    };
    let job = NewJob {
        kind: JobKind::Drill,
        components,
        request: report(&req),
        requested_by: who,
        stoppable: false,
        work: Box::new(move |site, _, _| drill_work(site, &targets)),
    };
    accepted(s.jobs.submit(job))
}

/// `cairn drill` as a job's work.
pub fn drill_work(site: &Site, targets: &[String]) -> Outcome {
    match crate::site::drill::drill(site, targets) {
        Ok(r) => {
            let errors = r
                .components
                .iter()
                .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.component)))
                .collect();
            (report(&r), errors)
        }
        Err(e) => (serde_json::Value::Null, vec![e.to_string()]),
    }
}

// ---------------------------------------------------------------------------------------
// Jobs

/// The job's id.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// As returned when the job was made.
    pub id: String,
}

/// One job: its state, progress, result and errors.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(JobPath),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
    ))]
pub async fn get_job(
    _: Reader,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    s.jobs
        .get(&id)
        .map(Json)
        .ok_or_else(|| refusal(Refusal::Unknown))
}

/// The jobs kept, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    responses(
        (status = 200, description = "Jobs, newest first", body = Vec<Job>),
        (status = 401, description = "No or unknown token", body = ApiError),
    ))]
pub async fn list_jobs(_: Reader, State(s): State<AppState>) -> Json<Vec<Job>> {
    Json(s.jobs.list())
}

/// Cancels a job: a queued one at once; a running backup at its next entry (what it stored
/// stays for the next run), a running rollback while it takes its pre-rollback snapshot.
/// Other running jobs cannot be stopped safely (409).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(JobPath),
    responses(
        (status = 202, description = "Cancelled, or asked to stop", body = Job),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "A read-only token", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 409, description = "It has ended, or cannot be stopped now", body = ApiError),
    ))]
pub async fn cancel_job(
    _: Operator,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    s.jobs
        .cancel(&id)
        .map(|j| (StatusCode::ACCEPTED, Json(j)).into_response())
        .map_err(refusal)
}

// ---------------------------------------------------------------------------------------
// The paths of the scripts cairn replaces.

/// Alias of `POST /v1/backups` (`{"type": "pre-deploy", "component": …, "reason": …}`).
#[utoipa::path(post, path = "/backup", tag = "aliases", security(("bearer" = [])),
    request_body = BackupRequest,
    responses(JobStarted))]
pub async fn alias_backup(
    o: Operator,
    s: State<AppState>,
    b: Body<BackupRequest>,
) -> Result<Response, ApiError> {
    create_backup(o, s, b).await
}

/// Alias of `GET /v1/backups`.
#[utoipa::path(get, path = "/list", tag = "aliases", security(("bearer" = [])),
    params(BackupQuery),
    responses(BackupsListed))]
pub async fn alias_list(
    r: Reader,
    s: State<AppState>,
    q: Params<BackupQuery>,
) -> Result<Json<Vec<Backup>>, ApiError> {
    list_backups(r, s, q).await
}

/// Alias of `POST /v1/verify`.
#[utoipa::path(post, path = "/verify", tag = "aliases", security(("bearer" = [])),
    request_body = VerifyRequest,
    responses(JobStarted))]
pub async fn alias_verify(
    o: Operator,
    s: State<AppState>,
    b: Body<VerifyRequest>,
) -> Result<Response, ApiError> {
    verify(o, s, b).await
}

/// Alias of `POST /v1/rollback` (`{"backup_id": …, "component": …}`).
#[utoipa::path(post, path = "/rollback", tag = "aliases", security(("bearer" = [])),
    request_body = RollbackRequest,
    responses(JobStarted))]
pub async fn alias_rollback(
    o: Operator,
    s: State<AppState>,
    b: Body<RollbackRequest>,
) -> Result<Response, ApiError> {
    rollback(o, s, b).await
}

/// Alias of `GET /v1/versions`.
#[utoipa::path(get, path = "/versions", tag = "aliases", security(("bearer" = [])),
    params(VersionsQuery),
    responses(VersionsListed))]
pub async fn alias_versions(
    r: Reader,
    s: State<AppState>,
    q: Params<VersionsQuery>,
) -> Result<Json<Vec<Version>>, ApiError> {
    versions(r, s, q).await
}

/// Alias of `POST /v1/recover`.
#[utoipa::path(post, path = "/recover", tag = "aliases", security(("bearer" = [])),
    request_body = RecoverRequest,
    responses(JobStarted))]
pub async fn alias_recover(
    o: Operator,
    s: State<AppState>,
    b: Body<RecoverRequest>,
) -> Result<Response, ApiError> {
    recover(o, s, b).await
}

/// How long status answers are reused: many callers at once cost one computation.
pub const STATUS_TTL: Duration = Duration::from_secs(2);
