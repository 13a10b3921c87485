//! `copy`: snapshots move between repositories with different keys, restore exactly from the
//! copy, are copied once, and cost only what the destination lacks.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::{Env, files, random_bytes, write};

const SOURCE_PASSWORD: &str = "source secret";

/// A source repository with its own password and a destination repository.
struct Pair {
    src: Env,
    dst: Env,
    /// A file holding the source's password.
    password_file: PathBuf,
}

fn pair() -> Pair {
    let src = Env::with_password(SOURCE_PASSWORD);
    let dst = Env::new();
    let password_file = dst.path("source-password");
    std::fs::write(&password_file, format!("{SOURCE_PASSWORD}\n")).unwrap();
    Pair {
        src,
        dst,
        password_file,
    }
}

impl Pair {
    /// `cairn -r DST copy --from-repo FROM ARGS…` with the source password from the file.
    fn copy_from(&self, from: &Path, args: &[&str]) -> Command {
        let mut all = vec![
            "copy",
            "--from-repo",
            from.to_str().unwrap(),
            "--from-password-file",
            self.password_file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let mut c = self.dst.cmd(&all);
        c.env_remove("CAIRN_FROM_PASSWORD")
            .env_remove("CAIRN_FROM_PASSWORD_FILE");
        c
    }

    /// Copies from the source with `--json ARGS`; asserts success and returns the report.
    fn copy(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = self.copy_from(&self.src.repo(), &all).output().unwrap();
        assert!(o.status.success(), "copy failed: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Takes a snapshot of `dir` in `e` with `extra` options; returns its id.
fn snap(e: &Env, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["snapshot", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    e.json(&args, 0)["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_string()
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|c| c[field].as_str().expect("an id").to_string())
        .collect()
}

fn num(r: &Value, field: &str) -> u64 {
    r[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {r}"))
}

/// Restores snapshot `id` of `e` and compares what lands for `src` with `expected`.
fn restores_as(e: &Env, id: &str, src: &Path, expected: &BTreeMap<String, Vec<u8>>) {
    let target = e.path(&format!("restore-{id}"));
    e.json(&["restore", id, "--target", target.to_str().unwrap()], 0);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert!(
        files(&restored) == *expected,
        "snapshot {id} does not restore bit-exact"
    );
}

#[test]
fn copies_restore_exactly_and_are_made_once() {
    let p = pair();
    let data = p.src.path("data");
    write(&data, "big", &random_bytes(1, 1 << 20));
    write(&data, "sub/mid", &random_bytes(2, 300 << 10));
    write(&data, "sub/note", b"hello");
    let s1 = snap(&p.src, &data, &["--tag", "nightly"]);
    let first = files(&data);
    write(&data, "sub/mid", &random_bytes(3, 200 << 10));
    write(&data, "new", &random_bytes(4, 50 << 10));
    let s2 = snap(&p.src, &data, &[]);
    let second = files(&data);

    let r = p.copy(&[]);
    assert_eq!(ids(&r["copied"], "source"), [s1.clone(), s2.clone()]);
    let copies = ids(&r["copied"], "copy");
    restores_as(&p.dst, &copies[0], &data, &first);
    restores_as(&p.dst, &copies[1], &data, &second);
    p.dst.json(&["check", "--read-data"], 0);
    let (orig, copy) = (
        p.src.json(&["cat", "snapshot", &s1], 0),
        p.dst.json(&["cat", "snapshot", &copies[0]], 0),
    );
    for field in ["time", "host", "user", "paths", "tags", "summary"] {
        assert_eq!(copy[field], orig[field], "{field} is kept");
    }
    assert_eq!(copy["original"], s1.as_str());
    assert_eq!(copy["parent"], Value::Null);

    // A second run finds both copies and sends nothing.
    let before = p.dst.repo_files();
    let again = p.copy(&[]);
    assert_eq!(again["copied"], Value::Array(vec![]));
    assert_eq!(ids(&again["skipped"], "source"), [s1.clone(), s2]);
    assert_eq!(ids(&again["skipped"], "copy"), copies);
    assert_eq!(num(&again, "blobs_copied"), 0);
    assert_eq!(num(&again, "bytes_copied"), 0);
    assert_eq!(p.dst.repo_files(), before, "nothing written");
    let out = p.copy_from(&p.src.repo(), &[]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "skipped {} (already copied as {})",
            &s1[..8],
            &copies[0][..8]
        )),
        "{text}"
    );
}

#[test]
fn an_incremental_copy_sends_only_what_changed() {
    let p = pair();
    let data = p.src.path("data");
    for i in 0..4u64 {
        write(&data, &format!("part{i}"), &random_bytes(10 + i, 1 << 20));
    }
    write(&data, "conf/small", b"version 1");
    snap(&p.src, &data, &[]);
    write(&data, "conf/other", b"another small file");
    snap(&p.src, &data, &[]);
    let full = p.copy(&[]);
    assert!(num(&full, "bytes_copied") >= 4 << 20);

    write(&data, "conf/small", b"version 2, a little longer");
    let s3 = snap(&p.src, &data, &[]);
    let r = p.copy(&[]);
    assert_eq!(ids(&r["copied"], "source"), [s3]);
    assert_eq!(r["skipped"].as_array().unwrap().len(), 2);
    let size = 4u64 << 20;
    let sent = num(&r, "bytes_copied");
    assert!(sent > 0 && sent < size / 10, "{sent} bytes sent");
    // The memo spares reading the unchanged data from the source at all.
    assert_eq!(num(&r, "data_read"), 26);
    restores_as(&p.dst, &ids(&r["copied"], "copy")[0], &data, &files(&data));
}

#[test]
fn content_the_destination_already_holds_is_not_stored_again() {
    let p = pair();
    // Files below the smallest chunk size are one blob each, whatever the repository's
    // chunker key, so the two repositories cut them alike.
    let (own, theirs) = (p.dst.path("own"), p.src.path("theirs"));
    let mut size = 0;
    for i in 0..150u64 {
        let content = random_bytes(100 + i, 8 << 10);
        size += content.len() as u64;
        write(&own, &format!("f{i}"), &content);
        write(&theirs, &format!("f{i}"), &content);
    }
    write(&theirs, "extra", b"only in the source");
    snap(&p.dst, &own, &[]);
    snap(&p.src, &theirs, &[]);
    let before = p.dst.pack_bytes();
    let r = p.copy(&[]);
    let grown = p.dst.pack_bytes() - before;
    assert!(
        grown < size / 10,
        "{grown} pack bytes added for {size} bytes present"
    );
    assert!(num(&r, "blobs_reused") >= 150);
    assert!(num(&r, "bytes_copied") < size / 10);
    restores_as(
        &p.dst,
        &ids(&r["copied"], "copy")[0],
        &theirs,
        &files(&theirs),
    );
}

#[test]
fn a_dry_run_writes_nothing() {
    let p = pair();
    let data = p.src.path("data");
    write(&data, "f", &random_bytes(20, 100 << 10));
    let s1 = snap(&p.src, &data, &[]);
    let before = p.dst.repo_files();
    let o = p
        .dst
        .cmd(&["copy", "--from-repo", p.src.repo().to_str().unwrap(), "-n"])
        .env("CAIRN_FROM_PASSWORD", SOURCE_PASSWORD)
        .env_remove("CAIRN_FROM_PASSWORD_FILE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("would copy {}", &s1[..8])), "{text}");
    assert_eq!(p.dst.repo_files(), before);
}

#[test]
fn a_wrong_source_password_or_a_missing_source_is_reported() {
    let p = pair();
    std::fs::write(&p.password_file, "not it\n").unwrap();
    let o = p.copy_from(&p.src.repo(), &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(12), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("source repository") && err.contains("wrong password"),
        "{err}"
    );
    assert!(err.contains(p.src.repo().to_str().unwrap()), "{err}");

    let o = p.copy_from(&p.dst.path("nowhere"), &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", stderr(&o));
    assert!(stderr(&o).contains("no repository at"), "{}", stderr(&o));
}
