//! Long crash campaign, run by hand (`cargo test --release --test campaign -- --ignored
//! --nocapture`): one repository, many runs of `snapshot` and `prune` killed with SIGKILL at
//! random moments. After every kill: `check --read-data` passes, the snapshots completed so
//! far restore bit-exact, and a new snapshot succeeds without storing again what the killed
//! run made durable. The results are recorded in docs/RELIABILITY.md.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Env, files, random_bytes, write};

/// xorshift64*: the campaign is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn kill_after(mut child: std::process::Child, delay: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap().signal() == Some(9)
}

fn pack_bytes(e: &Env) -> u64 {
    e.repo_files()
        .iter()
        .filter(|(n, _)| n.starts_with("packs/"))
        .map(|(_, s)| s)
        .sum()
}

#[test]
#[ignore]
fn crash_campaign() {
    let runs: u64 = std::env::var("CAIRN_CAMPAIGN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut rng = Rng(0x5eed_cafe ^ runs);
    let e = Env::with_init_args(&["--pack-size", "64K"]);
    let src = e.path("src");
    for i in 0..40 {
        write(&src, &format!("d{}/f{i}", i % 4), &random_bytes(i, 200_000));
    }
    // Completed snapshots and what they hold.
    let mut kept: Vec<(String, BTreeMap<String, Vec<u8>>)> = Vec::new();
    let (mut snapshot_kills, mut prune_kills, mut reused) = (0, 0, 0u64);
    let mut version = 1000u64;
    for run in 0..runs {
        // Change a few files: new data for this run to store.
        for _ in 0..4 {
            let i = rng.next() % 40;
            version += 1;
            write(
                &src,
                &format!("d{}/f{i}", i % 4),
                &random_bytes(version, 200_000),
            );
        }
        let before = pack_bytes(&e);
        let delay = Duration::from_millis(rng.next() % 80);
        let child = e.cmd(&["snapshot", src.to_str().unwrap()]).spawn().unwrap();
        let killed = kill_after(child, delay);
        if killed {
            snapshot_kills += 1;
        }
        let c = e.run(&["check", "--read-data"]);
        assert!(
            c.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&c.stderr)
        );
        let durable = pack_bytes(&e) - before;
        let s = e.snapshot(&[&src]);
        let added = s["data_added_packed"].as_u64().unwrap();
        // What the killed run made durable is not stored again (4 files changed).
        let new_data = if kept.is_empty() { 40 } else { 4 } * 200_000;
        assert!(
            added + durable * 9 / 10 <= new_data + 200_000,
            "run {run}: {durable} bytes were durable, the rerun stored {added}"
        );
        if killed {
            reused += durable;
        }
        kept.push((s["snapshot_id"].as_str().unwrap().to_string(), files(&src)));
        // Every third run: forget the oldest but three, and kill a prune.
        if run % 3 == 2 && kept.len() > 3 {
            let (old, _) = kept.remove(0);
            e.ok(&["forget", &old]);
            let delay = Duration::from_millis(rng.next() % 60);
            let child = e.cmd(&["prune", "--max-unused", "0%"]).spawn().unwrap();
            if kill_after(child, delay) {
                prune_kills += 1;
            }
            let c = e.run(&["check"]);
            assert!(
                c.status.success(),
                "run {run} after prune: {}",
                String::from_utf8_lossy(&c.stderr)
            );
        }
        // The snapshots so far restore bit-exact (all of them every tenth run, else the
        // oldest and the newest).
        let check_all = run % 10 == 9;
        for (k, (id, want)) in kept.iter().enumerate() {
            if !check_all && k != 0 && k + 1 != kept.len() {
                continue;
            }
            let t: PathBuf = e.path(&format!("r{run}-{k}"));
            e.json(&["restore", id, "--target", t.to_str().unwrap()], 0);
            let got = files(&t.join(src.strip_prefix("/").unwrap()));
            assert!(
                &got == want,
                "run {run}: snapshot {id} restores different content"
            );
            std::fs::remove_dir_all(&t).unwrap();
        }
    }
    e.ok(&["prune"]);
    e.ok(&["check", "--read-data"]);
    eprintln!(
        "campaign: {runs} runs, {snapshot_kills} snapshots and {prune_kills} prunes killed \
         mid-run, {reused} durable bytes reused, {} snapshots kept, 0 losses",
        kept.len()
    );
}
