//! `restore --delete`: the target made identical to the snapshot, within the filters.

mod common;

use common::{Env, files, write};

#[test]
fn delete_removes_what_the_snapshot_lacks_within_the_filters() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "keep/a.txt", b"a");
    write(&src, "keep/sub/b.txt", b"b");
    write(&src, "other/c.txt", b"c");
    e.snapshot(&[&src]);
    let target = e.path("t");
    e.restore(&target, &[]);
    let base = target.join(src.strip_prefix("/").unwrap());
    let pristine = files(&target);
    // Extra entries: files, a folder with content, a symlink, and a file the filter excludes.
    write(&base, "keep/extra.txt", b"x");
    write(&base, "keep/newdir/deep/y.txt", b"y");
    std::os::unix::fs::symlink("/etc/passwd", base.join("keep/link")).unwrap();
    write(&base, "keep/app.log", b"log");
    write(&base, "other/extra.txt", b"outside the include");
    std::fs::write(base.join("keep/sub/b.txt"), b"changed").unwrap();

    // A dry run counts what would go and removes nothing.
    let keep = format!("{}/keep", src.display());
    let dry = e.restore(
        &target,
        &[
            "--delete",
            "--dry-run",
            "--include",
            &keep,
            "--exclude",
            "*.log",
        ],
    );
    assert_eq!(dry["report"]["deleted"], 3, "{dry}");
    assert!(base.join("keep/extra.txt").exists());

    let r = e.restore(
        &target,
        &["--delete", "--include", &keep, "--exclude", "*.log"],
    );
    assert_eq!(r["report"]["deleted"], 3, "{r}");
    let mut expected = pristine.clone();
    let rel = |p: &str| {
        base.join(p)
            .strip_prefix(&target)
            .unwrap()
            .display()
            .to_string()
    };
    expected.insert(rel("keep/app.log"), b"log".to_vec());
    expected.insert(rel("other/extra.txt"), b"outside the include".to_vec());
    assert_eq!(files(&target), expected);
    assert!(std::fs::symlink_metadata(base.join("keep/link")).is_err());
    assert!(!base.join("keep/newdir").exists());

    // Without filters everything the snapshot lacks goes.
    e.restore(&target, &["--delete"]);
    assert_eq!(files(&target), pristine);
}

#[test]
fn delete_replaces_a_directory_in_the_way_of_a_file() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "f", b"file");
    e.snapshot(&[&src]);
    let target = e.path("t");
    e.restore(&target, &[]);
    let f = target.join(src.strip_prefix("/").unwrap()).join("f");
    std::fs::remove_file(&f).unwrap();
    write(&f, "inside", b"dir now");
    let o = e.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "without --delete a directory in the way is an error"
    );
    e.restore(&target, &["--delete"]);
    assert_eq!(std::fs::read(&f).unwrap(), b"file");
}

#[test]
fn delete_into_the_root_needs_force() {
    let e = Env::new();
    let src = e.path("src");
    write(&src, "f", b"file");
    e.snapshot(&[&src]);
    let o = e.run(&[
        "restore",
        "latest",
        "--target",
        "/",
        "--delete",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("restore --delete into / would remove everything") && err.contains("--force"),
        "{err}"
    );
}
