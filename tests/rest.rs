//! Repositories on a REST server (`-r rest:http://…`), against `rclone serve restic` on
//! 127.0.0.1: every everyday command, an append-only server, credentials.

mod common;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;

/// `rclone serve restic` over a folder of the test's workspace; killed on drop.
struct Rclone {
    child: Child,
    port: u16,
}

impl Rclone {
    fn start(e: &Env, extra: &[&str]) -> Option<Rclone> {
        if Command::new("rclone").arg("version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "rclone is needed (Debian package rclone)"
            );
            eprintln!("skipped: rclone is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("rclone")
            .args(["serve", "restic", "--config", "/dev/null", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .arg(e.path("server"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "rclone did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Rclone { child, port })
    }
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs cairn on the repository `url` instead of the workspace's local one (the same
/// password, cache and home).
fn on(e: &Env, url: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(common::bin());
    Env::with_env_of(&mut c, &e.cmd(&[]));
    c.arg("-r").arg(url).args(args).output().unwrap()
}

fn ok(e: &Env, url: &str, args: &[&str]) -> String {
    let o = on(e, url, args);
    assert!(
        o.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn source(e: &Env) -> std::path::PathBuf {
    let src = e.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    common::write(&src, "big", &common::random_bytes(1, 3 << 20));
    common::write(&src, "d/small", b"small");
    src
}

/// A server started with `extra`, a repository initialised on it, and a source to back up.
fn initialised(e: &Env, extra: &[&str]) -> Option<(Rclone, String, std::path::PathBuf)> {
    let s = Rclone::start(e, extra)?;
    let url = format!("rest:http://127.0.0.1:{}/repo", s.port);
    ok(
        e,
        &url,
        &["init", "--kdf-memory", "64", "--kdf-iterations", "1"],
    );
    Some((s, url, source(e)))
}

#[test]
fn every_everyday_command_works_on_a_rest_server() {
    let e = Env::bare();
    let Some((_server, url, src)) = initialised(&e, &[]) else {
        return;
    };
    assert!(e.path("server/repo/config").exists(), "restic's layout");
    let srcs = src.to_str().unwrap();
    ok(&e, &url, &["snapshot", srcs]);
    common::write(&src, "d/new", b"new");
    let again = ok(&e, &url, &["snapshot", srcs]);
    assert!(again.contains("1 new"), "{again}");
    let out = e.path("out");
    ok(
        &e,
        &url,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    );
    assert!(common::files(&src) == common::files(&out.join(src.strip_prefix("/").unwrap())));
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    ok(
        &e,
        &url,
        &[
            "forget",
            "--keep-last",
            "1",
            "--prune",
            "--max-unused",
            "0%",
        ],
    );
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    let o = on(&e, &url, &["init"]);
    assert_ne!(o.status.code(), Some(0), "a second init is refused");
    // A site whose repository is on the server: status works, without a free-space figure.
    fs::write(e.path("pw"), format!("{}\n", e.password)).unwrap();
    let cfg = e.path("cairn.toml");
    fs::write(
        &cfg,
        format!(
            "state_dir = \"state\"\n[repository]\npath = \"{url}\"\npassword_file = \"pw\"\n\
             [components.files]\npaths = [\"{srcs}\"]\n"
        ),
    )
    .unwrap();
    let mut c = Command::new(common::bin());
    Env::with_env_of(&mut c, &e.cmd(&[]));
    let o = c
        .args(["--config", cfg.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("free space not known (on a server)"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_append_only_server_takes_snapshots_and_refuses_prune_clearly() {
    let e = Env::bare();
    let Some((_server, url, src)) = initialised(&e, &["--append-only"]) else {
        return;
    };
    let srcs = src.to_str().unwrap();
    ok(&e, &url, &["snapshot", srcs]);
    common::write(&src, "d/new", b"new");
    ok(&e, &url, &["snapshot", srcs]);
    // The sessions (locks) a run leaves are removed even here.
    assert_eq!(
        fs::read_dir(e.path("server/repo/locks")).unwrap().count(),
        0
    );
    let o = on(&e, &url, &["forget", "--keep-last", "1", "--prune"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("append-only") && err.contains("where the storage is"),
        "{err}"
    );
    // The server's folder is a repository in its own right: prune runs there.
    let local = e.path("server/repo");
    ok(
        &e,
        local.to_str().unwrap(),
        &["forget", "--keep-last", "1", "--prune"],
    );
    assert!(ok(&e, &url, &["check"]).contains("no errors found"));
}

#[test]
fn credentials_are_checked_and_never_shown() {
    let e = Env::bare();
    let Some(s) = Rclone::start(&e, &["--user", "backup", "--pass", "s3cret"]) else {
        return;
    };
    let good = format!("rest:http://backup:s3cret@127.0.0.1:{}/repo", s.port);
    ok(
        &e,
        &good,
        &["init", "--kdf-memory", "64", "--kdf-iterations", "1"],
    );
    let bad = format!("rest:http://backup:wrong@127.0.0.1:{}/repo", s.port);
    let o = on(&e, &bad, &["snapshots"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("401") && err.contains("user and password"),
        "{err}"
    );
    assert!(!err.contains("wrong") && !err.contains("s3cret"), "{err}");
    drop(s);
    let o = on(&e, &good, &["snapshots"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("REST server running"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
