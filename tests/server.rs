//! `cairn serve` end to end: a real repository, a real PostgreSQL component, the API driven
//! over HTTP on 127.0.0.1 — backup, list, verify, rollback, recover, metrics, the scripts'
//! aliases, tokens, bad requests, load during a backup, a server killed mid-backup, SIGTERM,
//! schedules, HTTPS, and schemathesis against the live OpenAPI document.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::{OPERATOR, READER, Server, TOKENS};
use common::servers::Postgres;
use common::site::Site;
use common::{random_bytes, write};

/// A site with a files component (`files/`) and `extra` config.
fn files_site(extra: &str) -> Site {
    let s = Site::new(&format!(
        "[components.files]\npaths = [\"files\"]\n{extra}\n{TOKENS}"
    ));
    write(&s.p("files"), "app.conf", b"listen = 8080\n");
    s
}

/// Whether `tool` runs; in CI (`CI` set) a missing one fails the test.
fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "{tool} is needed for this test"
    );
    if !ok {
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

#[test]
fn backup_list_verify_rollback_recover_and_metrics_with_postgres() {
    let Some(pg) = Postgres::start() else { return };
    pg.createdb("app");
    pg.psql(
        "app",
        "create table items(id serial primary key, v text); \
         insert into items(v) select md5(g::text) from generate_series(1, 3000) g;",
    );
    let s = Site::new(&format!(
        r#"
[components.db]
command = "{dump} -Fc app"
restore_command = "{restore} --clean --if-exists -d app"
filename = "app.dump"
[components.files]
paths = ["files"]
{TOKENS}
"#,
        dump = pg.shell("pg_dump"),
        restore = pg.shell("pg_restore"),
    ));
    write(&s.p("files"), "app.conf", b"db = app\n");
    let srv = Server::start(&s, &["--no-schedules"]);
    let at_backup = pg.items_fingerprint("app");

    // Backup: a job, run in the background, whose result is `cairn run`'s report.
    let (status, job) = srv.json(
        "POST",
        "/v1/backups",
        Some(OPERATOR),
        Some(r#"{"component": "db", "kind": "pre-deploy", "reason": "deploy 41"}"#),
    );
    assert_eq!(status, 202, "{job}");
    assert!(matches!(job["state"].as_str(), Some("queued" | "running")));
    let done = srv.wait(job["id"].as_str().unwrap());
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["requested_by"], "deployer");
    let snap = done["result"]["components"][0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(done["progress"]["bytes"].as_u64().unwrap() > 0, "{done}");

    // List: the snapshot with its kind and reason; filters.
    let (status, list) = srv.json("GET", "/v1/backups?component=db", Some(READER), None);
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], snap.as_str());
    assert_eq!(list[0]["kind"], "pre-deploy");
    assert_eq!(list[0]["reason"], "deploy 41");
    assert!(list[0]["size"].as_u64().unwrap() > 1000);
    let (_, none) = srv.json("GET", "/v1/backups?kind=manual", Some(READER), None);
    assert_eq!(none.as_array().unwrap().len(), 0, "{none}");

    // Verify the snapshot with its data, then the whole repository.
    let v = srv.job(
        "/v1/verify",
        &format!(r#"{{"snapshot": "{snap}", "read_data": true}}"#),
    );
    assert_eq!(v["state"], "succeeded", "{v}");
    assert!(v["result"]["packs_read"].as_u64().unwrap() >= 1, "{v}");
    let v = srv.job("/v1/verify", r#"{"read_data": true}"#);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["result"]["errors"].as_array().unwrap().len(), 0);

    // Rollback: rows change, the job returns the database to the snapshot, after a
    // pre-rollback snapshot of the changed state.
    pg.psql(
        "app",
        "delete from items where id % 5 = 0; insert into items(v) values ('after');",
    );
    assert_ne!(pg.items_fingerprint("app"), at_backup);
    let rb = srv.job(
        "/v1/rollback",
        &format!(r#"{{"component": "db", "snapshot": "{}"}}"#, &snap[..8]),
    );
    assert_eq!(rb["state"], "succeeded", "{rb}");
    assert_eq!(pg.items_fingerprint("app"), at_backup);
    let pre = rb["result"]["pre_rollback"].as_str().unwrap().to_string();
    let (_, versions) = srv.json("GET", "/v1/versions?component=db", Some(READER), None);
    let kinds: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pre-deploy", "pre-rollback"], "{versions}");
    assert_eq!(versions[1]["id"], pre.as_str());

    // Recover: every component's newest snapshot, in recovery order; files come back.
    srv.job("/v1/backups", r#"{"component": "files"}"#);
    std::fs::remove_file(s.p("files/app.conf")).unwrap();
    let rc = srv.job("/v1/recover", r#"{"components": ["files"]}"#);
    assert_eq!(rc["state"], "succeeded", "{rc}");
    assert_eq!(std::fs::read(s.p("files/app.conf")).unwrap(), b"db = app\n");

    // The scripts' paths: the same operations.
    let (status, j) = srv.json(
        "POST",
        "/backup",
        Some(OPERATOR),
        Some(r#"{"type": "pre-deploy", "component": "files", "reason": "alias"}"#),
    );
    assert_eq!(status, 202, "{j}");
    assert_eq!(srv.wait(j["id"].as_str().unwrap())["state"], "succeeded");
    let (status, l) = srv.json("GET", "/list?component=files", Some(READER), None);
    assert_eq!(status, 200);
    assert_eq!(l[0]["reason"], "alias", "{l}");
    let (status, _) = srv.json("GET", "/versions?component=files", Some(READER), None);
    assert_eq!(status, 200);
    let backup_id = l[0]["id"].as_str().unwrap();
    for (path, body) in [
        (
            "/rollback",
            format!(r#"{{"backup_id": "{backup_id}", "component": "files"}}"#),
        ),
        ("/verify", r#"{"component": "files"}"#.to_string()),
        ("/recover", r#"{"components": ["files"]}"#.to_string()),
    ] {
        let done = srv.job(path, &body);
        assert_eq!(done["state"], "succeeded", "{path}: {done}");
    }

    // A failing component's job fails with the component's error.
    pg.psql("postgres", "drop database app with (force)");
    let f = srv.job("/v1/backups", r#"{"component": "db"}"#);
    assert_eq!(f["state"], "failed", "{f}");
    assert!(f["errors"][0].as_str().unwrap().contains("db:"), "{f}");

    // Status is `cairn status --json`.
    let (status, st) = srv.json("GET", "/v1/status", Some(READER), None);
    assert_eq!(status, 200);
    let mut cli = s.json(&["status"], 4);
    let mut api = st.clone();
    // (Ages tick between the two readings.)
    for v in [&mut cli, &mut api] {
        for c in v["components"].as_array_mut().unwrap() {
            c["age_s"] = serde_json::Value::Null;
        }
    }
    assert_eq!(api["components"], cli["components"], "API and CLI differ");

    // Metrics: promtool accepts them; the figures are the site's.
    let (status, text) = srv.call("GET", "/metrics", Some(READER), None);
    assert_eq!(status, 200);
    for want in [
        "cairn_component_last_success_timestamp_seconds{component=\"db\"}",
        "cairn_component_snapshot_size_bytes{component=\"files\"} 9",
        "cairn_component_failures_total{component=\"db\"} 1",
        "cairn_jobs{state=\"running\"} 0",
        "cairn_repository_size_bytes ",
        "cairn_repository_free_bytes ",
        "cairn_repository_oldest_unverified_age_seconds ",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    if have("promtool", "--version") {
        let (ok, said) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .output_with_stdin(text.as_bytes());
        assert!(ok.success(), "promtool: {said}\n{text}");
    }
    assert_eq!(srv.terminate(), Some(0));
}

/// `Command::output` with bytes on stdin.
trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String);
}

impl WithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String) {
        use std::io::Write;
        let mut c = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

#[test]
fn tokens_and_bad_requests_get_json_errors_and_refusals_are_logged() {
    let s = files_site("");
    let srv = Server::start(&s, &["--no-schedules"]);
    let (status, h) = srv.json("GET", "/healthz", None, None);
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    let backup = Some(r#"{"component": "files"}"#);
    for (method, path, token, body, want, code) in [
        ("GET", "/v1/status", None, None, 401, "unauthorized"),
        (
            "GET",
            "/v1/status",
            Some("not-a-token-at-all"),
            None,
            401,
            "unauthorized",
        ),
        ("GET", "/metrics", None, None, 401, "unauthorized"),
        (
            "POST",
            "/v1/backups",
            Some(READER),
            backup,
            403,
            "forbidden",
        ),
        ("POST", "/backup", Some(READER), backup, 403, "forbidden"),
        ("DELETE", "/v1/jobs/x", Some(READER), None, 403, "forbidden"),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some("{not json"),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some("[]"),
            422,
            "unprocessable",
        ),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some(r#"{"component": 3}"#),
            422,
            "unprocessable",
        ),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some(r#"{"component": "files", "colour": 1}"#),
            422,
            "unprocessable",
        ),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some(r#"{"component": "nope"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/backups",
            Some(OPERATOR),
            Some(r#"{"component": "files", "kind": "weekly"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/rollback",
            Some(OPERATOR),
            Some(r#"{"component": "files"}"#),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/verify",
            Some(OPERATOR),
            Some(r#"{"snapshot": "ffffffff"}"#),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/verify",
            Some(OPERATOR),
            Some(r#"{"max_age": "soon"}"#),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/versions?component=nope",
            Some(READER),
            None,
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/versions",
            Some(READER),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/backups?limit=0",
            Some(READER),
            None,
            400,
            "bad_request",
        ),
        ("GET", "/v1/jobs/nope", Some(READER), None, 404, "not_found"),
        ("GET", "/v2/nothing", Some(READER), None, 404, "not_found"),
    ] {
        let (got, e) = srv.json(method, path, token, body);
        assert_eq!(got, want, "{method} {path} {body:?}: {e}");
        assert_eq!(e["error"], code, "{method} {path}: {e}");
        assert!(!e["detail"].as_str().unwrap().is_empty());
    }
    // Not JSON at all.
    let url = format!("{}/v1/backups", srv.base);
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {OPERATOR}")])
        .args([
            "-H",
            "Content-Type: text/plain",
            "--data",
            "component=files",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "415");
    // An oversized body is refused by the body limit, before it is parsed.
    // (curl, which reads the answer even when the server stops reading the body early.)
    let big = format!(
        r#"{{"component": "files", "reason": "{}"}}"#,
        "x".repeat(200_000)
    );
    std::fs::write(s.p("big.json"), &big).unwrap();
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {OPERATOR}")])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", s.p("big.json").display()))
        .arg(&url)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.ends_with("\n413") && said.contains("payload_too_large"),
        "{said}"
    );

    // Every refusal of a token is in the audit log (written off the request's thread),
    // without the token.
    let t = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(s.p("state/audit.jsonl")).unwrap_or_default();
        if log.lines().filter(|l| l.contains("\"denied\"")).count() >= 6
            || t.elapsed() > Duration::from_secs(10)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let denied: Vec<&str> = log.lines().filter(|l| l.contains("\"denied\"")).collect();
    assert_eq!(denied.len(), 6, "{log}");
    assert!(denied.iter().any(|l| l.contains("/metrics")));
    assert!(!log.contains("not-a-token-at-all") && !log.contains(READER));
    let o = s.json(&["log"], 0);
    assert!(o.to_string().contains("auth"), "{o}");
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn jobs_of_a_component_queue_cancel_safely_and_status_answers_under_load() {
    let s = files_site("[components.big]\npaths = [\"big\"]\n");
    // Enough data that a backup runs for a while.
    for i in 0..24u64 {
        write(&s.p("big"), &format!("f{i:02}"), &random_bytes(i, 4 << 20));
    }
    let srv = Server::start(&s, &["--no-schedules"]);
    std::thread::sleep(Duration::from_millis(300));
    let idle_kib = srv.rss_kib();
    let b1 = srv.start_job("/v1/backups", r#"{"component": "big"}"#);
    let b2 = srv.start_job("/v1/backups", r#"{"component": "big", "reason": "second"}"#);
    let f = srv.start_job("/v1/backups", r#"{"component": "files"}"#);
    assert_eq!(b1["state"], "running", "{b1}");
    assert_eq!(
        b2["state"], "queued",
        "two jobs of one component queue: {b2}"
    );
    assert_eq!(
        f["state"], "running",
        "another component's job runs beside: {f}"
    );

    // 50 status requests at once while the backup runs: every one answered.
    let mut peak_kib = srv.rss_kib();
    let started = Instant::now();
    let times: Vec<Duration> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..50)
            .map(|_| {
                sc.spawn(|| {
                    let t = Instant::now();
                    let (status, _) = srv.call("GET", "/v1/status", Some(READER), None);
                    assert_eq!(status, 200);
                    t.elapsed()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    peak_kib = peak_kib.max(srv.rss_kib());
    let (_, b1_now) = srv.json(
        "GET",
        &format!("/v1/jobs/{}", b1["id"].as_str().unwrap()),
        Some(READER),
        None,
    );
    assert_eq!(
        b1_now["state"], "running",
        "the requests overlapped the backup"
    );
    eprintln!(
        "50 concurrent /v1/status during a backup ({}): p50 {:.1} ms, p99 {:.1} ms, all in {:.0} ms; RSS idle {} MiB, during the backup {} MiB",
        b1_now["state"],
        ms[ms.len() / 2],
        ms[(ms.len() * 99).div_ceil(100) - 1],
        started.elapsed().as_secs_f64() * 1000.0,
        idle_kib / 1024,
        peak_kib / 1024
    );

    // Cancel: the queued one is dropped at once; the running one stops at a safe point.
    let (status, c2) = srv.json(
        "DELETE",
        &format!("/v1/jobs/{}", b2["id"].as_str().unwrap()),
        Some(OPERATOR),
        None,
    );
    assert_eq!(
        (status, c2["state"].as_str()),
        (202, Some("cancelled")),
        "{c2}"
    );
    let (status, c1) = srv.json(
        "DELETE",
        &format!("/v1/jobs/{}", b1["id"].as_str().unwrap()),
        Some(OPERATOR),
        None,
    );
    assert_eq!(status, 202, "{c1}");
    let d1 = srv.wait(b1["id"].as_str().unwrap());
    assert!(
        d1["state"] == "cancelled" || d1["state"] == "succeeded",
        "a backup asked to stop ends cancelled (or had just finished): {d1}"
    );
    let (status, again) = srv.json(
        "DELETE",
        &format!("/v1/jobs/{}", b2["id"].as_str().unwrap()),
        Some(OPERATOR),
        None,
    );
    assert_eq!((status, again["error"].as_str()), (409, Some("conflict")));
    // A running verify cannot be stopped safely.
    let v = srv.start_job("/v1/verify", r#"{"read_data": true}"#);
    let (status, e) = srv.json(
        "DELETE",
        &format!("/v1/jobs/{}", v["id"].as_str().unwrap()),
        Some(OPERATOR),
        None,
    );
    assert!(
        status == 409 || status == 404 || e["state"] == "succeeded",
        "{status} {e}"
    );
    srv.wait(v["id"].as_str().unwrap());
    let (_, jobs) = srv.json("GET", "/v1/jobs", Some(READER), None);
    assert!(jobs.as_array().unwrap().len() >= 4);
    assert_eq!(srv.terminate(), Some(0));
    // Whatever the cancel left is consistent, and the next run stores the rest.
    assert!(s.ok(&["check", "--read-data"]).contains("no errors found"));
    let r = s.json(&["run", "big"], 0);
    assert_eq!(r["ok"], true);
}

#[test]
fn a_server_killed_mid_backup_leaves_a_repository_that_checks_and_the_next_job_succeeds() {
    // A source that streams 80 MB and then stalls for 58 s: the kill must land while the
    // backup runs, with packs already stored. Progress is counted as sealed windows are
    // collected, which happens only as later windows are read, so the stream is long enough
    // for several windows to be collected before it stalls.
    let s = files_site(
        "[components.big]\ncommand = \"head -c 80000000 /dev/urandom; sleep 58\"\nfilename = \"stream\"\n",
    );
    let mut srv = Server::start(&s, &["--no-schedules"]);
    let j = srv.start_job("/v1/backups", r#"{"component": "big"}"#);
    let path = format!("/v1/jobs/{}", j["id"].as_str().unwrap());
    let t = Instant::now();
    // Packs stored under packs/XX/, not the temporary files of one being written.
    let packs = |dir: std::path::PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .filter(|f| !f.file_name().to_string_lossy().starts_with(".tmp"))
            .count()
    };
    loop {
        let (_, now) = srv.json("GET", &path, Some(READER), None);
        assert_eq!(now["state"], "running", "{now}");
        if now["progress"]["bytes"].as_u64().unwrap_or(0) >= 32_000_000
            && packs(s.p("repo/packs")) > 0
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(50),
            "no packs stored before the stream stalled: {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    let _ = Command::new("pkill").args(["-f", "sleep 58"]).status();
    assert!(s.ok(&["check", "--read-data"]).contains("no errors found"));
    assert!(s.versions("big").is_empty());
    let text = std::fs::read_to_string(s.cfg()).unwrap();
    std::fs::write(s.cfg(), text.replace("; sleep 58", "")).unwrap();
    assert!(s.ok(&["check", "--read-data"]).contains("no errors found"));
    let srv = Server::start(&s, &["--no-schedules"]);
    let done = srv.job("/v1/backups", r#"{"component": "big"}"#);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(s.ok(&["check", "--read-data"]).contains("no errors found"));

    assert_eq!(srv.terminate(), Some(0));

    // SIGTERM during a backup: the backup stops at a safe point (here: right after its
    // `before` hook), nothing is stored for it, and the service exits 0.
    let text = std::fs::read_to_string(s.cfg()).unwrap();
    std::fs::write(
        s.cfg(),
        text.replace(
            "[components.big]\n",
            "[components.big]\nbefore = \"sleep 1\"\n",
        ),
    )
    .unwrap();
    let srv = Server::start(&s, &["--no-schedules"]);
    let before = s.versions("big").len();
    let j = srv.start_job("/v1/backups", r#"{"component": "big"}"#);
    assert_eq!(j["state"], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.terminate(), Some(0));
    assert_eq!(
        s.versions("big").len(),
        before,
        "the stopped backup stored no snapshot"
    );
    let log = std::fs::read_to_string(s.p("state/audit.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"job\"") && l.contains("\"cancelled\"")),
        "{log}"
    );
    assert!(s.ok(&["check", "--read-data"]).contains("no errors found"));
}

#[test]
fn schedules_run_as_jobs_of_the_same_service() {
    let s = files_site(
        "[[schedules]]\ncron = \"0 3 * * *\"\ncomponents = [\"files\"]\n[[schedules]]\ncron = \"0 4 * * *\"\naction = \"check\"\n",
    );
    let srv = Server::start(&s, &["--run-now"]);
    let t = Instant::now();
    let jobs = loop {
        let (_, jobs) = srv.json("GET", "/v1/jobs", Some(READER), None);
        let done = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["state"] == "succeeded")
            .count();
        if done == 2 {
            break jobs;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{jobs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let by: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["requested_by"].as_str().unwrap())
        .collect();
    assert!(
        by.contains(&"schedule:run-files") && by.contains(&"schedule:check"),
        "{jobs}"
    );
    assert_eq!(s.versions("files").len(), 1);
    // Each schedule's job also logs its line, as the daemon does.
    let lines = srv.lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("\"schedule\":\"check\"")),
        "{lines:?}"
    );
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn https_with_the_configured_certificate() {
    if !have("openssl", "version") {
        return;
    }
    let s = files_site("");
    let (cert, key) = (s.p("tls.crt"), s.p("tls.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(s.cfg()).unwrap();
    std::fs::write(
        s.cfg(),
        text.replace(
            "[server]\n",
            "[server]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n",
        ),
    )
    .unwrap();
    let srv = Server::start(&s, &["--no-schedules"]);
    assert!(srv.base.starts_with("https://"), "{}", srv.base);
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, body) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("{}/healthz", srv.base),
    ]);
    assert_eq!(code, Some(0));
    assert!(body.contains("\"ok\""), "{body}");
    let (code, body) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {READER}"),
        &format!("{}/v1/status", srv.base),
    ]);
    assert_eq!(code, Some(0));
    assert!(body.contains("\"components\""), "{body}");
    // Plain HTTP on the TLS port gets no answer; an unknown certificate is refused.
    let (_, body) = curl(&[&format!("{}/healthz", srv.base.replace("https", "http"))]);
    assert!(!body.contains("\"ok\""));
    let (code, _) = curl(&[&format!("{}/healthz", srv.base)]);
    assert_ne!(code, Some(0));
    assert_eq!(srv.terminate(), Some(0));
}

#[test]
fn a_config_without_tokens_or_with_a_bad_listen_address_is_refused_clearly() {
    let s = Site::new("[components.files]\npaths = [\"files\"]\n");
    let o = s.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("[[server.tokens]]"));
    let s =
        Site::new("[components.files]\npaths = [\"files\"]\n[server]\nlisten = \"everywhere\"\n");
    let o = s.run(&["serve"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("server.listen"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = Site::new(
        "[components.files]\npaths = [\"files\"]\n[server]\n[[server.tokens]]\nname = \"x\"\ntoken = \"short\"\n",
    );
    let o = s.run(&["serve"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("shorter than 16"));
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let s = files_site("");
    let o = s.run(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn schemathesis_finds_nothing_against_the_live_openapi_document() {
    if !have("schemathesis", "--version") {
        return;
    }
    let s = files_site("[profiles]\nall = [\"files\"]\n");
    let srv = Server::start(&s, &["--no-schedules"]);
    let (status, doc) = srv.json("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    for p in [
        "/v1/backups",
        "/v1/jobs/{id}",
        "/metrics",
        "/backup",
        "/rollback",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is not documented");
    }
    let o = Command::new("schemathesis")
        .current_dir(s.p(""))
        .env("SCHEMATHESIS_HOOKS", "")
        .args(["run", &format!("{}/v1/openapi.json", srv.base)])
        .args(["-H", &format!("Authorization: Bearer {OPERATOR}")])
        .args(["--max-examples", "30", "--seed", "1"])
        // DELETE /v1/jobs/ID cancels: the job stays readable (cancelled) so that its caller
        // sees the cancel take effect, which this check takes for a deleted resource.
        .args(["--exclude-checks", "use_after_free"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "schemathesis found failures:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("No issues found"), "{out}");
    // The jobs it started end, and the repository is whole.
    for j in srv
        .json("GET", "/v1/jobs", Some(READER), None)
        .1
        .as_array()
        .unwrap()
    {
        srv.wait(j["id"].as_str().unwrap());
    }
    assert_eq!(srv.terminate(), Some(0));
    assert!(s.ok(&["check"]).contains("no errors found"));
}

#[test]
fn drills_profiles_limits_component_verification_and_cross_site_forms() {
    let s = files_site("[components.empty]\npaths = [\"empty\"]\n[profiles]\nall = [\"files\"]\n");
    std::fs::create_dir_all(s.p("empty")).unwrap();
    let srv = Server::start(&s, &["--no-schedules"]);
    // A profile's backup, with the job's address in Location.
    let o = Command::new("curl")
        .args(["-s", "-D", "-", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {OPERATOR}")])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"profile": "all"}"#,
        ])
        .arg(format!("{}/v1/backups", srv.base))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_lowercase();
    let loc = said
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no Location: {said}"))
        .trim()
        .to_string();
    let id = loc.strip_prefix("/v1/jobs/").unwrap();
    assert_eq!(srv.wait(id)["state"], "succeeded");
    srv.job(
        "/v1/backups",
        r#"{"component": "files", "reason": "second"}"#,
    );
    let (_, one) = srv.json("GET", "/v1/backups?limit=1", Some(READER), None);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["reason"], "second", "newest first: {one}");

    // A drill and a component's verify: both recorded, both shown by status.
    let d = srv.job("/v1/drills", r#"{"component": "files"}"#);
    assert_eq!(d["state"], "succeeded", "{d}");
    let v = srv.job("/v1/verify", r#"{"component": "files", "read_data": true}"#);
    assert_eq!(v["state"], "succeeded", "{v}");
    let (_, st) = srv.json("GET", "/v1/status", Some(READER), None);
    assert_eq!(st["components"][0]["last_drill"]["ok"], true, "{st}");
    assert_eq!(st["components"][0]["last_verify"]["ok"], true, "{st}");
    let (status, e) = srv.json(
        "POST",
        "/v1/verify",
        Some(OPERATOR),
        Some(r#"{"component": "empty"}"#),
    );
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );

    // The page's forms refuse posts from other origins, even with the cookie.
    let post = |extra: &[&str]| {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Cookie: cairn_token={OPERATOR}")])
            .args(extra)
            .args(["--data", "component=files"])
            .arg(format!("{}/ui/backup", srv.base))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(post(&["-H", "Origin: http://evil.example"]), "403");
    assert_eq!(post(&["-H", "Sec-Fetch-Site: cross-site"]), "403");
    assert_eq!(post(&["-H", "Sec-Fetch-Site: same-site"]), "403");
    let host = srv.base.strip_prefix("http://").unwrap();
    assert_eq!(post(&["-H", &format!("Origin: http://{host}")]), "303");

    // No token ever reaches the service's output or a job's JSON.
    let (_, jobs) = srv.json("GET", "/v1/jobs", Some(READER), None);
    for j in jobs.as_array().unwrap() {
        srv.wait(j["id"].as_str().unwrap());
    }
    let (_, jobs) = srv.json("GET", "/v1/jobs", Some(READER), None);
    let out = srv.lines.lock().unwrap().join("\n");
    for secret in [OPERATOR, READER] {
        assert!(!jobs.to_string().contains(secret));
        assert!(!out.contains(secret), "{out}");
    }
    assert_eq!(srv.terminate(), Some(0));
    let log = std::fs::read_to_string(s.p("state/audit.jsonl")).unwrap();
    assert!(!log.contains(OPERATOR) && !log.contains(READER));
    assert!(
        log.contains("\"requested_by\":\"deployer\""),
        "who asked is in the audit log"
    );
}
