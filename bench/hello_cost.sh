#!/usr/bin/env bash
# bench/hello_cost.sh -- what one request costs a worker, in counts that do not depend on how
# loaded the machine is (req/s on a shared machine do): allocations (malloc, calloc, realloc,
# memalign: an LD_PRELOAD shim, bench/alloc_count.c), system calls (perf's raw_syscalls
# tracepoint) and user-space instructions (callgrind: valgrind's instruction count, with the
# window's top functions) per request, each over a window of a keep-alive wrk run after a
# warm-up. Requests in a window: the difference of fcfs_requests_total (/metrics on the admin
# socket) before and after it, less the first /metrics request; under callgrind, the calls of
# conn_respond in the dump. One worker (callgrind: workers = 0, the process is the worker).
# Run it from the repository root.
# usage: bench/hello_cost.sh [PATH...]   (default /hello)
# With JITV=1 it only checks that the path stays compiled: LuaJIT's jit.v log of a worker
# (started through FCFS_LUA_INIT) under wrk, its trace aborts ("NYI" = not yet implemented in
# the JIT: that code runs in the interpreter) counted and listed.
# env: WARMUP=3 WINDOW=5 CONNS=64 CALLGRIND=1 (0 skips the instruction count) TOP=15 JITV=0 REDIS=0 FCFS_BIN
#      RESPOND_FN=conn_respond (the function whose calls count requests under callgrind)
#      FCFS_LUA_DIR, EXTRA_CONF (config entries, Lua), PREPARE (paths GET once after the start)
# The sold-out flash entry: FCFS_LUA_DIR=$PWD/bench/app EXTRA_CONF='redis = "127.0.0.1:1"'
#   PREPARE='/bench/gate/42?remaining=0&version=1' bash bench/hello_cost.sh /bench/soldout/42
# With REDIS=1 a throwaway redis-server (TCP loopback, free port) is started first, stock:1 set
# in it and the node pointed at it; the one-Redis-GET route:
#   REDIS=1 FCFS_LUA_DIR=$PWD/bench/app bash bench/hello_cost.sh /hello /bench/stock/1
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
WARMUP=${WARMUP:-3}
WINDOW=${WINDOW:-5}
CONNS=${CONNS:-64}
CALLGRIND=${CALLGRIND:-1}
TOP=${TOP:-15}
paths=("$@")
((${#paths[@]})) || paths=(/hello)

bench_init
cc -O2 -shared -fPIC -o "$BENCH_TMP/alloc_count.so" "$BENCH_ROOT/bench/alloc_count.c" -lpthread
mkdir "$BENCH_TMP/allocs"

if [[ ${REDIS:-0} = 1 ]]; then
  redis_port=$(free_port)
  mkdir "$BENCH_TMP/redis"
  setsid redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$BENCH_TMP/redis" --save '' \
    --appendonly no </dev/null >"$BENCH_TMP/redis/out" 2>&1 &
  echo $! >"$BENCH_TMP/redis/pid"
  bench_on_exit "kill -TERM \$(cat '$BENCH_TMP/redis/pid')"
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$redis_port" set stock:1 1000000 >/dev/null
  EXTRA_CONF="redis = \"127.0.0.1:$redis_port\"${EXTRA_CONF:+, $EXTRA_CONF}"
fi

# Requests answered so far (all routes, all workers).
requests() {
  curl -fsS --unix-socket "$FCFS_ADMIN" http://fcfs/metrics |
    awk '/^fcfs_requests_total\{/ { n += $NF } END { printf "%d\n", n }'
}
# Allocation calls of pid so far, and frees, as "allocs frees".
allocs() { awk '{ print $2 + $4 + $6 + $8, $10 }' "$BENCH_TMP/allocs/$1"; }
per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.3f", (n > 0 ? a / n : -1) }'; }

# Requests answered in a callgrind dump: its calls of the server's conn_respond (valgrind
# zeroes and dumps when it gets to it, later than callgrind_control returns: /metrics would
# count a different window).
responses() {
  awk '/^c?fn=/ { s = $0; sub(/^c?fn=\(/, "", s); id = s; sub(/\).*/, "", id); nm = s; sub(/^[0-9]+\) ?/, "", nm)
                  if (nm != "") name[id] = nm; if ($0 ~ /^cfn=/) cur = id; next }
       /^calls=/ { split($0, a, /[= ]/); if (name[cur] == RESPOND) n += a[2] }
       END { printf "%d\n", n }' RESPOND="${RESPOND_FN:-conn_respond}" "$1"
}

prepare() { for p in ${PREPARE:-}; do curl -fsS -o /dev/null "$FCFS_URL$p"; done; }

# Runs wrk on path for the warm-up, the window and a second of margin, in the background.
load() {
  wrk -t2 -c"$CONNS" -d"$((WARMUP + WINDOW + 2))s" --timeout 5s "$FCFS_URL$1" >"$BENCH_TMP/wrk.out" &
  WRK_PID=$!
  sleep "$WARMUP"
}

if [[ ${JITV:-0} = 1 ]]; then
  echo "local v = require 'jit.v'; v.start('$BENCH_TMP/jit.log')" >"$BENCH_TMP/jitv.lua"
  FCFS_WORKERS=1 FCFS_WRAP="env FCFS_LUA_INIT=$BENCH_TMP/jitv.lua" \
    fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" ${EXTRA_CONF:+"$EXTRA_CONF"}
  prepare
  for p in "${paths[@]}"; do
    wrk -t2 -c"$CONNS" -d"$((WARMUP + WINDOW))s" "$FCFS_URL$p" >/dev/null
    echo "RESULT path=$p traces=$(grep -c '^\[TRACE *[0-9]* ' "$BENCH_TMP/jit.log")" \
      "aborts=$(grep -c '^\[TRACE --- ' "$BENCH_TMP/jit.log") nyi=$(grep -c 'NYI' "$BENCH_TMP/jit.log") $BENCH_ID"
    grep '^\[TRACE --- ' "$BENCH_TMP/jit.log" | sed 's/^\[TRACE --- //; s/\]$//' | sort | uniq -c | sort -rn | head -"$TOP"
  done
  exit 0
fi

echo "# allocations and system calls: 1 worker, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=1 FCFS_WRAP="env LD_PRELOAD=$BENCH_TMP/alloc_count.so ALLOC_COUNT_DIR=$BENCH_TMP/allocs" \
  fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" ${EXTRA_CONF:+"$EXTRA_CONF"}
prepare
worker=$(fcfs_workers | awk '{ print $1 }')
for p in "${paths[@]}"; do
  load "$p"
  # the counts are read inside perf's window, so it spans the requests counted
  export BENCH_TMP FCFS_ADMIN WINDOW worker
  perf stat -x, -e raw_syscalls:sys_enter -p "$worker" -o "$BENCH_TMP/perf.out" -- bash -c "
    $(declare -f requests allocs)
    requests >\$BENCH_TMP/r0; sleep 0.1 # the shim rewrites its counts every 20 ms
    allocs \$worker >\$BENCH_TMP/a0; sleep \$WINDOW; allocs \$worker >\$BENCH_TMP/a1; requests >\$BENCH_TMP/r1"
  read -r r0 <"$BENCH_TMP/r0"
  read -r r1 <"$BENCH_TMP/r1"
  read -r a0 f0 <"$BENCH_TMP/a0"
  read -r a1 f1 <"$BENCH_TMP/a1"
  wait "$WRK_PID"
  n=$((r1 - r0 - 1))
  sys=$(awk -F, '/raw_syscalls/ { print $1 }' "$BENCH_TMP/perf.out")
  echo "RESULT path=$p requests=$n allocs_per_req=$(per $((a1 - a0)) "$n") frees_per_req=$(per $((f1 - f0)) "$n")" \
    "syscalls_per_req=$(per "$sys" "$n") $BENCH_ID"
done
fcfs_stop

((CALLGRIND)) || exit 0
command -v valgrind >/dev/null || { echo "valgrind is not installed: no instruction count" >&2; exit 2; }
echo "# user-space instructions (callgrind): workers = 0, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=0 WAIT_HTTP_TRIES=1200 \
  FCFS_WRAP="valgrind --tool=callgrind --callgrind-out-file=$BENCH_TMP/cg.out" \
  fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" ${EXTRA_CONF:+"$EXTRA_CONF"}
prepare
for p in "${paths[@]}"; do
  load "$p"
  callgrind_control -z "$FCFS_PID" >/dev/null
  sleep "$WINDOW"
  rm -f "$BENCH_TMP"/cg.out.*
  callgrind_control -d "$FCFS_PID" >/dev/null
  wait "$WRK_PID"
  dump=$(ls "$BENCH_TMP"/cg.out.* | tail -1)
  n=$(responses "$dump")
  ir=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "RESULT path=$p requests=$n instructions_per_req=$(per "$ir" "$n") $BENCH_ID"
  echo "top $TOP functions by own instructions per request ($p):"
  callgrind_annotate --inclusive=no --threshold=100 "$dump" | awk -v n="$n" -v top="$TOP" '
    /^-+$/ { sep++; next }
    /PROGRAM TOTALS/ { total = $1; gsub(",", "", total) }
    # functions live when the counts were zeroed show the whole window: skip them
    sep >= 3 && NF >= 2 && shown < top { ir = $1; gsub(",", "", ir); if (ir + 0 >= 0.99 * total) next
      $1 = ""; printf "%10.1f %s\n", ir / n, $0; shown++ }'
done
