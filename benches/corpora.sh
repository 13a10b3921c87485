#!/usr/bin/env bash
# corpora.sh — builds the real-world benchmark corpora that cairn is compared on (by compare.sh).
#
#   corpora.sh build DATA      create DATA/usr and DATA/pgdump/{dump1,dump2}.sql (idempotent)
#   corpora.sh build-usr DATA  create DATA/usr only
#   corpora.sh modify DATA     append one line to every 100th regular file of DATA/usr (1 %),
#                              keeping originals so that `restore-mod` undoes it exactly
#   corpora.sh restore-mod DATA
#   corpora.sh describe DATA
#
# usr:    a copy of real system directories from /usr (~2 GB, ~60k files: shared libraries,
#         headers, docs, Python and Node packages). USR_SUBDIRS overrides the list.
# pgdump: two plain-format pg_dump files (~390 MB each) of a pgbench database at scale 40,
#         before and after 30 s of pgbench transactions; a real PostgreSQL server (Debian's
#         package, installed if absent) runs on a private Unix socket only, and is stopped after.
# Needs root (apt-get, su postgres). Uses no network beyond the package registry.
set -euo pipefail
USR_ROOT="${USR_ROOT:-/usr}"
USR_SUBDIRS="${USR_SUBDIRS:-share include lib/x86_64-linux-gnu lib/llvm-14 lib/gcc lib/python3 lib/python3.11 lib/node_modules lib/postgresql lib/git-core}"
PG_SCALE="${PG_SCALE:-40}"
PG_SECONDS="${PG_SECONDS:-30}"
MOD_EVERY="${MOD_EVERY:-100}"
log() { echo "[corpora $(date +%H:%M:%S)] $*" >&2; }

build_usr() {
  local d="$1"; mkdir -p "$d"
  if [ ! -d "$d/usr" ]; then
    log "copying /usr subdirectories into $d/usr"
    mkdir -p "$d/usr.tmp"
    (cd "$USR_ROOT" && for s in $USR_SUBDIRS; do [ -e "$s" ] && cp -a --parents "$s" "$d/usr.tmp/"; done)
    mv "$d/usr.tmp" "$d/usr"
  fi
  (cd "$d/usr" && find . -type f -printf '%P\n' | LC_ALL=C sort | awk -v n="$MOD_EVERY" 'NR%n==0') > "$d/usr.modlist"
}

build() {
  local d="$1"
  build_usr "$d"
  if [ ! -f "$d/pgdump/dump2.sql" ]; then
    command -v pg_dump >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
    local B; B="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    local P; P="$(mktemp -d)"; local S="$P/sock"
    mkdir -p "$S" "$d/pgdump"; chown -R postgres:postgres "$P" "$d/pgdump"
    su postgres -c "$B/initdb -D $P/data -A trust -U postgres" >/dev/null
    su postgres -c "$B/pg_ctl -D $P/data -l $P/server.log -o \"-c listen_addresses='' -c unix_socket_directories=$S -c fsync=off\" -w start" >/dev/null
    trap "su postgres -c '$B/pg_ctl -D $P/data -w stop' >/dev/null 2>&1; rm -rf '$P'" EXIT
    log "pgbench -i -s $PG_SCALE, dump, pgbench -T $PG_SECONDS, dump"
    su postgres -c "$B/createdb -h $S bench && $B/pgbench -h $S -i -s $PG_SCALE -q bench" >/dev/null 2>&1
    su postgres -c "$B/pg_dump -h $S -Fp -f $d/pgdump/dump1.sql bench"
    su postgres -c "$B/pgbench -h $S -T $PG_SECONDS -c 2 -j 2 bench" >/dev/null 2>&1
    su postgres -c "$B/pg_dump -h $S -Fp -f $d/pgdump/dump2.sql bench"
  fi
  describe "$d"
}

modify() {
  local d="$1"
  [ -e "$d/usr.MODIFIED" ] && { log "already modified"; return 0; }
  rm -rf "$d/usr.orig"; mkdir -p "$d/usr.orig"
  (cd "$d/usr" && tr '\n' '\0' < "$d/usr.modlist" | xargs -0 cp -a --parents -t "$d/usr.orig")
  touch "$d/usr.MODIFIED"
  while IFS= read -r f; do printf '# appended by corpora.sh modify\n' >> "$d/usr/$f"; done < "$d/usr.modlist"
}

restore_mod() {
  local d="$1"; [ -e "$d/usr.MODIFIED" ] || return 0
  while IFS= read -r f; do cp -a "$d/usr.orig/$f" "$d/usr/$f"; done < "$d/usr.modlist"
  rm -rf "$d/usr.orig" "$d/usr.MODIFIED"
}

describe() {
  local d="$1"
  for p in usr pgdump/dump1.sql pgdump/dump2.sql; do
    [ -e "$d/$p" ] || continue
    printf '%-18s %12s bytes %7s files %6s dirs\n' "$p" "$(du -sb "$d/$p" | cut -f1)" \
      "$(find "$d/$p" -type f | wc -l)" "$(find "$d/$p" -type d | wc -l)"
  done
}

case "${1:-}" in
  build) build "${2:?DATA}";;
  build-usr) build_usr "${2:?DATA}";;
  modify) modify "${2:?DATA}";;
  restore-mod) restore_mod "${2:?DATA}";;
  describe) describe "${2:?DATA}";;
  *) sed -n '2,18p' "$0"; exit 1;;
esac
