//! A snapshot killed with SIGKILL at any point leaves a repository that `check` passes at
//! once, and the next snapshot succeeds and reuses what was already stored.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

fn source(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    // Incompressible data spread over many packs (64 KiB packs in this repository).
    for i in 0..24 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(i, 1_000_000)).unwrap();
    }
    src
}

#[test]
fn sigkill_mid_snapshot_leaves_a_checkable_repository_and_the_next_run_reuses_data() {
    let mut reused_any = false;
    // Kill at increasing delays so that the kill lands at different stages.
    for delay_ms in [5u64, 60, 150, 300, 600] {
        let env = Env::bare();
        env.ok(&[
            "init",
            "--kdf-memory",
            "64",
            "--kdf-iterations",
            "1",
            "--chunk-min",
            "16K",
            "--chunk-avg",
            "64K",
            "--chunk-max",
            "256K",
            "--pack-size",
            "64K",
        ]);
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
        let _ = child.wait();
        // No unlock step: check passes right away.
        let c = env.run(&["check", "--read-data"]);
        assert!(
            c.status.success(),
            "delay {delay_ms}: check failed: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let packs_before = env
            .repo_files()
            .iter()
            .filter(|f| f.0.starts_with("packs/"))
            .count();
        let s = env.snapshot(&[&src]);
        assert!(s["snapshot_id"].is_string());
        let added = s["data_added"].as_u64().unwrap();
        if packs_before > 2 {
            assert!(
                added < 24_000_000,
                "delay {delay_ms}: {packs_before} packs were stored but the rerun added {added} bytes"
            );
            reused_any = true;
        }
        env.ok(&["check", "--read-data"]);
        // No temporary files stay behind.
        let temps: Vec<_> = env
            .repo_files()
            .into_iter()
            .filter(|f| f.0.contains(".tmp-"))
            .collect();
        assert!(temps.is_empty(), "{temps:?}");
        let target = env.path("out");
        env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
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
