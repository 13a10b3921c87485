#!/usr/bin/env bash
# mount.sh — `cairn mount` against `restic mount` on the same data in the same run.
#
#   benches/mount.sh [WORKDIR]    (default: /tmp/cairn-mount; run by hand as root with /dev/fuse,
#                                  not in CI; ~1 GiB test file + the usr corpus, ~6 GB in all)
#
# Env switches:
#   CAIRN_BIN=/path   use this cairn binary; otherwise `cargo build --release --locked` first
#   DATA=/dir         reuse a built corpus (DATA/usr) instead of `corpora.sh build-usr WORKDIR/data`
#   REPS=N            measure every step N times and report the median (default 3)
#   READS=N           random reads per pass (default 1000)
#
# Both tools get a fresh repository with two snapshots: big/ (one 1 GiB file of random bytes)
# and the usr corpus (~60k files). Then, per tool and pass, each step in a fresh mount (so
# neither the kernel's page cache nor the tool's caches hold anything from an earlier step):
#   cat-1GiB     `cat` of the 1 GiB file through the mount to /dev/null (wall time)
#   random-4KiB  READS reads of 4 KiB at random offsets of that file (the same offsets for both
#                tools, one after the other, plain pread as a program would do it): median
#                and p95 latency per read
#   find-usr     `find MNT/<usr snapshot> | wc -l` (wall time; the count must agree)
#   restore-1GiB `cairn restore` of big/ into WORKDIR/restore, for scale (cairn only)
# The mount process runs under GNU time, so its peak RSS over each step is recorded too.
# Raw rows go to WORKDIR/results.tsv; the Markdown report is printed and saved as
# WORKDIR/results.md with ratios restic / cairn (higher is better for cairn).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
W="${1:-/tmp/cairn-mount}"
REPS="${REPS:-3}"
READS="${READS:-1000}"
log() { echo "[mount $(date +%H:%M:%S)] $*" >&2; }
die() { echo "mount.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (FUSE mounts, the corpus copy)"
[ -e /dev/fuse ] || die "/dev/fuse is missing: nothing can be mounted here"
need_tools mount.sh
command -v fusermount >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; }
cairn_bin
mkdir -p "$W"; W="$(cd "$W" && pwd -P)"
TSV="$W/results.tsv"; : > "$TSV"
if [ -z "${DATA:-}" ]; then
  DATA="$W/data"
  log "building the usr corpus in $DATA"
  "$ROOT/benches/corpora.sh" build-usr "$DATA" >&2
fi
DATA="$(cd "$DATA" && pwd -P)"
[ -d "$DATA/usr" ] || die "DATA=$DATA has no usr/ (benches/corpora.sh build-usr DIR)"
BIG="$W/big"
if [ ! -f "$BIG/file" ] || [ "$(stat -c %s "$BIG/file")" != 1073741824 ]; then
  mkdir -p "$BIG"; head -c 1G /dev/urandom > "$BIG/file"
fi
MNT="$W/mnt"; mkdir -p "$MNT"
mountpoint -q "$MNT" && umount -l "$MNT"
trap 'mountpoint -q "$MNT" && umount -l "$MNT"; true' EXIT

export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
CREPO="$W/cairn-repo" RREPO="$W/restic-repo"
rm -rf "$CREPO" "$RREPO" "$W/cairn-cache" "$W/restic-cache" "$W/restore"
log "filling both repositories"
"$CAIRN" -q -r "$CREPO" --cache-dir "$W/cairn-cache" init >/dev/null
"$CAIRN" -q -r "$CREPO" --cache-dir "$W/cairn-cache" snapshot "$BIG" >/dev/null
"$CAIRN" -q -r "$CREPO" --cache-dir "$W/cairn-cache" snapshot "$DATA/usr" >/dev/null
restic -q -r "$RREPO" --cache-dir "$W/restic-cache" init >/dev/null
restic -q -r "$RREPO" --cache-dir "$W/restic-cache" backup "$BIG" >/dev/null
restic -q -r "$RREPO" --cache-dir "$W/restic-cache" backup "$DATA/usr" >/dev/null
CIDS=($("$CAIRN" -r "$CREPO" --cache-dir "$W/cairn-cache" --json snapshots | python3 -c 'import json,sys; print(" ".join(s["short_id"] for s in json.load(sys.stdin)))'))
RIDS=($(restic -r "$RREPO" --cache-dir "$W/restic-cache" --json snapshots | python3 -c 'import json,sys; print(" ".join(s["short_id"] for s in json.load(sys.stdin)))'))
[ "${#CIDS[@]}" = 2 ] && [ "${#RIDS[@]}" = 2 ] || die "expected two snapshots per repository"

# Offsets of the random reads, the same for both tools.
python3 -c "
import random; r = random.Random(42)
print('\n'.join(str(r.randrange(0, (1 << 30) - 4096)) for _ in range($READS)))" > "$W/offsets"

# start TOOL: mounts in the background under GNU time and waits until the tree is there.
start() {
  case "$1" in
    cairn) /usr/bin/time -o "$W/mount.time" -f "%M" "$CAIRN" -q -r "$CREPO" --cache-dir "$W/cairn-cache" mount "$MNT" 2>"$W/mount.err" & ;;
    restic) /usr/bin/time -o "$W/mount.time" -f "%M" restic -q -r "$RREPO" --cache-dir "$W/restic-cache" mount "$MNT" 2>"$W/mount.err" & ;;
  esac
  MOUNT_PID=$!
  for _ in $(seq 600); do
    [ -d "$MNT/ids" ] && return 0
    kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$W/mount.err" >&2; die "$1 mount exited"; }
    sleep 0.05
  done
  die "$1 mount did not come up"
}

# stop: unmounts, waits for the mount process and sets RSS to its peak RSS in MiB (not in a
# subshell: only this shell can wait for the mount).
stop() {
  umount "$MNT"
  wait "$MOUNT_PID" || true
  RSS=$(( $(tail -1 "$W/mount.time") / 1024 ))
}

# In-mount path of a snapshot's source directory: cairn ids/<id>/<path>, restic ids/<id>/<path>.
inside() { echo "$MNT/ids/$2${3}"; }

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
row() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$TSV"; }

for pass in $(seq "$REPS"); do
  for tool in cairn restic; do
    if [ "$tool" = cairn ]; then ids=("${CIDS[@]}"); else ids=("${RIDS[@]}"); fi
    file="$(inside "$tool" "${ids[0]}" "$BIG")/file"
    usr="$(inside "$tool" "${ids[1]}" "$DATA/usr")"
    log "pass $pass: $tool"

    start "$tool"
    t0=$(date +%s.%N); cat "$file" > /dev/null; t1=$(date +%s.%N)
    stop; row "$tool" cat-1GiB "$(elapsed "$t0" "$t1")" "$RSS"

    start "$tool"
    lat=$(python3 - "$file" "$W/offsets" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
offs = [int(l) for l in open(sys.argv[2])]
ts = []
for o in offs:
    t = time.perf_counter()
    assert len(os.pread(fd, 4096, o)) == 4096
    ts.append(time.perf_counter() - t)
ts.sort()
print(f"{ts[len(ts) // 2] * 1000:.3f}/{ts[int(len(ts) * 0.95)] * 1000:.3f}")
PY
)
    stop; row "$tool" random-4KiB "$lat" "$RSS"

    start "$tool"
    t0=$(date +%s.%N); n=$(find "$usr" | wc -l); t1=$(date +%s.%N)
    stop; row "$tool" find-usr "$(elapsed "$t0" "$t1")" "$RSS"
    echo "$n" > "$W/find.$tool"
  done
  rm -rf "$W/restore"
  t0=$(date +%s.%N)
  /usr/bin/time -o "$W/restore.time" -f "%M" "$CAIRN" -q -r "$CREPO" --cache-dir "$W/cairn-cache" restore "${CIDS[0]}" --target "$W/restore" >/dev/null
  t1=$(date +%s.%N)
  row cairn restore-1GiB "$(elapsed "$t0" "$t1")" "$(( $(cat "$W/restore.time") / 1024 ))"
  cmp "$W/restore$BIG/file" "$BIG/file" || die "the restored file differs"
  rm -rf "$W/restore"
done
# restic lists the snapshot's directory itself under ids/<id>/ the same way: counts must agree.
[ "$(cat "$W/find.cairn")" = "$(cat "$W/find.restic")" ] || die "find counts differ: cairn $(cat "$W/find.cairn"), restic $(cat "$W/find.restic")"

python3 - "$TSV" "$READS" "$(cat "$W/find.cairn")" <<'PY' | tee "$W/results.md"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
reads, entries = sys.argv[2], sys.argv[3]
def med(tool, step, i):
    vals = [r[2 + i] for r in rows if r[0] == tool and r[1] == step]
    if not vals:
        return None
    if "/" in vals[0]:
        return tuple(statistics.median(float(v.split("/")[k]) for v in vals) for k in (0, 1))
    return statistics.median(float(v) for v in vals)
print(f"| step | cairn | restic | restic / cairn | mount RSS cairn / restic (MiB) |")
print("|---|---|---|---|---|")
names = {"cat-1GiB": "cat of a 1 GiB file (s)",
         "random-4KiB": f"{reads} random 4 KiB reads, median / p95 latency (ms)",
         "find-usr": f"find over the usr snapshot, {entries} entries (s)"}
for step, label in names.items():
    c, r = med("cairn", step, 0), med("restic", step, 0)
    cr, rr = med("cairn", step, 1), med("restic", step, 1)
    if isinstance(c, tuple):
        print(f"| {label} | {c[0]:.3f} / {c[1]:.3f} | {r[0]:.3f} / {r[1]:.3f} | {r[0] / c[0]:.1f}× / {r[1] / c[1]:.1f}× | {cr:.0f} / {rr:.0f} |")
    else:
        print(f"| {label} | {c:.2f} | {r:.2f} | {r / c:.1f}× | {cr:.0f} / {rr:.0f} |")
c, cr = med("cairn", "restore-1GiB", 0), med("cairn", "restore-1GiB", 1)
cat = med("cairn", "cat-1GiB", 0)
print(f"| cairn restore of the 1 GiB file (s), for scale | {c:.2f} | | cat through the mount / restore: {cat / c:.2f} | restore RSS {cr:.0f} |")
PY
log "done: $W/results.md"
