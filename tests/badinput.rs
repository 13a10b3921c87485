//! Bad input and hostile surroundings: a full disk, a read-only repository, a missing
//! password file, bad arguments to every maintenance command. Each gives a clear one-line
//! error and the right exit code, and nothing already stored is lost.
//!
//! The disk tests mount a small tmpfs and are skipped (with a note) where mounting is not
//! allowed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, files, random_bytes, write};

fn one_line_error(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"));
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("cannot mount a tmpfs here: disk tests skipped");
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A workspace whose repository lives on a tmpfs of `size` (cache and sources do not).
fn on_tmpfs(size: &str) -> Option<(Env, Mount)> {
    let e = Env::bare();
    let m = Mount::tmpfs(&e.repo(), size)?;
    e.ok(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    Some((e, m))
}

#[test]
fn a_full_disk_stops_the_snapshot_and_loses_nothing() {
    let Some((e, _m)) = on_tmpfs("3m") else {
        return;
    };
    let small = e.path("small");
    write(&small, "a", &random_bytes(1, 300_000));
    let first = e.snapshot(&[&small])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let big = e.path("big");
    for i in 0..8 {
        write(&big, &format!("f{i}"), &random_bytes(10 + i, 1_000_000));
    }
    let o = e.run(&["snapshot", big.to_str().unwrap()]);
    one_line_error(&o, 1, "No space left on device");
    // Nothing half-written is referenced, nothing is left behind, the earlier snapshot is
    // whole.
    e.ok(&["check", "--read-data"]);
    let temps: Vec<_> = e
        .repo_files()
        .into_iter()
        .filter(|(n, _)| n.contains(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    let t = e.path("r");
    e.json(&["restore", &first, "--target", t.to_str().unwrap()], 0);
    assert!(files(&t.join(small.strip_prefix("/").unwrap())) == files(&small));
    assert_eq!(e.json(&["snapshots"], 0).as_array().unwrap().len(), 1);
    // Room made (forget + prune need space for an index file): a smaller snapshot works.
    let o = e.run(&["snapshot", small.to_str().unwrap(), "--tag", "again"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_read_only_repository_can_be_read_not_written() {
    let Some((e, m)) = on_tmpfs("20m") else {
        return;
    };
    let src = e.path("src");
    write(&src, "a", &random_bytes(2, 200_000));
    let id = e.snapshot(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    m.remount("ro");
    // Reading works, with a warning that the run could not be announced.
    e.ok(&["snapshots"]);
    let t = e.path("r");
    let o = e.run(&["restore", &id, "--target", t.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(files(&t.join(src.strip_prefix("/").unwrap())) == files(&src));
    e.ok(&["check", "--read-data"]);
    // Writing fails with the reason, in one line.
    one_line_error(
        &e.run(&["snapshot", src.to_str().unwrap()]),
        1,
        "Read-only file system",
    );
    one_line_error(&e.run(&["prune"]), 1, "Read-only file system");
    one_line_error(&e.run(&["forget", &id]), 1, "Read-only file system");
    m.remount("rw");
    e.ok(&["check", "--read-data"]);
    assert_eq!(e.json(&["snapshots"], 0).as_array().unwrap().len(), 1);
}

#[test]
fn a_missing_password_file_is_named() {
    let e = Env::new();
    let o = e
        .cmd(&["snapshots", "--password-file", "/nonexistent/pw"])
        .env_remove("CAIRN_PASSWORD")
        .output()
        .unwrap();
    one_line_error(&o, 1, "/nonexistent/pw");
}

#[test]
fn maintenance_commands_reject_bad_arguments() {
    let e = Env::new();
    let before = e.repo_files();
    for (args, code) in [
        (vec!["forget", "--keep-daily", "x"], 2),
        (vec!["forget", "--keep-within", "7x"], 2),
        (vec!["forget", "--keep-daily", "-5"], 1),
        (
            vec!["forget", "--group-by", "colour", "--keep-last", "1"],
            1,
        ),
        (vec!["forget", "--policy-file", "/nonexistent.toml"], 1),
        (vec!["prune", "--max-unused", "100%"], 2),
        (vec!["prune", "--max-repack", "lots"], 2),
        (vec!["prune", "--stale-after", "5"], 2),
        (vec!["check", "--max-age", "3x"], 2),
        (vec!["check", "--read-data-subset", "0/3"], 2),
        (vec!["tag", "latest"], 1),
        (vec!["tag"], 2),
        (vec!["copy"], 2),
        (vec!["copy", "--from-repo", "/nonexistent/repo"], 10),
        (vec!["repair"], 2),
        (vec!["repair", "everything"], 2),
    ] {
        let o = e.run(&args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code != 2 {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
    }
    assert_eq!(before, e.repo_files(), "nothing was written");
}

#[test]
fn the_cache_is_disposable_even_mid_run() {
    use std::io::Write;
    let e = Env::new();
    let src = e.path("src");
    write(&src, "a", &random_bytes(3, 300_000));
    e.snapshot(&[&src]);
    let cache_db = || -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in std::fs::read_dir(e.path("cache")).unwrap() {
            for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
        out
    };
    // Garbage instead of the database: replaced and rebuilt, nothing to do by hand.
    for f in cache_db() {
        std::fs::write(&f, vec![0x42; 4096]).unwrap();
    }
    let s = e.snapshot(&[&src]);
    assert_eq!(
        s["data_added"], 0,
        "the rebuilt cache still knows every blob: {s}"
    );
    e.ok(&["check"]);
    // Deleted while a snapshot runs: the run finishes, the next one rebuilds.
    let mut c = e
        .cmd(&["--json", "snapshot", "--stdin", "--stdin-filename", "s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .as_mut()
        .unwrap()
        .write_all(&random_bytes(4, 100_000))
        .unwrap();
    // Once the run has its session and cache open, the cache goes.
    for _ in 0..400 {
        if std::fs::read_dir(e.repo().join("sessions"))
            .unwrap()
            .count()
            > 0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for _ in 0..50 {
        match std::fs::remove_dir_all(e.path("cache")) {
            Ok(()) => break,
            // The run may be adding a file meanwhile (its WAL).
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    assert!(!e.path("cache").exists());
    drop(c.stdin.take());
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    e.ok(&["check", "--read-data"]);
    let t = e.path("r");
    e.json(&["restore", "latest", "--target", t.to_str().unwrap()], 0);
    assert_eq!(
        std::fs::read(t.join("s")).unwrap(),
        random_bytes(4, 100_000)
    );
}

/// Every command, given too few, too many or invalid arguments: exit 2 with clap's usage
/// error for what the command line itself gets wrong, exit 1 with one line naming the
/// problem for what only the repository can tell; never a panic, and nothing written.
#[test]
fn every_command_rejects_bad_arguments_clearly() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "f", b"content");
    e.snapshot(&[&src]);
    let before = e.repo_files();
    let t = e.path("t");
    let t = t.to_str().unwrap();
    for (args, code, needle) in [
        (vec!["init", "extra"], 2, "unexpected argument"),
        (vec!["init", "--kdf-memory", "x"], 2, "invalid value"),
        (vec!["init", "--pack-size", "0"], 1, "pack size"),
        (vec!["snapshot"], 1, "nothing to snapshot"),
        (vec!["snapshot", "--tag"], 2, "a value is required"),
        (
            vec!["snapshot", "--host", "", "src"],
            2,
            "must not be empty",
        ),
        (
            vec!["snapshot", "/nonexistent/source"],
            1,
            "/nonexistent/source",
        ),
        (vec!["snapshots", "extra"], 2, "unexpected argument"),
        (vec!["ls"], 2, "required arguments"),
        (vec!["ls", "latest", "/a", "/b"], 2, "unexpected argument"),
        (vec!["ls", "zzzz"], 1, "neither `latest` nor a snapshot id"),
        (vec!["ls", "latest", "/no/such/path"], 1, "/no/such/path"),
        (vec!["restore", "latest"], 2, "--target"),
        (vec!["restore", "--target", t], 2, "required arguments"),
        (
            vec!["restore", "ffff", "--target", t],
            1,
            "no snapshot matches",
        ),
        (
            vec![
                "restore",
                "latest",
                "--target",
                t,
                "--overwrite",
                "sometimes",
            ],
            2,
            "invalid value",
        ),
        (
            vec!["restore", "latest", "--target", t, "--include", "["],
            1,
            "bad pattern",
        ),
        (vec!["dump", "latest"], 2, "required arguments"),
        (
            vec!["dump", "latest", "/no/such/file"],
            1,
            "not found in the snapshot",
        ),
        (vec!["check", "extra"], 2, "unexpected argument"),
        (vec!["check", "--read-data-subset", "150%"], 2, "(0, 100]"),
        (vec!["check", "--read-data-subset", "5/3"], 2, "n/t"),
        (vec!["diff", "latest"], 2, "required arguments"),
        (vec!["diff", "a", "b", "c"], 2, "unexpected argument"),
        (vec!["diff", "latest", "ffff"], 1, "no snapshot matches"),
        (vec!["stats", "a", "b"], 2, "unexpected argument"),
        (vec!["cat"], 2, "required arguments"),
        (vec!["cat", "pack"], 2, "invalid value"),
        (vec!["cat", "tree"], 1, "needs a snapshot"),
        (
            vec!["cat", "tree", "1234"],
            1,
            "not a full 64-digit tree id",
        ),
        (vec!["cat", "index", "12"], 1, "64-digit index id"),
        (vec!["key"], 2, "requires a subcommand"),
        (vec!["key", "remove"], 2, "required arguments"),
        (vec!["key", "remove", "ffffffff"], 1, "no key matches"),
        (vec!["key", "frobnicate"], 2, "unrecognized subcommand"),
        (vec!["tag", "latest", "--add"], 2, "a value is required"),
        (vec!["forget"], 1, "no policy given"),
        (vec!["forget", "--keep-last", "x"], 2, "invalid value"),
        (vec!["prune", "extra"], 2, "unexpected argument"),
        (vec!["prune", "--repack", "zz"], 2, "invalid value"),
        (
            vec!["prune", "--repack", &"ab".repeat(32)],
            1,
            "is in no index",
        ),
        (vec!["copy", "--from-repo"], 2, "a value is required"),
        (
            vec!["repair", "snapshots", "extra"],
            2,
            "unexpected argument",
        ),
        (
            vec!["repair", "index", "--forget"],
            2,
            "unexpected argument",
        ),
        (
            vec!["--no-such-global", "snapshots"],
            2,
            "unexpected argument",
        ),
    ] {
        let o = e.run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code == 1 {
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        }
    }
    assert_eq!(before, e.repo_files(), "nothing was written");
}

/// A cache whose header is intact but whose pages are garbage opens fine and fails at the
/// first query: that run stops with one line saying so, removes the cache, and the next run
/// rebuilds it without storing anything again.
#[test]
fn a_cache_found_damaged_in_use_is_removed_and_rebuilt() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "a", &random_bytes(5, 300_000));
    e.snapshot(&[&src]);
    let mut damaged = Vec::new();
    for d in std::fs::read_dir(e.path("cache")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            if b.len() > 4096 {
                // Keep the first page (header and schema), garble every table.
                for (i, x) in b[4096..].iter_mut().enumerate() {
                    *x = (i * 7 + 13) as u8;
                }
                std::fs::write(&p, b).unwrap();
                damaged.push(p);
            }
        }
    }
    assert!(!damaged.is_empty(), "no cache database found");
    let o = e.run(&["snapshot", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is damaged") && err.contains("run the command again"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        damaged.iter().all(|p| !p.exists()),
        "the damaged cache is gone"
    );
    let s = e.snapshot(&[&src]);
    assert_eq!(
        s["data_added"], 0,
        "the rebuilt cache knows every blob: {s}"
    );
    e.ok(&["check", "--read-data"]);
}
