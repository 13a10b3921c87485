//! Confidentiality and integrity: nothing readable in the repository, every flipped byte found.

mod common;

use std::fs;

use common::*;

const NAME_MARKER: &str = "ZEBRA-FILENAME-MARKER";
const CONTENT_MARKER: &str = "QUOKKA-CONTENT-MARKER";
const DIR_MARKER: &str = "OCELOT-DIRECTORY-MARKER";

fn populated() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path(DIR_MARKER);
    fs::create_dir(&src).unwrap();
    fs::write(src.join(NAME_MARKER), CONTENT_MARKER.repeat(1000)).unwrap();
    fs::write(src.join("random"), random_bytes(5, 900_000)).unwrap();
    fs::write(src.join("small"), format!("{CONTENT_MARKER} once")).unwrap();
    env.snapshot(&[&src]);
    (env, src)
}

fn all_repo_bytes(env: &Env) -> Vec<(String, Vec<u8>)> {
    env.repo_files()
        .into_iter()
        .map(|(f, _)| (f.clone(), fs::read(env.repo().join(&f)).unwrap()))
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_name_content_or_path_in_the_repository() {
    let (env, src) = populated();
    let user = std::env::var("USER").unwrap_or_default();
    for (file, bytes) in all_repo_bytes(&env) {
        for m in [
            NAME_MARKER,
            CONTENT_MARKER,
            DIR_MARKER,
            src.to_str().unwrap(),
        ] {
            assert!(!contains(&bytes, m.as_bytes()), "{file} contains {m:?}");
        }
        if !user.is_empty() && !file.starts_with("keys/") {
            assert!(
                !contains(&bytes, format!("\"{user}\"").as_bytes()),
                "{file} names the user"
            );
        }
    }
}

#[test]
fn files_are_named_by_the_blake3_of_their_bytes() {
    let (env, _) = populated();
    for (file, bytes) in all_repo_bytes(&env) {
        if file == "config" || file.starts_with("keys/") {
            continue;
        }
        let name = file.rsplit('/').next().unwrap();
        assert_eq!(name, blake3::hash(&bytes).to_hex().as_str(), "{file}");
        if let Some(rest) = file.strip_prefix("packs/") {
            assert_eq!(&rest[..2], &name[..2]);
        }
    }
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x40;
    fs::write(path, b).unwrap();
}

fn largest(env: &Env, prefix: &str) -> String {
    env.repo_files()
        .into_iter()
        .filter(|f| f.0.starts_with(prefix))
        .max_by_key(|f| f.1)
        .unwrap()
        .0
}

#[test]
fn flipped_byte_in_a_data_pack_is_found_and_never_restored() {
    let (env, src) = populated();
    env.ok(&["check", "--read-data"]);
    let pack = largest(&env, "packs/");
    flip(&env.repo().join(&pack), 1000);
    let o = env.run(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let pack_id = pack.rsplit('/').next().unwrap();
    assert!(err.contains(pack_id), "check names the pack: {err}");
    // Structure-only check does not read data, and says so by passing.
    env.ok(&["check"]);
    // Restore reports the damaged file, exits 1, and restores the others.
    let target = env.path("out");
    let o = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let restored = target.join(src.strip_prefix("/").unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    let damaged: Vec<&str> = ["random", NAME_MARKER, "small"]
        .into_iter()
        .filter(|n| err.contains(n))
        .collect();
    assert_eq!(
        damaged.len(),
        1,
        "exactly one file is reported damaged: {err}"
    );
    for n in ["random", NAME_MARKER, "small"] {
        if n != damaged[0] {
            let orig = fs::read(src.join(n)).unwrap();
            assert_eq!(
                fs::read(restored.join(n)).unwrap(),
                orig,
                "{n} restored intact"
            );
        } else if let Ok(got) = fs::read(restored.join(n)) {
            assert_ne!(
                got,
                fs::read(src.join(n)).unwrap(),
                "a damaged file is not silently complete"
            );
        }
    }
}

#[test]
fn flipped_byte_anywhere_in_index_or_snapshot_is_found() {
    for kind in ["index/", "snapshots/"] {
        let (env, _) = populated();
        let f = largest(&env, kind);
        let len = fs::metadata(env.repo().join(&f)).unwrap().len() as usize;
        for at in [0, len / 2, len - 1] {
            let (env, _) = populated();
            let f = largest(&env, kind);
            flip(&env.repo().join(&f), at);
            let o = env.run(&["check", "--read-data"]);
            assert_eq!(o.status.code(), Some(1), "{kind} flip at {at} not found");
            let id = f.rsplit('/').next().unwrap();
            assert!(
                String::from_utf8_lossy(&o.stderr).contains(id),
                "check names {f}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn every_byte_of_a_small_pack_is_covered() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"tiny content").unwrap();
    env.snapshot(&[&src]);
    let packs: Vec<String> = env
        .repo_files()
        .into_iter()
        .filter(|f| f.0.starts_with("packs/"))
        .map(|f| f.0)
        .collect();
    let original: Vec<Vec<u8>> = packs
        .iter()
        .map(|p| fs::read(env.repo().join(p)).unwrap())
        .collect();
    for (p, orig) in packs.iter().zip(&original) {
        for at in (0..orig.len()).step_by(7) {
            let mut b = orig.clone();
            b[at] ^= 1;
            fs::write(env.repo().join(p), &b).unwrap();
            let o = env.run(&["check", "--read-data"]);
            assert_eq!(o.status.code(), Some(1), "flip at {at} of {p} undetected");
        }
        fs::write(env.repo().join(p), orig).unwrap();
    }
    env.ok(&["check", "--read-data"]);
}

#[test]
fn missing_pack_and_subsets() {
    let (env, _) = populated();
    let s = env.json(&["check", "--read-data-subset", "1/2"], 0);
    let s2 = env.json(&["check", "--read-data-subset", "2/2"], 0);
    assert_eq!(
        s["packs_read"].as_u64().unwrap() + s2["packs_read"].as_u64().unwrap(),
        s["packs"].as_u64().unwrap()
    );
    assert_eq!(
        env.json(&["check", "--read-data-subset", "100%"], 0)["packs_read"],
        s["packs"]
    );
    assert_eq!(
        env.run(&["check", "--read-data-subset", "3/2"])
            .status
            .code(),
        Some(2)
    );
    let pack = largest(&env, "packs/");
    fs::remove_file(env.repo().join(&pack)).unwrap();
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing"));
}

#[test]
fn a_damaged_index_file_does_not_lock_out_a_fresh_machine() {
    let (env, src) = populated();
    let idx = largest(&env, "index/");
    flip(&env.repo().join(&idx), 40);
    // A new cache (fresh machine): commands still open the repository and name the file.
    fs::remove_dir_all(env.path("cache")).unwrap();
    let o = env.run(&["--json", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = report["errors"].to_string();
    assert!(errors.contains(idx.rsplit('/').next().unwrap()), "{errors}");
    let o = env.run(&["snapshots"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(idx.rsplit('/').next().unwrap()));
    // The data is still there; a new snapshot stores what it cannot find and restores fine.
    env.snapshot(&[&src]);
    let t = env.path("out");
    env.restore(&t, &[]);
}

/// Flip a byte and rename the file to the BLAKE3 of its new bytes, so that the name check
/// passes and only authentication can catch the damage.
#[test]
fn damage_that_passes_the_name_check_is_caught_by_authentication() {
    for kind in ["packs/", "index/", "snapshots/"] {
        let (env, _) = populated();
        let f = largest(&env, kind);
        let path = env.repo().join(&f);
        let len = fs::metadata(&path).unwrap().len() as usize;
        flip(&path, len - 20);
        let bytes = fs::read(&path).unwrap();
        let name = blake3::hash(&bytes).to_hex().to_string();
        let new_path = if kind == "packs/" {
            env.repo().join("packs").join(&name[..2]).join(&name)
        } else {
            env.repo().join(kind).join(&name)
        };
        fs::create_dir_all(new_path.parent().unwrap()).unwrap();
        fs::rename(&path, &new_path).unwrap();
        fs::remove_dir_all(env.path("cache")).unwrap();
        let o = env.run(&["check", "--read-data"]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{kind}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&name[..8]),
            "{kind}: the renamed file is named: {err}"
        );
    }
}

#[test]
fn a_damaged_snapshot_file_never_stops_new_snapshots() {
    let (env, src) = populated();
    let snap = largest(&env, "snapshots/");
    flip(&env.repo().join(&snap), 30);
    let o = env.run(&["--json", "snapshot", src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(snap.rsplit('/').next().unwrap()),
        "the damaged file is named"
    );
    assert_eq!(env.json(&["snapshots"], 0).as_array().unwrap().len(), 1);
    let o = env.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_damaged_key_file_is_listed_and_removable() {
    let env = Env::new();
    let id = env.add_key("two");
    fs::write(env.repo().join("keys").join(&id), b"{ truncated").unwrap();
    let keys = env.json(&["key", "list"], 0);
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["damaged"].is_string()),
        "{keys}"
    );
    env.ok(&["key", "remove", &id[..10]]);
    assert_eq!(env.json(&["key", "list"], 0).as_array().unwrap().len(), 1);
}

/// What the two proofs of `check --read-data` tell apart: a blob sealed by the key's holder
/// under an id its content does not hash to (a writer's fault, not damage in storage) is
/// found by the full read, which re-hashes the content, and not by `--authenticate-only`,
/// which proves only the seal (docs/RELIABILITY.md).
#[test]
fn a_blob_sealed_under_the_wrong_id_is_found_by_the_full_read_only() {
    use cairn::repo::Repository;
    use cairn::repo::blob::{BlobType, seal_blob};
    use cairn::repo::config::Compression;
    use cairn::repo::saver::BlobSaver;
    let (env, _) = populated();
    env.ok(&["check", "--read-data"]);
    let repo = Repository::open(
        &env.repo(),
        || Ok(zeroize::Zeroizing::new(env.password.clone().into_bytes())),
        &env.path("cache"),
    )
    .unwrap();
    let id = repo.key().blob_id(b"what the id says");
    let sealed = seal_blob(
        repo.key(),
        BlobType::Data,
        &id,
        b"what was sealed",
        Compression::Auto,
    );
    let claims = BlobSaver::claims(&repo);
    std::thread::scope(|s| {
        let mut saver = BlobSaver::start(&repo, &claims, s);
        saver
            .add_copy(BlobType::Data, id, sealed, b"what was sealed".len())
            .unwrap();
        saver.finish().unwrap();
    });
    drop(repo);
    let full = env.run(&["check", "--read-data"]);
    assert_eq!(full.status.code(), Some(1), "{full:?}");
    let said = String::from_utf8_lossy(&full.stderr);
    assert!(said.contains("does not match its id"), "{said}");
    assert!(said.contains(&id.to_hex()[..8]), "{said}");
    let quick = env.run(&["check", "--read-data", "--authenticate-only"]);
    assert_eq!(quick.status.code(), Some(0), "{quick:?}");
}
