//! `forget` and `tag` on a synthetic history with fixed timestamps.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Env, random_bytes};

/// The history: (time, host, tags). Chosen to separate the rules: several snapshots in one
/// hour and one day, an ISO week that spans New Year, gaps of months and a second host.
const HISTORY: &[(&str, &str, &str)] = &[
    ("2024-01-01T09:00:00Z", "web", "scheduled"),
    ("2024-06-15T09:00:00Z", "web", "manual"),
    ("2024-12-30T09:00:00Z", "web", "scheduled"),
    ("2025-01-05T09:00:00Z", "web", "scheduled"),
    ("2025-01-06T09:00:00Z", "web", "scheduled"),
    ("2025-02-01T08:00:00Z", "web", "scheduled"),
    ("2025-02-01T09:00:00Z", "web", "pre-deploy"),
    ("2025-02-01T09:30:00Z", "web", "scheduled"),
    ("2025-02-02T10:00:00Z", "web", "scheduled"),
    ("2025-02-03T10:00:00Z", "web", "emergency"),
    ("2025-01-01T00:00:00Z", "db", "scheduled"),
    ("2025-02-03T11:00:00Z", "db", "scheduled"),
];

struct History {
    e: Env,
    /// Snapshot id → "time host".
    names: BTreeMap<String, String>,
}

fn history() -> History {
    let e = Env::new();
    let src = e.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"same content in every snapshot").unwrap();
    let mut names = BTreeMap::new();
    for (time, host, tag) in HISTORY {
        let v = e.json(
            &[
                "snapshot",
                "--time",
                time,
                "--host",
                host,
                "--tag",
                tag,
                src.to_str().unwrap(),
            ],
            0,
        );
        let id = v["snapshot_id"].as_str().unwrap().to_string();
        names.insert(id, format!("{} {host}", &time[..16]));
    }
    History { e, names }
}

impl History {
    /// Runs `forget --dry-run` with `args` and returns the kept snapshots as "time host".
    fn kept(&self, args: &[&str]) -> BTreeSet<String> {
        let mut a = vec!["forget", "--dry-run"];
        a.extend_from_slice(args);
        let v = self.e.json(&a, 0);
        let removed: BTreeSet<String> = v["remove"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| self.names[id.as_str().unwrap()].clone())
            .collect();
        // Snapshots no group mentions are untouched, hence kept.
        self.names
            .values()
            .filter(|n| !removed.contains(*n))
            .cloned()
            .collect()
    }

    /// The kept snapshots of host `web` only.
    fn kept_web(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["--host", "web"];
        a.extend_from_slice(args);
        self.kept(&a)
            .into_iter()
            .filter(|n| n.ends_with(" web"))
            .map(|n| n.trim_end_matches(" web").to_string())
            .collect()
    }
}

fn set(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn every_keep_rule_on_a_fixed_history() {
    let h = history();
    assert_eq!(
        h.kept_web(&["--keep-last", "3"]),
        set(&["2025-02-01T09:30", "2025-02-02T10:00", "2025-02-03T10:00"])
    );
    // Three snapshots share the 1 February morning; the hour of 09:00 keeps its newest.
    assert_eq!(
        h.kept_web(&["--keep-hourly", "4"]),
        set(&[
            "2025-02-01T08:00",
            "2025-02-01T09:30",
            "2025-02-02T10:00",
            "2025-02-03T10:00"
        ])
    );
    assert_eq!(
        h.kept_web(&["--keep-daily", "3"]),
        set(&["2025-02-01T09:30", "2025-02-02T10:00", "2025-02-03T10:00"])
    );
    // ISO weeks: 30 December 2024 and 5 January 2025 are both in week 1 of 2025.
    assert_eq!(
        h.kept_web(&["--keep-weekly", "4"]),
        set(&[
            "2025-01-05T09:00",
            "2025-01-06T09:00",
            "2025-02-02T10:00",
            "2025-02-03T10:00"
        ])
    );
    assert_eq!(
        h.kept_web(&["--keep-monthly", "2"]),
        set(&["2025-01-06T09:00", "2025-02-03T10:00"])
    );
    // Two years have snapshots; the rule has room for a third, so the oldest is kept too.
    assert_eq!(
        h.kept_web(&["--keep-yearly", "3"]),
        set(&["2024-01-01T09:00", "2024-12-30T09:00", "2025-02-03T10:00"])
    );
    // -1: every bucket.
    assert_eq!(h.kept_web(&["--keep-monthly", "-1"]).len(), 5);
    // Within a span of the newest snapshot (not of now).
    assert_eq!(
        h.kept_web(&["--keep-within", "2d"]),
        set(&["2025-02-02T10:00", "2025-02-03T10:00"])
    );
    assert_eq!(
        h.kept_web(&["--keep-within-daily", "3d"]),
        set(&["2025-02-01T09:30", "2025-02-02T10:00", "2025-02-03T10:00"])
    );
    assert_eq!(
        h.kept_web(&["--keep-within-monthly", "1y"]),
        set(&[
            "2024-06-15T09:00",
            "2024-12-30T09:00",
            "2025-01-06T09:00",
            "2025-02-03T10:00"
        ])
    );
    assert_eq!(
        h.kept_web(&["--keep-tag", "manual", "--keep-tag", "pre-deploy"]),
        set(&["2024-06-15T09:00", "2025-02-01T09:00"])
    );
    // Rules add up.
    assert_eq!(
        h.kept_web(&["--keep-last", "1", "--keep-tag", "manual"]),
        set(&["2024-06-15T09:00", "2025-02-03T10:00"])
    );
}

#[test]
fn groups_filters_and_reasons() {
    let h = history();
    // Default grouping is host and paths: the newest of each host is kept.
    let kept = h.kept(&["--keep-last", "1"]);
    assert_eq!(
        kept.into_iter().collect::<Vec<_>>(),
        vec!["2025-02-03T10:00 web", "2025-02-03T11:00 db"]
    );
    // One group for everything.
    let kept = h.kept(&["--keep-last", "1", "--group-by", ""]);
    assert_eq!(
        kept.into_iter().collect::<Vec<_>>(),
        vec!["2025-02-03T11:00 db"]
    );
    // Grouped by tags: the newest of each tag set survives.
    assert_eq!(h.kept(&["--keep-last", "1", "--group-by", "tags"]).len(), 4);
    // A filter leaves other snapshots alone.
    let kept = h.kept(&["--keep-last", "1", "--host", "db"]);
    assert_eq!(kept.len(), HISTORY.len() - 1);
    let kept = h.kept(&["--keep-last", "1", "--tag", "scheduled"]);
    assert!(
        kept.contains("2024-06-15T09:00 web"),
        "not scheduled: untouched"
    );
    // Reasons are reported per snapshot.
    let v = h.e.json(
        &[
            "forget",
            "--dry-run",
            "--host",
            "web",
            "--keep-daily",
            "1",
            "--keep-last",
            "1",
        ],
        0,
    );
    let d = &v["groups"][0]["decisions"][0];
    assert_eq!(d["keep"], true);
    let reasons: Vec<&str> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["last snapshot", "daily snapshot"]);
    let text =
        h.e.ok(&["forget", "--dry-run", "--host", "web", "--keep-last", "2"]);
    assert!(
        text.contains("keep 2:") && text.contains("remove 8:"),
        "{text}"
    );
    assert!(text.contains("would remove 8 snapshots"), "{text}");
    // Nothing was removed by the dry runs.
    assert_eq!(
        h.e.json(&["snapshots"], 0).as_array().unwrap().len(),
        HISTORY.len()
    );
}

#[test]
fn a_policy_file_keeps_each_kind_by_its_own_rule() {
    let h = history();
    let file = h.e.path("policy.toml");
    std::fs::write(
        &file,
        r#"
# one policy per kind of snapshot
group-by = "host"
[[policy]]
tag = "pre-deploy"
keep-within = "7d"
[[policy]]
tag = "scheduled"
keep-last = 2
[[policy]]
tag = "manual"
keep-within = "90d"
"#,
    )
    .unwrap();
    let v =
        h.e.json(&["forget", "--policy-file", file.to_str().unwrap()], 0);
    assert!(v["dry_run"] == false);
    let left: BTreeSet<String> =
        h.e.json(&["snapshots"], 0)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| h.names[s["id"].as_str().unwrap()].clone())
            .collect();
    let expected: BTreeSet<String> = [
        // scheduled: the newest two per host
        "2025-02-01T09:30 web",
        "2025-02-02T10:00 web",
        "2025-01-01T00:00 db",
        "2025-02-03T11:00 db",
        // pre-deploy: within 7 days of its newest
        "2025-02-01T09:00 web",
        // manual: its only snapshot is its newest
        "2024-06-15T09:00 web",
        // emergency: no policy names it, so it is not touched
        "2025-02-03T10:00 web",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(left, expected);
    // A typo in the file is an error that names it, and nothing is removed.
    std::fs::write(&file, "[[policy]]\nkeep-dayly = 3\n").unwrap();
    let o =
        h.e.run(&["forget", "--policy-file", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keep-dayly"), "{err}");
    // Flags and a file do not mix.
    let o = h.e.run(&[
        "forget",
        "--policy-file",
        file.to_str().unwrap(),
        "--keep-last",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn forget_needs_a_policy_and_accepts_ids() {
    let h = history();
    let o = h.e.run(&["forget"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no policy"));
    let id = h.names.keys().next().unwrap().clone();
    for mixed in [
        vec!["forget", &id[..12], "--keep-last", "1"],
        vec!["forget", &id[..12], "--host", "web"],
    ] {
        let o = h.e.run(&mixed);
        assert_eq!(o.status.code(), Some(1), "{mixed:?}");
    }
    let v = h.e.json(&["forget", &id[..12], &id[..14]], 0);
    assert_eq!(
        v["remove"].as_array().unwrap().len(),
        1,
        "named twice, removed once"
    );
    assert_eq!(v["remove"][0], id.as_str());
    assert_eq!(
        h.e.json(&["snapshots"], 0).as_array().unwrap().len(),
        HISTORY.len() - 1
    );
    assert!(!h.e.repo().join("snapshots").join(&id).exists());
}

#[test]
fn forget_with_prune_gives_space_back_and_keeps_the_rest_whole() {
    let e = Env::with_init_args(&["--pack-size", "256K"]);
    let src = e.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut contents = Vec::new();
    for i in 0..4u64 {
        let data = random_bytes(100 + i, 1 << 20);
        std::fs::write(src.join("f"), &data).unwrap();
        let t = format!("2025-03-0{}T10:00:00Z", i + 1);
        e.json(&["snapshot", "--time", &t, src.to_str().unwrap()], 0);
        contents.push(data);
    }
    let packs = |e: &Env| -> u64 {
        e.repo_files()
            .iter()
            .filter(|(n, _)| n.starts_with("packs/"))
            .map(|(_, s)| s)
            .sum()
    };
    let before = packs(&e);
    let v = e.json(&["forget", "--keep-last", "2", "--prune"], 0);
    assert_eq!(v["remove"].as_array().unwrap().len(), 2);
    assert!(
        v["prune"]["bytes_freed"].as_u64().unwrap() >= 2 << 20,
        "{v}"
    );
    assert!(packs(&e) + (2 << 20) <= before);
    e.ok(&["check", "--read-data"]);
    let snaps = e.json(&["snapshots"], 0);
    for (s, data) in snaps.as_array().unwrap().iter().zip(&contents[2..]) {
        let t = e.path(&format!("r-{}", &s["short_id"].as_str().unwrap()));
        e.json(
            &[
                "restore",
                s["id"].as_str().unwrap(),
                "--target",
                t.to_str().unwrap(),
            ],
            0,
        );
        let got = std::fs::read(t.join(src.strip_prefix("/").unwrap()).join("f")).unwrap();
        assert!(got == *data, "restored bit-exact");
    }
}

#[test]
fn tag_rewrites_the_snapshot_and_removes_the_old_file() {
    let h = history();
    let (id, _) = h
        .names
        .iter()
        .find(|(_, n)| n.as_str() == "2024-01-01T09:00 web")
        .unwrap();
    let v = h.e.json(
        &["tag", &id[..10], "--add", "keep", "--remove", "scheduled"],
        0,
    );
    let new = v[0]["new"].as_str().unwrap().to_string();
    assert_eq!(v[0]["old"], id.as_str());
    assert_eq!(v[0]["tags"], serde_json::json!(["keep"]));
    assert!(!h.e.repo().join("snapshots").join(id).exists());
    assert!(h.e.repo().join("snapshots").join(&new).exists());
    let v =
        h.e.json(&["tag", &new[..10], "--set", "a", "--set", "b"], 0);
    let newer = v[0]["new"].as_str().unwrap().to_string();
    assert_eq!(v[0]["tags"], serde_json::json!(["a", "b"]));
    // No change: nothing rewritten.
    let v = h.e.json(&["tag", &newer[..10], "--add", "a"], 0);
    assert_eq!(v.as_array().unwrap().len(), 0);
    let list = h.e.json(&["snapshots", "--tag", "b"], 0);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        h.e.json(&["snapshots"], 0).as_array().unwrap().len(),
        HISTORY.len()
    );
    let o = h.e.run(&["tag", &newer[..10]]);
    assert_eq!(o.status.code(), Some(1), "nothing to change is an error");
    h.e.ok(&["check"]);
}
