//! The corruption matrix: for every kind of repository file, one byte flipped, the file
//! truncated, deleted, or swapped with another of its kind. Each case asserts what `check`,
//! `check --read-data` and `restore` say: an error that names the damaged file, never a
//! silently wrong restore, and every unaffected file still restored.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

fn setup() -> Case {
    let e = Env::with_init_args(&["--pack-size", "64K"]);
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

fn of_kind(e: &Env, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = e
        .repo_files()
        .into_iter()
        .filter(|(n, _)| n.starts_with(dir) && !n.contains(".tmp-"))
        .map(|(n, _)| e.repo().join(n))
        .collect();
    v.sort();
    v
}

/// A data pack (the largest packs hold file data).
fn data_pack(e: &Env) -> PathBuf {
    let mut packs = of_kind(e, "packs/");
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    packs.pop().unwrap()
}

/// The byte to flip in `kind`'s file of length `len`.
fn offset(kind: Kind, path: &Path, len: usize) -> usize {
    match kind {
        Kind::PackData => 100,
        Kind::PackTrailer => len - 2,
        Kind::PackHeader => {
            let b = std::fs::read(path).unwrap();
            let hlen = u32::from_le_bytes(b[len - 4..].try_into().unwrap()) as usize;
            len - 4 - hlen / 2
        }
        _ => len / 2,
    }
}

/// Damages one file (and for a swap, a second one of its kind); returns the names damaged.
fn damage(c: &Case, kind: Kind, how: Damage) -> Vec<String> {
    let e = &c.e;
    let files_of = |k| match k {
        Kind::Config => vec![e.repo().join("config")],
        Kind::Key => of_kind(e, "keys/"),
        Kind::Snapshot => of_kind(e, "snapshots/"),
        Kind::Index => of_kind(e, "index/"),
        _ => {
            let first = data_pack(e);
            let mut all = of_kind(e, "packs/");
            all.retain(|p| *p != first);
            all.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
            let mut v = vec![first];
            v.extend(all);
            v
        }
    };
    let list = files_of(kind);
    let victim = list[0].clone();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    match how {
        Damage::Flip => {
            let mut b = std::fs::read(&victim).unwrap();
            let at = offset(kind, &victim, b.len());
            b[at] ^= 0x10;
            std::fs::write(&victim, b).unwrap();
        }
        Damage::Truncate => {
            let len = std::fs::metadata(&victim).unwrap().len();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&victim)
                .unwrap();
            f.set_len(len / 2).unwrap();
        }
        Damage::Delete => std::fs::remove_file(&victim).unwrap(),
        Damage::Swap => {
            let other = list[1].clone();
            let (a, b) = (
                std::fs::read(&victim).unwrap(),
                std::fs::read(&other).unwrap(),
            );
            std::fs::write(&victim, b).unwrap();
            std::fs::write(&other, a).unwrap();
            return vec![name(&victim), name(&other)];
        }
    }
    vec![name(&victim)]
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
            let c = setup();
            let names = damage(&c, kind, how);
            let what = format!("{kind:?} {how:?} {names:?}");
            let chk = c.e.run(&["check", "--read-data"]);
            let out = text(&chk);
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
            assert!(
                names.iter().any(|n| out.contains(&n[..16])) || kind == PackData || kind == Index,
                "{what}: no damaged file named: {out}"
            );
            if matches!(kind, PackData | PackHeader | PackTrailer | Index) {
                // A pack or index: the error names the pack, or the blobs and paths it held.
                assert!(
                    names.iter().any(|n| out.contains(&n[..8])) || out.contains("blob"),
                    "{what}: {out}"
                );
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
