//! The verification ledger: `check --read-data --max-age` with a per-run budget proves every
//! pack within the maximum age, day after simulated day, and reads only about the budget.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};

use cairn::chunker::ChunkerParams;
use cairn::crypto::keyfile::KdfParams;
use cairn::ops::check::{CheckOptions, CheckReport, DataSubset, check};
use cairn::ops::snapshot::{Input, SnapshotOptions, snapshot};
use cairn::repo::{InitOptions, Repository};

const DAY: i64 = 86_400;

fn repo_with_packs(dir: &std::path::Path) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams::CHEAP,
        pack_size: 1 << 16,
        chunker: ChunkerParams {
            min_size: 16 << 10,
            avg_size: 32 << 10,
            max_size: 64 << 10,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(&dir.join("repo"), b"pw", &opts, &dir.join("cache")).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..30u64 {
        std::fs::write(src.join(format!("f{i}")), common::random_bytes(i, 90_000)).unwrap();
    }
    snapshot(&repo, Input::Paths(vec![src]), &SnapshotOptions::default()).unwrap();
    repo
}

fn run(repo: &Repository, day: i64, subset: DataSubset, max_age: Option<u64>) -> CheckReport {
    let r = check(
        repo,
        &CheckOptions {
            read_data: Some(subset),
            max_age: max_age.map(|d| Duration::from_secs(d * DAY as u64)),
            now: Some(Utc.timestamp_opt(1_700_000_000 + day * DAY, 0).unwrap()),
            progress: Default::default(),
            snapshots: None,
            proof: Default::default(),
        },
    )
    .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r
}

#[test]
fn a_daily_budget_proves_every_pack_within_the_maximum_age() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_with_packs(d.path());
    let packs = repo.cache().packs().unwrap();
    let total: u64 = packs.iter().map(|p| p.2).sum();
    assert!(packs.len() >= 30, "{} packs", packs.len());
    let largest = packs.iter().map(|p| p.2).max().unwrap();
    // 30 days, 4 % a day: the first proof of everything takes about 25 days.
    let mut first_full = None;
    let mut read_total = 0;
    for day in 0..120 {
        let r = run(&repo, day, DataSubset::Fraction(0.04), Some(30));
        assert!(r.packs_read >= 1 || r.packs_unproven == 0);
        assert!(
            r.bytes_read <= total.div_ceil(25) + largest,
            "day {day}: read {} of {total}",
            r.bytes_read
        );
        read_total += r.bytes_read;
        if r.packs_unproven == 0 && first_full.is_none() {
            first_full = Some(day);
        }
        if let Some(first) = first_full {
            // From then on, no proof is ever older than the maximum age.
            let oldest = r.oldest_proof.expect("every pack proven");
            let age = 1_700_000_000 + day * DAY - oldest.timestamp();
            assert!(
                age <= 30 * DAY,
                "day {day} (all proven since day {first}): oldest proof {} days",
                age / DAY
            );
        }
    }
    let first = first_full.expect("everything proven");
    assert!(first <= 26, "first full proof on day {first}");
    // About a 30th of the repository a day on average, not a 25th: after the first round a
    // pack is read again only once its proof is 30 days old.
    let per_day = read_total as f64 / 120.0;
    assert!(
        per_day <= total as f64 / 20.0,
        "{per_day} bytes a day of {total}"
    );
}

#[test]
fn the_ledger_drives_selection_and_damage_is_read_again() {
    let d = tempfile::tempdir().unwrap();
    let repo = repo_with_packs(d.path());
    let packs = repo.cache().packs().unwrap();
    // A full read proves everything; within the maximum age nothing is due.
    let r = run(&repo, 0, DataSubset::All, None);
    assert_eq!(r.packs_read as usize, packs.len());
    assert_eq!(r.packs_unproven, 0);
    let r = run(&repo, 10, DataSubset::All, Some(30));
    assert_eq!(r.packs_read, 0);
    // A size budget alone reads the oldest proofs first, at least one pack.
    let r = run(&repo, 11, DataSubset::Bytes(1), None);
    assert_eq!(r.packs_read, 1);
    assert_eq!(r.packs_due as usize, packs.len() - 1);
    // Past the age, everything is due again.
    let r = run(&repo, 40, DataSubset::All, Some(30));
    assert_eq!(
        r.packs_read as usize,
        packs.len() - 1,
        "the one read on day 11 is not due"
    );
    // A damaged pack loses its proof and is read first next time.
    let victim = &packs[0];
    let path = d
        .path()
        .join("repo/packs")
        .join(&victim.0.to_hex()[..2])
        .join(victim.0.to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let r = check(
        &repo,
        &CheckOptions {
            read_data: Some(DataSubset::All),
            max_age: None,
            now: Some(Utc.timestamp_opt(1_700_000_000 + 42 * DAY, 0).unwrap()),
            progress: Default::default(),
            snapshots: None,
            proof: Default::default(),
        },
    )
    .unwrap();
    assert!(!r.errors.is_empty());
    assert_eq!(r.packs_unproven, 1);
    assert!(!repo.cache().verified().unwrap().contains_key(&victim.0));
    // Losing the cache only means reading more.
    std::fs::remove_dir_all(d.path().join("cache")).unwrap();
    let repo = Repository::open(
        &d.path().join("repo"),
        || Ok(zeroize::Zeroizing::new(b"pw".to_vec())),
        &d.path().join("cache"),
    )
    .unwrap();
    std::fs::write(&path, {
        bytes[10] ^= 1;
        &bytes
    })
    .unwrap();
    let r = run(&repo, 43, DataSubset::All, Some(30));
    assert_eq!(r.packs_read as usize, packs.len());
}

#[test]
fn the_command_line_reports_the_ledger() {
    let e = common::Env::with_init_args(&["--pack-size", "64K"]);
    let src = e.path("src");
    common::write(&src, "f", &common::random_bytes(1, 1 << 20));
    e.snapshot(&[&src]);
    let v = e.json(
        &["check", "--max-age", "30d", "--read-data-subset", "100K"],
        0,
    );
    assert!(v["packs_read"].as_u64().unwrap() >= 1);
    assert!(v["packs_due"].as_u64().unwrap() >= 1, "{v}");
    // The budget is passed by less than a pack; a pack holds at least one whole chunk, so
    // with 256 KiB chunks it can be larger than its 64 KiB target.
    let largest = e
        .repo_files()
        .iter()
        .filter(|(p, _)| p.starts_with("packs/"))
        .map(|(_, n)| *n)
        .max()
        .unwrap();
    assert!(
        v["bytes_read"].as_u64().unwrap() < (100 << 10) + largest,
        "{v}"
    );
    let text = e.ok(&["check", "--max-age", "30d"]);
    assert!(text.contains("every pack proven"), "{text}");
    let v = e.json(&["check", "--max-age", "30d"], 0);
    assert_eq!(v["packs_read"], 0, "all proven within 30 days");
    for bad in ["0", "0%", "2/1", "5 parsecs"] {
        let o = e.run(&["check", "--read-data-subset", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
}

/// `check --snapshot`: only the snapshot's trees and, with `--read-data`, only the packs that
/// hold its data; damage elsewhere is not its business, damage of its own is named.
#[test]
fn a_check_scoped_to_a_snapshot_reads_only_its_packs() {
    let e = common::Env::with_init_args(&["--pack-size", "64K"]);
    let (a, b) = (e.path("a"), e.path("b"));
    for i in 0..6u64 {
        common::write(&a, &format!("f{i}"), &common::random_bytes(i, 80_000));
        common::write(&b, &format!("g{i}"), &common::random_bytes(100 + i, 80_000));
    }
    let sa = e.snapshot(&[&a])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let damaged = e.snapshot_with_damaged_pack(&[&b]);
    let sb = e.json(&["snapshots"], 0)[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let whole = e.json(&["check", "--read-data"], 1);
    let only_a = e.json(&["check", "--read-data", "--snapshot", &sa[..8]], 0);
    assert_eq!(only_a["snapshots"], 1);
    assert!(only_a["errors"].as_array().unwrap().is_empty(), "{only_a}");
    assert!(
        only_a["packs_read"].as_u64().unwrap() < whole["packs_read"].as_u64().unwrap(),
        "{only_a} vs {whole}"
    );
    let only_b = e.json(&["check", "--read-data", "--snapshot", &sb], 1);
    let pack = damaged.rsplit('/').next().unwrap();
    assert!(only_b.to_string().contains(&pack[..8]), "{only_b}");
    let o = e.run(&["check", "--snapshot", "ffffffff"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ffffffff"));
}
