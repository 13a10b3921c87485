#!/usr/bin/env bash
# server.sh — `cairn serve` under load: latency of GET /v1/status while a backup job runs, and
# the service's memory idle and during the backup.
#
#   benches/server.sh [WORKDIR]   (default: /tmp/cairn-server; by hand, not in CI)
#
# Env switches:
#   CAIRN_BIN=/path   use this cairn binary; otherwise `cargo build --release --locked` first
#   DATA=/dir         reuse a built corpus (DATA/usr) instead of `corpora.sh build-usr WORKDIR/data`
#   ROUNDS=5          bursts of 50 concurrent status requests during the backup
#
# A site with one component (the usr corpus, ~2 GB, ~60k files) in a fresh local repository;
# `cairn serve` on 127.0.0.1. After start, VmRSS is read once the service is idle; then a
# backup job of the component starts, VmRSS is sampled every 100 ms until it ends (the peak
# is reported), and ROUNDS bursts of 50 concurrent `curl` GET /v1/status are fired while it
# runs. Latency is curl's time_total per request; p50 and p99 over every request of every
# burst. The report is printed and saved as WORKDIR/results.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
W="${1:-/tmp/cairn-server}"
ROUNDS="${ROUNDS:-5}"
log() { echo "[server $(date +%H:%M:%S)] $*" >&2; }
die() { echo "server.sh: $*" >&2; exit 1; }
command -v curl >/dev/null || die "curl is needed"
cairn_bin
mkdir -p "$W"; W="$(cd "$W" && pwd -P)"
if [ -n "${DATA:-}" ]; then SRC="$DATA/usr"; else
  [ -d "$W/data/usr" ] || "$ROOT/benches/corpora.sh" build-usr "$W/data" >&2
  SRC="$W/data/usr"
fi
[ -d "$SRC" ] || die "no corpus at $SRC"
S="$W/site"; rm -rf "$S"; mkdir -p "$S"
echo "bench password" > "$S/pw"
OP="operator-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat > "$S/cairn.toml" <<EOF
state_dir = "state"
[repository]
path = "repo"
password_file = "pw"
cache_dir = "cache"
[components.usr]
paths = ["$SRC"]
[server]
[[server.tokens]]
name = "bench"
token = "$OP"
role = "operator"
EOF
"$CAIRN" --config "$S/cairn.toml" init >/dev/null 2>&1
"$CAIRN" --config "$S/cairn.toml" serve --listen 127.0.0.1:0 --no-schedules > "$S/serve.log" 2>"$S/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '"listen"' "$S/serve.log" 2>/dev/null && break; sleep 0.1; done
BASE=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["address"])' "$S/serve.log")
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
curl -s -H "Authorization: Bearer $OP" "$BASE/v1/status" >/dev/null
sleep 2
IDLE=$(rss)
log "idle: $((IDLE / 1024)) MiB; starting the backup"
JOB=$(curl -s -X POST -H "Authorization: Bearer $OP" -H 'Content-Type: application/json' \
  -d '{"component": "usr"}' "$BASE/v1/backups" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
state() { curl -s -H "Authorization: Bearer $OP" "$BASE/v1/jobs/$JOB" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
PEAK=0
( while kill -0 $PID 2>/dev/null; do r=$(rss); echo "$r"; sleep 0.1; done ) > "$W/rss.samples" &
SAMPLER=$!
: > "$W/latency.ms"
for r in $(seq "$ROUNDS"); do
  sleep 1
  [ "$(state)" = running ] || { log "the backup ended before burst $r"; break; }
  seq 50 | xargs -P 50 -I{} curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
    -H "Authorization: Bearer $OP" "$BASE/v1/status" >> "$W/latency.ms.raw.$r"
  awk '$1 != 200 { bad++ } END { if (bad) { print bad " requests failed" > "/dev/stderr"; exit 1 } }' "$W/latency.ms.raw.$r"
  awk '{ printf "%.2f\n", $2 * 1000 }' "$W/latency.ms.raw.$r" >> "$W/latency.ms"
  rm -f "$W/latency.ms.raw.$r"
done
while [ "$(state)" = running ] || [ "$(state)" = queued ]; do sleep 0.5; done
FINAL=$(state)
kill $SAMPLER 2>/dev/null || true
PEAK=$(sort -n "$W/rss.samples" | tail -1)
N=$(wc -l < "$W/latency.ms")
P50=$(sort -n "$W/latency.ms" | awk -v n="$N" 'NR == int((n + 1) / 2) { print; exit }')
P99=$(sort -n "$W/latency.ms" | awk -v n="$N" 'BEGIN { k = int(n * 0.99 + 0.999) } NR == k { print; exit }')
MAX=$(sort -n "$W/latency.ms" | tail -1)
kill -TERM $PID; wait $PID || true
trap - EXIT
{
  echo "| figure | value |"
  echo "|---|---|"
  echo "| backup job | $FINAL |"
  echo "| GET /v1/status during the backup: requests (bursts of 50 at once) | $N |"
  echo "| p50 latency | $P50 ms |"
  echo "| p99 latency | $P99 ms |"
  echo "| slowest | $MAX ms |"
  echo "| RSS idle | $((IDLE / 1024)) MiB |"
  echo "| RSS peak during the backup | $((PEAK / 1024)) MiB |"
} | tee "$W/results.md"
