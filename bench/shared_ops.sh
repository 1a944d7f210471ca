#!/usr/bin/env bash
# bench/shared_ops.sh -- host.shared operations per second from Lua: a handler
# (bench/app, GET /bench/shared) runs N get / incr / set calls on one shared
# dictionary in a Lua loop and reports ops/s, first on one worker alone, then on
# both workers at once (the same hot key: the dictionary's lock is contended
# across processes). No wrk: the loop itself is the load.
# env: N=2000000 KEYS=1 (hot key) or more ROUNDS=3 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${N:-2000000}
KEYS=${KEYS:-1}
ROUNDS=${ROUNDS:-3}

bench_init
# shellcheck disable=SC2034 # read by fcfs_start (lib.sh)
FCFS_LUA_DIR=$BENCH_ROOT/bench/app
fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" "shared_dicts = { bench = \"16m\" }" \
  "redis = \"127.0.0.1:$(free_port)\"" "heartbeat_timeout = 30"

# one_run OP -> "ops_per_s worker"
one_run() {
  curl -fsS "$FCFS_URL/bench/shared?op=$1&n=$N&keys=$KEYS" |
    luajit -e 'local t = require("cjson").decode(io.read("*a")); print(t.ops_per_s, t.worker)'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo
echo "N=$N operations per request, KEYS=$KEYS, median of $ROUNDS rounds"
echo "| op | one worker ops/s | both workers at once, ops/s each (worker) |"
echo "|---|---:|---|"
for op in get incr set; do
  one_run "$op" >/dev/null # warm up the JIT
  solo=$(for _ in $(seq "$ROUNDS"); do one_run "$op"; done | cut -d' ' -f1 | median)
  # two requests on fresh connections at once; they may land on the same worker (then they run
  # one after the other and the figures show it)
  one_run "$op" >"$BENCH_TMP/a" &
  other=$!
  one_run "$op" >"$BENCH_TMP/b"
  wait "$other"
  both="$(awk '{ printf "%s (w%s)", $1, $2 }' "$BENCH_TMP/a"), $(awk '{ printf "%s (w%s)", $1, $2 }' "$BENCH_TMP/b")"
  echo "| $op | $solo | $both |"
done
