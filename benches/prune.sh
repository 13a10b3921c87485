#!/usr/bin/env bash
# prune.sh — forget and prune on a long snapshot history, cairn against restic on the same one.
#
#   benches/prune.sh [WORKDIR]      (default /tmp/cairn-prune; run by hand, not in CI)
#
# Env: SNAPS (history length, default 2000), KEEP_LAST (kept by forget, default 100),
#      FILES (files in the source, default 200), CHANGE (files rewritten before each snapshot,
#      default 2), SIZE (bytes per file, default 65536), CAIRN_BIN (else a release build),
#      HISTORY=reuse (measure again on the history a previous run kept in WORKDIR/pristine).
#
# The source holds FILES files of SIZE random bytes; before each snapshot CHANGE of them (chosen
# by the snapshot number) get new random content, then cairn and restic each take a snapshot of
# the same state, so both repositories hold the same history. Then, per tool, timed with GNU
# time (wall s, CPU s, peak RSS): `forget --keep-last KEEP_LAST`, then `prune` with defaults
# (both tolerate 5 % unused space), then `check --read-data` to show nothing was lost.
# Repository size is `du -sb` before and after prune. The report is printed and saved as
# WORKDIR/prune.md; raw rows are in WORKDIR/prune.tsv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="${1:-/tmp/cairn-prune}"
SNAPS="${SNAPS:-2000}"
KEEP_LAST="${KEEP_LAST:-100}"
FILES="${FILES:-200}"
CHANGE="${CHANGE:-2}"
SIZE="${SIZE:-65536}"
log() { echo "[prune $(date +%H:%M:%S)] $*" >&2; }
. "$ROOT/benches/lib.sh"
need_tools prune.sh
cairn_bin
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
export CAIRN_CACHE_DIR="$W/cairn-cache" RESTIC_CACHE_DIR="$W/restic-cache"
C=("$CAIRN" -r "$W/cairn-repo" -q)
R=(restic -r "$W/restic-repo" -q)
if [ "${HISTORY:-}" = reuse ]; then
  [ -d "$W/pristine/cairn-repo" ] || { echo "prune.sh: no pristine history in $W" >&2; exit 1; }
  log "reusing the history in $W/pristine"
  rm -rf "$W/cairn-repo" "$W/restic-repo" "$W/cairn-cache" "$W/restic-cache"
  cp -a "$W/pristine/cairn-repo" "$W/pristine/restic-repo" "$W/"
  SNAPS=$(ls "$W/cairn-repo/snapshots" | wc -l)
else
rm -rf "$W"
mkdir -p "$W/src"
"${C[@]}" init
"${R[@]}" init >/dev/null
for ((f = 0; f < FILES; f++)); do head -c "$SIZE" /dev/urandom > "$W/src/f$f"; done
log "history of $SNAPS snapshots ($FILES files, $CHANGE rewritten each time)"
for ((i = 0; i < SNAPS; i++)); do
  for ((c = 0; c < CHANGE; c++)); do
    head -c "$SIZE" /dev/urandom > "$W/src/f$(( (i * CHANGE + c) % FILES ))"
  done
  "${C[@]}" snapshot "$W/src" >/dev/null
  "${R[@]}" backup "$W/src" >/dev/null
  (( i % 200 == 0 )) && log "snapshot $i"
done
fi
# A pristine copy of the history, so that a re-run with HISTORY=reuse measures again without
# rebuilding it (minutes).
if [ "${HISTORY:-}" != reuse ]; then
  rm -rf "$W/pristine" && mkdir -p "$W/pristine"
  cp -a "$W/cairn-repo" "$W/restic-repo" "$W/pristine/"
fi
TSV="$W/prune.tsv"
: > "$TSV"
size() { du -sb "$1" | cut -f1; }
for tool in cairn restic; do
  if [ "$tool" = cairn ]; then X=("${C[@]}"); repo="$W/cairn-repo"; else X=("${R[@]}"); repo="$W/restic-repo"; fi
  before=$(size "$repo")
  log "$tool: forget, prune, check"
  measure "$tool" forget "${X[@]}" forget --keep-last "$KEEP_LAST"
  measure "$tool" prune "${X[@]}" prune
  after=$(size "$repo")
  printf '%s\tsize\t%s\t%s\t\n' "$tool" "$before" "$after" >> "$TSV"
  measure "$tool" check-read-data "${X[@]}" check --read-data
done
python3 - "$TSV" "$SNAPS" "$KEEP_LAST" <<'PY' | tee "$W/prune.md"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
d = {(r[0], r[1]): r[2:] for r in rows}
print(f"History: {sys.argv[2]} snapshots; forget --keep-last {sys.argv[3]}; then prune.\n")
print("| step | cairn wall s | restic wall s | cairn / restic | cairn CPU s | restic CPU s | cairn RSS MiB | restic RSS MiB |")
print("|---|---|---|---|---|---|---|---|")
for step in ("forget", "prune", "check-read-data"):
    c, r = d[("cairn", step)], d[("restic", step)]
    ratio = float(c[0]) / max(float(r[0]), 1e-9)
    print(f"| {step} | {c[0]} | {r[0]} | {ratio:.2f}× | {c[1]} | {r[1]} | {c[2]} | {r[2]} |")
for t in ("cairn", "restic"):
    b, a = d[(t, "size")][:2]
    print(f"\n{t}: repository {int(b)/1e6:.1f} MB before prune, {int(a)/1e6:.1f} MB after")
PY
