//! `cairn dump --archive`: the whole snapshot, damaged data, and where an archive may go.

mod common;

use std::fs;
use std::process::Command;

use common::Env;

fn tar_names(archive: &[u8]) -> Vec<String> {
    let mut t = Command::new("tar")
        .args(["-t", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    t.stdin.take().unwrap().write_all(archive).unwrap();
    let o = t.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_whole_snapshot_and_a_directory_default_to_tar() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(src.join("d")).unwrap();
    common::write(&src, "d/a", b"a");
    common::write(&src, "b", b"b");
    e.snapshot(&[&src]);
    let rel = src.strip_prefix("/").unwrap().display().to_string();
    let o = e.run(&["dump", "latest", "/"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = tar_names(&o.stdout);
    for want in [format!("{rel}/"), format!("{rel}/b"), format!("{rel}/d/a")] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    // A single file with --archive is a one-entry archive; without, its bytes.
    let f = src.join("d/a");
    let o = e.run(&["dump", "latest", f.to_str().unwrap(), "--archive", "tar"]);
    assert_eq!(tar_names(&o.stdout), vec![format!("{rel}/d/a")]);
    assert_eq!(e.run(&["dump", "latest", f.to_str().unwrap()]).stdout, b"a");
}

#[test]
fn a_damaged_blob_stops_the_archive_with_an_error_naming_its_pack() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "big", &common::random_bytes(4, 400_000));
    let pack = e.snapshot_with_damaged_pack(&[&src]);
    for format in ["tar", "zip"] {
        let o = e.run(&["dump", "latest", src.to_str().unwrap(), "--archive", format]);
        assert_eq!(o.status.code(), Some(1), "{format}");
        let err = String::from_utf8_lossy(&o.stderr);
        let pack_id = pack.rsplit('/').next().unwrap();
        assert!(err.contains(&pack_id[..8]), "{format}: {err}");
    }
}

#[test]
fn an_archive_is_not_written_to_a_terminal() {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "a", b"a");
    e.snapshot(&[&src]);
    // `script` gives the command a terminal for stdout.
    let inner = e.cmd(&["dump", "latest", src.to_str().unwrap()]);
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| format!("'{}'", a.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"]);
    Env::with_env_of(&mut c, &inner);
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("redirect stdout to a file or a pipe"), "{out}");
    assert_ne!(o.status.code(), Some(0));
}
