//! A restore that was killed is resumed by running it again: complete files are recognised and
//! left alone (not read from the repository, not written), partly written ones are redone,
//! the killed process's temporary files are swept, and the result is bit-exact.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;

const FILES: usize = 400;
const SIZE: usize = 192 << 10;

fn mtime_of(i: usize) -> i64 {
    1_500_000_000 + i as i64
}

/// The restored files whose mtime is the snapshot's (complete), by name, with their inode.
fn complete(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(i) = name.strip_prefix("f").and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if let Ok(m) = e.metadata()
            && m.mtime() == mtime_of(i)
            && m.len() == SIZE as u64
        {
            out.insert(name, m.ino());
        }
    }
    out
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_restore_run_again_resumes_and_ends_bit_exact() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..FILES {
        let p = src.join(format!("f{i:04}"));
        fs::write(&p, common::random_bytes(i as u64, SIZE)).unwrap();
        let t = filetime::FileTime::from_unix_time(mtime_of(i), 0);
        filetime::set_file_mtime(&p, t).unwrap();
    }
    e.snapshot(&[&src]);
    let target = e.path("target");
    let out = target.join(src.strip_prefix("/").unwrap());

    // A low open-file limit makes batches of 16 files (two written at a time).
    let mut run = e.cmd_with_file_limit(
        &["restore", "latest", "--target", target.to_str().unwrap()],
        64,
    );
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = Killed(run.spawn().unwrap());
    let t = Instant::now();
    loop {
        let done = complete(&out).len();
        if done >= 32 {
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the restore ended before it could be killed ({done} files seen complete)"
        );
        assert!(t.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let before = complete(&out);
    let present = fs::read_dir(&out).unwrap().count();
    assert!(before.len() < FILES, "killed before the end");
    eprintln!(
        "killed with {} of {FILES} files complete, {present} present",
        before.len()
    );

    // What a killed replacement leaves: a temporary file no process holds (also in the
    // older name format), and one that a running restore holds locked, which must stay.
    let dead = out.join(".cairn-restore-0011223344556677");
    let live = out.join(".cairn-restore-8899aabbccddeeff");
    fs::write(&dead, b"half").unwrap();
    fs::write(&live, b"busy").unwrap();
    let holder = fs::File::open(&live).unwrap();
    holder.lock().unwrap();
    // And a file the kill cut short for certain: its second half zeros, its time now.
    let cut = out.join(before.keys().next().unwrap());
    let cut_ino = before[cut.file_name().unwrap().to_str().unwrap()];
    {
        let f = fs::OpenOptions::new().write(true).open(&cut).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&vec![0u8; SIZE / 2], (SIZE / 2) as u64)
            .unwrap();
    }
    let before: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(_, ino)| *ino != cut_ino)
        .collect();

    // Run again: the complete files are skipped, everything else is written.
    let r = e.restore(&target, &[]);
    let report = &r["report"];
    let skipped = report["skipped"].as_u64().unwrap() as usize;
    assert!(skipped >= before.len(), "{report}");
    assert_eq!(
        report["files"].as_u64().unwrap() as usize,
        FILES - skipped,
        "{report}"
    );
    assert_eq!(
        report["bytes"].as_u64().unwrap() as usize,
        (FILES - skipped) * SIZE,
        "only what was not complete is read and written: {report}"
    );
    let after = complete(&out);
    for (name, ino) in &before {
        assert_eq!(after.get(name), Some(ino), "{name} was rewritten");
    }
    assert_eq!(after.len(), FILES);
    assert!(
        !dead.exists(),
        "the killed process's temporary file is swept"
    );
    assert!(
        live.exists(),
        "a running process's temporary file is left alone"
    );
    fs::remove_file(&live).unwrap();
    assert!(common::files(&src) == common::files(&out), "bit-exact");

    // A file whose size and mtime match but whose content does not: only --verify sees it.
    let victim: PathBuf = out.join("f0007");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[100] ^= 1;
    fs::write(&victim, &bytes).unwrap();
    filetime::set_file_mtime(&victim, filetime::FileTime::from_unix_time(mtime_of(7), 0)).unwrap();
    let r = e.restore(&target, &[]);
    assert_eq!(r["report"]["files"], 0, "{r}");
    let r = e.restore(&target, &["--verify"]);
    assert_eq!(r["report"]["files"], 1, "{r}");
    assert_eq!(r["report"]["verified"], FILES, "{r}");
    assert_eq!(fs::read(&victim).unwrap(), common::random_bytes(7, SIZE));
    // `--overwrite always` rewrites everything.
    let r = e.restore(&target, &["--overwrite", "always"]);
    assert_eq!(r["report"]["files"], FILES, "{r}");
}

#[test]
fn hardlinks_are_made_again_where_a_resumed_restore_finds_them_missing_or_copied() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "a", b"linked content");
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    fs::hard_link(src.join("a"), src.join("c")).unwrap();
    e.snapshot(&[&src]);
    let target = e.path("target");
    e.restore(&target, &[]);
    let out = target.join(src.strip_prefix("/").unwrap());
    let ino = |n: &str| fs::metadata(out.join(n)).unwrap().ino();
    assert!(ino("a") == ino("b") && ino("b") == ino("c"));
    // As a killed run may leave them: one link missing, one a separate copy with the same
    // size and time.
    fs::remove_file(out.join("b")).unwrap();
    fs::remove_file(out.join("c")).unwrap();
    fs::copy(out.join("a"), out.join("c")).unwrap();
    let m = fs::metadata(out.join("a")).unwrap();
    filetime::set_file_mtime(
        out.join("c"),
        filetime::FileTime::from_last_modification_time(&m),
    )
    .unwrap();
    assert_ne!(ino("a"), ino("c"));
    e.restore(&target, &[]);
    assert!(
        ino("a") == ino("b") && ino("b") == ino("c"),
        "one inode again"
    );
    assert_eq!(fs::metadata(out.join("a")).unwrap().nlink(), 3);
    assert_eq!(fs::read(out.join("c")).unwrap(), b"linked content");
}
