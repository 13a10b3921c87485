//! `prune`: space comes back, kept snapshots stay whole, and runs that are still going keep
//! what they may rely on.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn::backend::{Backend, FileKind, NewFile};
use cairn::ops::prune::{MaxUnused, PruneOptions, prune};
use cairn::repo::Repository;
use common::{Env, files, random_bytes, write};

fn snap(e: &Env, dir: &Path) -> String {
    e.snapshot(&[dir])["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

fn drop_snapshot(e: &Env, id: &str) {
    std::fs::remove_file(e.repo().join("snapshots").join(id)).unwrap();
}

/// Restores snapshot `id` and compares it with `src` (the snapshot's only path).
fn restores_exactly(e: &Env, id: &str, src: &Path, into: &str) {
    let target = e.path(into);
    e.json(&["restore", id, "--target", target.to_str().unwrap()], 0);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        files(&restored),
        files(src),
        "snapshot {id} restores bit-exact"
    );
}

fn small_packs() -> Env {
    Env::with_init_args(&["--pack-size", "256K"])
}

/// Replaces `to` with a copy of the directory `from`.
fn cp(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn unused_packs_are_deleted_and_kept_snapshots_restore() {
    let e = small_packs();
    let a = e.path("a");
    write(&a, "old", &random_bytes(1, 3 << 20));
    write(&a, "keep", &random_bytes(2, 1 << 20));
    let s1 = snap(&e, &a);
    std::fs::remove_file(a.join("old")).unwrap();
    write(&a, "new", &random_bytes(3, 1 << 20));
    let s2 = snap(&e, &a);
    let before = e.pack_bytes();
    drop_snapshot(&e, &s1);
    let r = e.json(&["prune"], 0);
    assert_eq!(r["snapshots"], 1);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 8, "{r}");
    assert_eq!(r["packs_waiting"], 0, "nothing else runs: deleted at once");
    let after = e.pack_bytes();
    assert!(
        after + (3 << 20) <= before + (256 << 10),
        "the 3 MiB no snapshot uses came back: {before} -> {after}"
    );
    // Freed counts the deleted packs; a repacked pack's new copy is part of `after`.
    assert!(r["bytes_freed"].as_u64().unwrap() >= before - after, "{r}");
    e.ok(&["check", "--read-data"]);
    restores_exactly(&e, &s2, &a, "r");
    // A second prune has nothing to do, and leaves the index files as they are (so no
    // host has to rebuild its cache).
    let index = |e: &Env| -> Vec<String> {
        e.repo_files()
            .into_iter()
            .filter(|(n, _)| n.starts_with("index/"))
            .map(|(n, _)| n)
            .collect()
    };
    let before_index = index(&e);
    let r = e.json(&["prune"], 0);
    assert_eq!(r["packs_deleted"], 0);
    assert_eq!(r["packs_marked"], 0);
    assert_eq!(index(&e), before_index);
    // A stale-session margin shorter than the refresh interval is refused.
    let o = e.run(&["prune", "--stale-after", "1m"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stale-after must be at least"));
    // And a new snapshot still works, deduplicating against what was kept.
    let s3 = e.snapshot(&[&a]);
    assert_eq!(s3["data_added"], 0, "{s3}");
}

#[test]
fn partly_used_packs_are_repacked() {
    // One big pack holds both files; then one of them is no longer needed.
    let e = Env::new();
    let a = e.path("a");
    write(&a, "gone", &random_bytes(4, 2 << 20));
    write(&a, "kept", &random_bytes(5, 2 << 20));
    let s1 = snap(&e, &a);
    std::fs::remove_file(a.join("gone")).unwrap();
    let s2 = snap(&e, &a);
    drop_snapshot(&e, &s1);
    // Within the tolerance: nothing is rewritten (s1's tree pack is deleted).
    let r = e.json(&["prune", "--max-unused", "unlimited"], 0);
    assert_eq!(r["packs_repacked"], 0);
    let before = e.pack_bytes();
    let r = e.json(&["prune", "--dry-run", "--max-unused", "0%"], 0);
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(e.pack_bytes(), before, "a dry run changes nothing");
    let r = e.json(&["prune", "--max-unused", "0%"], 0);
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["bytes_repacked"].as_u64().unwrap() >= 2 << 20);
    let after = e.pack_bytes();
    assert!(after + (2 << 20) <= before + 4096, "{before} -> {after}");
    e.ok(&["check", "--read-data"]);
    restores_exactly(&e, &s2, &a, "r");
}

#[test]
fn the_repack_budget_is_kept() {
    let e = Env::new();
    let a = e.path("a");
    write(&a, "gone", &random_bytes(6, 1 << 20));
    write(&a, "kept", &random_bytes(7, 1 << 20));
    let s1 = snap(&e, &a);
    std::fs::remove_file(a.join("gone")).unwrap();
    snap(&e, &a);
    drop_snapshot(&e, &s1);
    let r = e.json(&["prune", "--max-unused", "0%", "--max-repack", "64K"], 0);
    assert_eq!(
        r["packs_repacked"], 0,
        "every partly used pack is over the budget"
    );
}

/// A snapshot reading stdin from a pipe we hold open: a session that stays live.
fn live_snapshot(e: &Env) -> std::process::Child {
    let mut c = e
        .cmd(&["--json", "snapshot", "--stdin", "--stdin-filename", "slow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .as_mut()
        .unwrap()
        .write_all(&random_bytes(9, 100_000))
        .unwrap();
    // Wait until its session file is there.
    for _ in 0..200 {
        if std::fs::read_dir(e.repo().join("sessions"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
        {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    panic!("the snapshot never announced its session");
}

#[test]
fn marked_packs_wait_for_running_sessions() {
    let e = small_packs();
    let a = e.path("a");
    write(&a, "f", &random_bytes(10, 1 << 20));
    let s1 = snap(&e, &a);
    let mut running = live_snapshot(&e);
    drop_snapshot(&e, &s1);
    let r = e.json(&["prune"], 0);
    assert!(r["packs_marked"].as_u64().unwrap() >= 4, "{r}");
    assert_eq!(r["packs_deleted"], 0, "a session may rely on them: {r}");
    assert_eq!(r["waiting_for"].as_array().unwrap().len(), 1, "{r}");
    let before = e.pack_bytes();
    // While it runs, another prune still waits; `check` is content.
    assert_eq!(e.json(&["prune"], 0)["packs_deleted"], 0);
    e.ok(&["check"]);
    drop(running.stdin.take());
    let out = running.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = e.json(&["prune"], 0);
    assert!(r["packs_deleted"].as_u64().unwrap() >= 4, "{r}");
    assert!(r["bytes_freed"].as_u64().unwrap() >= 1 << 20, "{r}");
    assert!(e.pack_bytes() < before);
    e.ok(&["check", "--read-data"]);
}

#[test]
fn a_killed_session_is_recognised_and_removed() {
    let e = small_packs();
    let a = e.path("a");
    write(&a, "f", &random_bytes(11, 1 << 20));
    let s1 = snap(&e, &a);
    let mut running = live_snapshot(&e);
    drop_snapshot(&e, &s1);
    assert_eq!(e.json(&["prune"], 0)["packs_deleted"], 0);
    running.kill().unwrap();
    running.wait().unwrap();
    let r = e.json(&["prune"], 0);
    assert_eq!(r["stale_sessions_removed"], 1, "{r}");
    assert!(r["packs_deleted"].as_u64().unwrap() >= 4, "{r}");
    assert!(
        std::fs::read_dir(e.repo().join("sessions"))
            .unwrap()
            .next()
            .is_none()
    );
    e.ok(&["check", "--read-data"]);
}

#[test]
fn a_snapshot_written_meanwhile_takes_marked_packs_back() {
    // The race prune must survive: a run that started before the marks deduplicates against
    // a marked pack and writes its snapshot after the prune.
    let e = small_packs();
    let a = e.path("a");
    write(&a, "f", &random_bytes(12, 1 << 20));
    let s1 = snap(&e, &a);
    // The running snapshot stores the same content as s1 (via stdin), so it relies on s1's
    // blobs, which the prune marks once s1 is gone.
    let mut c = e
        .cmd(&["--json", "snapshot", "--stdin", "--stdin-filename", "f"])
        // Its own cache, as on another host: it keeps the index it read at its start.
        .env("CAIRN_CACHE_DIR", e.path("other-cache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = random_bytes(12, 1 << 20);
    c.stdin.as_mut().unwrap().write_all(&data[..4096]).unwrap();
    for _ in 0..200 {
        if std::fs::read_dir(e.repo().join("sessions"))
            .unwrap()
            .count()
            > 0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop_snapshot(&e, &s1);
    let r = e.json(&["prune"], 0);
    assert_eq!(r["packs_deleted"], 0, "{r}");
    c.stdin.as_mut().unwrap().write_all(&data[4096..]).unwrap();
    drop(c.stdin.take());
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s2 = v["snapshot_id"].as_str().unwrap().to_string();
    // Its blobs are either stored again or in the marked packs; the next prune must keep
    // whatever it uses.
    assert!(
        v["data_added"].as_u64().unwrap() < 4096,
        "only its tree is new; the content deduplicated against s1's blobs: {v}"
    );
    let r = e.json(&["prune"], 0);
    assert!(r["packs_unmarked"].as_u64().unwrap() >= 1, "{r}");
    e.ok(&["check", "--read-data"]);
    let t = e.path("r");
    e.json(&["restore", &s2, "--target", t.to_str().unwrap()], 0);
    assert_eq!(std::fs::read(t.join("f")).unwrap(), data, "{r}");
}

#[test]
fn a_prune_killed_at_any_moment_loses_nothing() {
    let e = small_packs();
    let kept = prunable(&e);
    let template = e.path("template");
    cp(&e.repo(), &template);
    let fresh = || {
        let n = Env::bare();
        cp(&template, &n.repo());
        n
    };
    killed_prunes(
        fresh,
        &kept,
        &[
            0, 1_000, 3_000, 6_000, 10_000, 15_000, 22_000, 30_000, 45_000, 70_000,
        ],
    );
}

/// The same kills of a prune of a repository in an S3 bucket (SeaweedFS on 127.0.0.1),
/// each run on a copy of the same bucket.
#[test]
fn a_prune_of_a_bucket_killed_at_any_moment_loses_nothing() {
    let Some(s) = common::seaweed::shared() else {
        return;
    };
    let e = Env::in_bucket(s, &["--pack-size", "256K"]);
    let kept = prunable(&e);
    let template = e.store();
    let fresh = || {
        let mut n = Env::bare();
        n.url = Some(s.url(&s.bucket(), "repo"));
        let to = n.store();
        for kind in [
            FileKind::Config,
            FileKind::Key,
            FileKind::Snapshot,
            FileKind::Index,
            FileKind::Pack,
        ] {
            for (name, _) in template.list(kind).unwrap() {
                to.put(kind, &name, &template.get(kind, &name).unwrap())
                    .unwrap();
            }
        }
        n
    };
    killed_prunes(
        fresh,
        &kept,
        &[0, 5_000, 20_000, 50_000, 100_000, 200_000, 400_000, 800_000],
    );
}

/// Six snapshots of which four are forgotten; returns the two kept and their sources.
fn prunable(e: &Env) -> Vec<(String, std::path::PathBuf)> {
    let mut kept = Vec::new();
    for i in 0..6u64 {
        let dir = e.path(&format!("s{i}"));
        for k in i..i + 3 {
            write(&dir, &format!("f{k}"), &random_bytes(50 + k, 400_000));
        }
        let id = snap(e, &dir);
        if i < 4 {
            e.store().delete(FileKind::Snapshot, &id).unwrap();
        } else {
            kept.push((id, dir));
        }
    }
    kept
}

/// Kills a prune of a `fresh` copy of the repository after each of `delays_us`.
fn killed_prunes(
    fresh: impl Fn() -> Env,
    kept: &[(String, std::path::PathBuf)],
    delays_us: &[u64],
) {
    let mut interrupted = 0;
    for (run, &delay_us) in delays_us.iter().enumerate() {
        let e = fresh();
        let mut c = e
            .cmd(&["prune", "--max-unused", "0%"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        let _ = c.kill();
        if !c.wait().unwrap().success() {
            interrupted += 1;
        }
        // Whatever the moment: the repository checks, kept snapshots restore, a new prune
        // finishes the work.
        e.ok(&["check"]);
        for (i, (id, dir)) in kept.iter().enumerate() {
            restores_exactly(&e, id, dir, &format!("r{run}-{i}"));
        }
        let r = e.json(&["prune", "--max-unused", "0%"], 0);
        assert_eq!(r["packs_waiting"], 0, "{r}");
        e.ok(&["check", "--read-data"]);
        for (i, (id, dir)) in kept.iter().enumerate() {
            restores_exactly(&e, id, dir, &format!("r{run}-{i}-after"));
        }
    }
    assert!(interrupted >= 3, "only {interrupted} runs were cut short");
}

/// Runs `hook` once, right after the `at`-th listing (of any kind, counted from 0) returns:
/// another process's run that completes between two steps of the caller.
struct AfterListing {
    inner: Arc<dyn Backend>,
    at: usize,
    listings: AtomicUsize,
    hook: Box<dyn Fn() + Send + Sync>,
}

impl Backend for AfterListing {
    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put(kind, name, data)
    }
    fn put_once(&self, kind: FileKind, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put_once(kind, name, data)
    }
    fn put_checked(&self, kind: FileKind, name: &str, data: &[u8]) -> cairn::Result<()> {
        self.inner.put_checked(kind, name, data)
    }
    fn get(&self, kind: FileKind, name: &str) -> cairn::Result<Vec<u8>> {
        self.inner.get(kind, name)
    }
    fn get_range(&self, kind: FileKind, name: &str, off: u64, len: u64) -> cairn::Result<Vec<u8>> {
        self.inner.get_range(kind, name, off, len)
    }
    fn list(&self, kind: FileKind) -> cairn::Result<Vec<(String, u64)>> {
        let listed = self.inner.list(kind);
        if self.listings.fetch_add(1, Ordering::SeqCst) == self.at {
            (self.hook)();
        }
        listed
    }
    fn delete(&self, kind: FileKind, name: &str) -> cairn::Result<()> {
        self.inner.delete(kind, name)
    }
    fn stat(&self, kind: FileKind, name: &str) -> cairn::Result<Option<u64>> {
        self.inner.stat(kind, name)
    }
    fn remove_stale_temps(&self) -> cairn::Result<usize> {
        self.inner.remove_stale_temps()
    }
    fn create(&self, kind: FileKind) -> cairn::Result<Box<dyn NewFile + '_>> {
        self.inner.create(kind)
    }
    fn streams(&self) -> bool {
        self.inner.streams()
    }
}

#[test]
fn a_snapshot_that_ends_between_any_two_steps_of_a_prune_keeps_its_data() {
    // A snapshot on another host stores packs, their index and its snapshot file while a
    // prune runs; whichever listing of the prune it slips in after, its blobs stay indexed:
    // the next prune finds them, and it checks and restores.
    let e = small_packs();
    let a = e.path("a");
    write(&a, "f", &random_bytes(20, 600_000));
    let s1 = snap(&e, &a);
    let b = e.path("b");
    write(&b, "g", &random_bytes(21, 600_000));
    snap(&e, &b);
    // The prune has packs to mark, so it rewrites the index.
    drop_snapshot(&e, &s1);
    let template = e.path("template");
    cp(&e.repo(), &template);
    let mut runs = 0;
    for at in 0.. {
        cp(&template, &e.repo());
        let _ = std::fs::remove_dir_all(e.path("cache"));
        let src = e.path(&format!("late-{at}"));
        // Part of it is the forgotten snapshot's data, which the prune is marking.
        write(&src, "shared", &random_bytes(20, 600_000));
        write(&src, "new", &random_bytes(100 + at as u64, 600_000));
        let mut late = e.cmd(&[
            "--json",
            "snapshot",
            "--host",
            "late",
            src.to_str().unwrap(),
        ]);
        late.env("CAIRN_CACHE_DIR", e.path(&format!("cache-late-{at}")));
        let late = Mutex::new(Some(late));
        let written = Arc::new(Mutex::new(None));
        let hook = {
            let written = written.clone();
            move || {
                let mut c: Command = late.lock().unwrap().take().expect("runs once");
                let o = c.output().unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                *written.lock().unwrap() = Some(v["snapshot_id"].as_str().unwrap().to_string());
            }
        };
        let repo = Repository::open(
            &e.repo(),
            || Ok(zeroize::Zeroizing::new(e.password.clone().into_bytes())),
            &e.path(&format!("cache-prune-{at}")),
        )
        .unwrap()
        .with_backend(|inner| {
            Arc::new(AfterListing {
                inner,
                at,
                listings: AtomicUsize::new(0),
                hook: Box::new(hook),
            })
        });
        let opts = PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..PruneOptions::default()
        };
        let r = prune(&repo, &opts).unwrap();
        drop(repo);
        let Some(id) = written.lock().unwrap().take() else {
            // The prune listed fewer times: every moment was tried.
            break;
        };
        runs += 1;
        assert!(
            r.packs_marked > 0,
            "run {at}: the index was rewritten: {r:?}"
        );
        let r = e.json(&["prune", "--max-unused", "0%"], 0);
        assert_eq!(r["packs_waiting"], 0, "run {at}: {r}");
        e.ok(&["check", "--read-data"]);
        restores_exactly(&e, &id, &src, &format!("r{at}"));
    }
    assert!(runs >= 6, "the prune listed only {runs} times");
}
