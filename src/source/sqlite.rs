//! SQLite databases as sources: a consistent image taken through SQLite's online backup API
//! while writers go on, and the way back into a live database.
//!
//! A plain copy of a database file that is being written can be torn (pages of two
//! transactions, or a WAL file not yet checkpointed). The backup API copies the pages of one
//! read transaction, so the image is the database as of one commit. The whole copy is one
//! step: an incremental backup restarts whenever another connection writes, and under a
//! steady writer it may never finish. In WAL mode writers go on meanwhile; with a rollback
//! journal they wait (SQLite's busy timeout) while the image is read.
//!
//! Putting an image back goes through the same API in the other direction: the live
//! database is overwritten inside one write transaction, so other connections see the old
//! content or the new, never a mix, and its `-wal` file stays consistent with it. Renaming a
//! file over a database would leave a stale `-wal` beside it to be replayed onto the wrong
//! pages.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// How long a backup waits for a lock held by another connection.
const BUSY_FOR: Duration = Duration::from_secs(60);

fn sql_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::Invalid(format!("sqlite {}: {e}", path.display()))
}

/// Copies all of `from` into `to` in one step, waiting out other connections' locks.
fn copy_all(from: &Connection, to: &mut Connection, what: &Path) -> Result<()> {
    let started = Instant::now();
    let b = Backup::new(from, to).map_err(|e| sql_err(what, e))?;
    loop {
        match b.step(-1).map_err(|e| sql_err(what, e))? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked
                if started.elapsed() < BUSY_FOR =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "sqlite {}: still locked by another connection after {}s",
                    what.display(),
                    BUSY_FOR.as_secs()
                )));
            }
        }
    }
}

/// Writes a consistent image of the database `db` to the new file `image`.
pub fn image(db: &Path, image: &Path) -> Result<()> {
    if !db.is_file() {
        return Err(Error::Invalid(format!(
            "sqlite database {} does not exist (fix `sqlite = ...` in the config)",
            db.display()
        )));
    }
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_err(db, e))?;
    src.busy_timeout(BUSY_FOR).map_err(|e| sql_err(db, e))?;
    let mut dst = Connection::open(image).map_err(|e| sql_err(image, e))?;
    copy_all(&src, &mut dst, db)?;
    // The image is one file: no WAL beside it.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| sql_err(image, e))?;
    dst.close().map_err(|(_, e)| sql_err(image, e))
}

/// `PRAGMA integrity_check` of `db`: Ok when SQLite answers `ok`.
pub fn integrity_check(db: &Path) -> Result<()> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql_err(db, e))?;
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| sql_err(db, e))?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "sqlite {} fails its integrity check: {}",
            db.display(),
            rows.join("; ")
        )))
    }
}

/// Replaces the content of the database `live` (created if absent) by the image `from`, in
/// one transaction of `live`.
pub fn replace(live: &Path, from: &Path) -> Result<()> {
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql_err(from, e))?;
    let mut dst = Connection::open(live).map_err(|e| sql_err(live, e))?;
    dst.busy_timeout(BUSY_FOR).map_err(|e| sql_err(live, e))?;
    copy_all(&src, &mut dst, live)?;
    dst.close().map_err(|(_, e)| sql_err(live, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(db: &Path) -> i64 {
        let c = Connection::open(db).unwrap();
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn image_and_replace_round_trip_in_wal_mode() {
        let d = tempfile::tempdir().unwrap();
        let (db, img) = (d.path().join("live.db"), d.path().join("img.db"));
        let c = Connection::open(&db).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        image(&db, &img).unwrap();
        integrity_check(&img).unwrap();
        c.execute_batch("INSERT INTO t VALUES (3);").unwrap();
        assert_eq!(count(&db), 3);
        replace(&db, &img).unwrap();
        // The open connection sees the replaced content.
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        integrity_check(&db).unwrap();
        let missing = image(&d.path().join("nope.db"), &d.path().join("x.db")).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        std::fs::write(
            d.path().join("junk.db"),
            b"not a database at all, not even close....",
        )
        .unwrap();
        assert!(integrity_check(&d.path().join("junk.db")).is_err());
    }
}
