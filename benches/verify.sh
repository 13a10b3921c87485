#!/usr/bin/env bash
# verify.sh — the cost of proving data: cairn against restic on the same repository contents.
#
#   benches/verify.sh [WORKDIR]     (default /tmp/cairn-verify; run by hand, not in CI)
#
# Env: SIZE_MB (source size, default 1024: half random, half text: the man pages
#      decompressed, every line prefixed by its round so no two rounds share a chunk), REPS
#      (median of this many runs per step, default 3), DAYS (daily runs for the coverage
#      count, default 30), CAIRN_BIN (else a release build).
#
# Both tools snapshot the same source, then, timed with GNU time (wall s, CPU s, peak RSS):
#   full        check --read-data (both)
#   daily-4%    cairn: check --read-data --max-age 30d --read-data-subset 4% on a fresh ledger;
#               restic: check --read-data-subset 4% (its own random choice of packs)
#   repair      cairn: repair snapshots --read-data --dry-run (reads every pack to find damaged
#               blobs); restic has no equivalent that reads data, so its full check is the
#               comparison (the cheapest way it has to find them)
# Coverage: DAYS successive `--max-age 30d --read-data-subset 4%` runs on one fresh ledger
# (as many days, with no proof yet old enough to be due again), reporting after how many runs
# every pack was proven. restic's random 4 % subsets leave a given pack unread after 30 runs
# with probability 0.96^30 ≈ 29 %.
# The page cache is warm for both tools (each step runs once untimed first).
# The report is printed and saved as WORKDIR/verify.md; raw rows are in WORKDIR/verify.tsv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${1:-/tmp/cairn-verify}"
SIZE_MB="${SIZE_MB:-1024}"
REPS="${REPS:-3}"
DAYS="${DAYS:-30}"
log() { echo "[verify $(date +%H:%M:%S)] $*" >&2; }
. "$ROOT/benches/lib.sh"
need_tools verify.sh
[ "$REPS" -ge 1 ] || { echo "verify.sh: REPS must be at least 1" >&2; exit 1; }
# WORKDIR is wiped: only one this script made (it leaves a marker) or an empty one.
if [ -e "$W" ] && [ ! -e "$W/.cairn-verify" ] && [ -n "$(ls -A "$W" 2>/dev/null)" ]; then
  echo "verify.sh: $W exists and was not made by verify.sh; give another WORKDIR" >&2; exit 1
fi
cairn_bin
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
export CAIRN_CACHE_DIR="$W/cairn-cache" RESTIC_CACHE_DIR="$W/restic-cache"
C=("$CAIRN" -r "$W/cairn-repo" -q)
R=(restic -r "$W/restic-repo" -q)
rm -rf "$W"
mkdir -p "$W/src/random" "$W/src/text"
touch "$W/.cairn-verify"
log "source: $SIZE_MB MB"
half=$((SIZE_MB / 2))
for ((i = 0; i < half / 16; i++)); do head -c $((16 << 20)) /dev/urandom > "$W/src/random/r$i"; done
# Text: the man pages decompressed, round after round with every line prefixed by its round,
# in files of 8 MB, until half the size is reached.
round=0
while [ "$(du -sm "$W/src/text" | cut -f1)" -lt "$half" ] && [ "$round" -lt 100 ]; do
  mkdir -p "$W/src/text/$round"
  find /usr/share/man -type f -name '*.gz' -print0 | xargs -0 zcat 2>/dev/null |
    sed "s/^/$round /" | head -c $(((half - $(du -sm "$W/src/text" | cut -f1)) << 20)) |
    split -b 8M - "$W/src/text/$round/part-" || true  # head closing the pipe early is fine
  [ -n "$(ls -A "$W/src/text/$round")" ] || { echo "verify.sh: no man pages to make text from" >&2; exit 1; }
  round=$((round + 1))
done
"${C[@]}" init
"${R[@]}" init >/dev/null
log "snapshots"
"${C[@]}" snapshot "$W/src" >/dev/null
"${R[@]}" backup "$W/src" >/dev/null
TSV="$W/verify.tsv"
: > "$TSV"
fresh_ledger() { rm -rf "$W/cairn-cache"; "${C[@]}" snapshots >/dev/null; }
for ((rep = 0; rep <= REPS; rep++)); do
  # rep 0 warms the page cache and is not kept.
  log "round $rep of $REPS"
  measure cairn full "${C[@]}" check --read-data
  measure restic full "${R[@]}" check --read-data
  fresh_ledger
  measure cairn daily-4% "${C[@]}" check --read-data --max-age 30d --read-data-subset 4%
  measure restic daily-4% "${R[@]}" check --read-data-subset 4%
  measure cairn repair "${C[@]}" repair snapshots --read-data --dry-run
  if [ "$rep" = 0 ]; then : > "$TSV"; fi
done
# Coverage: successive daily runs on one ledger until every pack is proven.
fresh_ledger
packs=$(find "$W/cairn-repo/packs" -type f | wc -l)
covered=""
for ((d = 1; d <= DAYS; d++)); do
  out=$("$CAIRN" -r "$W/cairn-repo" --json check --read-data --max-age 30d --read-data-subset 4%)
  unproven=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["packs_unproven"])')
  if [ "$unproven" = 0 ] && [ -z "$covered" ]; then covered=$d; fi
done
printf 'cairn\tcoverage\t%s\t%s\t%s\n' "$packs" "${covered:-never}" "$DAYS" >> "$TSV"
du_c=$(du -sb "$W/cairn-repo" | cut -f1); du_r=$(du -sb "$W/restic-repo" | cut -f1)
python3 - "$TSV" "$SIZE_MB" "$REPS" "$du_c" "$du_r" <<'PY' | tee "$W/verify.md"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
runs = {}
cov = None
for r in rows:
    if r[1] == "coverage":
        cov = r[2:]
        continue
    runs.setdefault((r[0], r[1]), []).append([float(x) for x in r[2:]])
med = lambda k, i: statistics.median(v[i] for v in runs[k])
print(f"Source {sys.argv[2]} MB; repositories: cairn {int(sys.argv[4])/1e6:.0f} MB, "
      f"restic {int(sys.argv[5])/1e6:.0f} MB; median of {sys.argv[3]} runs, warm page cache.\n")
print("| step | cairn wall s | restic wall s | cairn / restic | cairn CPU s | restic CPU s | cairn RSS MiB | restic RSS MiB |")
print("|---|---|---|---|---|---|---|---|")
for step, other in (("full", "full"), ("daily-4%", "daily-4%"), ("repair", "full")):
    c, r = ("cairn", step), ("restic", other)
    label = step if step == other else f"{step} (restic: check --read-data)"
    print(f"| {label} | {med(c,0):.2f} | {med(r,0):.2f} | {med(c,0)/max(med(r,0),1e-9):.2f}× | "
          f"{med(c,1):.2f} | {med(r,1):.2f} | {med(c,2):.0f} | {med(r,2):.0f} |")
if cov and cov[1] == "never":
    print(f"\ncairn daily `--max-age 30d --read-data-subset 4%`: {cov[0]} packs, not all proven "
          f"within {cov[2]} runs.")
elif cov:
    print(f"\ncairn daily `--max-age 30d --read-data-subset 4%`: all {cov[0]} packs proven after "
          f"{cov[1]} of {cov[2]} runs.")
PY
