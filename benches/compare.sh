#!/usr/bin/env bash
# compare.sh — cairn against restic and borg on the real-world corpora of benches/corpora.sh:
# wall time, CPU time, peak RSS and repository size for snapshots of a /usr copy (first,
# unchanged, 1 % modified), two consecutive pg_dump files, a full restore and a full data check.
#
#   benches/compare.sh [WORKDIR]    (default: /tmp/cairn-compare; run by hand as root, not in CI;
#                                    the corpus takes ~3 GB, repositories and a restore ~6 GB more)
#
# Env switches:
#   CAIRN_BIN=/path       use this cairn binary; otherwise `cargo build --release --locked` first
#   DATA=/dir             reuse a built corpus (usr/, usr.modlist, pgdump/dump1.sql, dump2.sql)
#                         instead of `corpora.sh build WORKDIR/data` (minutes the first time)
#   TOOLS="cairn restic"  which tools, in this order; default: cairn restic borg-zstd3 borg-lz4
#   CAIRN_INIT_ARGS=...   extra `cairn init` arguments, e.g. "--compression 1"
#   REPS=N                run every tool's whole sequence N times on fresh repositories and report
#                         the median per scenario and tool (default 1)
#   KEEP=1                keep the repositories and caches afterwards
#   RESTORE_DIR=/dir      restore there (default as root: a tmpfs mounted at WORKDIR/restore-tmpfs)
#
# Per tool, with a fresh repository and cache dir each: first = first snapshot of usr;
# unchanged = the same again; modified-1% = again after `corpora.sh modify` (undone by
# `restore-mod` right after, and by an EXIT trap on failure); pgdump-1, pgdump = dump1.sql, then
# dump2.sql, into a second repository; restore = the latest usr snapshot (the modified one) into an
# empty directory, then checked with diff -r against the corpus (exactly the modified files must
# differ, by an appended tail); check-read-data = verify all data of the usr repository;
# check-auth-only = cairn's check --read-data --authenticate-only (seals only), whose ratios are
# taken against the other tools' full check.
# restic runs with its defaults (0.14: repository v2, compression auto); borg-zstd3 with
# --compression zstd,3, borg-lz4 with borg's default (lz4); all encrypt (borg: repokey-blake2).
#
# Measured with GNU time (-f "%e %U %S %M"): wall s, CPU s = user + sys, peak RSS; repo MB is
# `du -sb` of the repository / 10^6 after the run (pgdump-1: after dump1, pgdump: after both).
# Everything is measured WARM: the corpus is read once before each tool's sequence and caches are
# never dropped, so the figures are CPU and format costs rather than disk speed (the repositories
# just written are usually in the page cache as well, for restore and check). cairn's exit code 3
# (snapshot written, some files unreadable) counts as success and is noted; any other failure
# prints the tool's stderr and stops, leaving the repositories in WORKDIR. Raw rows go to
# WORKDIR/results.tsv; the Markdown report is printed and saved as WORKDIR/results.md. Restore
# times are mostly file creation (sys time) and vary with the file system's state: use REPS=3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CORPORA="$ROOT/benches/corpora.sh"
W="${1:-/tmp/cairn-compare}"
TOOLS="${TOOLS:-cairn restic borg-zstd3 borg-lz4}"
REPS="${REPS:-1}"
KEEP="${KEEP:-0}"
read -ra CAIRN_INIT <<< "${CAIRN_INIT_ARGS:-}"
log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

for t in $TOOLS; do
  case "$t" in cairn|restic|borg-zstd3|borg-lz4) ;; *) die "unknown tool '$t' in TOOLS";; esac
done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"
if ! command -v restic >/dev/null || ! command -v borg >/dev/null || [ ! -x /usr/bin/time ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup time >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed for the report"
if [ -n "${CAIRN_BIN:-}" ]; then
  CAIRN="$CAIRN_BIN"
else
  (cd "$ROOT" && cargo build --release --locked -q)
  CAIRN="$ROOT/target/release/cairn"
fi
[ -x "$CAIRN" ] || die "no cairn binary at $CAIRN"

mkdir -p "$W"; W="$(cd "$W" && pwd -P)"
if [ -n "${DATA:-}" ]; then
  for p in usr usr.modlist pgdump/dump1.sql pgdump/dump2.sql; do
    [ -e "$DATA/$p" ] || die "DATA=$DATA has no $p (build it with benches/corpora.sh build DIR)"
  done
else
  DATA="$W/data"
  log "building the corpus in $DATA (corpora.sh build; idempotent)"
  "$CORPORA" build "$DATA" >&2
fi
DATA="$(cd "$DATA" && pwd -P)"   # the tools store absolute paths; restores recreate them
# The corpus is never left modified: undo a modification left by an earlier, killed run, and on exit.
"$CORPORA" restore-mod "$DATA"
trap '"$CORPORA" restore-mod "$DATA"; [ -z "${MOUNTED:-}" ] || umount "$W/restore-tmpfs"' EXIT
# Restores go to a tmpfs (as root): on a file system that has just seen millions of files
# created and deleted, inode allocation dominates and varies by 2x from run to run, which
# would measure the disk's history, not the tools. RESTORE_DIR=/dir overrides.
RESTORE_BASE="${RESTORE_DIR:-}"
if [ -z "$RESTORE_BASE" ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$W/restore-tmpfs"
  mountpoint -q "$W/restore-tmpfs" || { mount -t tmpfs -o size=8g tmpfs "$W/restore-tmpfs" && MOUNTED=1; }
  RESTORE_BASE="$W/restore-tmpfs"
fi
RESTORE_BASE="${RESTORE_BASE:-$W}"
trap 'exit 130' INT TERM

export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_DISPLAY_PASSPHRASE=no
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
TSV="$W/results.tsv" NOTES="$W/notes.tsv"
printf 'rep\ttool\tscenario\twall_s\tuser_s\tsys_s\tmaxrss_kib\trepo_bytes\trc\n' > "$TSV"
: > "$NOTES"
note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$NOTES"; log "note: $2 $3: $4"; }
# corpora.sh restore-mod copies the originals back with cp -a, which gives a file with several hard
# links a new inode: its other links keep the appended line, so later runs see a slightly different tree.
linked=0
while IFS= read -r f; do [ "$(stat -c %h "$DATA/usr/$f")" = 1 ] || linked=$((linked + 1)); done < "$DATA/usr.modlist"
[ "$linked" = 0 ] || note - corpus modify "$linked file(s) of usr.modlist have hard links, which restore-mod does not restore exactly"

# measure REP TOOL SCENARIO REPO|- CMD... — time CMD, append a row to results.tsv (with the
# repository's size after the run unless REPO is -). Stops on failure, except cairn's exit 3.
measure() {
  local rep="$1" tool="$2" scen="$3" repo="$4"; shift 4
  local rc=0 wall user sys rss size=""
  log "$tool: $scen (rep $rep)"
  /usr/bin/time -f '%e %U %S %M' -o "$W/time.out" "$@" >"$W/cmd.out" 2>"$W/cmd.err" || rc=$?
  if [ "$rc" != 0 ]; then
    if [ "$tool" = cairn ] && [ "$rc" = 3 ] && [ "$repo" != - ]; then   # a snapshot run
      note "$rep" "$tool" "$scen" "exit 3 (some files skipped): $(head -c 300 "$W/cmd.err" | tr '\n\t' '  ')"
    else
      echo "FAILED (exit $rc): $tool $scen: $*" >&2
      cat "$W/cmd.out" "$W/cmd.err" >&2
      exit 1
    fi
  fi
  read -r wall user sys rss < <(tail -n 1 "$W/time.out")   # time prepends a line on non-zero exits
  [ "$repo" = - ] || size="$(du -sb "$repo" | cut -f1)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$tool" "$scen" "$wall" "$user" "$sys" "$rss" "$size" "$rc" >> "$TSV"
}

init_repo() {   # TOOL REPO (not measured)
  case "$1" in
    cairn) "$CAIRN" -r "$2" -q init "${CAIRN_INIT[@]}" >/dev/null;;
    restic) restic -r "$2" init -q >/dev/null;;
    borg-*) borg init -e repokey-blake2 "$2" >/dev/null 2>&1;;
  esac
}
snapshot_cmd() {   # TOOL REPO ARCHIVE-NAME PATH → CMD
  case "$1" in
    cairn) CMD=("$CAIRN" -r "$2" -q snapshot "$4");;
    restic) CMD=(restic -r "$2" -q backup "$4");;
    borg-zstd3) CMD=(borg create --compression "zstd,3" "$2::$3" "$4");;
    borg-lz4) CMD=(borg create "$2::$3" "$4");;
  esac
}
restore_cmd() {   # TOOL REPO LAST-ARCHIVE TARGET → CMD (borg extract writes into the current dir)
  case "$1" in
    cairn) CMD=("$CAIRN" -r "$2" -q restore latest --target "$4");;
    restic) CMD=(restic -r "$2" -q restore latest --target "$4");;
    borg-*) CMD=(env -C "$4" borg extract "$2::$3");;
  esac
}
check_cmd() {   # TOOL REPO → CMD
  case "$1" in
    cairn) CMD=("$CAIRN" -r "$2" -q check --read-data);;
    restic) CMD=(restic -r "$2" -q check --read-data);;
    borg-*) CMD=(borg check --verify-data "$2");;
  esac
}

# verify_restore REP TOOL TARGET — the restored usr tree (at TARGET/$DATA/usr for all three tools)
# must equal the corpus except for the modified files (the modlist and their hard links), which
# must be the original content plus an appended tail. Mode and mtime differences are only noted.
verify_restore() {
  local got="$3/${DATA#/}/usr" out
  [ -d "$got" ] || { echo "FAILED: $2 restore: no $got; the target holds:" >&2; find "$3" -maxdepth 4 >&2; exit 1; }
  out="$(python3 - "$DATA/usr" "$got" "$DATA/usr.modlist" <<'PY'
import os, stat, subprocess, sys
orig, got, modlist = sys.argv[1:4]
mod = [l.rstrip("\n") for l in open(modlist) if l.strip()]
inodes = {(st.st_dev, st.st_ino) for st in (os.lstat(os.path.join(orig, f)) for f in mod)}
expected, regular = set(mod), []
for dp, _, fns in os.walk(orig):
    for f in fns:
        p = os.path.join(dp, f); st = os.lstat(p); rel = os.path.relpath(p, orig)
        if stat.S_ISREG(st.st_mode):
            regular.append((rel, st))
            if st.st_nlink > 1 and (st.st_dev, st.st_ino) in inodes:
                expected.add(rel)
d = subprocess.run(["diff", "-r", "-q", "--no-dereference", orig, got], capture_output=True, text=True)
if d.returncode > 1:
    sys.exit("diff failed: " + d.stderr[:2000])
pre, mid = "Files " + orig + "/", " and " + got + "/"
differ, other = set(), []
for line in d.stdout.splitlines():
    if line.startswith(pre) and line.endswith(" differ") and mid in line:
        differ.add(line[len(pre):line.index(mid)])
    else:
        other.append(line)
if other or differ != expected:
    sys.exit("restored tree does not match:\n" + "\n".join(
        other[:20] + ["unexpectedly differ: " + p for p in sorted(differ - expected)[:20]]
        + ["unexpectedly equal (modification missing): " + p for p in sorted(expected - differ)[:20]]))
for rel in sorted(expected):
    a = open(os.path.join(orig, rel), "rb").read(); b = open(os.path.join(got, rel), "rb").read()
    if not (len(b) > len(a) and b.startswith(a)):
        sys.exit("modified file is not original + appended tail: " + rel)
bad_mode = bad_mtime = 0
for rel, st in regular:
    if rel in expected:
        continue
    g = os.lstat(os.path.join(got, rel))
    bad_mode += stat.S_IMODE(g.st_mode) != stat.S_IMODE(st.st_mode)
    bad_mtime += int(g.st_mtime) != int(st.st_mtime)
print(f"{len(regular)} files match, {len(expected)} modified as expected"
      + (f"; {bad_mode} with another mode" if bad_mode else "")
      + (f"; {bad_mtime} with another mtime" if bad_mtime else ""))
PY
)" || { echo "FAILED: $2 restore verification" >&2; exit 1; }
  log "$2 restore verified: $out"
  case "$out" in *"another m"*) note "$1" "$2" restore "$out";; esac
}

# Reads every corpus file so that all tools start with a warm page cache (cheap when it is warm).
warm() { find "$DATA/usr" "$DATA/pgdump" -type f -exec cat {} + >/dev/null; }

run_tool() {   # REP TOOL — the whole sequence on fresh repositories
  local rep="$1" t="$2" R="$W/repo-$2" P="$W/repo-$2-pgdump" T="$RESTORE_BASE/restore-$2"
  rm -rf "$R" "$P" "$T" "$W/cache-$t"
  export CAIRN_CACHE_DIR="$W/cache-$t" RESTIC_CACHE_DIR="$W/cache-$t" BORG_BASE_DIR="$W/cache-$t"
  init_repo "$t" "$R"; init_repo "$t" "$P"
  warm
  snapshot_cmd "$t" "$R" usr-1 "$DATA/usr"; measure "$rep" "$t" first "$R" "${CMD[@]}"
  snapshot_cmd "$t" "$R" usr-2 "$DATA/usr"; measure "$rep" "$t" unchanged "$R" "${CMD[@]}"
  "$CORPORA" modify "$DATA"
  snapshot_cmd "$t" "$R" usr-3 "$DATA/usr"; measure "$rep" "$t" modified-1% "$R" "${CMD[@]}"
  "$CORPORA" restore-mod "$DATA"
  snapshot_cmd "$t" "$P" pg-1 "$DATA/pgdump/dump1.sql"; measure "$rep" "$t" pgdump-1 "$P" "${CMD[@]}"
  snapshot_cmd "$t" "$P" pg-2 "$DATA/pgdump/dump2.sql"; measure "$rep" "$t" pgdump "$P" "${CMD[@]}"
  mkdir -p "$T"
  restore_cmd "$t" "$R" usr-3 "$T"; measure "$rep" "$t" restore - "${CMD[@]}"
  verify_restore "$rep" "$t" "$T"
  rm -rf "$T"
  check_cmd "$t" "$R"; measure "$rep" "$t" check-read-data - "${CMD[@]}"
  # cairn's cheaper proof (seals only), set against the others' full check.
  [ "$t" != cairn ] || measure "$rep" "$t" check-auth-only - "$CAIRN" -r "$R" -q check --read-data --authenticate-only
}

log "corpus $DATA; tools: $TOOLS; reps: $REPS; work dir $W"
for rep in $(seq "$REPS"); do
  for t in $TOOLS; do run_tool "$rep" "$t"; done
done

# Report: header, then the tables computed from results.tsv.
cairn_ver="$("$CAIRN" --version 2>/dev/null || echo "cairn (no --version)")"
git_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
[ -z "$git_rev" ] || { git -C "$ROOT" diff --quiet HEAD 2>/dev/null || git_rev="$git_rev-dirty"; cairn_ver="$cairn_ver (tree $git_rev)"; }
{
  echo "## cairn vs restic vs borg"
  echo
  echo "$(date -u '+%F %H:%M UTC') · $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')) ·" \
    "Linux $(uname -r) · $cairn_ver · $(restic version | cut -d' ' -f1-2) · $(borg --version) ·" \
    "warm page cache · REPS=$REPS$( [ "$REPS" = 1 ] || echo ' (medians)')$( [ -z "${CAIRN_INIT_ARGS:-}" ] || echo " · CAIRN_INIT_ARGS=$CAIRN_INIT_ARGS")"
  echo
  echo '```'
  "$CORPORA" describe "$DATA"
  echo '```'
  echo
  python3 - "$TSV" "$NOTES" "$TOOLS" <<'PY'
import csv, statistics, sys
tsv, notes, tools = sys.argv[1], sys.argv[2], sys.argv[3].split()
scenarios = ["first", "unchanged", "modified-1%", "pgdump-1", "pgdump", "restore", "check-read-data",
             "check-auth-only"]
# cairn-only rows, set against the others' row of the same work.
against = {"check-auth-only": "check-read-data"}
runs = {}
for r in csv.DictReader(open(tsv), delimiter="\t"):
    runs.setdefault((r["scenario"], r["tool"]), []).append(r)
def med(sc, tool, f):
    rs = runs.get((sc, tool))
    if not rs or rs[0]["repo_bytes" if f == "repo" else "wall_s"] == "":
        return None
    return statistics.median(f(r) if callable(f) else
                             int(r["repo_bytes"]) if f == "repo" else float(r[f]) for r in rs)
cpu = lambda r: float(r["user_s"]) + float(r["sys_s"])
rss = lambda r: int(r["maxrss_kib"]) / 1024
dash = "–"
print("| scenario | tool | wall s | CPU s | peak RSS MiB | repo MB |")
print("|---|---|---:|---:|---:|---:|")
for sc in scenarios:
    for t in tools:
        if (sc, t) not in runs:
            continue
        repo = med(sc, t, "repo")
        print(f"| {sc} | {t} | {med(sc, t, 'wall_s'):.2f} | {med(sc, t, cpu):.2f} | {med(sc, t, rss):.0f} | "
              + (f"{repo / 1e6:.1f}" if repo is not None else dash) + " |")
def ratio(sc, other, f):
    a, b = med(sc, "cairn", f), med(against.get(sc, sc), other, f)
    return f"{a / b:.2f}×" if a is not None and b else dash
print()
print("| scenario | cairn/restic wall | cairn/borg-zstd3 wall | cairn/borg-lz4 wall | cairn/restic RSS | cairn/restic repo size |")
print("|---|---:|---:|---:|---:|---:|")
for sc in scenarios:
    if not any(k[0] == sc for k in runs):
        continue
    print(f"| {sc} | {ratio(sc, 'restic', 'wall_s')} | {ratio(sc, 'borg-zstd3', 'wall_s')} | "
          f"{ratio(sc, 'borg-lz4', 'wall_s')} | {ratio(sc, 'restic', rss)} | {ratio(sc, 'restic', 'repo')} |")
lines = [l.rstrip("\n").split("\t") for l in open(notes) if l.strip()]
if lines:
    print()
    print("Notes:")
    for rep, tool, sc, msg in lines:
        print(f"- {tool}, {sc}" + ("" if rep == "-" else f" (rep {rep})") + f": {msg}")
PY
} > "$W/results.md"
cat "$W/results.md"

if [ "$KEEP" != 1 ]; then
  for t in $TOOLS; do rm -rf "$W/repo-$t" "$W/repo-$t-pgdump" "$W/cache-$t" "$RESTORE_BASE/restore-$t"; done
  rm -f "$W/time.out" "$W/cmd.out" "$W/cmd.err"
fi
