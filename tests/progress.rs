//! Progress events: snapshot, restore and check report every file, pack and byte they handle,
//! and the command line draws a bar on a terminal only without `--quiet` and `--json`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn::crypto::keyfile::KdfParams;
use cairn::ops::check::{CheckOptions, DataSubset, check};
use cairn::ops::progress::{Progress, ProgressSink};
use cairn::ops::restore::{RestoreOptions, restore};
use cairn::ops::snapshot::{Input, SnapshotOptions, snapshot};
use cairn::repo::{InitOptions, Repository};

#[derive(Default)]
struct Count {
    total: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
}

impl Progress for Count {
    fn total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }
    fn advance(&self, items: u64, bytes: u64) {
        self.items.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn counted() -> (Arc<Count>, ProgressSink) {
    let c = Arc::new(Count::default());
    (c.clone(), ProgressSink::new(c))
}

#[test]
fn operations_report_all_their_work() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let sizes = [0usize, 10, 5000, 3 << 20];
    for (i, n) in sizes.iter().enumerate() {
        std::fs::write(
            src.join(format!("f{i}")),
            common::random_bytes(i as u64, *n),
        )
        .unwrap();
    }
    std::fs::write(src.join("sub/g"), b"hello").unwrap();
    let total: u64 = sizes.iter().sum::<usize>() as u64 + 5;
    let opts = InitOptions {
        kdf: KdfParams::CHEAP,
        ..InitOptions::default()
    };
    let repo = Repository::init(
        &d.path().join("repo"),
        b"pw",
        &opts,
        &d.path().join("cache"),
    )
    .unwrap();

    for round in 0..2 {
        let (c, sink) = counted();
        let o = SnapshotOptions {
            progress: sink,
            ..SnapshotOptions::default()
        };
        let r = snapshot(&repo, Input::Paths(vec![src.clone()]), &o).unwrap();
        assert_eq!(c.items.load(Ordering::Relaxed), 5, "round {round}");
        assert_eq!(c.bytes.load(Ordering::Relaxed), total, "round {round}");
        // The second run expects the parent's size.
        let expected_total = if round == 0 { 0 } else { total };
        assert_eq!(c.total.load(Ordering::Relaxed), expected_total);
        assert_eq!(r.summary.total_bytes, total);
    }

    let (_, snap) = repo.resolve_snapshot("latest").unwrap();
    let (c, sink) = counted();
    let o = RestoreOptions {
        target: d.path().join("out"),
        progress: sink,
        ..RestoreOptions::default()
    };
    restore(&repo, &snap.tree, &o).unwrap();
    assert_eq!(c.items.load(Ordering::Relaxed), 5);
    assert_eq!(c.bytes.load(Ordering::Relaxed), total);

    let (c, sink) = counted();
    let rep = check(
        &repo,
        &CheckOptions {
            read_data: Some(DataSubset::All),
            max_age: None,
            now: None,
            progress: sink,
            snapshots: None,
            proof: Default::default(),
        },
    )
    .unwrap();
    let packs: u64 = std::fs::read_dir(d.path().join("repo/packs"))
        .unwrap()
        .flatten()
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(c.items.load(Ordering::Relaxed), rep.packs_read);
    assert_eq!(c.bytes.load(Ordering::Relaxed), packs);
    assert_eq!(c.total.load(Ordering::Relaxed), packs);
}

/// Runs cairn ARGS on a pseudo-terminal (util-linux `script`) and returns what it drew, or
/// `None` when `script` is not installed.
fn on_terminal(env: &common::Env, args: &[&str]) -> Option<String> {
    let inner = env.cmd(args);
    let mut line = String::from("exec");
    for a in std::iter::once(inner.get_program()).chain(inner.get_args()) {
        line.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    // A log per call, so that nothing one run drew can show up in the next one's.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let log = env.dir.path().join(format!("typescript-{n}"));
    let mut c = std::process::Command::new("script");
    c.args(["-q", "-e", "-c", &line]).arg(&log);
    common::Env::with_env_of(&mut c, &inner);
    let out = c.stdin(std::process::Stdio::null()).output().ok()?;
    assert!(out.status.success(), "{args:?}: {out:?}");
    // The typescript's header and footer quote the command line, whose temporary paths may
    // contain anything (even "B/s"): only what cairn drew is returned.
    let typescript = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    Some(
        typescript
            .lines()
            .filter(|l| !l.starts_with("Script started on") && !l.starts_with("Script done on"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn a_bar_is_drawn_on_a_terminal_unless_quiet_or_json() {
    let env = common::Env::new();
    let src = env.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i}")), common::random_bytes(i, 1 << 20)).unwrap();
    }
    let s = src.to_str().unwrap();
    let Some(drawn) = on_terminal(&env, &["snapshot", s]) else {
        eprintln!("`script` is not installed: terminal output not tested");
        return;
    };
    assert!(drawn.contains("B/s"), "no bar on a terminal: {drawn:?}");
    for args in [
        vec!["-q", "snapshot", s],
        vec!["--json", "snapshot", s],
        vec!["-q", "check", "--read-data"],
    ] {
        let drawn = on_terminal(&env, &args).unwrap();
        assert!(!drawn.contains("B/s"), "{args:?} drew a bar: {drawn:?}");
    }
}
