#!/usr/bin/env bash
# memory.sh — peak RSS of `cairn snapshot` as the input and the repository grow, with restic
# and borg on the same data in the same run for reference.
#
#   benches/memory.sh [WORKDIR]     (default: /tmp/cairn-memory-bench; needs ~20 GB free)
#
# Scenarios: a tree of 200,000 small files; one 4 GiB file; a one-file snapshot into an empty
# repository and into the repository holding both of the above (the repository-size axis).
# Prints a Markdown table of wall time and peak RSS (GNU time's %M). Run by hand, not in CI.
set -euo pipefail
W="${1:-/tmp/cairn-memory-bench}"
FILES="${FILES:-200000}"
BIG_GIB="${BIG_GIB:-4}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
command -v restic >/dev/null && command -v borg >/dev/null && [ -x /usr/bin/time ] || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup time >/dev/null; }
(cd "$ROOT" && cargo build --release --locked -q)
CAIRN="$ROOT/target/release/cairn"
mkdir -p "$W"
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench CAIRN_CACHE_DIR="$W/cache"
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export RESTIC_CACHE_DIR="$W/restic-cache" BORG_BASE_DIR="$W/borg-base"

if [ ! -d "$W/many" ]; then
  echo "creating $FILES small files" >&2
  python3 - "$W/many.tmp" "$FILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 10))) for _ in range(5000)]
for d in range(n // 1000):
    dd = os.path.join(root, f"d{d // 20:03d}", f"s{d:04d}")
    os.makedirs(dd)
    for f in range(1000):
        body = b" ".join(rnd.choice(words) for _ in range(rnd.randint(50, 600)))
        with open(os.path.join(dd, f"f{f:04d}.txt"), "wb") as fh:
            fh.write(body + rnd.randbytes(16))
PY
  mv "$W/many.tmp" "$W/many"
fi
if [ ! -f "$W/big/big.bin" ]; then
  echo "creating a ${BIG_GIB} GiB file" >&2
  mkdir -p "$W/big"
  head -c "$((BIG_GIB << 30))" /dev/urandom > "$W/big/big.bin.tmp" && mv "$W/big/big.bin.tmp" "$W/big/big.bin"
fi
mkdir -p "$W/one" && echo "one file" > "$W/one/file"

# measure NAME CMD... → "NAME|wall s|peak RSS MiB"
measure() {
  local name="$1"; shift
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null 2>"$W/err.out" || { rc=$?; [ $rc = 3 ] || { cat "$W/err.out" >&2; exit $rc; }; }
  read -r wall kib < "$W/time.out"
  printf '| %s | %.1f | %d |\n' "$name" "$wall" "$((kib / 1024))"
}

rm -rf "$W/cairn-repo" "$W/restic-repo" "$W/borg-repo" "$W/cache" "$W/restic-cache" "$W/borg-base"
"$CAIRN" -r "$W/cairn-repo" init -q
restic -r "$W/restic-repo" init -q
borg init -e repokey-blake2 "$W/borg-repo" >/dev/null 2>&1

echo "| run | wall s | peak RSS MiB |"
echo "|---|---:|---:|"
measure "cairn: 1 file, empty repository" "$CAIRN" -r "$W/cairn-repo" snapshot "$W/one"
measure "cairn: $FILES files, first snapshot" "$CAIRN" -r "$W/cairn-repo" snapshot "$W/many"
measure "cairn: $FILES files, unchanged" "$CAIRN" -r "$W/cairn-repo" snapshot "$W/many"
measure "cairn: ${BIG_GIB} GiB file" "$CAIRN" -r "$W/cairn-repo" snapshot "$W/big"
echo "one more" >> "$W/one/file"
measure "cairn: 1 file, repository holding all of the above" "$CAIRN" -r "$W/cairn-repo" snapshot "$W/one"
BIGSNAP=$("$CAIRN" -r "$W/cairn-repo" --json snapshots --path "$W/big" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
measure "cairn: restore ${BIG_GIB} GiB file" "$CAIRN" -r "$W/cairn-repo" restore "$BIGSNAP" --target "$W/restore-cairn"
rm -rf "$W/restore-cairn"
echo "one file" > "$W/one/file"
measure "restic: 1 file, empty repository" restic -r "$W/restic-repo" backup -q "$W/one"
measure "restic: $FILES files, first backup" restic -r "$W/restic-repo" backup -q "$W/many"
measure "restic: $FILES files, unchanged" restic -r "$W/restic-repo" backup -q "$W/many"
measure "restic: ${BIG_GIB} GiB file" restic -r "$W/restic-repo" backup -q "$W/big"
echo "one more" >> "$W/one/file"
measure "restic: 1 file, repository holding all of the above" restic -r "$W/restic-repo" backup -q "$W/one"
echo "one file" > "$W/one/file"
measure "borg: $FILES files, first backup" borg create --compression zstd,3 "$W/borg-repo::many1" "$W/many"
measure "borg: $FILES files, unchanged" borg create --compression zstd,3 "$W/borg-repo::many2" "$W/many"
measure "borg: ${BIG_GIB} GiB file" borg create --compression zstd,3 "$W/borg-repo::big" "$W/big"
measure "borg: 1 file, repository holding all of the above" borg create --compression zstd,3 "$W/borg-repo::one" "$W/one"
echo
echo "cairn $("$CAIRN" --version | cut -d' ' -f2), $(restic version | cut -d' ' -f1-2), $(borg --version); $(nproc) cores; $(date -u +%F)"
