#!/usr/bin/env bash
# operations.sh — `cairn run` of a four-component site against the hand-made nightly script it
# replaces (pg_dump | gzip | gpg, redis-cli --rdb, sqlite3 .backup, tar czf, sha256sum), over
# seven simulated nights on live servers: wall time, CPU time, peak RSS and bytes stored.
#
#   benches/operations.sh [WORKDIR]   (default: a new mktemp dir; run by hand as root, not in CI;
#                                      at PG_SCALE=40 the database takes ~0.7 GB, both backups ~0.25 GB)
#
# Env switches:
#   PG_SCALE=N           pgbench scale of the database (default 40, the pgdump corpus of
#                        benches/corpora.sh; 5 for a quick try)
#   NIGHTS=N             simulated nights (default 7)
#   PGBENCH_SECONDS=N    pgbench -T of each night (default 10)
#   REDIS_KEYS=N         keys loaded into Redis (default 50000); REDIS_PORT (default 6390)
#   SQLITE_MB=N          size of the SQLite database (default 20)
#   FIRST_DAY=YYYY-MM-DD night i is `cairn run --time` day FIRST_DAY + i - 1 at 03:00Z (default today)
#   PG_DUMP_ARGS="-Fc"   pg_dump's format options, the same on both sides (default -Fc; "-Fc -Z0"
#                        leaves all compression to cairn and to the script's gzip)
#   REDIS_SYNC_DELAY=S   the server's repl-diskless-sync-delay (default 0; Redis's own default of
#                        5 s makes every `redis-cli --rdb` of both sides wait 5 s for other replicas)
#   CAIRN_BIN=/path      use this cairn binary; otherwise `cargo build --release --locked` first
#
# Set-up (all in WORKDIR, redone on every run except the PostgreSQL cluster, which is kept and
# reused): a private PostgreSQL (Debian's package, installed if absent) on a Unix socket only
# (listen_addresses='', fsync=off) with `pgbench -i -s PG_SCALE bench`; a private redis-server on
# 127.0.0.1:REDIS_PORT (--save '', nothing on disk) holding REDIS_KEYS keys; an SQLite database
# app.db of SQLITE_MB MB; a copy of /etc (unreadable files left out) as etc/. Both servers are
# stopped on exit. cairn.toml names four components (db: `pg_dump -Fc`, cache: `redis-cli --rdb -`,
# app: sqlite, etc: paths) and a profile `full` of the four; the repository is made by `cairn init`
# with default settings and a password file. The script, WORKDIR/nightly.sh, does the same four
# backups into WORKDIR/script-out/nightN and keeps every night, as `find -mtime +30 -delete` would
# over a week (cairn's default retention of `scheduled` runs keeps 30 days as well).
#
# Night i: `pgbench -T PGBENCH_SECONDS -c 2 -j 2`, 2000 Redis SETs (500 new keys), 2000 SQLite
# inserts (the table has an index on a random column, so they touch pages all over), five files
# of etc/ touched and one appended to; then both backups, cairn first on odd nights and the
# script first on even ones, each under GNU time (-f "%e %U %S %M": wall s, CPU s = user + sys of
# the process and every child it waited for, so pg_dump, redis-cli, gzip and gpg count on their
# side; the servers' own work counts on neither), and `du -sb` of the repository and of
# script-out after the night. Raw rows go to WORKDIR/operations.tsv, each run's output to
# WORKDIR/logs; the Markdown report (per night and in total, then stored bytes per component, from
# `cairn run --json` and the script's files) is printed and saved as WORKDIR/operations.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_SCALE="${PG_SCALE:-40}"
NIGHTS="${NIGHTS:-7}"
PGBENCH_SECONDS="${PGBENCH_SECONDS:-10}"
REDIS_KEYS="${REDIS_KEYS:-50000}"
REDIS_PORT="${REDIS_PORT:-6390}"
SQLITE_MB="${SQLITE_MB:-20}"
FIRST_DAY="${FIRST_DAY:-$(date -u +%F)}"
REDIS_SYNC_DELAY="${REDIS_SYNC_DELAY:-0}"
PG_DUMP_ARGS="${PG_DUMP_ARGS:--Fc}"
log() { echo "[operations $(date +%H:%M:%S)] $*" >&2; }
die() { echo "operations.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (initdb and the PostgreSQL server run as user postgres)"
for v in PG_SCALE NIGHTS PGBENCH_SECONDS REDIS_KEYS REDIS_PORT SQLITE_MB REDIS_SYNC_DELAY; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer"
done
[ "$NIGHTS" -ge 1 ] && [ "$PG_SCALE" -ge 1 ] || die "NIGHTS and PG_SCALE must be at least 1"
date -u -d "$FIRST_DAY" +%F >/dev/null 2>&1 || die "FIRST_DAY must be a date (YYYY-MM-DD)"
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || [ ! -x /usr/bin/time ] || ! command -v sqlite3 >/dev/null \
   || ! command -v redis-server >/dev/null || ! command -v gpg >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server sqlite3 gnupg time >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed (data and report)"
B="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
REDIS_CLI="$(command -v redis-cli)"; SQLITE3="$(command -v sqlite3)"; GPG="$(command -v gpg)"
if [ -n "${CAIRN_BIN:-}" ]; then
  CAIRN="$CAIRN_BIN"
else
  (cd "$ROOT" && cargo build --release --locked -q)
  CAIRN="$ROOT/target/release/cairn"
fi
[ -x "$CAIRN" ] || die "no cairn binary at $CAIRN"
cairn_ver="$("$CAIRN" --version 2>/dev/null || echo cairn)"
git_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
[ -z "$git_rev" ] || { git -C "$ROOT" diff --quiet HEAD 2>/dev/null || git_rev="$git_rev-dirty"; cairn_ver="$cairn_ver (tree $git_rev)"; }

# WORKDIR: one this script made (it leaves a marker), an empty one, or a new one.
if [ -n "${1:-}" ]; then
  W="$1"
  if [ -e "$W" ] && [ ! -e "$W/.cairn-operations" ] && [ -n "$(ls -A "$W" 2>/dev/null)" ]; then
    die "$W exists and was not made by operations.sh; give another WORKDIR"
  fi
  mkdir -p "$W"
else
  W="$(mktemp -d /tmp/cairn-operations.XXXXXX)"
fi
W="$(cd "$W" && pwd -P)"
touch "$W/.cairn-operations"
cp "$CAIRN" "$W/cairn.bin" && CAIRN="$W/cairn.bin"   # a rebuild of the checkout during the run changes nothing
chmod 755 "$W"   # the postgres user keeps its cluster in WORKDIR/pg
su postgres -s /bin/sh -c "test -x '$W'" || die "user postgres cannot enter $W (a parent folder is closed); give another WORKDIR"
PGD="$W/pg/data" S="$W/pg/sock" RD="$W/redis" PW="$W/password" F="$W/cairn.toml"
export GNUPGHOME="$W/gnupg"
PG=(-h "$S" -U postgres)

cleanup() {
  [ ! -f "$PGD/postmaster.pid" ] || su postgres -c "$B/pg_ctl -D '$PGD' -m fast -w stop" >/dev/null 2>&1 || true
  if [ -f "$RD/redis.pid" ]; then
    local pid; pid="$(cat "$RD/redis.pid")"
    if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RD/redis.pid"
  fi
  [ ! -d "$GNUPGHOME" ] || gpgconf --kill gpg-agent >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup   # servers left running by an earlier, killed run in this WORKDIR

log "work dir $W; PG_SCALE=$PG_SCALE; $NIGHTS nights"
rm -rf "$W/repo" "$W/cache" "$W/state" "$W/script-out" "$W/logs" "$W/etc" "$W/app.db"* "$RD" "$GNUPGHOME"
mkdir -p "$W/script-out" "$W/logs" "$RD" "$S"
mkdir -m 700 "$GNUPGHOME"

# PostgreSQL: the cluster is kept between runs; the pgbench tables are made anew every run.
if [ ! -f "$PGD/PG_VERSION" ]; then
  rm -rf "$W/pg"; mkdir -p "$S"; chown -R postgres:postgres "$W/pg"
  su postgres -c "$B/initdb -D '$PGD' -A trust -U postgres" >/dev/null
fi
chown -R postgres:postgres "$W/pg"
su postgres -c "$B/pg_ctl -D '$PGD' -l '$W/pg/server.log' -o \"-c listen_addresses='' -c unix_socket_directories=$S -c fsync=off\" -w start" >/dev/null
[ -n "$("$B/psql" "${PG[@]}" -Atc "select 1 from pg_database where datname = 'bench'" postgres)" ] || "$B/createdb" "${PG[@]}" bench
log "pgbench -i -s $PG_SCALE"
"$B/pgbench" "${PG[@]}" -i -s "$PG_SCALE" -q bench >"$W/logs/pgbench-init.log" 2>&1 || { cat "$W/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }

# Redis: nothing persisted; filled with REDIS_KEYS keys of ~100-byte JSON values.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --dir "$RD" --repl-diskless-sync-delay "$REDIS_SYNC_DELAY" \
  --daemonize yes --pidfile "$RD/redis.pid" --logfile "$RD/server.log"
for _ in $(seq 50); do "$REDIS_CLI" -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_sets() {   # NIGHT COUNT NEW — COUNT SETs: COUNT - NEW existing keys rewritten, NEW keys added
  python3 - "$@" "$REDIS_KEYS" <<'PY' | "$REDIS_CLI" -p "$REDIS_PORT" --pipe >/dev/null
import random, sys
night, count, new, base = map(int, sys.argv[1:5])
rng = random.Random(night)
first_new = base + (night - 1) * new if night else 0
keys = ([f"session:{first_new + k:07d}" for k in range(new)] +
        [f"session:{rng.randrange(base + max(night - 1, 0) * new):07d}" for _ in range(count - new)])
out = sys.stdout.buffer
for k in keys:
    v = (f'{{"user":{rng.randrange(10**6)},"token":"{rng.getrandbits(64):016x}","night":{night},'
         f'"seen":{1764547200 + rng.randrange(10**7)},"cart":[{",".join(str(rng.randrange(999)) for _ in range(rng.randrange(1, 6)))}]}}')
    out.write(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(v)}\r\n{v}\r\n".encode())
PY
}
log "redis: $REDIS_KEYS keys"
redis_sets 0 "$REDIS_KEYS" "$REDIS_KEYS"

# SQLite: an events table of text rows, indexed by user, up to SQLITE_MB MB; each night inserts rows.
sqlite_app() {   # NIGHT — night 0 creates the database
  python3 - "$W/app.db" "$1" "$SQLITE_MB" <<'PY'
import random, sqlite3, sys
path, night, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1000 + night)
words = ["".join(random.Random(w).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3 + w % 8)) for w in range(600)]
row = lambda: (f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:00:00Z",
               rng.randrange(50000), rng.choice(["view", "click", "buy", "login", "logout"]),
               " ".join(rng.choice(words) for _ in range(rng.randrange(15, 35))))
db = sqlite3.connect(path)
if night == 0:
    db.execute("create table events (id integer primary key, ts text, user integer, kind text, payload text)")
    db.execute("create index events_user on events (user)")
    while db.execute("pragma page_count").fetchone()[0] * db.execute("pragma page_size").fetchone()[0] < mb << 20:
        db.executemany("insert into events (ts, user, kind, payload) values (?, ?, ?, ?)", [row() for _ in range(10000)])
        db.commit()
else:
    db.executemany("insert into events (ts, user, kind, payload) values (?, ?, ?, ?)", [row() for _ in range(2000)])
    db.commit()
db.close()
PY
}
log "sqlite: $SQLITE_MB MB"
sqlite_app 0

# The config folder: a copy of /etc, unreadable files left out.
cp -a /etc "$W/etc" 2>/dev/null || true
find "$W/etc" -type f -print0 | sort -z > "$W/etc.files"
etc_changes() {   # NIGHT — touch five files, append a line to one
  local i="$1" n k f; n="$(tr -cd '\0' < "$W/etc.files" | wc -c)"
  for k in 0 1 2 3 4; do
    f="$(tr '\0' '\n' < "$W/etc.files" | sed -n "$(( (i * 37 + k * 11) % n + 1 ))p")"
    [ -w "$f" ] && touch "$f"
  done
  [ ! -e "$W/etc/hosts" ] || echo "# night $i" >> "$W/etc/hosts"
}

# cairn: the site config, the repository, the password.
echo "operations-bench-$(date +%s)" > "$PW"; chmod 600 "$PW"
cat > "$F" <<EOF
state_dir = "$W/state"

[repository]
path = "$W/repo"
password_file = "$PW"
cache_dir = "$W/cache"

[components.db]
command = "$B/pg_dump $PG_DUMP_ARGS -h $S -U postgres bench"
filename = "bench.dump"

[components.cache]
command = "$REDIS_CLI -p $REDIS_PORT --rdb -"
filename = "dump.rdb"

[components.app]
sqlite = "$W/app.db"

[components.etc]
paths = ["$W/etc"]

[profiles]
full = ["db", "cache", "app", "etc"]
EOF
"$CAIRN" --config "$F" config check >"$W/logs/config-check.log" 2>&1 || { cat "$W/logs/config-check.log" >&2; die "cairn config check failed"; }
"$CAIRN" --config "$F" -q init

# The hand-made script: the same four backups, a checksum list, 30 days kept.
cat > "$W/nightly.sh" <<EOF
#!/usr/bin/env bash
# nightly.sh NIGHT — the backups a cron job would take
set -euo pipefail
export GNUPGHOME="$GNUPGHOME"
cd "$W/script-out"
N="night\$1"
mkdir -p "\$N"
$B/pg_dump $PG_DUMP_ARGS -h $S -U postgres bench | gzip | $GPG --batch --pinentry-mode loopback --passphrase-file "$PW" --symmetric -o "\$N/db.dump.gz.gpg"
$REDIS_CLI -p $REDIS_PORT --rdb "\$N/cache.rdb" >/dev/null 2>&1 && gzip "\$N/cache.rdb"
$SQLITE3 "$W/app.db" ".backup \$N/app.db" && gzip "\$N/app.db"
tar czf "\$N/etc.tar.gz" -C "$W" etc
sha256sum "\$N"/* > "\$N/SHA256SUMS"
find . -mindepth 1 -maxdepth 1 -name 'night*' -mtime +30 -exec rm -rf {} +
EOF
chmod 755 "$W/nightly.sh"
# gpg makes its home folder (keyring, trustdb) on first use: done here, not in night 1.
"$GPG" --batch --yes --pinentry-mode loopback --passphrase-file "$PW" --symmetric -o /dev/null /dev/null 2>/dev/null || true

TSV="$W/operations.tsv"
printf 'night\ttool\tposition\twall_s\tuser_s\tsys_s\tmaxrss_kib\tstored_bytes\n' > "$TSV"
measure() {   # NIGHT TOOL POSITION CMD... — time CMD; stops on failure
  local night="$1" tool="$2" pos="$3" wall user sys rss; shift 3
  log "night $night: $tool"
  if ! /usr/bin/time -f '%e %U %S %M' -o "$W/time.out" "$@" >"$W/logs/night$night-$tool.out" 2>"$W/logs/night$night-$tool.err"; then
    echo "FAILED: night $night, $tool: $*" >&2; cat "$W/logs/night$night-$tool.out" "$W/logs/night$night-$tool.err" >&2; exit 1
  fi
  read -r wall user sys rss < <(tail -n 1 "$W/time.out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t' "$night" "$tool" "$pos" "$wall" "$user" "$sys" "$rss" >> "$TSV.$tool"
}
run_cairn() {
  measure "$1" cairn "$2" "$CAIRN" --config "$F" --json run full --kind scheduled --time "$(date -u -d "$FIRST_DAY + $(( $1 - 1 )) days" +%F)T03:00:00Z"
}
run_script() { measure "$1" script "$2" "$W/nightly.sh" "$1"; }

for ((i = 1; i <= NIGHTS; i++)); do
  log "night $i: pgbench -T $PGBENCH_SECONDS, redis SETs, sqlite writes, etc touched"
  "$B/pgbench" "${PG[@]}" -T "$PGBENCH_SECONDS" -c 2 -j 2 bench >"$W/logs/night$i-pgbench.log" 2>&1 || { cat "$W/logs/night$i-pgbench.log" >&2; die "pgbench failed"; }
  redis_sets "$i" 2000 500
  sqlite_app "$i"
  etc_changes "$i"
  : > "$TSV.cairn"; : > "$TSV.script"
  if (( i % 2 )); then run_cairn "$i" 1; run_script "$i" 2; else run_script "$i" 1; run_cairn "$i" 2; fi
  for t in cairn script; do
    if [ "$t" = cairn ]; then d="$W/repo"; else d="$W/script-out"; fi
    { cat "$TSV.$t"; du -sb "$d" | cut -f1; } >> "$TSV"
  done
  rm -f "$TSV.cairn" "$TSV.script"
done

# For reference and as a check: the database, a fresh dump, the snapshots, the script's sums.
db_bytes="$("$B/psql" "${PG[@]}" -Atc "select pg_database_size('bench')" bench)"
read -ra dump_args <<< "$PG_DUMP_ARGS"
dump_bytes="$("$B/pg_dump" "${dump_args[@]}" "${PG[@]}" bench | wc -c)"
rdb_bytes="$("$REDIS_CLI" -p "$REDIS_PORT" --rdb - 2>/dev/null | wc -c)"
keys="$("$REDIS_CLI" -p "$REDIS_PORT" dbsize)"
app_bytes="$(stat -c %s "$W/app.db")"
etc_bytes="$(du -sb "$W/etc" | cut -f1)"; etc_files="$(find "$W/etc" -type f | wc -l)"
snaps="$("$CAIRN" --config "$F" --json snapshots | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')"
"$CAIRN" --config "$F" -q check >"$W/logs/check.log" 2>&1 || { cat "$W/logs/check.log" >&2; die "cairn check failed"; }
for ((i = 1; i <= NIGHTS; i++)); do
  (cd "$W/script-out" && sha256sum --quiet -c "night$i/SHA256SUMS") || die "night $i: the script's SHA256SUMS do not match"
done
log "cairn: $snaps snapshots, check passed; script: every night's SHA256SUMS match"

{
  echo "## cairn run against a nightly script"
  echo
  echo "$(date -u '+%F %H:%M UTC') · $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')) ·" \
    "Linux $(uname -r) · $cairn_ver · PostgreSQL $("$B/postgres" --version | awk '{print $3}') · redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') ·" \
    "SQLite $("$SQLITE3" --version | cut -d' ' -f1) · $("$GPG" --version | head -1) · warm page cache · PG_SCALE=$PG_SCALE · $NIGHTS nights$( [ "$PG_DUMP_ARGS" = -Fc ] || echo " · PG_DUMP_ARGS=$PG_DUMP_ARGS")$( [ "$REDIS_SYNC_DELAY" = 0 ] || echo " · REDIS_SYNC_DELAY=$REDIS_SYNC_DELAY")"
  echo
  python3 - "$TSV" "$W/logs" "$W/script-out" "$NIGHTS" "$db_bytes" "$dump_bytes" "$rdb_bytes" "$keys" "$app_bytes" \
    "$etc_bytes" "$etc_files" "$snaps" "$PG_DUMP_ARGS" <<'PY'
import csv, glob, json, os, sys
tsv, logs, out, nights = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
db, dump, rdb, keys, app, etc, etc_files, snaps = map(int, sys.argv[5:13])
dump_args = sys.argv[13]
rows = {(int(r["night"]), r["tool"]): r for r in csv.DictReader(open(tsv), delimiter="\t")}
cpu = lambda r: float(r["user_s"]) + float(r["sys_s"])
mb = lambda b: f"{b / 1e6:.1f}"
x = lambda a, b: f"{a / b:.2f}×" if b else "–"
print(f"Sources after the last night: database `bench` {mb(db)} MB (`pg_dump {dump_args}` of it: {mb(dump)} MB); "
      f"Redis {keys} keys (RDB {mb(rdb)} MB); SQLite {mb(app)} MB; etc/ {mb(etc)} MB in {etc_files} files. "
      f"cairn holds {snaps} snapshots; `cairn check` passed and every night's SHA256SUMS matched.")
print()
print("| night | first | cairn wall s | script wall s | cairn/script wall | cairn CPU s | script CPU s | cairn/script CPU "
      "| cairn RSS MiB | script RSS MiB | cairn stored MB | script stored MB | cairn/script stored |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
tot = {"cairn": [0.0, 0.0], "script": [0.0, 0.0]}
for n in range(1, nights + 1):
    c, s = rows[(n, "cairn")], rows[(n, "script")]
    for t, r in (("cairn", c), ("script", s)):
        tot[t][0] += float(r["wall_s"]); tot[t][1] += cpu(r)
    first = "cairn" if c["position"] == "1" else "script"
    print(f"| {n} | {first} | {float(c['wall_s']):.2f} | {float(s['wall_s']):.2f} | {x(float(c['wall_s']), float(s['wall_s']))} "
          f"| {cpu(c):.2f} | {cpu(s):.2f} | {x(cpu(c), cpu(s))} | {int(c['maxrss_kib']) / 1024:.0f} | {int(s['maxrss_kib']) / 1024:.0f} "
          f"| {mb(int(c['stored_bytes']))} | {mb(int(s['stored_bytes']))} | {x(int(c['stored_bytes']), int(s['stored_bytes']))} |")
c, s = rows[(nights, "cairn")], rows[(nights, "script")]
print(f"| **total** | | {tot['cairn'][0]:.2f} | {tot['script'][0]:.2f} | {x(tot['cairn'][0], tot['script'][0])} "
      f"| {tot['cairn'][1]:.2f} | {tot['script'][1]:.2f} | {x(tot['cairn'][1], tot['script'][1])} | | "
      f"| {mb(int(c['stored_bytes']))} | {mb(int(s['stored_bytes']))} | {x(int(c['stored_bytes']), int(s['stored_bytes']))} |")
# Per component: what cairn's runs stored (their `stored`: new data, compressed and sealed; the
# repository's own index, trees and snapshots come on top) against the script's files.
comp = {}
for n in range(1, nights + 1):
    for r in json.load(open(os.path.join(logs, f"night{n}-cairn.out")))["components"]:
        comp.setdefault(r["component"], []).append((r["size"], r["stored"]))
files = {"db": "db.dump.gz.gpg", "cache": "cache.rdb.gz", "app": "app.db.gz", "etc": "etc.tar.gz"}
print()
print("| component | source per night MB (last) | cairn night 1 MB | cairn nights 2–N MB each (mean) | cairn total MB "
      "| script per night MB (mean) | script total MB | cairn/script |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, f in files.items():
    v = comp.get(name, [])
    sizes = [os.path.getsize(p) for p in sorted(glob.glob(os.path.join(out, "night*", f)))]
    ct, st = sum(b for _, b in v), sum(sizes)
    later = [b for _, b in v[1:]]
    print(f"| {name} | {mb(v[-1][0]) if v else '–'} | {mb(v[0][1]) if v else '–'} | "
          f"{mb(sum(later) / len(later)) if later else '–'} | {mb(ct)} | {mb(st / len(sizes)) if sizes else '–'} | {mb(st)} | {x(ct, st)} |")
PY
} > "$W/operations.md"
cat "$W/operations.md"
