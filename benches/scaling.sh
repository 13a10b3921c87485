#!/usr/bin/env bash
# scaling.sh — how snapshot time and peak RSS grow with the number of files and with the size
# of the repository's index.
#
#   benches/scaling.sh [WORKDIR]     (default /tmp/cairn-scaling; run by hand, not in CI;
#                                     needs ~6 GB and ~1.1 M free inodes)
#
# Files axis: trees of 10k, 100k and 1M small files (text, 100–1100 bytes, 1000 per folder);
#   for each, a first snapshot into a fresh repository and an unchanged one.
# Index axis: `cargo bench --bench index_scale -- DIR N` grows one repository whose index
#   names 10^6, 10^7, … (synthetic) blobs and prints cache lookups per second; at each step a
#   snapshot of 1000 new small files and of one new 256 MiB file, a structure check and a
#   prune --dry-run are timed, starting from an empty repository. INDEX_SIZES sets the steps
#   (each needs ~95 B of cache and ~45 B of index files per blob on disk).
# Wall time and peak RSS come from GNU time; the page cache is warm (the trees are read once
# before). Prints Markdown tables. Env FILE_COUNTS and INDEX_SIZES override the axes, ONLY
# (files, index) picks them; CAIRN_BIN and INDEX_SCALE_BIN (the built bench executable) run
# given binaries instead of building this checkout.
set -euo pipefail
W="${1:-/tmp/cairn-scaling}"
FILE_COUNTS="${FILE_COUNTS:-10000 100000 1000000}"
INDEX_SIZES="${INDEX_SIZES:-0 1000000 10000000 30000000 100000000}"
ONLY="${ONLY:-files index}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
(cd "$ROOT" && cargo build --release --locked -q)
CAIRN="${CAIRN_BIN:-$ROOT/target/release/cairn}"
mkdir -p "$W"
export CAIRN_PASSWORD=bench

# tree DIR COUNT [SEED] — COUNT small text files, 1000 per folder.
tree() {
  [ -d "$1" ] && return 0
  rm -rf "$1.tmp"
  python3 - "$1.tmp" "$2" "${3:-$2}" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(int(sys.argv[3]))
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 10))) for _ in range(5000)]
for i in range(n):
    d = os.path.join(root, f"d{i // 100000:02d}", f"s{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d)
    body = b" ".join(rnd.choice(words) for _ in range(rnd.randint(15, 160)))
    with open(os.path.join(d, f"f{i % 1000:03d}.txt"), "wb") as fh:
        fh.write(body + rnd.randbytes(8))
PY
  mv "$1.tmp" "$1"
}

# measure LABEL CMD… → a table row: label, wall s, peak RSS MiB
measure() {
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null 2>"$W/err.out" || { cat "$W/err.out" >&2; exit 1; }
  read -r wall kib < "$W/time.out"
  printf '| %s | %.2f | %d |\n' "$label" "$wall" "$((kib / 1024))"
}

if [[ " $ONLY " == *" files "* ]]; then
echo "### Files"
echo
echo "| run | wall s | peak RSS MiB |"
echo "|---|---:|---:|"
for n in $FILE_COUNTS; do
  tree "$W/files-$n" "$n"
  find "$W/files-$n" -type f -exec cat {} + >/dev/null
  rm -rf "$W/repo" "$W/cache"
  "$CAIRN" -r "$W/repo" --cache-dir "$W/cache" init -q
  measure "$n files, first" "$CAIRN" -r "$W/repo" --cache-dir "$W/cache" -q snapshot "$W/files-$n"
  measure "$n files, unchanged" "$CAIRN" -r "$W/repo" --cache-dir "$W/cache" -q snapshot "$W/files-$n"
done
rm -rf "$W/repo" "$W/cache"
fi

if [[ " $ONLY " == *" index "* ]]; then
echo
echo "### Index size"
echo
# One repository grown step by step (index_scale adds the blobs a step lacks); at each step a
# snapshot of 1000 new small files and of one new 256 MiB file (new content each step, so
# nothing dedups against the step before), a full structure check (which rebuilds the
# cache from every index file) and a prune's whole plan (--dry-run: every index file
# read, the snapshots' usage taken, nothing deleted). Figures also go to $W/index.tsv
# (blobs, run, wall s, peak RSS MiB) for benches/plot_scaling.py.
d="$W/index"
rm -rf "$d"; mkdir -p "$d"
TSV="$W/index.tsv"
printf 'blobs\trun\twall_s\trss_mib\n' > "$TSV"
echo "| index | run | wall s | peak RSS MiB |"
echo "|---|---|---:|---:|"
: > "$W/lookups.txt"
for n in $INDEX_SIZES; do
  if [ "$n" = 0 ]; then
    "$CAIRN" -r "$d/repo" --cache-dir "$d/cache" init -q
    echo 0 > "$d/blobs"
  else
    if [ -n "${INDEX_SCALE_BIN:-}" ]; then
      "$INDEX_SCALE_BIN" "$d" "$n" > "$W/lookups.step"
    else
      (cd "$ROOT" && cargo bench --bench index_scale -q -- "$d" "$n") > "$W/lookups.step"
    fi
    cat "$W/lookups.step" >> "$W/lookups.txt"
    head -1 "$W/lookups.step" | tr ' ' '\n' | sed -n 's/^\([a-z_]*\)=\(.*\)$/\1\t\2/p' |
      while IFS=$'\t' read -r k v; do [ "$k" = blobs ] || printf '%s\t%s\t%s\t\n' "$n" "$k" "$v" >> "$TSV"; done
  fi
  rm -rf "$W/new-1000" "$W/new-big"
  tree "$W/new-1000" 1000 "$n"
  mkdir -p "$W/new-big"; head -c $((256 << 20)) /dev/urandom > "$W/new-big/f"
  for what in new-1000 new-big check prune; do
    case $what in
      new-*) cmd=(snapshot "$W/$what") ;;
      check) cmd=(check) ;;
      prune) cmd=(prune --dry-run) ;;
    esac
    row=$(measure "$what" "$CAIRN" -r "$d/repo" --cache-dir "$d/cache" -q "${cmd[@]}")
    echo "| $n blobs | ${row#| }"
    IFS='|' read -r _ _ wall rss _ <<< "$row"
    printf '%s\t%s\t%s\t%s\n' "$n" "$what" "$(echo $wall)" "$(echo $rss)" >> "$TSV"
  done
done
echo
du -sb "$d/cache" "$d/repo/index" | awk '{ print $2 ": " $1 " bytes" }'
echo
echo "### Cache lookups (benches/index_scale.rs)"
echo
echo '```'
grep -v '^blobs=' "$W/lookups.txt"
echo '```'
fi
