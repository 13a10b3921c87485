//! `cairn serve` on a free 127.0.0.1 port for a [`Site`], and a small HTTP client for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::site::Site;

/// An operator token of the test configs.
pub const OPERATOR: &str = "operator-token-0123456789";
/// A read-only token.
pub const READER: &str = "reader-token-0123456789ab";

/// The `[server]` tables every test config carries.
pub const TOKENS: &str = r#"
[server]
[[server.tokens]]
name = "deployer"
token = "operator-token-0123456789"
role = "operator"
[[server.tokens]]
name = "dashboard"
token = "reader-token-0123456789ab"
"#;

/// A running `cairn serve`.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What it printed on stdout, line by line.
    pub lines: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `cairn serve --listen 127.0.0.1:0 EXTRA…` for `site` and waits until it listens.
    pub fn start(site: &Site, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = site
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cairn serve");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if l.contains("\"listen\"") {
                    let _ = tx.send(l.clone());
                }
                sink.lock().unwrap().push(l);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("cairn serve printed its address");
        let v: Value = serde_json::from_str(&line).unwrap();
        let base = v["address"].as_str().unwrap().to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child,
            base,
            lines,
            agent,
        }
    }

    /// `METHOD path` with `token` and a JSON `body`; the status and the body's text.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(&url).content_type("application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }

    /// Like [`Server::call`], parsing the body as JSON.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = self.call(method, path, token, body);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} → {status}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// Submits a job (`POST path body` as the operator, 202); returns it as made.
    pub fn start_job(&self, path: &str, body: &str) -> Value {
        let (status, job) = self.json("POST", path, Some(OPERATOR), Some(body));
        assert_eq!(status, 202, "POST {path} {body}: {job}");
        job
    }

    /// Submits a job and waits for its end.
    pub fn job(&self, path: &str, body: &str) -> Value {
        let job = self.start_job(path, body);
        self.wait(job["id"].as_str().unwrap())
    }

    /// Polls job `id` until it has ended.
    pub fn wait(&self, id: &str) -> Value {
        let t = Instant::now();
        loop {
            let (status, j) = self.json("GET", &format!("/v1/jobs/{id}"), Some(READER), None);
            assert_eq!(status, 200, "{j}");
            if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                return j;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "job {id} never ended: {j}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap().code()
    }

    /// The server's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
