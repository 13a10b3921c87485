//! Dedup and incremental snapshots, proven from the `--json` summaries and the repository's files.

mod common;

use std::fs;

use common::*;

#[test]
fn unchanged_tree_reads_nothing_and_adds_only_a_snapshot_file() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..20 {
        fs::write(
            src.join(format!("a/f{i}")),
            random_bytes(i, 10_000 + i as usize * 1000),
        )
        .unwrap();
    }
    fs::write(src.join("a/b/big"), random_bytes(99, 2_000_000)).unwrap();
    let first = env.snapshot(&[&src]);
    assert_eq!(first["files_new"], 21);
    let before = env.repo_files();
    let second = env.snapshot(&[&src]);
    assert_eq!(second["files_unmodified"], 21, "{second}");
    assert_eq!(second["files_new"], 0);
    assert_eq!(second["files_changed"], 0);
    assert_eq!(second["bytes_read"], 0, "no file content is read");
    assert_eq!(second["data_added"], 0, "no blob (data or tree) is added");
    assert_eq!(second["parent"], first["snapshot_id"]);
    let new_files = added(&before, &env.repo_files());
    assert_eq!(new_files.len(), 1, "{new_files:?}");
    assert!(new_files[0].starts_with("snapshots/"), "{new_files:?}");
    // --force re-reads everything but still stores nothing new.
    let forced = env.json(&["snapshot", "--force", src.to_str().unwrap()], 0);
    assert_eq!(forced["files_new"], 21);
    assert_eq!(forced["data_added"], 0);
    assert!(forced["bytes_read"].as_u64().unwrap() > 2_000_000);
}

#[test]
fn small_edit_in_a_large_file_adds_about_one_chunk() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    let mut data = random_bytes(7, 8 << 20);
    fs::write(src.join("large"), &data).unwrap();
    let first = env.snapshot(&[&src]);
    assert!(first["data_added"].as_u64().unwrap() >= 8 << 20);
    data[4 << 20..(4 << 20) + 5].copy_from_slice(b"EDIT!");
    fs::write(src.join("large"), &data).unwrap();
    let second = env.snapshot(&[&src]);
    assert_eq!(second["files_changed"], 1);
    let added = second["data_added"].as_u64().unwrap();
    // Chunks are at most 256 KiB in test repositories: one or two chunks plus two small trees.
    assert!(added < 600_000, "a 5-byte edit added {added} bytes");
    let target = env.path("out");
    env.restore(&target, &[]);
    assert_eq!(
        fs::read(target.join(src.strip_prefix("/").unwrap()).join("large")).unwrap(),
        data
    );
}

#[test]
fn identical_content_is_stored_once() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("x/y")).unwrap();
    let content = random_bytes(3, 1_500_000);
    fs::write(src.join("one"), &content).unwrap();
    fs::write(src.join("x/y/two"), &content).unwrap();
    let s = env.snapshot(&[&src]);
    let added = s["data_added"].as_u64().unwrap();
    assert!(
        (1_500_000..1_600_000).contains(&added),
        "two copies cost {added}"
    );
    // The same content under another path in a second snapshot adds no data either.
    let other = env.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("three"), &content).unwrap();
    let s2 = env.snapshot(&[&other]);
    assert!(s2["data_added"].as_u64().unwrap() < 10_000, "{s2}");
    let stats = env.json(&["stats"], 0);
    assert_eq!(stats["snapshots"], 2);
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 2.9, "{stats}");
}

#[test]
fn a_new_file_is_new_and_a_touched_file_is_changed() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("keep"), b"same").unwrap();
    fs::write(src.join("touch"), b"v1").unwrap();
    env.snapshot(&[&src]);
    fs::write(src.join("touch"), b"v2").unwrap();
    fs::write(src.join("fresh"), b"new").unwrap();
    let s = env.snapshot(&[&src]);
    assert_eq!(
        (
            s["files_new"].as_u64(),
            s["files_changed"].as_u64(),
            s["files_unmodified"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    let snaps = env.json(&["snapshots"], 0);
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let diff = env.json(&["diff", ids[0], ids[1]], 0);
    let changes: Vec<(String, String)> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .into(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("+".into(), "fresh".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("M".into(), "touch".into())),
        "{changes:?}"
    );
    assert!(!changes.iter().any(|c| c.1 == "keep"), "{changes:?}");
}

#[test]
fn excludes_and_tags_and_listing_filters() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::create_dir_all(src.join("skipme")).unwrap();
    fs::write(src.join("keep.txt"), b"k").unwrap();
    fs::write(src.join("junk.tmp"), b"j").unwrap();
    fs::write(src.join("cache/data"), b"c").unwrap();
    fs::write(src.join("skipme/.nobackup"), b"").unwrap();
    fs::write(src.join("skipme/secret"), b"s").unwrap();
    let exf = env.path("excludes");
    fs::write(&exf, format!("# comment\n\n{}/cache\n", src.display())).unwrap();
    let s = env.json(
        &[
            "snapshot",
            "--exclude",
            "*.tmp",
            "--exclude-file",
            exf.to_str().unwrap(),
            "--exclude-if-present",
            ".nobackup",
            "--tag",
            "nightly",
            "--tag",
            "db",
            "--host",
            "web1",
            src.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(s["files_new"], 1, "{s}");
    let names = env.ls_names(&["ls", "latest", src.to_str().unwrap()]);
    assert_eq!(names, vec!["keep.txt"]);
    assert_eq!(
        env.json(&["snapshots", "--tag", "db"], 0)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["snapshots", "--tag", "other"], 0)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["snapshots", "--host", "web1"], 0)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let snap = &env.json(&["snapshots", "--path", src.to_str().unwrap()], 0)[0];
    assert_eq!(snap["tags"], serde_json::json!(["nightly", "db"]));
    assert_eq!(snap["host"], "web1");
    for field in [
        "id", "short_id", "time", "user", "paths", "parent", "tree", "summary",
    ] {
        assert!(snap.get(field).is_some(), "snapshots --json lacks {field}");
    }
}

#[test]
fn snapshot_time_override_and_dry_run() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), random_bytes(1, 100_000)).unwrap();
    let before = env.repo_files();
    let d = env.json(&["snapshot", "--dry-run", src.to_str().unwrap()], 0);
    assert!(d["snapshot_id"].is_null());
    assert_eq!(d["files_new"], 1);
    assert!(d["data_added"].as_u64().unwrap() >= 100_000);
    assert_eq!(before, env.repo_files(), "a dry run writes nothing");
    env.json(
        &[
            "snapshot",
            "--time",
            "2020-02-29T12:34:56Z",
            src.to_str().unwrap(),
        ],
        0,
    );
    let snaps = env.json(&["snapshots"], 0);
    assert_eq!(snaps[0]["time"], "2020-02-29T12:34:56Z");
    // The dry run did not poison the cache: the real snapshot stored the data.
    env.ok(&["check", "--read-data"]);
    let out = env.run(&["snapshot", "--time", "yesterday", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[test]
fn the_repository_and_cache_inside_a_source_are_not_stored() {
    let env = Env::new();
    fs::write(env.path("note"), b"n").unwrap();
    // The workspace holds the repository and the cache; snapshot all of it.
    let s = env.snapshot(&[env.dir.path()]);
    assert_eq!(s["files_new"], 1, "{s}");
    let names = env.ls_names(&["ls", "latest", env.dir.path().to_str().unwrap()]);
    assert_eq!(names, vec!["note"]);
}

/// Unmounts on drop so a failing test leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn one_file_system_keeps_mount_points_but_not_their_content() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("local"), b"l").unwrap();
    let mounted = is_root()
        && std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "tmpfs",
                src.join("mnt").to_str().unwrap(),
            ])
            .status()
            .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _guard = Mount(src.join("mnt"));
    fs::write(src.join("mnt/remote"), b"r").unwrap();
    let s = env.json(&["snapshot", "--one-file-system", src.to_str().unwrap()], 0);
    assert_eq!(s["files_new"], 1, "{s}");
    let names = env.ls_names(&["ls", "--recursive", "latest", src.to_str().unwrap()]);
    assert_eq!(
        names,
        vec!["local", "mnt"],
        "the mount point is kept, empty"
    );
    let s = env.json(&["snapshot", "--force", src.to_str().unwrap()], 0);
    assert_eq!(
        s["files_new"], 2,
        "without the flag the mounted file is stored"
    );
}

#[test]
fn shared_and_repeated_blobs_restore_exactly_over_new_and_existing_files() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    // One blob in two files; one file whose content repeats the same chunks (a blob needed at
    // several offsets of one file); 600 small files, which the second round restores in
    // batches of 16 under a low open-file limit.
    let content = random_bytes(7, 1_500_000);
    fs::write(src.join("a"), &content).unwrap();
    fs::write(src.join("d/b"), &content).unwrap();
    let block = random_bytes(8, 3 << 20);
    let mut repeated = block.clone();
    repeated.extend_from_slice(&block);
    repeated.extend_from_slice(&block);
    fs::write(src.join("rep"), &repeated).unwrap();
    for i in 0..600 {
        fs::write(src.join(format!("d/s{i:03}")), format!("small {i}")).unwrap();
    }
    env.snapshot(&[&src]);
    let target = env.path("out");
    let tsrc = |p: &str| target.join(src.strip_prefix("/").unwrap()).join(p);
    for round in 0..2 {
        // The second round replaces existing files (written aside, then renamed).
        if round == 1 {
            fs::write(tsrc("a"), b"stale").unwrap();
            fs::write(tsrc("d/s007"), b"stale and longer than before").unwrap();
        }
        let r = if round == 0 {
            env.restore(&target, &[])
        } else {
            let t = target.to_str().unwrap();
            // Every file again, through the replace-by-rename path.
            let out = env
                .cmd_with_file_limit(
                    &[
                        "--json",
                        "restore",
                        "latest",
                        "--target",
                        t,
                        "--overwrite",
                        "always",
                    ],
                    64,
                )
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        };
        assert_eq!(r["report"]["files"], 603, "{r}");
        assert_eq!(fs::read(tsrc("a")).unwrap(), content);
        assert_eq!(fs::read(tsrc("d/b")).unwrap(), content);
        assert_eq!(fs::read(tsrc("rep")).unwrap(), repeated);
        assert_eq!(fs::read(tsrc("d/s007")).unwrap(), b"small 7");
        let stray: Vec<_> = fs::read_dir(tsrc("d"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".cairn-restore")
            })
            .collect();
        assert!(stray.is_empty(), "temporary files left: {stray:?}");
    }
}

/// An entry whose inode and change time are the parent's keeps the parent's extended
/// attributes and symlink target without reading them again; a changed attribute (which
/// moves the change time) or a retargeted link (a new inode) is read and stored anew.
#[test]
fn changed_xattrs_and_retargeted_links_are_seen_on_an_otherwise_unchanged_tree() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "f", b"same content");
    write(&src, "g", b"other");
    if xattr::set(src.join("f"), "user.cairn", b"one").is_err() {
        eprintln!("skipped: no user xattrs on this filesystem");
        return;
    }
    std::os::unix::fs::symlink("f", src.join("link")).unwrap();
    e.snapshot(&[&src]);
    let dir = src.to_str().unwrap().to_string();
    let node = |name: &str| {
        let listing = e.json(&["ls", "latest", &dir], 0);
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(node("f")["xattrs"]["user.cairn"], hex::encode("one"));
    // Unchanged: the parent's attributes are kept.
    e.snapshot(&[&src]);
    assert_eq!(node("f")["xattrs"]["user.cairn"], hex::encode("one"));
    // A new value (same size, same content, same mtime): seen.
    let mtime = fs::metadata(src.join("f")).unwrap().modified().unwrap();
    xattr::set(src.join("f"), "user.cairn", b"two").unwrap();
    filetime::set_file_mtime(src.join("f"), filetime::FileTime::from_system_time(mtime)).unwrap();
    xattr::set(src.join("g"), "user.added", b"x").unwrap();
    fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("g", src.join("link")).unwrap();
    e.snapshot(&[&src]);
    assert_eq!(node("f")["xattrs"]["user.cairn"], hex::encode("two"));
    assert_eq!(node("g")["xattrs"]["user.added"], hex::encode("x"));
    assert_eq!(node("link")["link_target"], "g", "{}", node("link"));
    // Removed: seen too.
    xattr::remove(src.join("f"), "user.cairn").unwrap();
    e.snapshot(&[&src]);
    assert!(node("f")["xattrs"].is_null(), "{}", node("f"));
}

/// A file unchanged since the parent snapshot whose data was lost (its pack deleted, the index
/// rebuilt without it) is read and stored again, not referenced blindly: the parent's chunks
/// are looked up, all of a directory's at once, before they are reused.
#[test]
fn an_unchanged_file_whose_data_is_gone_is_read_again() {
    let e = Env::with_init_args(&["--pack-size", "64K"]);
    let src = e.path("src");
    for i in 0..8u64 {
        write(&src, &format!("f{i}"), &random_bytes(i, 150_000));
    }
    e.snapshot(&[&src]);
    // Unchanged runs: the first proves the folder's chunks indexed and records its tree as
    // proven, the second trusts that proof.
    for _ in 0..2 {
        let s = e.snapshot(&[&src]);
        assert_eq!(s["data_added"], 0, "{s}");
    }
    // Lose the largest pack (file data) and rebuild the index from what is left: the proof
    // must go with the chunks it saw.
    let (pack, _) = e
        .repo_files()
        .into_iter()
        .filter(|(n, _)| n.starts_with("packs/"))
        .max_by_key(|(_, s)| *s)
        .unwrap();
    fs::remove_file(e.repo().join(&pack)).unwrap();
    e.ok(&["repair", "index"]);
    let s = e.snapshot(&[&src]);
    assert!(
        s["data_added"].as_u64().unwrap() > 0,
        "the lost data was stored again: {s}"
    );
    assert!(
        e.ok(&["check", "--read-data"]).contains("no errors found") || {
            // The first snapshot still needs the lost pack; only the new one must be whole.
            let latest = e.json(&["snapshots"], 0);
            let id = latest.as_array().unwrap().last().unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            e.json(&["check", "--read-data", "--snapshot", &id], 0)["errors"]
                .as_array()
                .unwrap()
                .is_empty()
        }
    );
    let out = e.path("out");
    e.restore(&out, &[]);
    assert_eq!(
        files(&out.join(src.strip_prefix("/").unwrap())),
        files(&src)
    );
}
