//! A snapshot killed with SIGKILL at any point leaves a repository that `check` passes at
//! once, and the next snapshot succeeds and reuses what was already stored; in a folder and
//! in an S3 bucket.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use cairn::backend::FileKind;
use common::*;

fn source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // Incompressible data spread over many packs (64 KiB packs in this repository).
    for i in 0..24 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(i, 1_000_000)).unwrap();
    }
    // Many small files too, so that a run lasts long enough to be killed at several stages.
    fs::create_dir(src.join("small")).unwrap();
    for i in 0..3000u64 {
        fs::write(
            src.join(format!("small/s{i:04}")),
            random_bytes(1000 + i, 2000),
        )
        .unwrap();
    }
    src
}

#[test]
fn sigkill_mid_snapshot_leaves_a_checkable_repository_and_the_next_run_reuses_data() {
    killed_snapshots(|| Env::with_init_args(&["--pack-size", "64K"]));
}

/// The same kills on a repository in an S3 bucket (SeaweedFS on 127.0.0.1).
#[test]
fn sigkill_mid_snapshot_into_a_bucket_leaves_it_checkable_and_the_next_run_reuses_data() {
    let Some(s) = seaweed::shared() else { return };
    killed_snapshots(|| Env::in_bucket(s, &["--pack-size", "64K"]));
}

/// Bytes of packs and names of temporary files in the repository's store (a folder's
/// listing through the backend hides temporary files: walk it).
fn stored(env: &Env) -> (u64, Vec<String>) {
    let store = env.store();
    let packs = store.list(FileKind::Pack).unwrap();
    let temps = match env.url {
        None => env
            .repo_files()
            .into_iter()
            .map(|f| f.0)
            .filter(|n| n.contains(".tmp-"))
            .collect(),
        Some(_) => [
            FileKind::Pack,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Key,
        ]
        .into_iter()
        .flat_map(|k| store.list(k).unwrap())
        .map(|f| f.0)
        .filter(|n| n.contains(".tmp-"))
        .collect(),
    };
    (packs.iter().map(|p| p.1).sum(), temps)
}

fn killed_snapshots(new_env: impl Fn() -> Env) {
    use std::os::unix::process::ExitStatusExt;
    let mut reused_any = false;
    let mut killed = 0;
    // Kill at increasing delays so that the kill lands at different stages.
    for delay_ms in [2u64, 10, 25, 50, 80, 120, 250, 500, 1000, 2000] {
        let env = new_env();
        let src = source(&env);
        let mut child = env
            .cmd(&["snapshot", src.to_str().unwrap()])
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        if child.wait().unwrap().signal() == Some(9) {
            killed += 1;
        }
        // No unlock step: check passes right away.
        let c = env.run(&["check", "--read-data"]);
        assert!(
            c.status.success(),
            "delay {delay_ms}: check failed: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let (pack_bytes, _) = stored(&env);
        let s = env.snapshot(&[&src]);
        assert!(s["snapshot_id"].is_string());
        let added = s["data_added"].as_u64().unwrap();
        // The data is incompressible: what durable packs hold must not be stored again.
        let total = 24 * 1_000_000 + 3000 * 2000 + 1_000_000;
        assert!(
            added + pack_bytes * 9 / 10 <= total,
            "delay {delay_ms}: {pack_bytes} bytes of packs were stored but the rerun added {added} bytes"
        );
        if pack_bytes > 1_000_000 {
            reused_any = true;
        }
        env.ok(&["check", "--read-data"]);
        // No temporary files stay behind.
        let (_, temps) = stored(&env);
        assert!(temps.is_empty(), "{temps:?}");
        let target = env.path("out");
        env.restore(&target, &[]);
        let r = target.join(src.strip_prefix("/").unwrap());
        for i in [0u64, 23] {
            assert_eq!(
                fs::read(r.join(format!("f{i:02}"))).unwrap(),
                random_bytes(i, 1_000_000)
            );
        }
    }
    assert!(
        reused_any,
        "no kill landed after packs were stored; the test proves nothing about reuse"
    );
    assert!(killed >= 2, "only {killed} runs were killed mid-snapshot");
}

/// The state a kill between storing packs and writing their index leaves — packs that no
/// index names, no snapshot — made exactly: `check` passes (with notes) and the next snapshot
/// adopts the packs instead of storing their data again.
#[test]
fn packs_without_an_index_are_adopted_not_stored_again() {
    let env = Env::new();
    let src = source(&env);
    env.snapshot(&[&src]);
    for (f, _) in env.repo_files() {
        if f.starts_with("index/") || f.starts_with("snapshots/") {
            fs::remove_file(env.repo().join(f)).unwrap();
        }
    }
    fs::remove_dir_all(env.path("cache")).unwrap();
    let c = env.json(&["check", "--read-data"], 0);
    assert!(c["warnings"].as_array().unwrap().len() >= 2, "{c}");
    let s = env.snapshot(&[&src]);
    let added = s["data_added"].as_u64().unwrap();
    assert!(
        added < 100_000,
        "the data of adopted packs was stored again: {added} bytes"
    );
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    env.restore(&target, &["--verify"]);
}

#[test]
fn a_dead_writers_temporary_file_never_blocks_and_is_cleaned() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let host = nix::unistd::gethostname()
        .unwrap()
        .into_string()
        .unwrap()
        .replace(['-', '/', '.'], "_");
    let stale = env
        .repo()
        .join(format!("index/.tmp-{host}-2147483632-0011"));
    fs::write(&stale, b"half an index").unwrap();
    let stale_pack = env
        .repo()
        .join(format!("packs/ab/.tmp-{host}-2147483632-0022"));
    fs::write(&stale_pack, b"half a pack").unwrap();
    env.ok(&["check"]);
    env.snapshot(&[&src]);
    assert!(!stale.exists() && !stale_pack.exists());
}

#[test]
fn an_init_killed_before_config_can_be_run_again() {
    let env = Env::new();
    let keys_before: Vec<_> = env
        .repo_files()
        .into_iter()
        .filter(|f| f.0.starts_with("keys/"))
        .collect();
    fs::remove_file(env.repo().join("config")).unwrap();
    assert_eq!(env.run(&["snapshots"]).status.code(), Some(10));
    env.ok(&["init", "--kdf-memory", "64", "--kdf-iterations", "1"]);
    let keys_after: Vec<_> = env
        .repo_files()
        .into_iter()
        .filter(|f| f.0.starts_with("keys/"))
        .collect();
    assert_eq!(keys_after.len(), 1);
    assert_ne!(keys_before, keys_after, "the orphan key was replaced");
    env.ok(&["snapshots"]);
}
