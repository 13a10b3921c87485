//! Snapshot, restore, check and prune on a backend that breaks on purpose (FaultyBackend):
//! transient faults are retried away, permanent ones stop the run and leave nothing that a
//! snapshot references broken, and damage read back is reported, never restored.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn::backend::Backend;
use cairn::backend::RetryBackend;
use cairn::backend::faulty::{Faults, FaultyBackend};
use cairn::crypto::keyfile::KdfParams;
use cairn::ops::check::{CheckOptions, DataSubset, check};
use cairn::ops::prune::{PruneOptions, prune};
use cairn::ops::restore::{RestoreOptions, restore};
use cairn::ops::snapshot::{Input, SnapshotOptions, snapshot};
use cairn::repo::{InitOptions, Repository};
use common::{files, random_bytes, write};

fn init(dir: &Path) {
    let opts = InitOptions {
        kdf: KdfParams::CHEAP,
        pack_size: 1 << 16,
        ..InitOptions::default()
    };
    Repository::init(&dir.join("repo"), b"pw", &opts, &dir.join("cache")).unwrap();
}

/// The repository in `dir`, over `wrap(local backend)`, with its own cache `cache`.
fn open(
    dir: &Path,
    cache: &str,
    wrap: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>,
) -> cairn::Result<Repository> {
    let repo = Repository::open(
        &dir.join("repo"),
        || Ok(zeroize::Zeroizing::new(b"pw".to_vec())),
        &dir.join(cache),
    )?;
    let repo = repo.with_backend(wrap);
    repo.sync_index()?;
    Ok(repo)
}

fn clean(dir: &Path) -> Repository {
    open(dir, "cache", |b| b).unwrap()
}

fn source(dir: &Path, name: &str, seed: u64) -> std::path::PathBuf {
    let src = dir.join(name);
    for i in 0..6 {
        write(
            &src,
            &format!("f{i}"),
            &random_bytes(seed * 10 + i, 150_000),
        );
    }
    src
}

fn take(repo: &Repository, src: &Path) -> cairn::Result<cairn::id::SnapshotId> {
    let r = snapshot(
        repo,
        Input::Paths(vec![src.to_path_buf()]),
        &SnapshotOptions::default(),
    )?;
    Ok(r.snapshot_id.expect("written"))
}

fn restores_exactly(repo: &Repository, id: &cairn::id::SnapshotId, src: &Path, target: &Path) {
    let snap = repo.load_snapshot(id).unwrap();
    let r = restore(
        repo,
        &snap.tree,
        &RestoreOptions {
            target: target.to_path_buf(),
            ..RestoreOptions::default()
        },
    )
    .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(files(&restored) == files(src), "restored bit-exact");
}

fn check_clean(repo: &Repository, read_data: bool) {
    let r = check(
        repo,
        &CheckOptions {
            read_data: read_data.then_some(DataSubset::All),
            max_age: None,
            now: None,
            progress: Default::default(),
            snapshots: None,
            proof: Default::default(),
        },
    )
    .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn transient_faults_are_retried_away() {
    for seed in 1..=3 {
        let d = tempfile::tempdir().unwrap();
        init(d.path());
        let faults = Faults {
            fail_write: 50_000,
            fail_read: 50_000,
            ..Faults::default()
        };
        let repo = open(d.path(), "cache", |b| {
            Arc::new(RetryBackend::new(
                FaultyBackend::new(b, seed, faults),
                8,
                Duration::from_millis(1),
            ))
        })
        .unwrap();
        let a = source(d.path(), "a", seed);
        let s1 = take(&repo, &a).unwrap();
        let b = source(d.path(), "b", seed + 100);
        let s2 = take(&repo, &b).unwrap();
        restores_exactly(&repo, &s1, &a, &d.path().join("r1"));
        check_clean(&repo, true);
        repo.delete_snapshot(&s1).unwrap();
        let r = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(r.packs_deleted > 0);
        restores_exactly(&repo, &s2, &b, &d.path().join("r2"));
        check_clean(&repo, true);
    }
}

#[test]
fn a_store_that_dies_mid_run_leaves_a_sound_repository() {
    let d = tempfile::tempdir().unwrap();
    init(d.path());
    let a = source(d.path(), "a", 1);
    let s1 = take(&clean(d.path()), &a).unwrap();
    let mut failed = 0;
    for (i, n) in [2u64, 4, 6, 9, 12, 16, 20, 28].into_iter().enumerate() {
        // New data each time, so that every run has packs to write.
        let b = source(d.path(), &format!("b{i}"), 10 + i as u64);
        let cache = format!("cache-{i}");
        let dying = |b: Arc<dyn Backend>| -> Arc<dyn Backend> {
            Arc::new(FaultyBackend::new(
                b,
                i as u64,
                Faults {
                    crash_after: Some(n),
                    ..Faults::default()
                },
            ))
        };
        // The first index sync after opening may be what fails.
        let outcome = open(d.path(), &cache, dying).and_then(|repo| take(&repo, &b));
        if outcome.is_err() {
            failed += 1;
        }
        forget_dead_sessions(d.path());
        // Whatever was written: the repository checks, the earlier snapshot restores, and a
        // new snapshot succeeds.
        let repo = clean(d.path());
        check_clean(&repo, false);
        restores_exactly(&repo, &s1, &a, &d.path().join(format!("r{i}")));
        let again = take(&repo, &b).unwrap();
        restores_exactly(&repo, &again, &b, &d.path().join(format!("r{i}-b")));
        repo.delete_snapshot(&again).unwrap();
    }
    assert!(failed >= 5, "only {failed} runs met the crash");
    // Prune dying at every point: kept snapshots stay whole, a clean prune finishes.
    let b = source(d.path(), "b", 2);
    let repo = clean(d.path());
    check_clean(&repo, true);
    for (i, n) in [2u64, 8, 15, 30, 60].into_iter().enumerate() {
        let c = take(&clean(d.path()), &b).unwrap();
        clean(d.path()).delete_snapshot(&c).unwrap();
        let dying = open(d.path(), &format!("prune-{i}"), |b| {
            Arc::new(FaultyBackend::new(
                b,
                9,
                Faults {
                    crash_after: Some(n),
                    ..Faults::default()
                },
            ))
        });
        if let Ok(repo) = dying {
            let _ = prune(&repo, &PruneOptions::default());
        }
        forget_dead_sessions(d.path());
        let repo = clean(d.path());
        check_clean(&repo, false);
        restores_exactly(&repo, &s1, &a, &d.path().join(format!("p{i}")));
    }
    let repo = clean(d.path());
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(r.packs_deleted > 0, "the last prune deleted nothing: {r:?}");
    assert_eq!(r.packs_waiting, 0);
    check_clean(&repo, true);
    restores_exactly(&repo, &s1, &a, &d.path().join("final"));
}

/// A "crashed" run in this process could not delete its session file, and its process (this
/// one) is alive, so a prune would wait for it an hour: remove what a dead process leaves.
fn forget_dead_sessions(dir: &Path) {
    for f in std::fs::read_dir(dir.join("repo/sessions")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
}

#[test]
fn damage_read_back_is_reported_never_restored() {
    let d = tempfile::tempdir().unwrap();
    init(d.path());
    let a = source(d.path(), "a", 3);
    let s1 = take(&clean(d.path()), &a).unwrap();
    let mut checked = 0;
    for seed in 0..4 {
        let repo = open(d.path(), &format!("cache-{seed}"), |b| {
            Arc::new(FaultyBackend::new(
                b,
                seed,
                Faults {
                    flip_read: 200_000,
                    ..Faults::default()
                },
            ))
        });
        let Ok(repo) = repo else { continue };
        let target = d.path().join(format!("r{seed}"));
        let outcome = repo.load_snapshot(&s1).and_then(|snap| {
            restore(
                &repo,
                &snap.tree,
                &RestoreOptions {
                    target: target.clone(),
                    ..RestoreOptions::default()
                },
            )
        });
        // Either an error, or files reported as failed, but never different content.
        let restored = target.join(a.strip_prefix("/").unwrap());
        if let Ok(r) = &outcome {
            checked += 1;
            let want = files(&a);
            let got = if restored.exists() {
                files(&restored)
            } else {
                Default::default()
            };
            for (name, data) in &got {
                let failed = r.errors.iter().any(|e| e.path.ends_with(name.as_str()));
                assert!(
                    failed || want.get(name) == Some(data),
                    "{name} restored with different content and no error"
                );
            }
        }
    }
    assert!(checked > 0, "no restore got far enough to be judged");
    // A data check over flipped reads names the damage.
    let repo = open(d.path(), "cache-check", |b| {
        Arc::new(FaultyBackend::new(
            b,
            5,
            Faults {
                flip_read: 1_000_000,
                ..Faults::default()
            },
        ))
    });
    if let Ok(repo) = repo {
        let r = check(
            &repo,
            &CheckOptions {
                read_data: Some(DataSubset::All),
                max_age: None,
                now: None,
                progress: Default::default(),
                snapshots: None,
                proof: Default::default(),
            },
        );
        match r {
            Ok(r) => assert!(!r.errors.is_empty(), "flipped bits went unnoticed"),
            Err(e) => assert!(e.to_string().contains("corrupt"), "{e}"),
        }
    }
}

/// The repository in `dir` over a FaultyBackend with `faults`, and that backend (to count).
fn faulty(
    dir: &Path,
    cache: &str,
    seed: u64,
    faults: Faults,
) -> (
    cairn::Result<Repository>,
    Arc<FaultyBackend<Arc<dyn Backend>>>,
) {
    let mut kept = None;
    let repo = open(dir, cache, |b| {
        let f = Arc::new(FaultyBackend::new(b, seed, faults));
        kept = Some(f.clone());
        f
    });
    (repo, kept.expect("wrapped"))
}

#[test]
fn short_writes_are_caught_and_written_again() {
    let d = tempfile::tempdir().unwrap();
    init(d.path());
    let (repo, store) = faulty(
        d.path(),
        "cache",
        4,
        Faults {
            short_write: 250_000,
            ..Faults::default()
        },
    );
    let repo = repo.unwrap();
    let a = source(d.path(), "a", 4);
    let s1 = take(&repo, &a).unwrap();
    let b = source(d.path(), "b", 5);
    let s2 = take(&repo, &b).unwrap();
    repo.delete_snapshot(&s1).unwrap();
    prune(&repo, &PruneOptions::default()).unwrap();
    assert!(
        store
            .counts
            .injected
            .load(std::sync::atomic::Ordering::Relaxed)
            > 3,
        "too few short writes to show anything"
    );
    // Read back through an honest store: every file is whole.
    let repo = clean(d.path());
    check_clean(&repo, true);
    restores_exactly(&repo, &s2, &b, &d.path().join("r"));

    // A store that truncates every pack: the run stops with an error that says so, removes
    // what it could not write whole, and leaves nothing a snapshot references broken.
    let c = source(d.path(), "c", 6);
    let packs_before = pack_files(d.path());
    let (repo, _) = faulty(
        d.path(),
        "cache-2",
        7,
        Faults {
            short_write: 1_000_000,
            only: Some(cairn::backend::FileKind::Pack),
            ..Faults::default()
        },
    );
    let err = repo.and_then(|r| take(&r, &c)).unwrap_err().to_string();
    assert!(
        err.contains("acknowledged") && err.contains("was removed"),
        "{err}"
    );
    assert_eq!(
        pack_files(d.path()),
        packs_before,
        "no truncated pack is left"
    );
    let repo = clean(d.path());
    check_clean(&repo, false);
    restores_exactly(&repo, &s2, &b, &d.path().join("r2"));
    let s3 = take(&repo, &c).unwrap();
    restores_exactly(&repo, &s3, &c, &d.path().join("r3"));
}

/// Names of the pack files in the repository.
fn pack_files(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for sub in std::fs::read_dir(dir.join("repo/packs")).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in std::fs::read_dir(sub).unwrap() {
                out.insert(f.unwrap().file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[test]
fn a_slow_store_racing_a_prune_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    init(d.path());
    let a = source(d.path(), "a", 8);
    let s1 = take(&clean(d.path()), &a).unwrap();
    // The slow run backs up `a` again plus new files: it deduplicates against the packs of
    // s1, which a prune running at the same time finds unused once s1 is forgotten.
    let c = source(d.path(), "c", 9);
    for (name, data) in files(&a) {
        write(&c, &format!("from-a/{name}"), &data);
    }
    let (slow, store) = faulty(
        d.path(),
        "cache-slow",
        1,
        Faults {
            delay: Some(Duration::from_millis(30)),
            ..Faults::default()
        },
    );
    let slow = slow.unwrap();
    let racing = std::thread::scope(|s| {
        let taker = s.spawn(|| take(&slow, &c));
        // Once the slow run has read the index and stored its first pack (its new files
        // come first: "f0".."f5" sort before "from-a"), forget s1 and prune under it.
        let before = pack_files(d.path());
        while pack_files(d.path()) == before && !taker.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let repo = clean(d.path());
        repo.delete_snapshot(&s1).unwrap();
        let r = prune(&repo, &PruneOptions::default()).unwrap();
        (taker.join().unwrap().unwrap(), r)
    });
    let (s2, pruned) = racing;
    assert!(
        pruned.packs_marked > 0,
        "the prune found nothing to take: {pruned:?}"
    );
    assert!(
        store
            .counts
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
            > 10
    );
    let repo = clean(d.path());
    check_clean(&repo, true);
    restores_exactly(&repo, &s2, &c, &d.path().join("r"));
    // Once the slow run has ended, s2's need of the marked packs takes them back into use,
    // and s2 stays whole.
    let next = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(
        pruned.packs_unmarked + next.packs_unmarked > 0,
        "marked packs s2 needs were never taken back: {pruned:?} {next:?}"
    );
    check_clean(&repo, true);
    restores_exactly(&repo, &s2, &c, &d.path().join("r2"));
}
