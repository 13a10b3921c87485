//! `cairn mount` through the real kernel FUSE: layout, metadata against a restore, reads,
//! damaged data, and the refusals. Skipped (with the reason) where /dev/fuse is missing.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;

fn fuse_missing() -> bool {
    if !Path::new("/dev/fuse").exists() || !common::is_root() {
        eprintln!("skipped: /dev/fuse is absent or this is not root, so nothing can be mounted");
        return true;
    }
    false
}

struct Mount {
    child: Child,
    at: std::path::PathBuf,
}

impl Mount {
    fn start(e: &Env, at: &Path, extra: &[&str]) -> Mount {
        fs::create_dir_all(at).unwrap();
        let mut args = vec!["mount", at.to_str().unwrap()];
        args.extend_from_slice(extra);
        let child = e
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !at.join("snapshots").exists() && !at.join("tmp").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "mount did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mount {
            child,
            at: at.to_path_buf(),
        }
    }

    /// Stops it with SIGTERM; returns its stderr and asserts a clean exit and unmount.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        assert!(!self.at.join("snapshots").exists(), "unmounted");
        err
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listing(root: &Path) -> String {
    listing_masked(root, false)
}

/// `find -printf` of every entry below `root`, sorted; with `symlink_times` masked, the times
/// of symlinks (which `tar x` does not set) are left out.
fn listing_masked(root: &Path, symlink_times: bool) -> String {
    let o = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %y %m %U %G %s %T@ %n %l\n"])
        .current_dir(root)
        .output()
        .unwrap();
    // A directory's size is the filesystem's own business (4096 on ext4, 0 in the mount).
    let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(' ').collect();
            if f.get(1) == Some(&"d") {
                f[5] = "-";
            }
            if symlink_times && f.get(1) == Some(&"l") {
                f[6] = "-";
            }
            f.join(" ")
        })
        .collect();
    lines.sort();
    // The top directory itself is the mount's snapshot folder on one side.
    lines.retain(|l| !l.starts_with(". "));
    lines.join("\n")
}

#[test]
fn a_mounted_snapshot_matches_its_restore_and_new_snapshots_appear() {
    if fuse_missing() {
        return;
    }
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(src.join("sub/deep")).unwrap();
    common::write(&src, "big", &common::random_bytes(3, 3 << 20));
    common::write(&src, "sub/a", b"hello");
    fs::hard_link(src.join("sub/a"), src.join("sub/deep/b")).unwrap();
    std::os::unix::fs::symlink("../big", src.join("sub/l")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    xattr::set(src.join("sub/a"), "user.note", b"kept").unwrap();
    fs::write(src.join(std::ffi::OsStr::new("caf\u{e9}")), b"x").unwrap();
    e.snapshot(&[&src]);
    let restored = e.path("restored");
    e.restore(&restored, &[]);
    let mnt = e.path("mnt");
    let m = Mount::start(&e, &mnt, &[]);
    let inside = mnt.join("latest").join(src.strip_prefix("/").unwrap());
    let out = restored.join(src.strip_prefix("/").unwrap());
    assert_eq!(listing(&inside), listing(&out));
    assert!(
        common::files(&inside) == common::files(&out),
        "same content"
    );
    assert_eq!(
        xattr::get(inside.join("sub/a"), "user.note")
            .unwrap()
            .unwrap(),
        b"kept"
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(inside.join("sub/a")).unwrap(),
        fs::metadata(inside.join("sub/deep/b")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    // Snapshots taken while mounted appear.
    let before = fs::read_dir(mnt.join("snapshots")).unwrap().count();
    common::write(&src, "later", b"later");
    e.snapshot(&[&src]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        fs::read_dir(mnt.join("snapshots")).unwrap().count(),
        before + 1
    );
    assert_eq!(fs::read(inside.join("later")).unwrap(), b"later");
    m.stop();
}

/// `getfattr -d` of every entry below `root`, one block per entry, sorted.
fn xattr_dump(root: &Path) -> Vec<String> {
    let o = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "."])
        .current_dir(root)
        .output()
        .expect("getfattr (Debian package attr)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut blocks: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split("\n\n")
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    blocks.sort();
    blocks
}

#[test]
fn the_fidelity_tree_mounted_equals_its_restore_and_its_tar_dump() {
    if fuse_missing() {
        return;
    }
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir(&src).unwrap();
    let has_xattrs = common::fidelity::build(&src);
    e.snapshot(&[&src]);
    let restored = e.path("restored");
    e.restore(&restored, &[]);
    let rel = src.strip_prefix("/").unwrap();
    let out = restored.join(rel);
    let mnt = e.path("mnt");
    let m = Mount::start(&e, &mnt, &[]);
    let inside = mnt.join("latest").join(rel);
    assert_eq!(listing(&inside), listing(&out));
    if src.join("chardev").exists() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let dev = fs::symlink_metadata(inside.join("chardev")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(
            dev.rdev(),
            fs::symlink_metadata(out.join("chardev")).unwrap().rdev()
        );
        assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    }
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "-x", "fifo", "-x", "chardev"])
        .arg(&inside)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let acl = xattr::get(src.join("private"), "system.posix_acl_access")
        .ok()
        .flatten();
    if acl.is_none() {
        eprintln!("no POSIX ACL in the source: this filesystem keeps none");
    }
    if has_xattrs && acl.is_some() {
        assert_eq!(
            xattr::get(inside.join("private"), "system.posix_acl_access").unwrap(),
            Some(common::fidelity::ACL.to_vec()),
            "a POSIX ACL shows through the mount"
        );
        let xs = xattr_dump(&inside);
        assert!(xs.iter().any(|b| b.contains("user.cairn.test")), "{xs:?}");
        assert_eq!(xs, xattr_dump(&out));
    }
    // `tar c` over the mount and `cairn dump --archive tar` unpack to the same tree.
    let tar_c = Command::new("tar")
        .args([
            "-c",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-f",
            "-",
            ".",
        ])
        .current_dir(&inside)
        .output()
        .unwrap();
    assert!(
        tar_c.status.success(),
        "{}",
        String::from_utf8_lossy(&tar_c.stderr)
    );
    let o = e.run(&["dump", "latest", src.to_str().unwrap(), "--archive", "tar"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    m.stop();
    let (from_mount, from_dump) = (e.path("from-mount"), e.path("from-dump"));
    common::untar(&tar_c.stdout, &from_mount);
    common::untar(&o.stdout, &from_dump);
    assert_eq!(
        listing_masked(&from_mount, true),
        listing_masked(&from_dump.join(rel), true)
    );
    assert!(common::files(&from_mount) == common::files(&from_dump.join(rel)));
    if has_xattrs {
        assert_eq!(xattr_dump(&from_mount), xattr_dump(&from_dump.join(rel)));
    }
}

#[test]
fn a_damaged_blob_fails_its_read_with_eio_and_the_mount_stays_up() {
    if fuse_missing() {
        return;
    }
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "good", b"good data");
    e.snapshot(&[&src]);
    let src2 = e.path("src2");
    fs::create_dir_all(&src2).unwrap();
    common::write(&src2, "bad", &common::random_bytes(9, 200_000));
    // A byte flipped in the middle of the data pack the second snapshot added.
    e.snapshot_with_damaged_pack(&[&src2]);
    let mnt = e.path("mnt");
    let m = Mount::start(&e, &mnt, &[]);
    let snaps: Vec<_> = fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|d| d.unwrap().path())
        .collect();
    let mut saw_eio = false;
    for s in &snaps {
        let bad = s.join(src2.strip_prefix("/").unwrap()).join("bad");
        if bad.exists() {
            let err = fs::read(&bad).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
            saw_eio = true;
        }
        let good = s.join(src.strip_prefix("/").unwrap()).join("good");
        if good.exists() {
            assert_eq!(fs::read(&good).unwrap(), b"good data");
        }
    }
    assert!(saw_eio);
    // After the failure, whatever the order above: the good file reads, the bad one fails
    // again (a failed blob is not cached), and the mount is still up.
    let mut good_read = false;
    for s in &snaps {
        let good = s.join(src.strip_prefix("/").unwrap()).join("good");
        if good.exists() {
            assert_eq!(fs::read(&good).unwrap(), b"good data");
            good_read = true;
        }
        let bad = s.join(src2.strip_prefix("/").unwrap()).join("bad");
        if bad.exists() {
            assert_eq!(fs::read(&bad).unwrap_err().raw_os_error(), Some(libc::EIO));
        }
    }
    assert!(good_read);
    let log = m.stop();
    assert!(log.contains("pack "), "{log}");
    assert!(log.contains("read of bad (snapshot "), "{log}");
}

#[test]
fn bad_mount_points_and_passwords_are_refused_clearly() {
    let e = Env::new();
    let o = e.run(&["mount", e.path("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    let full = e.path("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    let o = e.run(&["mount", full.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not empty"));
    let o = e.run(&[
        "mount",
        full.to_str().unwrap(),
        "--snapshot",
        "latest",
        "--tag",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be combined"));
    if fuse_missing() {
        return;
    }
    let empty = e.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let o = e
        .cmd(&["mount", empty.to_str().unwrap()])
        .env("CAIRN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A repository with one snapshot of one small file.
fn one_snapshot() -> Env {
    let e = Env::new();
    let src = e.path("src");
    fs::create_dir_all(&src).unwrap();
    common::write(&src, "f", b"f");
    e.snapshot(&[&src]);
    e
}

#[test]
fn umount_ends_the_mount_cleanly_and_no_fuse_is_refused_clearly() {
    if fuse_missing() {
        return;
    }
    let e = one_snapshot();
    let mnt = e.path("mnt");
    let mut m = Mount::start(&e, &mnt, &[]);
    assert!(
        Command::new("umount").arg(&mnt).status().unwrap().success(),
        "umount"
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after umount"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status}");

    // Without /dev/fuse (hidden by a tmpfs over /dev in a private mount namespace).
    let inner = e.cmd(&["mount", mnt.to_str().unwrap()]);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs none /dev && exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args());
    Env::with_env_of(&mut c, &inner);
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("unshare failed") || err.contains("mount: ") {
        eprintln!("skipped the no-FUSE case: no private mount namespace here ({err})");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("FUSE is not available"), "{err}");
    assert!(err.contains("/dev/fuse does not exist"), "{err}");
}

#[test]
fn a_busy_mount_still_ends_on_sigterm() {
    if fuse_missing() {
        return;
    }
    let e = one_snapshot();
    let mnt = e.path("mnt");
    let m = Mount::start(&e, &mnt, &[]);
    // A process with its working directory inside keeps the mount busy.
    let mut holder = Command::new("sleep")
        .arg("60")
        .current_dir(mnt.join("latest"))
        .spawn()
        .unwrap();
    let t = Instant::now();
    m.stop();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let _ = holder.kill();
    let _ = holder.wait();
}
