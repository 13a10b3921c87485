//! Snapshots from two "hosts" (separate caches) run while `forget --prune` runs in a loop
//! on a third. Afterwards `check --read-data` passes and every kept snapshot restores
//! bit-exact: a prune never removed data a snapshot relies on.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Env, files, random_bytes};

/// Source state `i`: four of a sliding window of files, so each snapshot shares most of its
/// data with the one before (the blobs a prune may be marking while it runs).
fn source(e: &Env, host: &str, i: u64) -> PathBuf {
    let dir = e.path(&format!("src-{host}-{i}"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for k in i..i + 4 {
        let name = if k % 2 == 0 {
            format!("sub/f{k}")
        } else {
            format!("f{k}")
        };
        std::fs::write(
            dir.join(name),
            random_bytes(k, 300_000 + (k as usize % 7) * 10_000),
        )
        .unwrap();
    }
    dir
}

fn snapshot_loop(e: &Env, host: &str, rounds: u64, errors: &std::sync::Mutex<Vec<String>>) {
    for i in 0..rounds {
        let src = source(e, host, i);
        let o = e
            .cmd(&["--json", "snapshot", "--host", host, src.to_str().unwrap()])
            .env("CAIRN_CACHE_DIR", e.path(&format!("cache-{host}")))
            .output()
            .unwrap();
        if !o.status.success() {
            errors.lock().unwrap().push(format!(
                "snapshot {host} {i}: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
}

#[test]
fn snapshots_and_prune_run_together_without_losing_data() {
    let e = Env::with_init_args(&["--pack-size", "256K"]);
    let stop = AtomicBool::new(false);
    let errors = std::sync::Mutex::new(Vec::new());
    let mut freed = 0u64;
    let mut prunes = 0u32;
    std::thread::scope(|s| {
        let writers: Vec<_> = ["alpha", "beta"]
            .into_iter()
            .map(|h| {
                let (e, errors) = (&e, &errors);
                s.spawn(move || snapshot_loop(e, h, 25, errors))
            })
            .collect();
        let pruner = s.spawn(|| {
            let mut freed = 0;
            let mut prunes = 0;
            while !stop.load(Ordering::Relaxed) {
                let o = e
                    .cmd(&[
                        "--json",
                        "forget",
                        "--keep-last",
                        "3",
                        "--group-by",
                        "host",
                        "--prune",
                        "--max-unused",
                        "0%",
                    ])
                    .output()
                    .unwrap();
                if !o.status.success() {
                    errors.lock().unwrap().push(format!(
                        "forget --prune: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                freed += v["prune"]["bytes_freed"].as_u64().unwrap_or(0);
                prunes += 1;
            }
            (freed, prunes)
        });
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        (freed, prunes) = pruner.join().unwrap();
    });
    let errors = errors.into_inner().unwrap();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(prunes >= 2, "prune ran {prunes} times");
    assert!(freed > 0, "the loop gave space back");
    // A last round with nothing running applies the policy to the newest snapshots and
    // deletes whatever waited.
    let v = e.json(
        &[
            "forget",
            "--keep-last",
            "3",
            "--group-by",
            "host",
            "--prune",
        ],
        0,
    );
    assert_eq!(v["prune"]["packs_waiting"], 0, "{v}");
    e.ok(&["check", "--read-data"]);
    let snaps = e.json(&["snapshots"], 0);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 6, "three kept per host");
    for s in snaps {
        let id = s["id"].as_str().unwrap();
        let src = PathBuf::from(s["paths"][0].as_str().unwrap());
        let t = e.path(&format!("restore-{}", &id[..8]));
        e.json(&["restore", id, "--target", t.to_str().unwrap()], 0);
        let restored = t.join(src.strip_prefix("/").unwrap());
        assert!(
            files(&restored) == files(&src),
            "snapshot {id} of {} restores bit-exact",
            src.display()
        );
    }
}
