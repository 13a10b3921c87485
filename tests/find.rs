//! `cairn find`: which snapshots hold entries matching a glob.

mod common;

use std::fs;

use common::Env;

fn set_mtime(p: &std::path::Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_file_mtime(p, t).unwrap();
}

#[test]
fn find_names_the_snapshots_and_entries_that_match() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(src.join("etc/app")).unwrap();
    fs::create_dir_all(src.join("var/log")).unwrap();
    common::write(&src, "etc/app/main.conf", b"one");
    common::write(&src, "var/log/App.LOG", b"log line\n");
    set_mtime(&src.join("etc/app/main.conf"), 1_600_000_000); // 2020-09-13
    e.snapshot(&[&src]);
    common::write(&src, "etc/app/extra.conf", b"two");
    set_mtime(&src.join("etc/app/extra.conf"), 1_700_000_000); // 2023-11-14
    e.ok(&["snapshot", src.to_str().unwrap(), "--tag", "later"]);

    // A name pattern: both snapshots hold main.conf, only the second extra.conf.
    let v = e.json(&["find", "*.conf"], 0);
    let hits: Vec<Vec<String>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["path"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let p = |rel: &str| src.join(rel).to_str().unwrap().to_string();
    assert_eq!(
        hits,
        vec![
            vec![p("etc/app/main.conf")],
            vec![p("etc/app/extra.conf"), p("etc/app/main.conf")]
        ]
    );
    let first = &v[0]["matches"][0];
    assert_eq!(first["size"], 3);
    assert_eq!(first["mtime_ns"], 1_600_000_000_000_000_000i64);
    assert_eq!(v[1]["hits"], 2);

    // Text output names the snapshot and lists the entry with size and time.
    let out = e.ok(&["find", "main.conf"]);
    assert_eq!(
        out.matches("Found matching entries in snapshot").count(),
        2,
        "{out}"
    );
    assert!(out.contains("2 matches in 2 of 2 snapshots"), "{out}");
    assert!(out.contains(&p("etc/app/main.conf")), "{out}");

    // Case folding, a whole-path pattern, the snapshot filters and mtime bounds.
    assert_eq!(e.json(&["find", "*.log"], 0).as_array().unwrap().len(), 0);
    assert_eq!(
        e.json(&["find", "-i", "*.log"], 0)
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let whole = format!("{}/*/app", src.display());
    let v = e.json(&["find", &whole], 0);
    assert_eq!(v[0]["matches"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["matches"][0]["type"], "dir");
    let v = e.json(&["find", "*.conf", "--tag", "later"], 0);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let v = e.json(&["find", "*.conf", "--snapshot", "latest"], 0);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let v = e.json(&["find", "*.conf", "--oldest", "2021-01-01"], 0);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["matches"][0]["name"], "extra.conf");
    let v = e.json(&["find", "*.conf", "--newest", "2021-01-01T00:00:00Z"], 0);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|s| s["matches"][0]["name"] == "main.conf")
    );
    let out = e.ok(&["find", "nothing-like-this"]);
    assert!(out.contains("0 matches in 0 of 2 snapshots"), "{out}");
}

#[test]
fn find_refuses_bad_patterns_times_and_snapshots() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "a", b"a");
    e.snapshot(&[&src]);
    for (args, says) in [
        (vec!["find", "["], "bad pattern"),
        (
            vec!["find", "a", "--oldest", "last tuesday"],
            "is not a time",
        ),
        (vec!["find", "a", "--snapshot", "deadbeef"], "deadbeef"),
        (vec!["find"], "PATTERNS"),
    ] {
        let o = e.run(&args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
