#!/usr/bin/env bash
# bench/flash_script_cost.sh -- what the flash entry script (lua/redis/flash.lua `entry`) costs Redis,
# in counts a loaded machine does not change. On the buy path of a sale Redis's one thread is the
# bottleneck, so this is the figure to watch when the script changes.
#
# A private redis-server (AOF on, appendfsync everysec, no RDB: what etc/redis.conf.in and the peer's
# Redis run) gets the product's state from the `init` script (10^9 units, sale open, limit 1), then
# redis-benchmark runs N entries, each by another member (__rand_int__), on one connection:
#   1. under callgrind (instrumentation on for the N entries only, after WARM entries): instructions
#      per entry in all of redis-server (Ir_total: reading the command, the script, the AOF feed,
#      the reply) and inside EVALSHA (Ir_evalsha);
#   2. natively: INFO commandstats -- Redis commands the script runs per entry and EVALSHA's
#      usec_per_call (wall time inside Redis: a busy machine inflates it, compare A/B alternating).
# Prints one RESULT line with the commit. The time, the deadline and the product id are fixed
# arguments (the host computes them per entry).
# env: N=2000 WARM=600 LUA_DIR=lua (the tree whose scripts are measured) VALGRIND=1 (0: only step 2)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-2000}
WARM=${WARM:-600}
LUA_DIR=${LUA_DIR:-$ROOT/lua}
VALGRIND=${VALGRIND:-1}
for c in redis-server redis-cli redis-benchmark luajit; do
  command -v $c >/dev/null || { echo "$c is not installed" >&2; exit 2; }
done
((VALGRIND == 0)) || command -v valgrind >/dev/null || { echo "valgrind is not installed (or VALGRIND=0)" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fcfs-script-cost.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

script() { luajit -e "package.path = '$LUA_DIR/?.lua;' .. package.path; io.write(require('redis.flash').$1)"; }

# start_redis DIR [valgrind...] -> PORT, RPID (redis-server's pid, callgrind's when under it)
start_redis() {
  local d=$1
  shift
  mkdir -p "$d"
  PORT=$(luajit -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); local _, p = s:getsockname(); s:close(); print(p)')
  "$@" redis-server --port "$PORT" --bind 127.0.0.1 --appendonly yes --appendfsync everysec --save "" \
    --dir "$d" >"$d/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 300); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  RPID=$(redis-cli -p "$PORT" info server | tr -d '\r' | awk -F: '/^process_id/ {print $2}')
}

# entries COUNT: COUNT entries of product 7 by new members
entries() {
  redis-benchmark -p "$PORT" -n "$1" -c 1 -r 1000000000 -q EVALSHA "$ENTRY" 3 "{p:7}:s" "{p:7}:dl" \
    "{p:7}:ev" __rand_int__ 1700000000000 1700000300000 7 >/dev/null
}

setup() {
  local init
  ENTRY=$(redis-cli -p "$PORT" SCRIPT LOAD "$(script entry)")
  init=$(redis-cli -p "$PORT" SCRIPT LOAD "$(script init)")
  redis-cli -p "$PORT" EVALSHA "$init" 1 "{p:7}:s" 1000000000 0 99999999999999 1 0 0 0 \
    >/dev/null
  entries "$WARM"
}

ir_total=- ir_evalsha=-
if ((VALGRIND)); then
  start_redis "$TMP/cg" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/cg/out"
  setup
  callgrind_control -i on "$RPID" >/dev/null 2>&1
  entries "$N"
  callgrind_control -i off "$RPID" >/dev/null 2>&1
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  while kill -0 "$RPID" 2>/dev/null; do sleep 0.2; done
  ir_total=$(awk -v n="$N" '/^totals:/ {printf "%d", $2 / n}' "$TMP/cg/out")
  # (awk reads to the end: an early exit would kill callgrind_annotate with SIGPIPE, and pipefail the script)
  ir_evalsha=$(callgrind_annotate --inclusive=yes "$TMP/cg/out" 2>/dev/null |
    awk -v n="$N" '!done && tolower($0) ~ /evalshacommand/ {gsub(",", "", $1); printf "%d", $1 / n; done = 1}')
fi

start_redis "$TMP/native"
setup
redis-cli -p "$PORT" CONFIG RESETSTAT >/dev/null
entries "$N"
stats=$(redis-cli -p "$PORT" INFO commandstats | tr -d '\r' | awk -F'[:,=]' '
  /^cmdstat_evalsha:/ {calls = $3; us = $7}
  /^cmdstat_/ && !/^cmdstat_(evalsha|config|info)/ {inner += $3; list = list sprintf("%s%s=%d", sep, substr($1, 9), $3); sep = ","}
  END {printf "commands_per_entry=%.2f usec_per_call=%s inner=%s", inner / calls, us, list}')
redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
commit=$(git -C "$ROOT" rev-parse --short=12 HEAD)$(git -C "$ROOT" diff --quiet -- lua || echo -dirty)
echo "RESULT flash_entry_script N=$N Ir_total=$ir_total Ir_evalsha=$ir_evalsha $stats commit=$commit"
