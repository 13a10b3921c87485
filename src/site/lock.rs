//! Local locks that keep two operations on one component from overlapping (two `run`s, a
//! `run` and a `rollback`, the daemon and a person), with a message that says who holds it.
//!
//! A lock is `flock` on `STATE_DIR/locks/NAME.lock`: the kernel drops it when its holder dies,
//! so a killed run never leaves a lock to clear by hand. The file holds the holder's pid and
//! operation, only for the message.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A held lock; released when dropped.
pub struct ComponentLock {
    _lock: Flock<std::fs::File>,
}

/// Takes the lock of component `name` for `operation`, or fails at once naming the holder.
pub fn lock_component(state_dir: &Path, name: &str, operation: &str) -> Result<ComponentLock> {
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path: PathBuf = dir.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut f, _)) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" ({holder})")
            };
            return Err(Error::Invalid(format!(
                "component {name} is busy: another operation on it is running{who}; \
                 wait for it to end (the lock is {})",
                path.display()
            )));
        }
    };
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = write!(lock, "{operation} by pid {}", std::process::id());
    let _ = lock.flush();
    Ok(ComponentLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let held = lock_component(d.path(), "db", "run").unwrap();
        let e = lock_component(d.path(), "db", "rollback")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("component db is busy"), "{e}");
        assert!(
            e.contains(&format!("run by pid {}", std::process::id())),
            "{e}"
        );
        let other = lock_component(d.path(), "etc", "run");
        assert!(other.is_ok());
        drop(held);
        assert!(lock_component(d.path(), "db", "rollback").is_ok());
    }
}
