//! `GET /metrics`: the site's state in Prometheus's text exposition format (version 0.0.4,
//! the format `promtool check metrics` lints and every Prometheus scrapes).
//!
//! Values are read at scrape time from what `status` reads (snapshots, the state file, the
//! verification ledger) and from the audit log, so they cover every run on the site — the
//! service's jobs and schedules, and `cairn run` from cron or a shell alike. The format is
//! written here rather than through a metrics registry: every value is a fresh reading, and
//! the format is a few lines of text (HELP, TYPE, samples with escaped label values).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::{BufRead, Seek};
use std::path::Path;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::api::ApiError;
use super::auth::Reader;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Failed component runs per component, counted from the audit log as it grows.
#[derive(Default)]
pub struct Failures {
    inner: Mutex<(u64, BTreeMap<String, u64>)>,
}

impl Failures {
    /// The counts, after reading what the log gained since the last call.
    pub fn read(&self, state_dir: &Path) -> BTreeMap<String, u64> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let path = state_dir.join("audit.jsonl");
        let Ok(mut f) = std::fs::File::open(&path) else {
            return g.1.clone();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < g.0 {
            // The log was replaced: count again from its start.
            *g = (0, BTreeMap::new());
        }
        if f.seek(std::io::SeekFrom::Start(g.0)).is_err() {
            return g.1.clone();
        }
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                // A line still being written (no newline yet) is read next time.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    g.0 += n as u64;
                    count_failures(&line, &mut g.1);
                }
                _ => break,
            }
        }
        g.1.clone()
    }
}

fn count_failures(line: &str, counts: &mut BTreeMap<String, u64>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    if v["operation"] != "run" {
        return;
    }
    for c in v["detail"]["components"].as_array().into_iter().flatten() {
        if c["ok"] == false
            && let Some(name) = c["component"].as_str()
        {
            *counts.entry(name.to_string()).or_default() += 1;
        }
    }
}

/// A text-format writer.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics text for the site now.
pub async fn render(s: &AppState) -> Result<String, ApiError> {
    let reading = s.status.get(&s.site).await?;
    let status = &reading.report;
    let site = s.site.clone();
    let failures = s.failures.clone();
    let (repo_bytes, failures) = tokio::task::spawn_blocking(move || {
        let bytes: u64 = site
            .open()
            .and_then(|r| r.cache().packs())
            .map(|p| p.iter().map(|(_, _, n)| *n).sum())
            .unwrap_or(0);
        (bytes, failures.read(&site.config.state_dir))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )
    })?;
    let jobs = s.jobs.list();
    let now = chrono::Utc::now();
    let mut t = Text(String::new());
    let ts = |d: chrono::DateTime<chrono::Utc>| d.timestamp_millis() as f64 / 1000.0;

    t.family(
        "cairn_build_info",
        "gauge",
        "Always 1; the version of the cairn serving.",
    );
    t.sample(
        "cairn_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    type Field = fn(&crate::site::status::ComponentStatus) -> Option<f64>;
    let per_component: [(&str, &str, &str, Field); 7] = [
        (
            "cairn_component_last_success_timestamp_seconds",
            "gauge",
            "When the component's newest snapshot was taken (Unix time).",
            |c| c.last_success.as_ref().map(|v| v.time.timestamp() as f64),
        ),
        (
            "cairn_component_last_duration_seconds",
            "gauge",
            "Wall time of the component's last run.",
            |c| c.last_run.as_ref().map(|o| o.duration_s),
        ),
        (
            "cairn_component_last_added_bytes",
            "gauge",
            "New data (plaintext) the component's newest snapshot stored.",
            |c| c.last_success.as_ref().map(|v| v.added as f64),
        ),
        (
            "cairn_component_snapshot_size_bytes",
            "gauge",
            "Size of the files of the component's newest snapshot.",
            |c| c.last_success.as_ref().map(|v| v.size as f64),
        ),
        (
            "cairn_component_snapshots",
            "gauge",
            "Snapshots of the component in the repository.",
            |c| Some(c.snapshots as f64),
        ),
        (
            "cairn_component_last_drill_timestamp_seconds",
            "gauge",
            "When the component's last restore drill ended (Unix time).",
            |c| c.last_drill.as_ref().map(|o| o.time.timestamp() as f64),
        ),
        (
            "cairn_component_last_drill_success",
            "gauge",
            "1 when the component's last restore drill passed, 0 when it failed.",
            |c| c.last_drill.as_ref().map(|o| if o.ok { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, kind, help, f) in per_component {
        t.family(name, kind, help);
        for c in &status.components {
            if let Some(v) = f(c) {
                t.sample(name, &[("component", &c.component)], v);
            }
        }
    }
    t.family(
        "cairn_component_limits_broken",
        "gauge",
        "Limits the component breaks now (stale, size change, failed, drill overdue or failed).",
    );
    for c in &status.components {
        t.sample(
            "cairn_component_limits_broken",
            &[("component", &c.component)],
            c.breaches.len() as f64,
        );
    }
    t.family(
        "cairn_component_failures_total",
        "counter",
        "Failed runs of the component, as the site's audit log records them.",
    );
    for c in &status.components {
        let n = failures.get(&c.component).copied().unwrap_or(0);
        t.sample(
            "cairn_component_failures_total",
            &[("component", &c.component)],
            n as f64,
        );
    }

    let r = &status.repository;
    let repo: [(&str, &str, f64); 6] = [
        (
            "cairn_repository_size_bytes",
            "Bytes of the packs in use (compressed and sealed).",
            repo_bytes as f64,
        ),
        (
            "cairn_repository_snapshots",
            "Snapshots in the repository.",
            r.snapshots as f64,
        ),
        ("cairn_repository_packs", "Packs in use.", r.packs as f64),
        (
            "cairn_repository_unverified_packs",
            "Packs in use that no check --read-data has proven yet.",
            r.packs_unproven as f64,
        ),
        (
            "cairn_repository_free_bytes",
            "Bytes free on the repository's filesystem (0 for a repository on a server, which does not tell).",
            r.free_bytes as f64,
        ),
        (
            "cairn_repository_filesystem_size_bytes",
            "Size of the repository's filesystem (0 on a server).",
            r.total_bytes as f64,
        ),
    ];
    for (name, help, v) in repo {
        t.family(name, "gauge", help);
        t.sample(name, &[], v);
    }
    // The oldest verification still standing: a pack never proven counts from the time the
    // service started (it is at least that overdue from the service's point of view).
    let oldest = if r.packs_unproven > 0 {
        Some(s.started)
    } else {
        r.oldest_proof
    };
    t.family(
        "cairn_repository_oldest_unverified_age_seconds",
        "gauge",
        "Age of the oldest pack proof still standing: since the pack proven longest ago was read, or, while packs were never proven, since the service started.",
    );
    if let Some(o) = oldest {
        t.sample(
            "cairn_repository_oldest_unverified_age_seconds",
            &[],
            (ts(now) - ts(o)).max(0.0),
        );
    }
    t.family(
        "cairn_repository_last_check_timestamp_seconds",
        "gauge",
        "When the site's last check ended (Unix time).",
    );
    t.family(
        "cairn_repository_last_check_success",
        "gauge",
        "1 when the site's last check found no errors.",
    );
    if let Some(c) = &r.last_check {
        t.sample(
            "cairn_repository_last_check_timestamp_seconds",
            &[],
            c.time.timestamp() as f64,
        );
        t.sample(
            "cairn_repository_last_check_success",
            &[],
            if c.ok { 1.0 } else { 0.0 },
        );
    }
    t.family(
        "cairn_jobs",
        "gauge",
        "The service's jobs by state (finished ones as long as they are kept).",
    );
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = jobs
            .iter()
            .filter(|j| {
                serde_json::to_value(j.state)
                    .ok()
                    .as_ref()
                    .and_then(|v| v.as_str())
                    == Some(state)
            })
            .count();
        t.sample("cairn_jobs", &[("state", state)], n as f64);
    }
    t.family(
        "cairn_status_ok",
        "gauge",
        "1 when every limit holds (what `cairn status` exits 0 for).",
    );
    t.sample("cairn_status_ok", &[], if status.ok { 1.0 } else { 0.0 });
    Ok(t.0)
}

/// Prometheus metrics of the site.
#[utoipa::path(get, path = "/metrics", tag = "status", security(("bearer" = [])),
    responses(
        (status = 200, description = "Metrics in Prometheus's text format", content_type = "text/plain", body = String),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 500, description = "The repository cannot be read", body = ApiError),
    ))]
pub async fn metrics(_: Reader, State(s): State<AppState>) -> Result<Response, ApiError> {
    let text = render(&s).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_from_run_lines_as_the_log_grows() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("audit.jsonl");
        let line = |ok: bool| {
            format!(
                "{}\n",
                serde_json::json!({ "operation": "run", "detail": { "components": [
                    { "component": "db", "ok": ok }, { "component": "etc", "ok": true } ] } })
            )
        };
        std::fs::write(&log, line(false) + &line(true)).unwrap();
        let f = Failures::default();
        assert_eq!(f.read(d.path()).get("db"), Some(&1));
        let mut more = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut more, (line(false) + "{\"operation\":\"ru").as_bytes())
            .unwrap();
        let c = f.read(d.path());
        assert_eq!(c.get("db"), Some(&2));
        assert_eq!(c.get("etc"), None);
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
