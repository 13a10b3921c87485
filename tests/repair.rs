//! `repair index`: the index rebuilt from pack headers.

mod common;

use common::{Env, files, random_bytes, write};

fn index_files(e: &Env) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(e.repo().join("index"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

fn setup() -> (Env, std::path::PathBuf, String) {
    let e = Env::with_init_args(&["--pack-size", "64K"]);
    let src = e.path("src");
    for i in 0..5 {
        write(&src, &format!("d{}/f{i}", i % 2), &random_bytes(i, 120_000));
    }
    let id = e.snapshot(&[&src])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    (e, src, id)
}

fn restores_exactly(e: &Env, id: &str, src: &std::path::Path, into: &str) {
    let t = e.path(into);
    e.json(&["restore", id, "--target", t.to_str().unwrap()], 0);
    assert!(files(&t.join(src.strip_prefix("/").unwrap())) == files(src));
}

#[test]
fn a_lost_index_is_rebuilt_from_the_packs() {
    let (e, src, id) = setup();
    for f in index_files(&e) {
        std::fs::remove_file(f).unwrap();
    }
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(1), "a lost index is damage");
    let dry = e.json(&["repair", "index", "--dry-run"], 0);
    assert!(dry["packs"].as_u64().unwrap() >= 5, "{dry}");
    assert!(index_files(&e).is_empty(), "a dry run writes nothing");
    let r = e.json(&["repair", "index"], 0);
    assert_eq!(r["packs"], dry["packs"]);
    assert!(r["unreadable"].as_array().unwrap().is_empty());
    e.ok(&["check", "--read-data"]);
    restores_exactly(&e, &id, &src, "r");
    // The rebuilt index serves dedup: the same data again stores nothing new.
    assert_eq!(e.snapshot(&[&src])["data_added"], 0);
}

#[test]
fn a_damaged_index_file_is_replaced() {
    let (e, src, id) = setup();
    let victim = index_files(&e).remove(0);
    let mut b = std::fs::read(&victim).unwrap();
    let n = b.len() / 2;
    b[n] ^= 0x20;
    std::fs::write(&victim, b).unwrap();
    assert_eq!(e.run(&["check"]).status.code(), Some(1));
    let r = e.json(&["repair", "index"], 0);
    assert!(r["index_removed"].as_u64().unwrap() >= 1);
    assert!(!victim.exists());
    e.ok(&["check", "--read-data"]);
    restores_exactly(&e, &id, &src, "r");
}

#[test]
fn an_unreadable_pack_is_named_and_the_rest_indexed() {
    let (e, _, _) = setup();
    let pack = e
        .repo_files()
        .into_iter()
        .find(|(n, _)| n.starts_with("packs/"))
        .unwrap()
        .0;
    let path = e.repo().join(&pack);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 7).unwrap();
    let o = e.run(&["--json", "repair", "index"]);
    assert_eq!(o.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["unreadable"].as_array().unwrap().len(), 1);
    let name = pack.rsplit('/').next().unwrap();
    assert_eq!(r["unreadable"][0][0], name);
    assert!(r["packs"].as_u64().unwrap() >= 4, "{r}");
    // `check` then names what the lost pack held.
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
}
