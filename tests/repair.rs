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

/// The largest pack: a data pack.
fn largest_pack(e: &Env) -> std::path::PathBuf {
    let name = e
        .repo_files()
        .into_iter()
        .filter(|(n, _)| n.starts_with("packs/"))
        .max_by_key(|(_, s)| *s)
        .unwrap()
        .0;
    e.repo().join(name)
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
    assert_eq!(dry["index_written"], 1, "{dry}");
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
    assert_eq!(r["carried"], 1, "its entries stay, from the old index: {r}");
    let name = pack.rsplit('/').next().unwrap();
    assert_eq!(r["unreadable"][0][0], name);
    assert!(r["packs"].as_u64().unwrap() >= 4, "{r}");
    // `check` then names what the lost pack held.
    let o = e.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn snapshots_that_need_lost_data_are_rewritten() {
    let (e, src, id) = setup();
    // Lose one data pack.
    std::fs::remove_file(largest_pack(&e)).unwrap();
    // Before the index is repaired, nothing can be judged lost.
    let o = e.run(&["repair", "snapshots", "--forget"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("repair index"));
    e.json(&["repair", "index"], 0);
    assert_eq!(e.run(&["check"]).status.code(), Some(1));
    let dry = e.json(&["repair", "snapshots", "--dry-run"], 0);
    assert_eq!(dry["repaired"].as_array().unwrap().len(), 1);
    assert_eq!(e.json(&["snapshots"], 0).as_array().unwrap().len(), 1);
    // Without --forget, the damaged snapshot stays and is not copied again next time.
    let kept = e.json(&["repair", "snapshots"], 0);
    assert_eq!(kept["repaired"].as_array().unwrap().len(), 1);
    let again = e.json(&["repair", "snapshots"], 0);
    assert!(again["repaired"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(e.json(&["snapshots"], 0).as_array().unwrap().len(), 2);
    let copy = kept["repaired"][0]["new"].as_str().unwrap().to_string();
    e.ok(&["forget", &copy]);
    let r = e.json(&["repair", "snapshots", "--forget"], 0);
    let fixed = &r["repaired"][0];
    assert_eq!(fixed["old"], id.as_str());
    let lost: Vec<&str> = fixed["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        !lost.is_empty() && lost.iter().all(|l| l.contains("truncated")),
        "{lost:?}"
    );
    let new = fixed["new"].as_str().unwrap().to_string();
    e.ok(&["check", "--read-data"]);
    let snaps = e.json(&["snapshots"], 0);
    assert_eq!(
        snaps.as_array().unwrap().len(),
        1,
        "the damaged one is gone"
    );
    assert_eq!(snaps[0]["tags"], serde_json::json!(["repaired"]));
    // Untouched files restore exactly; a truncated one is a prefix of the original.
    let t = e.path("r");
    e.json(&["restore", &new, "--target", t.to_str().unwrap()], 0);
    let got = files(&t.join(src.strip_prefix("/").unwrap()));
    let want = files(&src);
    assert_eq!(got.len(), want.len());
    let mut cut = 0;
    for (name, data) in &want {
        let g = &got[name];
        if g != data {
            assert!(data.starts_with(g) && g.len() < data.len(), "{name}");
            assert!(
                lost.iter().any(|l| l.contains(name.as_str())),
                "{name} not listed"
            );
            cut += 1;
        }
    }
    assert_eq!(cut, lost.len());
    // Nothing more to repair.
    let again = e.json(&["repair", "snapshots"], 0);
    assert!(again["repaired"].as_array().unwrap().is_empty());
}

#[test]
fn marks_of_a_prune_survive_a_repair() {
    use cairn::ops::prune::{PruneOptions, prune};
    use cairn::ops::repair::repair_index;
    use cairn::repo::Repository;
    let (e, _, id) = setup();
    e.ok(&["forget", &id]);
    let repo = Repository::open(
        &e.repo(),
        || Ok(zeroize::Zeroizing::new(e.password.clone().into_bytes())),
        &e.path("cache"),
    )
    .unwrap();
    // A run in progress keeps the prune from deleting what it marks.
    let running = repo.begin_session("snapshot").unwrap();
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    assert!(r.packs_waiting > 0 && r.packs_deleted == 0, "{r:?}");
    let marked = repo.cache().marked_packs().unwrap().len();
    assert!(marked > 0);
    let rep = repair_index(&repo, false).unwrap();
    assert_eq!(rep.marked as usize, marked);
    assert_eq!(repo.cache().marked_packs().unwrap().len(), marked);
    drop(running);
    let r = prune(&repo, &PruneOptions::default()).unwrap();
    assert_eq!(r.packs_deleted as usize, marked);
    e.ok(&["check", "--read-data"]);
}

#[test]
fn present_but_damaged_data_is_found_by_reading_it() {
    let (e, src, id) = setup();
    // One flipped byte inside the first blob of a data pack: the pack is there and indexed,
    // only reading it shows the damage.
    let path = largest_pack(&e);
    let mut b = std::fs::read(&path).unwrap();
    b[100] ^= 0x01;
    std::fs::write(&path, b).unwrap();
    assert_eq!(e.run(&["check", "--read-data"]).status.code(), Some(1));
    let blind = e.json(&["repair", "snapshots", "--dry-run"], 0);
    assert!(blind["repaired"].as_array().unwrap().is_empty(), "{blind}");
    let r = e.json(&["repair", "snapshots", "--read-data", "--forget"], 0);
    assert_eq!(r["damaged_blobs"], 1, "{r}");
    assert!(r["packs_read"].as_u64().unwrap() >= 5, "{r}");
    let fixed = &r["repaired"][0];
    assert_eq!(fixed["old"], id.as_str());
    let lost = fixed["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].as_str().unwrap().contains("truncated"));
    // The repaired snapshot restores without an error: every file whole but the cut one,
    // which is a prefix of the original.
    let new = fixed["new"].as_str().unwrap();
    let t = e.path("r");
    e.json(&["restore", new, "--target", t.to_str().unwrap()], 0);
    let got = files(&t.join(src.strip_prefix("/").unwrap()));
    let want = files(&src);
    let cut: Vec<&String> = want.keys().filter(|n| got[*n] != want[*n]).collect();
    assert_eq!(cut.len(), 1);
    assert!(want[cut[0]].starts_with(&got[cut[0]]));
    assert!(lost[0].as_str().unwrap().contains(cut[0].as_str()));
    // A prune told to rewrite the damaged pack drops the damaged blob with it (whatever the
    // pack's unused share), and the repository proves clean again.
    let damaged = r["damaged_packs"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{r}");
    let pack = damaged[0].as_str().unwrap();
    assert!(path.ends_with(pack), "{pack} is not the damaged file");
    let p = e.json(&["prune", "--repack", pack, "--max-unused", "unlimited"], 0);
    // Rewritten, or wholly unused once the file was cut (which blob was hit decides): either
    // way the damaged pack is gone, since nothing else runs.
    assert!(!path.exists(), "the damaged pack is still there: {p}");
    e.ok(&["check", "--read-data"]);
    let again = e.json(&["repair", "snapshots", "--read-data"], 0);
    assert_eq!(again["damaged_blobs"], 0);
    assert!(again["repaired"].as_array().unwrap().is_empty());
}

#[test]
fn a_blob_with_an_intact_copy_elsewhere_is_not_cut() {
    use cairn::backend::faulty::{Faults, FaultyBackend};
    use cairn::ops::snapshot::{Input, SnapshotOptions, snapshot};
    use cairn::repo::Repository;
    use cairn::repo::blob::BlobType;
    let e = Env::with_init_args(&["--pack-size", "64K"]);
    let src = e.path("src");
    for i in 0..3 {
        write(&src, &format!("f{i}"), &random_bytes(40 + i, 100_000));
    }
    let open = |cache: &str| {
        Repository::open(
            &e.repo(),
            || Ok(zeroize::Zeroizing::new(e.password.clone().into_bytes())),
            &e.path(cache),
        )
        .unwrap()
    };
    // Two hosts back up the same files at the same time: each stores its own copy (neither
    // knows the other's snapshot or blobs). A slow store keeps both runs between reading
    // the index and writing their own for long enough.
    let slow = |cache: &str| {
        open(cache).with_backend(|b| {
            std::sync::Arc::new(FaultyBackend::new(
                b,
                1,
                Faults {
                    delay: Some(std::time::Duration::from_millis(50)),
                    ..Faults::default()
                },
            ))
        })
    };
    let (a, b) = (slow("cache-a"), slow("cache-b"));
    let take = |r: &Repository| {
        snapshot(
            r,
            Input::Paths(vec![src.clone()]),
            &SnapshotOptions {
                force: true,
                ..SnapshotOptions::default()
            },
        )
        .unwrap()
        .snapshot_id
        .unwrap()
    };
    let (sa, sb) = std::thread::scope(|s| {
        let ta = s.spawn(|| take(&a));
        let tb = s.spawn(|| take(&b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    drop((a, b));
    // Damage the copy the index names of one data blob.
    let repo = open("cache-c");
    let (pack, size) = repo
        .cache()
        .packs()
        .unwrap()
        .into_iter()
        .find(|(_, t, _)| *t == BlobType::Data)
        .map(|(p, _, s)| (p, s))
        .unwrap();
    let first = repo.read_pack_header(&pack, size).unwrap().entries[0].id;
    let named = repo.locate(&first).unwrap().unwrap().pack;
    let path = e
        .repo()
        .join(format!("packs/{}/{named}", &named.to_hex()[..2]));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = repo.locate(&first).unwrap().unwrap().offset as usize + 30;
    bytes[at] ^= 0x04;
    std::fs::write(&path, bytes).unwrap();
    drop(repo);
    assert_eq!(e.run(&["check", "--read-data"]).status.code(), Some(1));
    // Nothing is cut: the other copy is whole.
    let r = e.json(&["repair", "snapshots", "--read-data"], 0);
    assert_eq!(r["damaged_blobs"], 1, "{r}");
    assert_eq!(r["intact_elsewhere"], 1, "{r}");
    assert!(r["repaired"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["damaged_packs"][0], named.to_hex().as_str());
    // Rewriting the damaged pack keeps the intact copy; both snapshots restore bit-exact.
    e.json(&["prune", "--repack", &named.to_hex()], 0);
    e.ok(&["check", "--read-data"]);
    restores_exactly(&e, &sa.to_hex(), &src, "ra");
    restores_exactly(&e, &sb.to_hex(), &src, "rb");
}
