//! The corruption matrix: for every kind of repository file, one byte flipped, the file
//! truncated, deleted, or swapped with another of its kind. Each case asserts what `check`,
//! `check --read-data` and `restore` say: an error that names the damaged file, never a
//! silently wrong restore, and every unaffected file still restored.
//! The matrix runs on a repository in a folder and on one in an S3 bucket (SeaweedFS on
//! 127.0.0.1), damaged through the store itself.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use cairn::backend::{Backend, FileKind};
use common::{Env, files, random_bytes, write};

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Delete,
    Swap,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Config,
    Key,
    Snapshot,
    Index,
    PackData,
    PackHeader,
    PackTrailer,
}

struct Case {
    e: Env,
    src: PathBuf,
    /// The two snapshots (same source, the second after one more file).
    snaps: Vec<String>,
}

/// Where the repository lives: a folder, or a bucket on the test's S3 server.
#[derive(Clone, Copy)]
enum At {
    Folder,
    Bucket(&'static common::seaweed::Seaweed),
}

fn setup(at: At) -> Case {
    let args = ["--pack-size", "64K"];
    let e = match at {
        At::Folder => Env::with_init_args(&args),
        At::Bucket(s) => Env::in_bucket(s, &args),
    };
    e.add_key("second password");
    let src = e.path("src");
    for i in 0..6 {
        write(&src, &format!("f{i}"), &random_bytes(i, 100_000));
    }
    let s1 = e.snapshot(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    write(&src, "g", &random_bytes(99, 100_000));
    let s2 = e.snapshot(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    Case {
        e,
        src,
        snaps: vec![s1, s2],
    }
}

/// The files of `kind` in the store, sorted by name, with their sizes.
fn of_kind(store: &dyn Backend, kind: FileKind) -> Vec<(String, u64)> {
    let mut v = store.list(kind).unwrap();
    v.retain(|(n, _)| !n.contains(".tmp-"));
    v.sort();
    v
}

/// The byte to flip in a file of `kind` holding `b`.
fn offset(kind: Kind, b: &[u8]) -> usize {
    let len = b.len();
    match kind {
        Kind::PackData => 100,
        Kind::PackTrailer => len - 2,
        Kind::PackHeader => {
            let hlen = u32::from_le_bytes(b[len - 4..].try_into().unwrap()) as usize;
            len - 4 - hlen / 2
        }
        _ => len / 2,
    }
}

/// Replaces a file of the store with `data` (a bucket refuses to overwrite: delete first).
fn replace(store: &dyn Backend, kind: FileKind, name: &str, data: &[u8]) {
    store.delete(kind, name).unwrap();
    store.put(kind, name, data).unwrap();
}

/// Damages one file (and for a swap, a second one of its kind); returns the names damaged.
fn damage(c: &Case, kind: Kind, how: Damage) -> Vec<String> {
    let store = c.e.store();
    let store = store.as_ref();
    let fk = match kind {
        Kind::Config => FileKind::Config,
        Kind::Key => FileKind::Key,
        Kind::Snapshot => FileKind::Snapshot,
        Kind::Index => FileKind::Index,
        _ => FileKind::Pack,
    };
    let mut list = of_kind(store, fk);
    if fk == FileKind::Config {
        list = vec![("config".to_string(), 0)];
    }
    if fk == FileKind::Pack {
        // The largest pack (file data) first, then the others largest first.
        list.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    }
    let victim = list[0].0.clone();
    match how {
        Damage::Flip => {
            let mut b = store.get(fk, &victim).unwrap();
            let at = offset(kind, &b);
            b[at] ^= 0x10;
            replace(store, fk, &victim, &b);
        }
        Damage::Truncate => {
            let b = store.get(fk, &victim).unwrap();
            replace(store, fk, &victim, &b[..b.len() / 2]);
        }
        Damage::Delete => store.delete(fk, &victim).unwrap(),
        Damage::Swap => {
            let other = list[1].0.clone();
            let (a, b) = (
                store.get(fk, &victim).unwrap(),
                store.get(fk, &other).unwrap(),
            );
            replace(store, fk, &victim, &b);
            replace(store, fk, &other, &a);
            return vec![victim, other];
        }
    }
    vec![victim]
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Restores `id` and returns the exit code and what was restored; asserts that every file
/// restored has the source's content.
fn restore(c: &Case, id: &str, into: &str) -> (Option<i32>, BTreeMap<String, Vec<u8>>) {
    let t = c.e.path(into);
    let o = c.e.run(&["restore", id, "--target", t.to_str().unwrap()]);
    let dir = t.join(c.src.strip_prefix("/").unwrap());
    let got = if dir.exists() {
        files(&dir)
    } else {
        BTreeMap::new()
    };
    let want = files(&c.src);
    for (n, data) in &got {
        assert!(
            want.get(n) == Some(data) || data.is_empty() && o.status.code() == Some(1),
            "{n} restored with wrong content; restore said: {}",
            text(&o)
        );
    }
    (o.status.code(), got)
}

#[test]
fn every_kind_of_damage_is_named_and_never_restored() {
    matrix(At::Folder);
}

/// The same matrix on a repository in an S3 bucket (SeaweedFS on 127.0.0.1), damaged
/// through the bucket.
#[test]
fn every_kind_of_damage_in_a_bucket_is_named_and_never_restored() {
    let Some(s) = common::seaweed::shared() else {
        return;
    };
    matrix(At::Bucket(s));
}

fn matrix(at: At) {
    use Damage::*;
    use Kind::*;
    let mut cases = 0;
    for kind in [
        Config,
        Key,
        Snapshot,
        Index,
        PackData,
        PackHeader,
        PackTrailer,
    ] {
        for how in [Flip, Truncate, Delete, Swap] {
            if kind == Config && matches!(how, Swap) {
                continue; // there is one config
            }
            if matches!(kind, PackHeader | PackTrailer) && !matches!(how, Flip) {
                continue; // truncating, deleting or swapping a pack is covered by PackData
            }
            cases += 1;
            let c = setup(at);
            let names = damage(&c, kind, how);
            let what = format!("{kind:?} {how:?} {names:?}");
            let chk = c.e.run(&["check", "--read-data"]);
            let out = text(&chk);
            // The cheaper proof finds the same damage, with the same verdict.
            let quick = c.e.run(&["check", "--read-data", "--authenticate-only"]);
            let quick_out = text(&quick);
            assert_eq!(
                quick.status.code(),
                chk.status.code(),
                "{what}: --authenticate-only: {quick_out} / full: {out}"
            );
            match kind {
                // Config and keys: nothing can be opened; the error names the file or says
                // the password opens no key.
                Config => {
                    assert!(
                        matches!(chk.status.code(), Some(1) | Some(10)),
                        "{what}: {out}"
                    );
                    assert!(
                        out.contains("config") || out.contains("no repository"),
                        "{what}: {out}"
                    );
                    continue;
                }
                Key => {
                    // One key is damaged; the other still opens the repository.
                    let o = c.e.run(&["key", "list"]);
                    let opens = |pw: &str| {
                        c.e.cmd(&["snapshots"])
                            .env("CAIRN_PASSWORD", pw)
                            .output()
                            .unwrap()
                            .status
                            .success()
                    };
                    assert!(
                        opens(&c.e.password) || opens("second password"),
                        "{what}: neither key opens the repository"
                    );
                    assert!(
                        matches!(chk.status.code(), Some(0) | Some(1) | Some(12)),
                        "{what}: {out} / {}",
                        text(&o)
                    );
                    if chk.status.code() != Some(0) {
                        assert!(
                            out.contains("key") || out.contains("password"),
                            "{what}: {out}"
                        );
                    }
                    continue;
                }
                _ => {}
            }
            if kind == Snapshot && matches!(how, Delete) {
                // A deleted snapshot file looks exactly like a forgotten snapshot: nothing
                // else is damaged, and restoring it says it is not there.
                assert_eq!(chk.status.code(), Some(0), "{what}: {out}");
                let gone = c.snaps.iter().find(|id| names[0] == **id).unwrap();
                let o =
                    c.e.run(&["restore", gone, "--target", "/nonexistent-target"]);
                assert_eq!(o.status.code(), Some(1), "{what}");
                assert!(text(&o).contains(&gone[..8]), "{what}: {}", text(&o));
                continue;
            }
            // Everything else: check --read-data fails and names a damaged file.
            assert_eq!(chk.status.code(), Some(1), "{what}: check passed: {out}");
            for out in [&out, &quick_out] {
                assert!(
                    names.iter().any(|n| out.contains(&n[..16]))
                        || kind == PackData
                        || kind == Index,
                    "{what}: no damaged file named: {out}"
                );
                if matches!(kind, PackData | PackHeader | PackTrailer | Index) {
                    // A pack or index: the error names the pack, or the blobs and paths it
                    // held.
                    assert!(
                        names.iter().any(|n| out.contains(&n[..8])) || out.contains("blob"),
                        "{what}: {out}"
                    );
                }
            }
            // Restore: never wrong content; what is undamaged comes back.
            for (k, id) in c.snaps.iter().enumerate() {
                let (code, got) = restore(&c, id, &format!("r{k}"));
                if kind == Snapshot && code != Some(0) {
                    continue; // that snapshot's record is what was damaged
                }
                if code == Some(0) {
                    let want = files(&c.src);
                    let expect = if k == 0 { want.len() - 1 } else { want.len() };
                    assert_eq!(got.len(), expect, "{what}: restore 0 but files missing");
                } else {
                    assert_eq!(code, Some(1), "{what}");
                    if matches!(kind, PackData) {
                        // One or two packs hold parts of at most four of the 6–7 files.
                        assert!(got.len() >= 2, "{what}: unaffected files not restored");
                    }
                }
            }
        }
    }
    assert_eq!(cases, 21);
}
