//! Site components against real services started here: PostgreSQL (`pg_dump -Fc`, rollback
//! with `pg_restore`, a drill into a scratch database) and Redis (`redis-cli --rdb -`, a
//! restore by stop, place, start). With `CI` set, a missing server fails these tests.

mod common;

use common::servers::{Postgres, Redis};
use common::site::Site;
use common::webhook::Receiver;
use common::write;

#[test]
fn postgres_dump_rollback_and_drill() {
    let Some(pg) = Postgres::start() else { return };
    pg.createdb("app");
    pg.psql(
        "app",
        "create table items(id serial primary key, v text); \
         insert into items(v) select md5(g::text) from generate_series(1, 5000) g;",
    );
    let hook = Receiver::start(200);
    let s = Site::new(&format!(
        r#"
[components.db]
command = "{dump} -Fc app"
restore_command = "{restore} --clean --if-exists -d app"
filename = "app.dump"
probe = "test \"$({psql} -d app_drill -Atc 'select count(*) from items')\" -gt 4000"
[components.db.drill]
before = "{createdb} app_drill"
restore_command = "{restore} -d app_drill"
after = "{dropdb} --if-exists app_drill"
[components.broken]
command = "{dump} -Fc no_such_database"
[components.files]
paths = ["files"]
[alerts]
webhooks = ["{url}"]
"#,
        dump = pg.shell("pg_dump"),
        restore = pg.shell("pg_restore"),
        psql = pg.shell("psql"),
        createdb = pg.shell("createdb"),
        dropdb = pg.shell("dropdb"),
        url = hook.url("/hook"),
    ));
    write(&s.p("files"), "app.conf", b"db = app\n");
    let at_snapshot = pg.items_fingerprint("app");

    // A failing pg_dump fails its component only: the others are stored, a webhook fires.
    let r = s.json(&["run"], 1);
    let by = |name: &str| {
        r["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["component"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("db")["ok"], true, "{r}");
    assert_eq!(by("files")["ok"], true);
    assert_eq!(by("broken")["ok"], false);
    assert!(by("broken")["snapshot"].is_null());
    assert!(
        by("broken")["error"]
            .as_str()
            .unwrap()
            .contains("no_such_database"),
        "{r}"
    );
    assert!(
        s.json(&["versions", "broken"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );
    let events = hook.events("/hook");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["event"].as_str(), events[0]["component"].as_str()),
        (Some("failure"), Some("broken"))
    );
    let snap = by("db")["snapshot"].as_str().unwrap().to_string();

    // Rows change; the rollback brings the snapshot's moment back.
    pg.psql(
        "app",
        "delete from items where id % 7 = 0; update items set v = 'changed' where id % 11 = 0; \
         insert into items(v) values ('after the snapshot');",
    );
    assert_ne!(pg.items_fingerprint("app"), at_snapshot);
    let rb = s.json(&["rollback", "db", &snap[..8]], 0);
    assert_eq!(pg.items_fingerprint("app"), at_snapshot);
    // The pre-rollback snapshot holds the changed state.
    let pre = rb["pre_rollback"].as_str().unwrap();
    let versions = s.json(&["versions", "db"], 0);
    assert!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == pre && v["kind"] == "pre-rollback")
    );

    // The drill restores into a scratch database, probes it, and drops it.
    let d = s.json(&["drill", "db"], 0);
    assert_eq!(d["components"][0]["ok"], true, "{d}");
    assert!(
        d["components"][0]["snapshot"]["id"] == pre,
        "the newest snapshot is drilled"
    );
    let dbs = pg.psql(
        "postgres",
        "select string_agg(datname, ',') from pg_database",
    );
    assert!(!dbs.contains("app_drill"), "{dbs}");
    let st = s.json(&["status"], 4);
    assert_eq!(st["components"][0]["last_drill"]["ok"], true, "{st}");
}

#[test]
fn redis_rdb_snapshot_and_restore() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    for i in 0..200 {
        redis.cli(&["set", &format!("key:{i}"), &format!("value {i}")]);
    }
    let cli = redis.shell_cli();
    let dir = redis.dir().display().to_string();
    let s = Site::new(&format!(
        r#"
[components.cache]
command = "{cli} --rdb -"
filename = "dump.rdb"
restore_command = "{cli} shutdown nosave >/dev/null 2>&1; cat > '{dir}/dump.rdb'"
"#
    ));
    let r = s.json(&["run", "cache"], 0);
    assert_eq!(r["components"][0]["ok"], true, "{r}");
    assert!(r["components"][0]["size"].as_u64().unwrap() > 1000, "{r}");
    redis.cli(&["flushall"]);
    redis.cli(&["set", "only", "after"]);
    assert_eq!(redis.cli(&["dbsize"]), "1");
    let snap = r["components"][0]["snapshot"].as_str().unwrap().to_string();
    // Stop, place the RDB (the restore command), start.
    s.json(&["rollback", "cache", &snap[..8], "--no-pre-snapshot"], 0);
    redis.start_again();
    assert_eq!(redis.cli(&["dbsize"]), "200");
    assert_eq!(redis.cli(&["get", "key:123"]), "value 123");
    assert_eq!(redis.cli(&["exists", "only"]), "0");
}
