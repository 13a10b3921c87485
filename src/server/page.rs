//! The status page at `/`: server-rendered HTML, no script. One row per component — last
//! backup and its age, size with an inline SVG of its last 30 sizes, drill state, the limits
//! it breaks in colour — the repository's verification, and the recent jobs. An operator's
//! buttons (backup now, verify, drill) post forms that start the same jobs as the API.
//!
//! The login form takes a token from `[[server.tokens]]` and keeps it in an HttpOnly,
//! SameSite=Strict cookie, so another site cannot make the browser post with it. While a job
//! runs the page reloads itself every two seconds.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Deserialize;

use super::AppState;
use super::api;
use super::auth::{self, COOKIE, Credential};
use super::jobs::{Job, JobState};
use crate::site::audit::Entry;
use crate::site::config::Role;
use crate::site::status::StatusReport;

/// The page's routes.
pub fn routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ui/backup", post(ui_backup))
        .route("/ui/verify", post(ui_verify))
        .route("/ui/drill", post(ui_drill))
        .with_state(state)
}

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `1.2 GiB`.
fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `3h 20m`.
fn age(s: i64) -> String {
    let s = s.max(0);
    match s {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An inline SVG line of `sizes` (oldest first).
fn sparkline(sizes: &[u64]) -> String {
    let (w, h) = (120.0, 24.0);
    if sizes.is_empty() {
        return String::new();
    }
    let max = *sizes.iter().max().unwrap_or(&1) as f64;
    let min = *sizes.iter().min().unwrap_or(&0) as f64;
    let span = (max - min).max(1.0);
    let step = if sizes.len() > 1 {
        w / (sizes.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let x = i as f64 * step;
            let y = h - 2.0 - (*s as f64 - min) / span * (h - 4.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        r##"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="size of the last {} snapshots"><polyline fill="none" stroke="#3572b0" stroke-width="1.5" points="{}"/></svg>"##,
        sizes.len(),
        points.join(" ")
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{padding:.35em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.ok td.state{color:#17692c}tr.alert td.state{color:#b3261e;font-weight:600}tr.alert{background:#fdf0ef}.muted{color:#777}form.inline{display:inline}button{margin-right:.3em}.msg{padding:.5em;background:#eef4fb;border:1px solid #c9dcf0}";

fn page(title: &str, body: &str, refresh: bool) -> Html<String> {
    let meta = if refresh {
        r#"<meta http-equiv="refresh" content="2">"#
    } else {
        ""
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>{meta}<style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    ))
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p class=\"msg\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>cairn</h1>{err}<form method=\"post\" action=\"/login\" id=\"login\"><label>Token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label> <button type=\"submit\">Log in</button></form><p class=\"muted\">A token from <code>[[server.tokens]]</code> in the site's cairn.toml.</p>"
    );
    (status, page("cairn — log in", &body, false)).into_response()
}

/// The credential the page's cookie holds.
fn session<'a>(s: &'a AppState, headers: &HeaderMap) -> Option<&'a Credential> {
    let t = auth::cookie(headers, COOKIE)?;
    auth::lookup(&s.tokens, &t)
}

#[derive(Deserialize)]
struct IndexQuery {
    job: Option<String>,
}

async fn index(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<IndexQuery>,
) -> Response {
    let Some(cred) = session(&s, &headers) else {
        return login_page(StatusCode::OK, None);
    };
    let status = match s.status.get(&s.site).await {
        Ok(r) => r,
        Err(e) => {
            let body = format!(
                "<h1>cairn</h1><p class=\"msg\">The status cannot be read: {}</p>",
                esc(&e.detail)
            );
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                page("cairn", &body, false),
            )
                .into_response();
        }
    };
    let jobs = s.jobs.list();
    let active = jobs.iter().any(|j| !j.state.is_final());
    let body = render(
        &s,
        cred,
        &status.report,
        &status.sizes,
        &jobs,
        q.job.as_deref(),
    );
    page("cairn — status", &body, active).into_response()
}

fn render(
    s: &AppState,
    cred: &Credential,
    st: &StatusReport,
    hist: &BTreeMap<String, Vec<u64>>,
    jobs: &[Job],
    job: Option<&str>,
) -> String {
    let now = Utc::now();
    let operator = cred.role == Role::Operator;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>cairn <span class=\"muted\">{}</span></h1>",
        esc(&s.site.host())
    );
    let _ = write!(
        b,
        "<div>Logged in as <b id=\"who\">{}</b> ({}). <form class=\"inline\" method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form></div>",
        esc(&cred.name),
        if operator { "operator" } else { "read-only" }
    );
    if let Some(id) = job {
        let _ = write!(
            b,
            "<p class=\"msg\" id=\"started\">Job <code>{}</code> started.</p>",
            esc(id)
        );
    }
    let overall = if st.ok {
        "<span style=\"color:#17692c\">every limit holds</span>"
    } else {
        "<span style=\"color:#b3261e;font-weight:600\">limits broken</span>"
    };
    let _ = write!(b, "<p id=\"overall\" data-ok=\"{}\">{overall}</p>", st.ok);
    b.push_str("<table id=\"components\"><thead><tr><th>component</th><th>type</th><th>last backup</th><th>age</th><th>size</th><th>history</th><th>snapshots</th><th>verified</th><th>last drill</th><th>state</th>");
    if operator {
        b.push_str("<th></th>");
    }
    b.push_str("</tr></thead><tbody>");
    for c in &st.components {
        let class = if c.breaches.is_empty() { "ok" } else { "alert" };
        let last = c
            .last_success
            .as_ref()
            .map(|v| v.time.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into());
        let ago = c.age_s.map(age).unwrap_or_default();
        let size = c.last_success.as_ref().map(|v| v.size).unwrap_or(0);
        let drill = match &c.last_drill {
            Some(d) => format!(
                "{} {}",
                d.time.format("%Y-%m-%d"),
                if d.ok { "passed" } else { "FAILED" }
            ),
            None => "never".into(),
        };
        // Its own last verify, or the repository's last check when that is newer (it
        // covered every snapshot).
        let verified = match (&c.last_verify, &st.repository.last_check) {
            (Some(v), Some(r)) if r.time > v.time => Some(("repository check", r)),
            (Some(v), _) => Some(("verified", v)),
            (None, Some(r)) => Some(("repository check", r)),
            (None, None) => None,
        };
        let verified = match verified {
            None => "never".to_string(),
            Some((what, o)) => format!(
                "{what} {} {}",
                o.time.format("%Y-%m-%d %H:%M"),
                if o.ok { "passed" } else { "FAILED" }
            ),
        };
        let state = if c.breaches.is_empty() {
            "ok".to_string()
        } else {
            c.breaches
                .iter()
                .map(|x| esc(&x.message))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let spark = sparkline(hist.get(&c.component).map(Vec::as_slice).unwrap_or(&[]));
        let name = esc(&c.component);
        let _ = write!(
            b,
            "<tr class=\"{class}\" data-component=\"{name}\"><td class=\"name\">{name}</td><td>{}</td><td class=\"last\">{last}</td><td class=\"age\">{ago}</td><td class=\"num size\" data-bytes=\"{size}\">{}</td><td>{spark}</td><td class=\"num snapshots\">{}</td><td class=\"verified\">{verified}</td><td class=\"drill\">{drill}</td><td class=\"state\">{state}</td>",
            esc(&c.kind),
            human(size),
            c.snapshots,
        );
        if operator {
            let _ = write!(
                b,
                "<td>{}{}{}</td>",
                button("/ui/backup", &c.component, "backup now", "backup"),
                button("/ui/verify", &c.component, "verify", "verify"),
                button("/ui/drill", &c.component, "drill", "drill"),
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table>");
    let r = &st.repository;
    let check = match &r.last_check {
        Some(c) => format!(
            "last check {} {}",
            c.time.format("%Y-%m-%d %H:%M UTC"),
            if c.ok { "passed" } else { "FAILED" }
        ),
        None => "never checked".into(),
    };
    let proofs = match (r.packs_unproven, r.oldest_proof) {
        (0, Some(t)) => format!(
            "every pack proven, the oldest proof {} ago",
            age((now - t).num_seconds())
        ),
        (n, _) => format!("{n} of {} packs never proven", r.packs),
    };
    let space = if r.total_bytes > 0 {
        format!(
            "{} free of {} ({:.0}% used)",
            human(r.free_bytes),
            human(r.total_bytes),
            r.used_pct
        )
    } else {
        "free space not known (a server)".into()
    };
    let _ = write!(
        b,
        "<h2>Repository</h2><p id=\"repository\">{} — {} snapshots; {check}; {proofs}; {space}.</p>",
        esc(&r.path),
        r.snapshots
    );
    b.push_str("<h2>Jobs</h2><table id=\"jobs\"><thead><tr><th>job</th><th>kind</th><th>components</th><th>by</th><th>state</th><th>started</th><th>progress</th><th>errors</th></tr></thead><tbody>");
    for j in jobs.iter().take(15) {
        let state = serde_json::to_value(j.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let kind = serde_json::to_value(j.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr class=\"job {}\" data-job=\"{}\" data-state=\"{state}\"><td><code>{}</code></td><td>{kind}</td><td>{}</td><td>{}</td><td class=\"jobstate\">{state}</td><td>{}</td><td class=\"num\">{} files, {}</td><td>{}</td></tr>",
            if j.state == JobState::Failed {
                "alert"
            } else {
                "ok"
            },
            esc(&j.id),
            esc(&j.id),
            esc(&j.components.join(", ")),
            esc(&j.requested_by),
            j.started
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default(),
            j.progress.files,
            human(j.progress.bytes),
            esc(&j.errors.join("; ")),
        );
    }
    b.push_str("</tbody></table>");
    b
}

fn button(action: &str, component: &str, label: &str, id: &str) -> String {
    let c = esc(component);
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"component\" value=\"{c}\"><button type=\"submit\" class=\"{id}\" data-component=\"{c}\">{label}</button></form>"
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// Whether a form post comes from this page and not from another site (or another port of
/// this host, which SameSite counts as the same site): the browser's `Sec-Fetch-Site`, else
/// `Origin` against `Host`. A client that sends neither (curl, a script) has no cookie of the
/// browser's to abuse.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn cross_site() -> Response {
    let body = "<h1>cairn</h1><p class=\"msg\" id=\"error\">Refused: this form was posted from another site.</p><p><a href=\"/\">Back</a></p>";
    (StatusCode::FORBIDDEN, page("cairn", body, false)).into_response()
}

async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    if auth::lookup(&s.tokens, &f.token).is_none() {
        let mut e = Entry::new("auth", &s.site.host());
        e.result = "denied".into();
        e.error = Some("status page login with a token not in [[server.tokens]]".into());
        e.detail = serde_json::json!({ "method": "POST", "path": "/login" });
        auth::log_off_thread(s.site.config.state_dir.clone(), e);
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not one of the site's [[server.tokens]]."),
        );
    }
    let secure = if s.site.config.server.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}",
                    f.token
                ),
            ),
        ],
    )
        .into_response()
}

async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
struct ComponentForm {
    component: String,
}

/// After a button: back to the page, naming the job (or the error).
fn after(r: Result<Response, api::ApiError>) -> Response {
    match r {
        Ok(resp) => {
            let id = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or("")
                .to_string();
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, format!("/?job={id}"))],
            )
                .into_response()
        }
        Err(e) => {
            let status = if e.error == "forbidden" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = format!(
                "<h1>cairn</h1><p class=\"msg\" id=\"error\">{}</p><p><a href=\"/\">Back</a></p>",
                esc(&e.detail)
            );
            (status, page("cairn", &body, false)).into_response()
        }
    }
}

/// The page's caller as an operator, or the refusal (logged like the API's).
fn operator(s: &AppState, headers: &HeaderMap, path: &str) -> Result<String, api::ApiError> {
    if !same_origin(headers) {
        return Err(api::ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "refused: this form was posted from another site",
        ));
    }
    let mut req = axum::http::Request::post(path)
        .body(())
        .expect("a valid request");
    *req.headers_mut() = headers.clone();
    let (parts, _) = req.into_parts();
    auth::authorize(s, &parts, Role::Operator)
}

async fn ui_backup(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ComponentForm>,
) -> Response {
    let who = match operator(&s, &headers, "/ui/backup") {
        Ok(w) => w,
        Err(e) => return after(Err(e)),
    };
    let req = api::BackupRequest::Component(api::ComponentBackup {
        component: f.component,
        kind: None,
        type_: None,
        reason: Some("status page: backup now".into()),
    });
    after(api::create_backup(super::auth::Operator(who), State(s), api::Body(req)).await)
}

async fn ui_verify(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ComponentForm>,
) -> Response {
    let who = match operator(&s, &headers, "/ui/verify") {
        Ok(w) => w,
        Err(e) => return after(Err(e)),
    };
    let req = api::VerifyRequest {
        component: Some(f.component),
        read_data: true,
        ..Default::default()
    };
    after(api::verify(super::auth::Operator(who), State(s), api::Body(req)).await)
}

async fn ui_drill(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ComponentForm>,
) -> Response {
    let who = match operator(&s, &headers, "/ui/drill") {
        Ok(w) => w,
        Err(e) => return after(Err(e)),
    };
    let req = api::DrillRequest {
        component: Some(f.component),
    };
    after(api::drill(super::auth::Operator(who), State(s), api::Body(req)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_sizes_drawn() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(age(3700), "1h 1m");
        let svg = sparkline(&[10, 20, 15]);
        assert!(
            svg.starts_with("<svg") && svg.contains("points=\"0.0,22.0 60.0,2.0 120.0,12.0\""),
            "{svg}"
        );
        assert_eq!(sparkline(&[]), "");
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&h(&[("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&h(&[
            ("origin", "http://127.0.0.1:8010"),
            ("host", "127.0.0.1:8010")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "http://127.0.0.1:9999"),
            ("host", "127.0.0.1:8010")
        ])));
        assert!(same_origin(&h(&[])));
    }
}
