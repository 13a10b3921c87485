//! Command-line contract: stdin sources, password sources, keys, bad input and exit codes.

mod common;

use std::fs;
use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn stdin_is_stored_as_one_file() {
    let env = Env::new();
    let data = random_bytes(11, 700_000);
    let mut child = env
        .cmd(&[
            "--json",
            "snapshot",
            "--stdin",
            "--stdin-filename",
            "db.sql",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["files_new"], 1);
    assert_eq!(s["bytes_read"], 700_000);
    let dumped = env.run(&["dump", "latest", "/db.sql"]);
    assert_eq!(dumped.stdout, data);
    assert_eq!(
        env.json(&["snapshots"], 0)[0]["paths"],
        serde_json::json!(["/db.sql"])
    );
}

#[test]
fn stdin_from_command_stores_its_output_and_fails_with_it() {
    let env = Env::new();
    let s = env.json(
        &[
            "snapshot",
            "--stdin-filename",
            "dump.sql",
            "--stdin-from-command",
            "--",
            "sh",
            "-c",
            "printf 'CREATE TABLE t;\\n'; seq 1 50000",
        ],
        0,
    );
    assert_eq!(s["files_new"], 1);
    let out = env.run(&["dump", "latest", "dump.sql"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("CREATE TABLE t;\n1\n2\n"));
    assert!(text.ends_with("\n50000\n"));
    let before = env
        .repo_files()
        .iter()
        .filter(|f| f.0.starts_with("snapshots/"))
        .count();
    let o = env.run(&[
        "snapshot",
        "--stdin-from-command",
        "--",
        "sh",
        "-c",
        "echo partial; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = env
        .repo_files()
        .iter()
        .filter(|f| f.0.starts_with("snapshots/"))
        .count();
    assert_eq!(before, after, "a failed command writes no snapshot");
    env.ok(&["check"]);
    let o = env.run(&[
        "snapshot",
        "--stdin-from-command",
        "--",
        "/nonexistent/pg_dump",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/pg_dump"));
}

#[test]
fn wrong_password_exits_12_and_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let before = env.repo_files();
    let o = env
        .cmd(&["snapshot", src.to_str().unwrap()])
        .env("CAIRN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert_eq!(before, env.repo_files());
}

#[test]
fn password_sources() {
    let env = Env::new();
    let pwfile = env.path("pw");
    fs::write(&pwfile, format!("{}\n", env.password)).unwrap();
    let ok = |c: &mut std::process::Command| assert!(c.output().unwrap().status.success());
    ok(env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .args(["--password-file", pwfile.to_str().unwrap()]));
    ok(env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &pwfile));
    ok(env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_COMMAND", format!("echo '{}'", env.password)));
    let o = env
        .cmd(&["snapshots"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no password given"));
    let o = env
        .cmd(&["snapshots"])
        .args(["--password-file", "/nonexistent/pw"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/pw"));
}

#[test]
fn keys_can_be_added_changed_and_removed() {
    let env = Env::new();
    let keys = env.json(&["key", "list"], 0);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let id = env.add_key("second");
    assert!(
        env.cmd(&["snapshots"])
            .env("CAIRN_PASSWORD", "second")
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(env.json(&["key", "list"], 0).as_array().unwrap().len(), 2);
    // The key in use cannot be removed; another one can.
    let current = env
        .json(&["key", "list"], 0)
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.run(&["key", "remove", &current[..8]]).status.code(),
        Some(1)
    );
    env.ok(&["key", "remove", &id[..8]]);
    assert_eq!(
        env.cmd(&["snapshots"])
            .env("CAIRN_PASSWORD", "second")
            .output()
            .unwrap()
            .status
            .code(),
        Some(12)
    );
    // passwd replaces the current key.
    assert!(
        env.cmd(&[
            "key",
            "passwd",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1"
        ])
        .env("CAIRN_NEW_PASSWORD", "third")
        .output()
        .unwrap()
        .status
        .success()
    );
    assert_eq!(env.run(&["snapshots"]).status.code(), Some(12));
    assert!(
        env.cmd(&["snapshots"])
            .env("CAIRN_PASSWORD", "third")
            .output()
            .unwrap()
            .status
            .success()
    );
}

fn one_line_error(o: &std::process::Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_input_gives_one_line_errors_and_changes_nothing() {
    let env = Env::bare();
    let missing = env.path("nope");
    let m = missing.to_str().unwrap();
    // Missing repository: exit 10.
    one_line_error(
        &env.cmd(&["snapshots"]).args(["-r", m]).output().unwrap(),
        10,
        m,
    );
    // A directory that is not a repository: exit 10 too, and it stays as it was.
    let notrepo = env.path("notrepo");
    fs::create_dir(&notrepo).unwrap();
    fs::write(notrepo.join("x"), b"x").unwrap();
    one_line_error(
        &env.cmd(&["snapshots"])
            .args(["-r", notrepo.to_str().unwrap()])
            .output()
            .unwrap(),
        10,
        "no repository",
    );
    // init there is refused.
    one_line_error(
        &env.cmd(&["init"])
            .args(["-r", notrepo.to_str().unwrap()])
            .output()
            .unwrap(),
        1,
        "refusing",
    );
    assert_eq!(fs::read_dir(&notrepo).unwrap().count(), 1);
    // A repository path that is a file.
    let file = env.path("afile");
    fs::write(&file, b"x").unwrap();
    one_line_error(
        &env.cmd(&["snapshots"])
            .args(["-r", file.to_str().unwrap()])
            .output()
            .unwrap(),
        1,
        "is a file",
    );
    // init over an existing repository is refused and changes nothing.
    let env = Env::new();
    let before = env.repo_files();
    one_line_error(
        &env.run(&["init", "--kdf-memory", "64"]),
        1,
        "already exists",
    );
    assert_eq!(before, env.repo_files());
    // A source path that does not exist.
    one_line_error(
        &env.run(&["snapshot", "/nonexistent/source/dir"]),
        1,
        "/nonexistent/source/dir",
    );
    assert_eq!(before, env.repo_files());
    // Bad flags: clap's usage error, exit 2.
    assert_eq!(
        env.run(&["snapshot", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_eq!(
        env.run(&["init", "--chunk-avg", "3000"]).status.code(),
        Some(1)
    );
    one_line_error(&env.run(&["ls", "deadbeef"]), 1, "no snapshot matches");
}

#[test]
fn truncated_key_and_unknown_version_are_named() {
    let env = Env::new();
    let key = env
        .repo_files()
        .into_iter()
        .find(|f| f.0.starts_with("keys/"))
        .unwrap()
        .0;
    let path = env.repo().join(&key);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    one_line_error(&env.run(&["snapshots"]), 1, &key[5..]);
    fs::write(&path, &bytes).unwrap();
    let cfg = env.repo().join("config");
    let orig = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, orig.replace("\"version\": 1", "\"version\": 99")).unwrap();
    one_line_error(&env.run(&["snapshots"]), 1, "version 99");
    fs::write(&cfg, "{ not json").unwrap();
    one_line_error(&env.run(&["snapshots"]), 1, "config");
}

#[test]
fn unreadable_files_are_skipped_reported_and_exit_3() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("locked-dir")).unwrap();
    fs::write(src.join("ok"), b"fine").unwrap();
    fs::write(src.join("secret"), b"no").unwrap();
    fs::write(src.join("locked-dir/inner"), b"no").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads everything; drop the capabilities that let it.
    let mut c = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set=-dac_override,-dac_read_search", "--", bin()]);
        c
    } else {
        std::process::Command::new(bin())
    };
    c.args([
        "-r",
        env.repo().to_str().unwrap(),
        "--json",
        "snapshot",
        src.to_str().unwrap(),
    ])
    .env("CAIRN_PASSWORD", &env.password)
    .env("CAIRN_CACHE_DIR", env.path("cache"));
    let o = c.output().unwrap();
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("secret") && err.contains("locked-dir"),
        "{err}"
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["errors"], 2);
    assert!(
        s["snapshot_id"].is_string(),
        "the snapshot is still written"
    );
    let names = env.ls_names(&["ls", "latest", src.to_str().unwrap()]);
    assert_eq!(names, vec!["ok"]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn default_repository_is_created_on_first_snapshot() {
    let env = Env::bare();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let o = std::process::Command::new(bin())
        .args(["snapshot", src.to_str().unwrap()])
        .env_remove("CAIRN_REPOSITORY")
        .env("HOME", env.path("home"))
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("CAIRN_CACHE_DIR")
        .env("CAIRN_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("creating the default repository"));
    assert!(env.path("home/.local/share/cairn/repo/config").exists());
    assert!(env.path("home/.cache/cairn").is_dir());
}

#[test]
fn restore_options_include_exclude_overwrite_and_dry_run() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/a.md"), b"a").unwrap();
    fs::write(src.join("docs/b.txt"), b"b").unwrap();
    fs::write(src.join("top"), b"t").unwrap();
    env.snapshot(&[&src]);
    let rel = src.strip_prefix("/").unwrap();
    let t1 = env.path("t1");
    let r = env.restore(&t1, &["--include", "*.md"]);
    assert_eq!(r["report"]["files"], 1);
    assert!(t1.join(rel).join("docs/a.md").exists() && !t1.join(rel).join("top").exists());
    let t2 = env.path("t2");
    env.restore(&t2, &["--exclude", "docs"]);
    assert!(t2.join(rel).join("top").exists() && !t2.join(rel).join("docs").exists());
    let dry = env.restore(&env.path("t3"), &["--dry-run"]);
    assert_eq!(dry["report"]["files"], 3);
    assert!(!env.path("t3").exists());
    // Overwrite policies.
    fs::write(t2.join(rel).join("top"), b"local change").unwrap();
    let never = env.restore(&t2, &["--overwrite", "never"]);
    assert_eq!(fs::read(t2.join(rel).join("top")).unwrap(), b"local change");
    assert!(never["report"]["skipped"].as_u64().unwrap() >= 1);
    env.restore(&t2, &["--overwrite", "if-changed"]);
    assert_eq!(fs::read(t2.join(rel).join("top")).unwrap(), b"t");
    let again = env.restore(&t2, &["--overwrite", "if-changed"]);
    assert_eq!(again["report"]["files"], 0, "{again}");
}

#[test]
fn cat_and_stats_print_json() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    env.snapshot(&[&src]);
    let c = env.json(&["cat", "config"], 0);
    assert_eq!(c["version"], 1);
    let s = env.json(&["cat", "snapshot", "latest"], 0);
    let tree = env.json(&["cat", "tree", s["tree"].as_str().unwrap()], 0);
    assert_eq!(tree["nodes"].as_array().unwrap().len(), 1);
    let st = env.json(&["stats", "latest"], 0);
    assert_eq!(st["files"], 1);
    assert_eq!(st["restore_size"], 4);
}
