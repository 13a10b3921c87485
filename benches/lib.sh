# lib.sh — what the restic comparisons share (sourced by prune.sh and verify.sh).
#   need_tools NAME      restic, python3 and GNU time, installed when missing (as root)
#   cairn_bin            sets CAIRN: $CAIRN_BIN, else a release build of this checkout
#   measure TOOL STEP CMD...   runs CMD under GNU time, appends "TOOL STEP wall cpu rss_mib"
#                        to $TSV (tab-separated); on failure prints its stderr and exits

need_tools() {
  if ! command -v restic >/dev/null || ! command -v python3 >/dev/null || [ ! -x /usr/bin/time ]; then
    [ "$(id -u)" = 0 ] || { echo "$1: needs restic, python3 and GNU time (or root to install them)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic python3 time >/dev/null
  fi
}

cairn_bin() {
  if [ -n "${CAIRN_BIN:-}" ]; then
    CAIRN="$CAIRN_BIN"
  else
    (cd "$ROOT" && cargo build --release --locked -q)
    CAIRN="$ROOT/target/release/cairn"
  fi
}

measure() {
  local tool=$1 step=$2 wall usr sys rss; shift 2
  if ! /usr/bin/time -o "$W/time" -f "%e %U %S %M" "$@" >/dev/null 2>"$W/err"; then
    cat "$W/err" >&2; echo "$tool $step failed" >&2; exit 1
  fi
  read -r wall usr sys rss < "$W/time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" \
    "$(awk -v a="$usr" -v b="$sys" 'BEGIN { print a + b }')" "$((rss / 1024))" >> "$TSV"
}
