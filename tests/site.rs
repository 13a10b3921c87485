//! The site's commands end to end: `cairn.toml`, run, versions, rollback, recover, drill,
//! status, alerts, schedules, the daemon and the audit log, with the real binary.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::site::Site;
use common::webhook::{Receiver, closed_port};
use common::{Env, files, write};
use serde_json::Value;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every entry below `root`: relative path → (kind, content for files).
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
                out.push((rel, "dir".into()));
            } else {
                out.push((
                    rel,
                    String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_paths_rollback_makes_the_directory_identical_and_can_be_undone() {
    let s = Site::new(
        r#"
[components.app]
paths = ["app"]
exclude = ["*.log"]
"#,
    );
    let app = s.p("app");
    write(&app, "a.txt", b"alpha");
    write(&app, "b.txt", b"beta");
    write(&app, "sub/c.txt", b"gamma");
    let first = s.json(&["run", "app", "--reason", "before upgrade"], 0);
    let snap = first["components"][0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let at_snapshot = tree(&app);
    // Changes since: one changed, one removed, files and a folder added, an excluded log.
    write(&app, "b.txt", b"BETA, changed");
    std::fs::remove_file(app.join("a.txt")).unwrap();
    write(&app, "d.txt", b"new");
    write(&app, "sub/e.txt", b"new too");
    write(&app, "newdir/f/g.txt", b"deep");
    write(&app, "server.log", b"not backed up");
    let before_rollback = tree(&app);

    let plan = s.ok(&["rollback", "app", &snap[..8], "--dry-run"]);
    assert!(plan.contains("take a pre-rollback snapshot"), "{plan}");
    assert_eq!(tree(&app), before_rollback, "a dry run changes nothing");

    let r = s.json(&["rollback", "app", &snap[..8]], 0);
    assert_eq!(r["snapshot"]["id"], snap.as_str());
    assert!(r["restored"]["deleted"].as_u64().unwrap() >= 3, "{r}");
    let mut expected = at_snapshot.clone();
    expected.push(("server.log".into(), "not backed up".into()));
    expected.sort();
    assert_eq!(
        tree(&app),
        expected,
        "identical to the snapshot; the excluded log is kept"
    );

    // The pre-rollback snapshot holds the state before, and rolls back the rollback.
    let pre = r["pre_rollback"].as_str().unwrap().to_string();
    let v = s.versions("app");
    let pre_v = v.iter().find(|x| x["id"] == pre.as_str()).unwrap();
    assert_eq!(pre_v["kind"], "pre-rollback");
    assert_eq!(v[0]["reason"], "before upgrade");
    s.ok(&["rollback", "app", &pre[..8]]);
    assert_eq!(tree(&app), before_rollback);
    let log = s.json(&["log", "--component", "app"], 0);
    let ops: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["run", "rollback", "rollback"]);
}

#[test]
fn a_failing_command_fails_its_component_alone_and_alerts() {
    let hook = Receiver::start(200);
    let s = Site::new(&format!(
        r#"
[components.files]
paths = ["data"]
[components.db]
command = "echo partial; echo 'pg_dump: connection refused' >&2; exit 2"
on_failure = "echo \"$CAIRN_COMPONENT: $CAIRN_ERROR\" > failed.txt"
[alerts]
webhooks = ["{}"]
ping = {{ start = "{}", success = "{}", fail = "{}" }}
"#,
        hook.url("/hook"),
        hook.url("/start"),
        hook.url("/ok"),
        hook.url("/fail")
    ));
    write(&s.p("data"), "x", b"x");
    let r = s.json(&["run"], 1);
    let comps = r["components"].as_array().unwrap();
    assert_eq!(comps[0]["component"], "files");
    assert_eq!(comps[0]["ok"], true);
    assert!(comps[0]["snapshot"].is_string());
    assert_eq!(comps[1]["ok"], false);
    assert!(comps[1]["snapshot"].is_null());
    let err = comps[1]["error"].as_str().unwrap();
    assert!(
        err.contains("exit status: 2") && err.contains("pg_dump: connection refused"),
        "{err}"
    );
    assert!(
        s.versions("db").is_empty(),
        "no snapshot for the failed component"
    );
    assert_eq!(s.versions("files").len(), 1);
    let failed = std::fs::read_to_string(s.p("failed.txt")).unwrap();
    assert!(failed.starts_with("db: command"), "{failed}");
    let events = hook.events("/hook");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["event"], "failure");
    assert_eq!(e["component"], "db");
    assert!(e["error"].as_str().unwrap().contains("exit status: 2"));
    assert!(e["host"].is_string() && e["time"].is_string(), "{e}");
    let paths: Vec<String> = hook.received().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/start".into()) && paths.contains(&"/fail".into()),
        "{paths:?}"
    );
    assert!(!paths.contains(&"/ok".into()), "{paths:?}");
    // Status names the failure and exits with its own code.
    let st = s.json(&["status"], 4);
    let db = &st["components"][1];
    assert!(
        db["breaches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["limit"] == "failed"),
        "{db}"
    );
}

#[test]
fn an_unreachable_webhook_delays_a_run_by_at_most_its_timeout() {
    // A listener that accepts connections and never answers: the worst kind of endpoint.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let s = Site::new(&format!(
        r#"
[components.bad]
command = "exit 1"
[components.bad2]
command = "exit 1"
[alerts]
webhooks = ["http://127.0.0.1:{port}/hook", "http://127.0.0.1:{}/hook"]
timeout = "2s"
"#,
        closed_port()
    ));
    let t = Instant::now();
    let o = s.run(&["run"]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("notification to"), "{}", stderr(&o));
    // Four notifications (two events, two webhooks), each bounded by the 2 s timeout.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    drop(silent);
}

#[test]
fn size_anomalies_and_freshness_alert_once_and_recover() {
    let hook = Receiver::start(200);
    let s = Site::new(&format!(
        "[components.data]\npaths = [\"data\"]\n[alerts]\nwebhooks = [\"{}\"]\ndrill_max_age = \"400d\"\n",
        hook.url("/h")
    ));
    write(&s.p("data"), "f", &vec![1u8; 10_000]);
    for day in 1..=3 {
        s.ok(&["run", "--time", &format!("2026-03-0{day}T12:00:00Z")]);
    }
    assert!(hook.events("/h").is_empty());
    write(&s.p("data"), "g", &vec![2u8; 20_000]);
    let r = s.json(&["run", "--time", "2026-03-04T12:00:00Z"], 0);
    assert!(
        (r["components"][0]["size_change_pct"].as_f64().unwrap() - 200.0).abs() < 0.1,
        "{r}"
    );
    let events = hook.events("/h");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "size_change");
    assert_eq!(events[0]["component"], "data");
    assert_eq!(events[0]["snapshot"], r["components"][0]["snapshot"]);
    assert_eq!(events[0]["detail"]["size"], 30_000);

    // Two days later with no backup: stale, notified once however often status runs.
    let late = ["status", "--notify", "--time", "2026-03-06T12:00:00Z"];
    let st = s.json(&late, 4);
    let limits: Vec<&str> = st["components"][0]["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["limit"].as_str().unwrap())
        .collect();
    assert!(limits.contains(&"stale"), "{st}");
    s.json(&late, 4);
    let stale: Vec<Value> = hook
        .events("/h")
        .into_iter()
        .filter(|e| e["event"] == "stale")
        .collect();
    assert_eq!(stale.len(), 1, "{:?}", hook.events("/h"));
    assert_eq!(stale[0]["component"], "data");
    assert!(
        stale[0]["error"].as_str().unwrap().contains("limit 25h"),
        "{}",
        stale[0]
    );
    assert_eq!(stale[0]["detail"]["age_s"], 2 * 86400);
    // Fresh again: a `recovered` event for each cleared limit.
    s.ok(&["run", "--time", "2026-03-06T12:00:00Z"]);
    // Still 200 % above the median of the window: that limit holds no more than before.
    let st = s.json(&["status", "--notify", "--time", "2026-03-06T13:00:00Z"], 4);
    let limits: Vec<&str> = st["components"][0]["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["limit"].as_str().unwrap())
        .collect();
    assert_eq!(limits, ["size_change"], "{st}");
    let recovered: Vec<Value> = hook
        .events("/h")
        .into_iter()
        .filter(|e| e["event"] == "recovered")
        .collect();
    assert!(
        recovered
            .iter()
            .any(|e| e["detail"]["limit"] == "stale" && e["component"] == "data"),
        "{recovered:?}"
    );
}

#[test]
fn retention_is_by_kind_and_counted_per_component_over_200_days() {
    let s = Site::new(
        r#"
[components.a]
paths = ["a"]
[components.b]
paths = ["b"]
[kinds.scheduled]
keep_daily = 7
keep_monthly = 3
[kinds.pre-deploy]
keep_within = "25d"
"#,
    );
    write(&s.p("a"), "f", b"a");
    write(&s.p("b"), "f", b"b");
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z").unwrap();
    for day in 0..200 {
        let t = (start + chrono::Duration::days(day)).to_rfc3339();
        s.ok(&["run", "--kind", "scheduled", "--time", &t]);
        if day % 10 == 0 {
            let t = (start + chrono::Duration::days(day) + chrono::Duration::hours(1)).to_rfc3339();
            s.ok(&[
                "run",
                "a",
                "--kind",
                "pre-deploy",
                "--reason",
                "deploy",
                "--time",
                &t,
            ]);
        }
    }
    let count = |comp: &str, kind: &str| {
        s.versions(comp)
            .iter()
            .filter(|v| v["kind"] == kind)
            .count()
    };
    // Newest day 2026-07-19: 7 daily (Jul 13-19) + the newest of June and May.
    assert_eq!(count("a", "scheduled"), 9);
    assert_eq!(
        count("b", "scheduled"),
        9,
        "b's retention is its own, whatever a has"
    );
    // Pre-deploys on days 170, 180, 190 are within 25 days of the newest.
    assert_eq!(count("a", "pre-deploy"), 3);
    assert_eq!(count("b", "pre-deploy"), 0);
    let times: Vec<String> = s
        .versions("a")
        .iter()
        .filter(|v| v["kind"] == "scheduled")
        .map(|v| v["time"].as_str().unwrap()[..10].to_string())
        .collect();
    assert_eq!(
        times,
        [
            "2026-05-31",
            "2026-06-30",
            "2026-07-13",
            "2026-07-14",
            "2026-07-15",
            "2026-07-16",
            "2026-07-17",
            "2026-07-18",
            "2026-07-19"
        ]
    );
}

#[test]
fn bad_config_and_bad_requests_are_refused_clearly() {
    let s = Site::new(
        "\n[components.db]\ncommand = \"pg_dupm -Fc db\"\n[components.etc]\npaths = [\"etc\"]\n",
    );
    write(&s.p("etc"), "x", b"x");
    let o = s.run(&["config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("line 8: components.db.command: program `pg_dupm`") && e.contains("not on PATH"),
        "{e}"
    );

    // A typo in a key: the line, the key and what is expected.
    std::fs::write(
        s.cfg(),
        std::fs::read_to_string(s.cfg())
            .unwrap()
            .replace("paths =", "path ="),
    )
    .unwrap();
    let o = s.run(&["run"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("line 11") && e.contains("unknown field `path`") && e.contains("`paths`"),
        "{e}"
    );
    s.config("[components.db]\ncommand = \"true\"\n[components.etc]\npaths = [\"etc\"]\n");
    s.ok(&["config", "check"]);

    // Rolling a component back to another component's snapshot is refused.
    let r = s.json(&["run"], 0);
    let db_snap = r["components"][0]["snapshot"].as_str().unwrap();
    let o = s.run(&["rollback", "etc", &db_snap[..8]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is of component db, not etc: refusing"),
        "{}",
        stderr(&o)
    );
    // Unknown names.
    let o = s.run(&["run", "nope"]);
    assert!(
        stderr(&o).contains("\"nope\" is neither a profile () nor a component (db, etc)"),
        "{}",
        stderr(&o)
    );
    let o = s.run(&["run", "--kind", "nightly"]);
    assert!(
        stderr(&o).contains("add a [kinds.nightly] table"),
        "{}",
        stderr(&o)
    );
    // Without a config.
    let o = s.env.run(&["run"]);
    assert!(stderr(&o).contains("no config file"), "{}", stderr(&o));
    let o = s
        .env
        .cmd(&["--config", "/nonexistent.toml", "status"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn two_runs_of_one_component_never_overlap() {
    let s = Site::new(
        "[components.slow]\ncommand = \"sleep 3; echo done\"\n[components.quick]\ncommand = \"echo quick\"\n",
    );
    let mut first = Reaped(
        s.cmd(&["run", "slow"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lock = s.p("state/locks/slow.lock");
    let t = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("run by pid")) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the first run never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = s.run(&["run", "slow"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("component slow is busy") && e.contains(&format!("pid {}", first.0.id())),
        "{e}"
    );
    // Another component is not held up.
    s.ok(&["run", "quick"]);
    assert!(first.0.wait().unwrap().success());
    assert_eq!(s.versions("slow").len(), 1);
}

#[test]
fn recover_restores_every_component_in_order_on_a_new_machine() {
    let s = Site::new(
        r#"
recovery_order = ["db", "files"]
[components.files]
paths = ["files"]
before = "echo files >> order.txt"
[components.db]
command = "printf 'dump of the database'"
restore_command = "echo db >> order.txt; cat > db-restored.txt"
"#,
    );
    write(&s.p("files"), "conf/app.toml", b"[app]\nport = 8080\n");
    write(&s.p("files"), "secret.env", b"KEY=1\n");
    s.ok(&["run"]);
    let expected = files(&s.p("files"));
    // The new machine: the config, the repository, the password; nothing else.
    for d in ["files", "state", "cache"] {
        std::fs::remove_dir_all(s.p(d)).unwrap();
    }
    std::fs::remove_file(s.p("order.txt")).unwrap();
    let plan = s.ok(&["recover", "--dry-run"]);
    assert!(
        plan.find("db:").unwrap() < plan.find("files:").unwrap(),
        "{plan}"
    );
    let out = s.ok(&["recover"]);
    assert!(out.contains("recovered 2 of 2 components in"), "{out}");
    assert_eq!(files(&s.p("files")), expected);
    assert_eq!(
        std::fs::read_to_string(s.p("db-restored.txt")).unwrap(),
        "dump of the database"
    );
    assert_eq!(
        std::fs::read_to_string(s.p("order.txt")).unwrap(),
        "db\nfiles\n"
    );
    let r = s.json(&["recover", "--components", "db"], 0);
    assert_eq!(r["components"].as_array().unwrap().len(), 1);
    assert!(r["duration_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn drills_prove_restores_and_status_reports_them() {
    let s = Site::new(
        r#"
[components.files]
paths = ["files"]
probe = "grep -q port \"$CAIRN_RESTORED$CAIRN_TEST_ROOT/files/app.toml\""
[components.stream]
command = "printf 'hello stream'"
probe = "grep -q hello \"$CAIRN_RESTORED\""
[components.broken]
command = "echo x"
probe = "echo 'rows: 0' >&2; exit 1"
"#,
    );
    write(&s.p("files"), "app.toml", b"port = 1\n");
    s.ok(&["run"]);
    let root = std::fs::canonicalize(s.env.dir.path()).unwrap();
    let o = s
        .cmd(&["--json", "drill"])
        .env("CAIRN_TEST_ROOT", &root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = r["components"].as_array().unwrap();
    assert_eq!(
        (
            c[0]["ok"].as_bool(),
            c[1]["ok"].as_bool(),
            c[2]["ok"].as_bool()
        ),
        (Some(true), Some(true), Some(false)),
        "{r}"
    );
    assert_eq!(c[0]["verified"], 1);
    assert!(c[2]["error"].as_str().unwrap().contains("rows: 0"), "{r}");
    // Nothing left in the drill folder.
    assert_eq!(std::fs::read_dir(s.p("drills")).unwrap().count(), 0);
    let st = s.json(&["status"], 4);
    assert_eq!(st["components"][0]["last_drill"]["ok"], true);
    let broken = &st["components"][2];
    assert!(
        broken["breaches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["limit"] == "drill_failed"),
        "{broken}"
    );
    let o = s
        .cmd(&["drill", "files", "stream"])
        .env("CAIRN_TEST_ROOT", &root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = s.json(&["log", "--component", "broken"], 0);
    let ops: Vec<(&str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(ops, [("run", "ok"), ("drill", "failed")]);
}

#[test]
fn schedules_become_timers_and_cron_lines() {
    let s = Site::new(
        r#"
[components.db]
command = "true"
[profiles]
full = ["db"]
[[schedules]]
cron = "15 3 * * *"
profile = "full"
[[schedules]]
cron = "*/20 9-17 * * mon-fri"
action = "check"
"#,
    );
    let units = s.p("units");
    let out = s.ok(&["schedule", "install", "--unit-dir", units.to_str().unwrap()]);
    assert!(out.contains("cairn-run-full.timer"), "{out}");
    let timer = std::fs::read_to_string(units.join("cairn-run-full.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=*-*-* 03:15:00\n") && timer.contains("Persistent=true"),
        "{timer}"
    );
    let service = std::fs::read_to_string(units.join("cairn-run-full.service")).unwrap();
    let cfg = std::fs::canonicalize(s.cfg()).unwrap();
    assert!(
        service.contains(&format!(
            "--config {} run full --kind scheduled",
            cfg.display()
        )),
        "{service}"
    );
    let check = std::fs::read_to_string(units.join("cairn-check.service")).unwrap();
    assert!(
        check.contains("check --read-data --max-age 30d --read-data-subset 4%"),
        "{check}"
    );
    let ctimer = std::fs::read_to_string(units.join("cairn-check.timer")).unwrap();
    assert!(
        ctimer.contains("OnCalendar=Mon..Fri *-*-* 09..17:00,20,40:00"),
        "{ctimer}"
    );
    let st = s.json(
        &["schedule", "status", "--unit-dir", units.to_str().unwrap()],
        0,
    );
    assert_eq!(st[0]["installed"], true);
    assert!(st[0]["next"].as_str().unwrap().contains("03:15:00"), "{st}");
    // A schedule taken out of the config loses its units; unrelated files stay.
    std::fs::write(units.join("other.timer"), "[Timer]\n").unwrap();
    s.config("[components.db]\ncommand = \"true\"\n[[schedules]]\ncron = \"0 4 * * *\"\ncomponents = [\"db\"]\n");
    s.ok(&["schedule", "install", "--unit-dir", units.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cairn-run-db.service", "cairn-run-db.timer", "other.timer"]
    );
    s.ok(&[
        "schedule",
        "uninstall",
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_dir(&units).unwrap().count(), 1);
    // cron.d
    let cron = s.p("cron.d/cairn");
    s.ok(&[
        "schedule",
        "install",
        "--cron",
        "--cron-file",
        cron.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&cron).unwrap();
    assert!(
        text.contains(&format!("0 4 * * * root {}", common::bin())),
        "{text}"
    );
    assert!(text.contains("run db --kind scheduled"), "{text}");
    s.ok(&[
        "schedule",
        "uninstall",
        "--cron",
        "--cron-file",
        cron.to_str().unwrap(),
    ]);
    assert!(!cron.exists());
}

/// A child process killed when the test ends, however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_runs_schedules_logs_json_and_stops_safely_on_sigterm() {
    let s = Site::new(
        r#"
[components.quick]
command = "echo quick"
[components.slow]
command = "head -c 30000000 /dev/urandom; sleep 60"
[[schedules]]
cron = "0 0 1 1 *"
components = ["quick"]
[[schedules]]
cron = "0 0 1 1 *"
components = ["slow"]
"#,
    );
    let mut d = s
        .cmd(&["daemon", "--run-now"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = d.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The next line that is not a limit evaluation.
    let next = |what: &str| -> Value {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {what} line"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["action"] != "status" {
                return v;
            }
        }
    };
    assert_eq!(next("start")["action"], "start");
    let quick = next("job");
    assert_eq!(
        (quick["schedule"].as_str(), quick["ok"].as_bool()),
        (Some("run-quick"), Some(true)),
        "{quick}"
    );
    assert_eq!(quick["snapshots"].as_array().unwrap().len(), 1);
    // The slow job is storing its stream: stop the daemon in the middle.
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    let slow = next("slow job");
    assert_eq!(slow["schedule"], "run-slow");
    assert_eq!(slow["ok"], false);
    assert!(
        slow["error"].as_str().unwrap().contains("cancelled"),
        "{slow}"
    );
    assert_eq!(next("stop")["action"], "stop");
    assert!(d.wait().unwrap().success());
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the job did not stop: {:?}",
        t.elapsed()
    );
    assert!(s.versions("slow").is_empty());
    s.ok(&["check", "--read-data"]);
    // The next run works (and reuses what the stopped one stored).
    s.config("[components.slow]\ncommand = \"head -c 1000 /dev/zero\"\n");
    s.ok(&["run", "slow"]);
}

#[test]
fn an_sqlite_snapshot_taken_under_a_writer_is_a_consistent_prefix() {
    let s = Site::new("[components.app]\nsqlite = \"app.db\"\n");
    let db = s.p("app.db");
    let writer = format!(
        "import sqlite3, time\nc = sqlite3.connect({db:?}, isolation_level=None)\nc.execute('pragma journal_mode=wal')\n\
         c.execute('create table if not exists t(id integer primary key, pad blob)')\nc.execute('insert into t(pad) values (zeroblob(3000))')\n\
         open({ready:?}, 'w').close()\nwhile True:\n    c.execute('begin'); c.execute('insert into t(pad) values (zeroblob(3000))'); c.execute('commit')\n",
        db = db.display().to_string(),
        ready = s.p("ready").display().to_string()
    );
    let mut w = Reaped(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(&writer)
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while !s.p("ready").exists() {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let r = s.json(&["run"], 0);
        ids.push(r["components"][0]["snapshot"].as_str().unwrap().to_string());
    }
    let _ = w.0.kill();
    let _ = w.0.wait();
    let mut last = 0;
    let mut first_count = 0;
    for id in &ids {
        let out = s.p(&format!("restored-{id}.db"));
        let o = s.env.cmd(&["dump", id, "/app.db"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::write(&out, &o.stdout).unwrap();
        let q = |sql: &str| {
            let o = std::process::Command::new("sqlite3")
                .arg(&out)
                .arg(sql)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        assert_eq!(q("PRAGMA integrity_check"), "ok");
        // A prefix of the commits: ids 1..n without a gap, growing from one image to the next.
        let (n, max): (u64, u64) = {
            let v = q("select count(*) || ' ' || max(id) from t");
            let mut it = v.split(' ').map(|x| x.parse().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        };
        assert_eq!(n, max, "a gap in the writer's commits");
        assert!(n >= last && n > 1, "{n} after {last}");
        if last == 0 {
            first_count = n;
        }
        last = n;
    }
    // Rollback replaces the live database in one transaction.
    s.ok(&["rollback", "app", &ids[0][..8]]);
    let o = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA integrity_check")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
    let o = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("select count(*) from t")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        first_count.to_string(),
        "the first image's rows are back"
    );
}

#[test]
fn the_template_prints_and_checks_once_its_paths_exist() {
    let e = Env::bare();
    let a = e.ok(&["config", "template"]);
    let b = e.ok(&["init", "--config-template"]);
    assert_eq!(a, b);
    assert!(a.contains("[components.db]") && a.contains("[[schedules]]") && a.contains("[alerts]"));
    assert!(!e.repo().exists(), "printing the template creates nothing");
}

#[test]
fn runs_copy_new_snapshots_offsite_with_the_same_retention() {
    let offsite = Env::with_password("offsite password");
    let s = Site::new(&format!(
        r#"
[offsite.usb]
path = "{}"
password_file = "pw2"
components = ["a"]
[components.a]
paths = ["a"]
[components.b]
paths = ["b"]
[kinds.manual]
keep_last = 2
"#,
        offsite.repo().display()
    ));
    std::fs::write(s.p("pw2"), "offsite password\n").unwrap();
    write(&s.p("a"), "f", b"a");
    write(&s.p("b"), "f", b"b");
    let plan = s.ok(&["run", "--dry-run"]);
    assert!(plan.contains("copy new snapshots to offsite usb"), "{plan}");
    assert!(
        offsite
            .json(&["snapshots"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );
    let copies = || {
        offsite
            .json(&["snapshots", "--tag", "component=a"], 0)
            .as_array()
            .unwrap()
            .len()
    };
    for round in 1..=4 {
        write(&s.p("a"), "f", format!("a{round}").as_bytes());
        let r = s.json(
            &["run", "--time", &format!("2026-05-0{round}T10:00:00Z")],
            0,
        );
        let o = &r["offsites"][0];
        assert_eq!(
            (o["offsite"].as_str(), o["ok"].as_bool()),
            (Some("usb"), Some(true)),
            "{r}"
        );
        assert_eq!(
            o["copied"], 1,
            "round {round}: only the new snapshot of a: {r}"
        );
        assert_eq!(copies(), round.min(2), "round {round}");
    }
    assert!(
        offsite
            .json(&["snapshots", "--tag", "component=b"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );
    offsite.ok(&["check", "--read-data"]);
    // An offsite that cannot be opened fails the run, not the component's snapshot.
    std::fs::write(s.p("pw2"), "wrong\n").unwrap();
    let r = s.json(&["run", "a"], 1);
    assert_eq!(r["components"][0]["ok"], true);
    assert!(
        r["offsites"][0]["error"]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{r}"
    );
}

#[test]
fn a_rollback_in_place_keeps_a_symlinked_folder_on_the_way() {
    let s = Site::new("[components.app]\npaths = [\"link/app\"]\n");
    write(&s.p("real/app"), "conf", b"v1");
    std::os::unix::fs::symlink(s.p("real"), s.p("link")).unwrap();
    let r = s.json(&["run"], 0);
    let snap = r["components"][0]["snapshot"].as_str().unwrap().to_string();
    write(&s.p("real/app"), "conf", b"v2");
    write(&s.p("real/app"), "new", b"new");
    s.ok(&["rollback", "app", &snap[..8]]);
    assert!(
        std::fs::symlink_metadata(s.p("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        tree(&s.p("real/app")),
        [("conf".to_string(), "v1".to_string())]
    );
}

#[test]
fn a_rollback_never_deletes_the_repository_state_or_cache_inside_its_paths() {
    // The component is the whole workspace: the repository, the cache and the state folder
    // lie inside it, and none of them is in its snapshots.
    let s = Site::new("[components.all]\npaths = [\".\"]\n");
    write(&s.p("data"), "a", b"a");
    let r = s.json(&["run"], 0);
    let snap = r["components"][0]["snapshot"].as_str().unwrap().to_string();
    write(&s.p("data"), "new", b"created since");
    s.ok(&["rollback", "all", &snap[..8]]);
    assert!(!s.p("data/new").exists());
    assert!(
        s.p("repo/config").exists() && s.p("state/audit.jsonl").exists() && s.p("cache").is_dir()
    );
    s.ok(&["check", "--read-data"]);
    let log = s.json(&["log"], 0);
    assert_eq!(
        log.as_array().unwrap().len(),
        3,
        "run, rollback, check: {log}"
    );
}

#[test]
fn the_config_is_found_by_variable_and_default_place_and_limits_cover_disk_and_drills() {
    let hook = Receiver::start(200);
    let s = Site::new(&format!(
        "[components.data]\npaths = [\"data\"]\n[alerts]\nwebhooks = [\"{}\"]\ndisk_used = 0.01\n",
        hook.url("/h")
    ));
    write(&s.p("data"), "f", b"x");
    // CAIRN_CONFIG, then $XDG_CONFIG_HOME/cairn/cairn.toml.
    let by_env = s
        .env
        .cmd(&["--json", "run", "--time", "2026-01-01T00:00:00Z"])
        .env("CAIRN_CONFIG", s.cfg())
        .current_dir(s.env.dir.path())
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    let xdg = s.p("xdg");
    std::fs::create_dir_all(xdg.join("cairn")).unwrap();
    std::fs::copy(s.cfg(), xdg.join("cairn/cairn.toml")).unwrap();
    // Its relative paths are taken from its own folder: point them back here.
    for name in ["repo", "pw", "cache", "state", "data", "drills"] {
        std::os::unix::fs::symlink(s.p(name), xdg.join("cairn").join(name)).unwrap();
    }
    let mut c = s.env.cmd(&["--json", "versions", "data"]);
    c.env("XDG_CONFIG_HOME", &xdg).env_remove("CAIRN_CONFIG");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The disk limit (any use is over 0.01 %) fired once, from the run.
    let disk: Vec<Value> = hook
        .events("/h")
        .into_iter()
        .filter(|e| e["event"] == "disk_full")
        .collect();
    assert_eq!(disk.len(), 1, "{:?}", hook.events("/h"));
    assert!(
        disk[0]["component"].is_null()
            && disk[0]["detail"]["disk_used_pct"].as_f64().unwrap() > 0.01
    );
    // Never drilled and backed up 100 days ago: the drill is overdue.
    let st = s.json(&["status", "--time", "2026-04-11T00:00:00Z"], 4);
    let limits: Vec<&str> = st["components"][0]["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["limit"].as_str().unwrap())
        .collect();
    assert!(
        limits.contains(&"drill_overdue") && limits.contains(&"stale"),
        "{st}"
    );
    assert!(
        st["repository"]["breaches"][0]["limit"] == "disk_full",
        "{st}"
    );
}

#[test]
fn a_failed_rollback_says_how_to_return_to_the_state_before() {
    let s = Site::new(
        "[components.app]\npaths = [\"app\"]\nafter = \"echo 'service did not start' >&2; exit 1\"\non_failure = \"touch on_failure_ran\"\n",
    );
    write(&s.p("app"), "f", b"v1");
    // `after` fails on the run too: the snapshot is stored, the run reports the failure.
    let r = s.json(&["run"], 1);
    let snap = r["components"][0]["snapshot"].as_str().unwrap().to_string();
    write(&s.p("app"), "f", b"v2");
    let o = s.run(&["rollback", "app", &snap[..8]]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let pre = s
        .versions("app")
        .iter()
        .find(|v| v["kind"] == "pre-rollback")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains("service did not start"), "{e}");
    assert!(
        e.contains(&format!(
            "return to it with `cairn rollback app {}`",
            &pre[..8]
        )),
        "{e}"
    );
    assert!(s.p("on_failure_ran").exists());
    let log = s.json(&["log"], 0);
    assert_eq!(log.as_array().unwrap().last().unwrap()["result"], "failed");
}
