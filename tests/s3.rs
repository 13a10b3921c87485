//! Repositories in an S3 bucket (`-r s3:http://…`), against SeaweedFS (`weed mini`) on
//! 127.0.0.1 with authentication on: every command, copies both ways, bad credentials, an
//! unknown bucket, a server killed mid-snapshot, and cairn itself killed mid-snapshot and
//! mid-prune.

mod common;

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Env;
use common::seaweed::{self, ACCESS_KEY, SECRET_KEY, Seaweed};

/// cairn on the repository `url` with the workspace's password, cache and home, and the
/// server's credentials.
fn cmd(e: &Env, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin());
    Env::with_env_of(&mut c, &e.cmd(&[]));
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("CAIRN_S3_RETRIES", "2")
        .arg("-r")
        .arg(url)
        .args(args);
    c
}

fn on(e: &Env, url: &str, args: &[&str]) -> Output {
    cmd(e, url, args).output().unwrap()
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

fn init(e: &Env, url: &str, extra: &[&str]) {
    let mut args = vec!["init", "--kdf-memory", "64", "--kdf-iterations", "1"];
    args.extend_from_slice(extra);
    ok(e, url, &args);
}

fn source(e: &Env) -> std::path::PathBuf {
    let src = e.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    common::write(&src, "big", &common::random_bytes(1, 3 << 20));
    common::write(&src, "d/small", b"small");
    src
}

fn restored_equal(e: &Env, url: &str, src: &std::path::Path, to: &str) {
    let out = e.path(to);
    ok(
        e,
        url,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    );
    assert!(common::files(src) == common::files(&out.join(src.strip_prefix("/").unwrap())));
}

#[test]
fn every_command_works_on_a_bucket() {
    let Some(s) = seaweed::shared() else { return };
    let e = Env::bare();
    let bucket = s.bucket();
    let url = s.url(&bucket, "repo");
    init(&e, &url, &[]);
    assert!(
        ok(&e, &url, &["cat", "config"]).contains(&(32u32 << 20).to_string()),
        "32 MiB packs on a server by default"
    );
    let src = source(&e);
    let srcs = src.to_str().unwrap();
    ok(&e, &url, &["snapshot", srcs]);
    common::write(&src, "d/new", b"new");
    let again = ok(&e, &url, &["snapshot", srcs, "--tag", "second"]);
    assert!(again.contains("1 new"), "{again}");
    assert!(ok(&e, &url, &["ls", "latest", "--recursive"]).contains("d/new"));
    assert!(ok(&e, &url, &["find", "new"]).contains("d/new"));
    assert_eq!(
        ok(&e, &url, &["dump", "latest", &format!("{srcs}/d/small")]),
        "small"
    );
    restored_equal(&e, &url, &src, "out");
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    assert!(ok(&e, &url, &["check", "--read-data-subset", "1/2"]).contains("no errors found"));
    // The ledger of proofs: a second run within the age reads nothing again.
    assert!(ok(&e, &url, &["check", "--max-age", "30d"]).contains("no errors found"));
    let again = ok(&e, &url, &["--json", "check", "--max-age", "30d"]);
    assert!(
        again.contains("\"packs_read\":0") || again.contains("\"packs_read\": 0"),
        "{again}"
    );
    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&e, &url, &["--json", "snapshots"])).unwrap();
    let id = |i: usize| snaps[i]["id"].as_str().unwrap().to_string();
    assert!(ok(&e, &url, &["diff", &id(0), &id(1)]).contains("d/new"));
    ok(&e, &url, &["stats"]);
    // Keys.
    let mut c = cmd(&e, &url, &["key", "add"]);
    let o = c.env("CAIRN_NEW_PASSWORD", "second").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let keys = ok(&e, &url, &["--json", "key", "list"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&keys)
            .unwrap()
            .as_array()
            .map(Vec::len),
        Some(2),
        "{keys}"
    );
    let o = cmd(&e, &url, &["snapshots"])
        .env("CAIRN_PASSWORD", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "the new key opens the repository");
    // Repair rebuilds the index from the bucket's packs.
    ok(&e, &url, &["repair", "index"]);
    assert!(ok(&e, &url, &["check"]).contains("no errors found"));
    // Copy to a local repository, and from it to another prefix of the bucket.
    let local = e.path("local");
    let l = local.to_str().unwrap();
    ok(
        &e,
        l,
        &["init", "--kdf-memory", "64", "--kdf-iterations", "1"],
    );
    let pw = e.path("pw");
    fs::write(&pw, format!("{}\n", e.password)).unwrap();
    let pws = pw.to_str().unwrap();
    ok(
        &e,
        l,
        &["copy", "--from-repo", &url, "--from-password-file", pws],
    );
    restored_equal(&e, l, &src, "out-local");
    let back = s.url(&bucket, "copy");
    init(&e, &back, &[]);
    ok(
        &e,
        &back,
        &["copy", "--from-repo", l, "--from-password-file", pws],
    );
    restored_equal(&e, &back, &src, "out-back");
    // Retention gives the space back in the bucket.
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
    assert_eq!(ok(&e, &url, &["snapshots"]).matches("second").count(), 1);
    let o = on(&e, &url, &["init"]);
    assert_ne!(o.status.code(), Some(0), "a second init is refused");
}

#[test]
fn bad_credentials_and_unknown_buckets_fail_clearly() {
    let Some(s) = seaweed::shared() else { return };
    let e = Env::bare();
    let bucket = s.bucket();
    let url = s.url(&bucket, "repo");
    init(&e, &url, &[]);
    let o = cmd(&e, &url, &["snapshots"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
    let o = cmd(&e, &url, &["snapshots"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("no S3 credentials"), "{err}");
    // The shared credentials file of a profile does as well as the environment.
    let aws = e.path("home/.aws");
    fs::create_dir_all(&aws).unwrap();
    fs::write(
        aws.join("credentials"),
        format!(
            "[backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let o = cmd(&e, &url, &["snapshots"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_PROFILE", "backup")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = on(&e, &s.url("no-such-bucket-at-all", "repo"), &["snapshots"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err.contains("no-such-bucket-at-all") && err.contains("does not exist"),
        "{err}"
    );
    // Nothing listens: named, with the fix.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = on(
        &e,
        &format!("s3:http://127.0.0.1:{port}/b/r"),
        &["snapshots"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0));
    assert!(err.contains("reachable"), "{err}");
}

/// A source that takes long enough to back up to be interrupted: many packs of 64 KiB.
fn long_source(e: &Env, big_files: u64) -> std::path::PathBuf {
    let src = e.path("long");
    fs::create_dir_all(&src).unwrap();
    for i in 0..big_files {
        fs::write(
            src.join(format!("f{i:02}")),
            common::random_bytes(100 + i, 1_000_000),
        )
        .unwrap();
    }
    for i in 0..600u64 {
        common::write(
            &src,
            &format!("small/s{i:04}"),
            &common::random_bytes(i, 3000),
        );
    }
    src
}

#[test]
fn a_server_killed_mid_snapshot_loses_nothing_and_the_next_run_succeeds() {
    let Some(mut s) = Seaweed::start() else {
        return;
    };
    let e = Env::bare();
    let bucket = s.bucket();
    let url = s.url(&bucket, "repo");
    init(&e, &url, &["--pack-size", "64K"]);
    let small = source(&e);
    ok(&e, &url, &["snapshot", small.to_str().unwrap()]);
    let src = long_source(&e, 64);
    let mut child = cmd(&e, &url, &["snapshot", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    s.kill();
    let o = child.wait_with_output().unwrap();
    s.start_again();
    // It failed on the kill, clearly (retries could not ride out a server that stays down).
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reachable") && !err.contains("panicked"),
        "{err}"
    );
    // A store just started answers 500 until its volumes are up (retrying through such a
    // storm is tested against a fake server in the backend's tests): wait for it.
    s.wait_readable(&bucket, "repo/config");
    let o = cmd(&e, &url, &["check", "--read-data"])
        .env("CAIRN_S3_RETRIES", "10")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no errors found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&e, &url, &["snapshot", src.to_str().unwrap()]);
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    restored_equal(&e, &url, &src, "out");
    // The snapshot from before the kill is whole too.
    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&e, &url, &["--json", "snapshots"])).unwrap();
    let first = snaps[0]["id"].as_str().unwrap();
    let out = e.path("out-small");
    ok(
        &e,
        &url,
        &["restore", first, "--target", out.to_str().unwrap()],
    );
    assert!(common::files(&small) == common::files(&out.join(small.strip_prefix("/").unwrap())));
}

#[test]
fn sigkill_mid_snapshot_and_mid_prune_leaves_a_bucket_that_checks() {
    let Some(s) = seaweed::shared() else { return };
    let e = Env::bare();
    let bucket = s.bucket();
    let url = s.url(&bucket, "repo");
    init(&e, &url, &["--pack-size", "64K"]);
    // Enough new data in every run (36 MB) that each lasts well past its kill.
    let src = long_source(&e, 36);
    let srcs = src.to_str().unwrap();
    let mut killed = 0;
    for delay_ms in [150u64, 250, 400] {
        let mut child = cmd(&e, &url, &["snapshot", srcs])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        assert!(ok(&e, &url, &["check"]).contains("no errors found"));
        // Change a little, so that there is something to prune later, and add as much new
        // data as the first run had, so that every run can be killed mid-way.
        common::write(&src, &format!("small/s{delay_ms:04}"), b"changed");
        for i in 0..36 {
            common::write(
                &src,
                &format!("more{delay_ms}/f{i:02}"),
                &common::random_bytes(delay_ms * 100 + i, 1_000_000),
            );
        }
    }
    assert!(killed > 0, "every run ended before it could be killed");
    ok(&e, &url, &["snapshot", srcs]);
    ok(&e, &url, &["snapshot", srcs]);
    // Kill a prune of most of it.
    let mut child = cmd(
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
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    child.wait().unwrap();
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    ok(&e, &url, &["prune", "--max-unused", "0%"]);
    assert!(ok(&e, &url, &["check", "--read-data"]).contains("no errors found"));
    restored_equal(&e, &url, &src, "out");
}

/// A proxy on 127.0.0.1 in front of `port` that records the request line of every HTTP
/// request sent through it.
struct Counting {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Counting {
    fn start(target: u16) -> Counting {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let log = log.clone();
                std::thread::spawn(move || {
                    // Request lines, found in the stream (bodies are sealed bytes: no false
                    // matches to speak of); a line may straddle two reads.
                    let mut carry = Vec::new();
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = client.read(&mut buf) {
                        if n == 0 || server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        carry.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&carry).into_owned();
                        let mut last = 0;
                        for (i, _) in text.match_indices(" HTTP/1.1\r\n") {
                            let start = text[..i].rfind("\r\n").map_or(0, |p| p + 2);
                            let line = &text[start..i];
                            if ["GET ", "PUT ", "POST ", "HEAD ", "DELETE "]
                                .iter()
                                .any(|m| line.starts_with(m))
                            {
                                log.lock().unwrap().push(line.to_string());
                            }
                            last = i + 11;
                        }
                        let keep_from = carry.len().saturating_sub(512).max(last.min(carry.len()));
                        carry.drain(..keep_from);
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Counting { port, seen }
    }

    /// The request lines so far, forgotten.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

#[test]
fn an_unchanged_snapshot_costs_a_few_requests_however_many_directories() {
    let Some(s) = seaweed::shared() else { return };
    let proxy = Counting::start(s.port);
    let e = Env::bare();
    let bucket = s.bucket();
    let url = format!("s3:http://127.0.0.1:{}/{bucket}/repo", proxy.port);
    init(&e, &url, &[]);
    let src = e.path("tree");
    for d in 0..300 {
        common::write(
            &src,
            &format!("d{d:03}/sub/f"),
            format!("file {d}").as_bytes(),
        );
    }
    let srcs = src.to_str().unwrap();
    for _ in 0..8 {
        ok(&e, &url, &["snapshot", srcs]);
    }
    proxy.take();
    ok(&e, &url, &["snapshot", srcs]);
    let unchanged = proxy.take();
    // Eight snapshots to choose the parent from, each read once ever, not at every run.
    let snapshot_gets = unchanged
        .iter()
        .filter(|l| l.starts_with("GET") && l.contains("/repo/snapshots/"))
        .count();
    assert!(snapshot_gets <= 1, "{}", unchanged.join("\n"));
    assert!(
        unchanged.len() <= 20,
        "{} requests for 600 unchanged directories and 8 snapshots:\n{}",
        unchanged.len(),
        unchanged.join("\n")
    );
    // A restore from another cache reads the tree pack once and the data by range.
    let out = e.path("out");
    let o = cmd(
        &e,
        &url,
        &["restore", "latest", "--target", out.to_str().unwrap()],
    )
    .env("CAIRN_CACHE_DIR", e.path("other-cache"))
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let restore = proxy.take();
    let pack_reads = restore.iter().filter(|l| l.contains("/packs/")).count();
    assert!(
        pack_reads <= 6,
        "{pack_reads} pack reads:\n{}",
        restore.join("\n")
    );
    // check --read-data-subset reads its share of the packs only.
    let all = {
        ok(&e, &url, &["check", "--read-data"]);
        proxy
            .take()
            .iter()
            .filter(|l| l.starts_with("GET") && l.contains("/packs/"))
            .count()
    };
    ok(&e, &url, &["check", "--read-data-subset", "1/1000"]);
    let some = proxy
        .take()
        .iter()
        .filter(|l| l.starts_with("GET") && l.contains("/packs/"))
        .count();
    assert!(all >= 1 && some < all, "{some} of {all}");
}

#[test]
fn a_bucket_mounts_and_reads_back() {
    if !std::path::Path::new("/dev/fuse").exists() || !common::is_root() {
        eprintln!("skipped: /dev/fuse is absent or this is not root, so nothing can be mounted");
        return;
    }
    let Some(s) = seaweed::shared() else { return };
    let e = Env::bare();
    let bucket = s.bucket();
    let url = s.url(&bucket, "repo");
    init(&e, &url, &[]);
    let src = source(&e);
    ok(&e, &url, &["snapshot", src.to_str().unwrap()]);
    let at = e.path("mnt");
    fs::create_dir_all(&at).unwrap();
    let mut child = cmd(&e, &url, &["mount", at.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !at.join("latest").exists() {
        if t.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = Command::new("umount").arg("-l").arg(&at).status();
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "mount did not come up: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let inside = at.join("latest").join(src.strip_prefix("/").unwrap());
    let read = (
        fs::read(inside.join("big")),
        fs::read(inside.join("d/small")),
    );
    let _ = Command::new("umount").arg(&at).status();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(read.0.unwrap() == fs::read(src.join("big")).unwrap());
    assert_eq!(read.1.unwrap(), b"small");
}
