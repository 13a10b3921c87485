//! The database fixtures themselves: a private PostgreSQL and Redis start, hold data, dump
//! and restore it with their own tools, and leave nothing behind.
//!
//! Skipped (with a note) where a server is not installed, except under CI.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use common::servers::{Postgres, Redis};

#[test]
fn postgres_dump_and_restore_round_trip() {
    let t = Instant::now();
    let Some(pg) = Postgres::start() else { return };
    eprintln!("postgres ready on port {} in {:?}", pg.port(), t.elapsed());
    let dir = pg.socket_dir().parent().unwrap().to_path_buf();

    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i;",
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM items"), "100");
    assert_eq!(
        pg.psql(
            "app",
            "SELECT id, name FROM items WHERE id <= 2 ORDER BY id"
        ),
        "1|item 1\n2|item 2"
    );

    let dump = dir.join("app.dump");
    let o = pg
        .client("pg_dump")
        .args(["-Fc", "-d", "app", "-f"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&dump).unwrap().len() > 0);

    pg.psql(
        "app",
        "DELETE FROM items WHERE id > 10;
         ALTER TABLE items ADD COLUMN extra int;
         CREATE TABLE other (x int);",
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM items"), "10");

    let o = pg
        .client("pg_restore")
        .args(["--clean", "--if-exists", "-d", "app"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(pg.psql("app", "SELECT count(*) FROM items"), "100");
    assert_eq!(
        pg.psql(
            "app",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'"
        ),
        "2",
        "the added column is gone"
    );

    // The shell prefix, as a config file's `sh -c` command would use it.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -Fp -d app | grep -c 'CREATE TABLE'",
            pg.shell("pg_dump")
        ))
        .output()
        .unwrap();
    // `other` is not in the dump, so it survived the restore: two tables.
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");

    let port = pg.port();
    drop(pg);
    assert!(!dir.exists(), "the server's directory is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is gone"
    );
}

#[test]
fn postgres_failing_sql_panics_with_the_error() {
    let Some(pg) = Postgres::start() else { return };
    let err = catch_unwind(AssertUnwindSafe(|| pg.psql("postgres", "SELECT nope"))).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("column \"nope\" does not exist"), "{msg}");
}

#[test]
fn redis_rdb_dump_and_reload_round_trip() {
    let t = Instant::now();
    let Some(mut redis) = Redis::start() else {
        return;
    };
    eprintln!("redis ready on port {} in {:?}", redis.port(), t.elapsed());
    let port = redis.port();

    for i in 0..50 {
        redis.cli(&["SET", &format!("key:{i}"), &format!("value {i}")]);
    }
    redis.cli(&["RPUSH", "list", "a", "b", "c"]);
    assert_eq!(redis.cli(&["DBSIZE"]), "51");

    let rdb = redis.dir().parent().unwrap().join("saved.rdb");
    let t = Instant::now();
    redis.cli(&["--rdb", rdb.to_str().unwrap()]);
    eprintln!("redis-cli --rdb took {:?}", t.elapsed());
    assert!(std::fs::read(&rdb).unwrap().starts_with(b"REDIS"));
    assert_eq!(
        std::fs::read_dir(redis.dir()).unwrap().count(),
        0,
        "the server wrote nothing into its directory"
    );

    redis.cli(&["FLUSHALL"]);
    assert_eq!(redis.cli(&["DBSIZE"]), "0");
    redis.stop();
    redis.stop();
    std::fs::copy(&rdb, redis.dir().join("dump.rdb")).unwrap();
    let t = Instant::now();
    redis.start_again();
    eprintln!("redis restarted in {:?}", t.elapsed());
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cli(&["DBSIZE"]), "51");
    assert_eq!(redis.cli(&["GET", "key:7"]), "value 7");
    assert_eq!(redis.cli(&["LRANGE", "list", "0", "-1"]), "a\nb\nc");

    // The shell prefix, as a config file's `sh -c` command would use it.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} GET key:3", redis.shell_cli()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "value 3");

    let dir = redis.dir().parent().unwrap().to_path_buf();
    drop(redis);
    assert!(!dir.exists(), "the server's directory is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is gone"
    );
}

#[test]
fn redis_error_reply_panics() {
    let Some(redis) = Redis::start() else { return };
    redis.cli(&["SET", "s", "x"]);
    let err = catch_unwind(AssertUnwindSafe(|| redis.cli(&["LPUSH", "s", "y"]))).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("WRONGTYPE"), "{msg}");
}
