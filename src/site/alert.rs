//! Notifications: webhook events (a JSON POST for every failure and every limit crossed) and
//! healthchecks.io-style pings (start, success, fail).
//!
//! A notification must never fail or block the backup it reports on. Each one is sent from
//! its own thread, retried with backoff on connection errors, 429 and 5xx (never on other
//! 4xx: a wrong URL does not heal), and given up when the configured timeout has passed since
//! it was queued; [`Notifier::finish`] waits for the stragglers at most until then. So an
//! unreachable webhook delays a run by at most its timeout, however many events it had.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::AlertSpec;

/// What a webhook receives.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    /// `failure`, `stale`, `size_change`, `disk_full`, `drill_failed`, `drill_overdue`,
    /// `recovered` (a limit that held again).
    pub event: String,
    /// The component concerned (none for the repository's disk).
    pub component: Option<String>,
    /// The snapshot concerned.
    pub snapshot: Option<String>,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// The host that noticed.
    pub host: String,
    /// When.
    pub time: DateTime<Utc>,
    /// Figures (ages, sizes, percentages).
    pub detail: serde_json::Value,
}

/// How one notification went.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// The URL.
    pub url: String,
    /// Whether it was accepted (a 2xx answer).
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last problem, if it failed.
    pub error: Option<String>,
}

/// Sends notifications in the background; see the module documentation.
pub struct Notifier {
    webhooks: Vec<String>,
    timeout: Duration,
    pending: Vec<(Instant, JoinHandle<Delivery>)>,
}

impl Notifier {
    /// A notifier for the `[alerts]` settings.
    pub fn new(alerts: &AlertSpec) -> Notifier {
        Notifier {
            webhooks: alerts.webhooks.clone(),
            timeout: alerts.timeout.0,
            pending: Vec::new(),
        }
    }

    /// Sends `e` to every webhook.
    pub fn event(&mut self, e: &Event) {
        let body = serde_json::to_vec(e).unwrap_or_default();
        for url in self.webhooks.clone() {
            self.post(url, body.clone(), "application/json");
        }
    }

    /// Calls a ping URL, with `text` (what happened) as the body.
    pub fn ping(&mut self, url: Option<&str>, text: &str) {
        if let Some(url) = url {
            self.post(
                url.to_string(),
                text.as_bytes().to_vec(),
                "text/plain; charset=utf-8",
            );
        }
    }

    fn post(&mut self, url: String, body: Vec<u8>, content_type: &'static str) {
        let deadline = Instant::now() + self.timeout;
        let h = std::thread::spawn(move || deliver(&url, &body, content_type, deadline));
        self.pending.push((deadline, h));
    }

    /// Waits for the notifications sent so far, each at most until its deadline; those
    /// still running then are left to end on their own (their requests time out too).
    pub fn finish(&mut self) -> Vec<Delivery> {
        let mut done = Vec::new();
        for (deadline, h) in std::mem::take(&mut self.pending) {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished()
                && let Ok(d) = h.join()
            {
                done.push(d);
            }
        }
        done
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Posts `body` to `url` until it is accepted, a permanent error comes, or `deadline`.
fn deliver(url: &str, body: &[u8], content_type: &str, deadline: Instant) -> Delivery {
    let mut attempts = 0;
    let mut pause = Duration::from_millis(250);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Delivery {
                url: url.into(),
                ok: false,
                attempts,
                error: Some("timed out".into()),
            };
        }
        attempts += 1;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(left))
            .http_status_as_error(false)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let (retry, error) = match agent
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
        {
            Ok(r) if r.status().is_success() => {
                return Delivery {
                    url: url.into(),
                    ok: true,
                    attempts,
                    error: None,
                };
            }
            Ok(r) => {
                let code = r.status().as_u16();
                (code == 429 || code >= 500, format!("HTTP {code}"))
            }
            Err(e) => (true, e.to_string()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !retry || left <= pause {
            return Delivery {
                url: url.into(),
                ok: false,
                attempts,
                error: Some(error),
            };
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
