#!/usr/bin/env bash
# scaling.sh — how snapshot time and peak RSS grow with the number of files and with the size
# of the repository's index.
#
#   benches/scaling.sh [WORKDIR]     (default /tmp/cairn-scaling; run by hand, not in CI;
#                                     needs ~6 GB and ~1.1 M free inodes)
#
# Files axis: trees of 10k, 100k and 1M small files (text, 100–1100 bytes, 1000 per folder);
#   for each, a first snapshot into a fresh repository and an unchanged one.
# Index axis: `cargo bench --bench index_scale -- DIR N` builds repositories whose index names
#   10^6 and 10^7 (synthetic) blobs and prints cache lookups per second; then a snapshot of
#   1000 new small files and of one 256 MiB new file is timed into each, against the same into
#   an empty repository.
# Wall time and peak RSS come from GNU time; the page cache is warm (the trees are read once
# before). Prints Markdown tables. Env FILE_COUNTS and INDEX_SIZES override the axes.
set -euo pipefail
W="${1:-/tmp/cairn-scaling}"
FILE_COUNTS="${FILE_COUNTS:-10000 100000 1000000}"
INDEX_SIZES="${INDEX_SIZES:-0 1000000 10000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
(cd "$ROOT" && cargo build --release --locked -q)
CAIRN="${CAIRN_BIN:-$ROOT/target/release/cairn}"
mkdir -p "$W"
export CAIRN_PASSWORD=bench

# tree DIR COUNT — COUNT small text files, 1000 per folder.
tree() {
  [ -d "$1" ] && return 0
  rm -rf "$1.tmp"
  python3 - "$1.tmp" "$2" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(n)
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

tree "$W/new-1000" 1000
mkdir -p "$W/new-big"
[ -f "$W/new-big/f" ] || { head -c $((256 << 20)) /dev/urandom > "$W/new-big/f.tmp" && mv "$W/new-big/f.tmp" "$W/new-big/f"; }
echo
echo "### Index size"
echo
echo "| index | run | wall s | peak RSS MiB |"
: > "$W/lookups.txt"
echo "|---|---|---:|---:|"
for n in $INDEX_SIZES; do
  d="$W/index-$n"
  rm -rf "$d"; mkdir -p "$d"
  if [ "$n" = 0 ]; then
    "$CAIRN" -r "$d/repo" --cache-dir "$d/cache" init -q
  else
    (cd "$ROOT" && cargo bench --bench index_scale -q -- "$d" "$n") >> "$W/lookups.txt"
  fi
  for what in new-1000 new-big; do
    row=$(measure "$what" "$CAIRN" -r "$d/repo" --cache-dir "$d/cache" -q snapshot "$W/$what")
    echo "| $n blobs | ${row#| }"
  done
  rm -rf "$d"
done
echo
echo "### Cache lookups (benches/index_scale.rs)"
echo
echo '```'
cat "$W/lookups.txt"
echo '```'
