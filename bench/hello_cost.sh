#!/usr/bin/env bash
# bench/hello_cost.sh -- what one request costs a worker, in counts that do not depend on how
# loaded the machine is (req/s on a shared machine do): allocations (malloc, calloc, realloc,
# memalign: an LD_PRELOAD shim, bench/alloc_count.c), system calls (perf's raw_syscalls
# tracepoint) and user-space instructions (callgrind: valgrind's instruction count, with the
# window's top functions) per request, each over a window of a keep-alive wrk run after a
# warm-up. Requests in a window: the difference of fcfs_requests_total (/metrics on the admin
# socket) before and after it, less the first /metrics request. One worker (callgrind: workers = 0,
# the process is the worker). Run it from the repository root.
# usage: bench/hello_cost.sh [PATH...]   (default /hello; e.g. /bench/soldout/42 with FCFS_LUA_DIR=bench/app)
# env: WARMUP=3 WINDOW=5 CONNS=64 CALLGRIND=1 (0 skips the instruction count) TOP=15 FCFS_BIN FCFS_LUA_DIR
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

# Requests answered so far (all routes, all workers).
requests() {
  curl -fsS --unix-socket "$FCFS_ADMIN" http://fcfs/metrics |
    awk '/^fcfs_requests_total\{/ { n += $NF } END { printf "%d\n", n }'
}
# Allocation calls of pid so far, and frees, as "allocs frees".
allocs() { awk '{ print $2 + $4 + $6 + $8, $10 }' "$BENCH_TMP/allocs/$1"; }
per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.3f", (n > 0 ? a / n : -1) }'; }

# Runs wrk on path for the warm-up, the window and a second of margin, in the background.
load() {
  wrk -t2 -c"$CONNS" -d"$((WARMUP + WINDOW + 2))s" --timeout 5s "$FCFS_URL$1" >"$BENCH_TMP/wrk.out" &
  WRK_PID=$!
  sleep "$WARMUP"
}

echo "# allocations and system calls: 1 worker, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=1 FCFS_WRAP="env LD_PRELOAD=$BENCH_TMP/alloc_count.so ALLOC_COUNT_DIR=$BENCH_TMP/allocs" \
  fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\""
worker=$(fcfs_workers | awk '{ print $1 }')
for p in "${paths[@]}"; do
  load "$p"
  r0=$(requests)
  sleep 0.1 # the shim rewrites its counts every 20 ms
  read -r a0 f0 < <(allocs "$worker")
  perf stat -x, -e raw_syscalls:sys_enter -p "$worker" -o "$BENCH_TMP/perf.out" -- sleep "$WINDOW"
  read -r a1 f1 < <(allocs "$worker")
  r1=$(requests)
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
  fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\""
for p in "${paths[@]}"; do
  load "$p"
  r0=$(requests)
  callgrind_control -z "$FCFS_PID" >/dev/null
  sleep "$WINDOW"
  rm -f "$BENCH_TMP"/cg.out.*
  callgrind_control -d "$FCFS_PID" >/dev/null
  r1=$(requests)
  wait "$WRK_PID"
  n=$((r1 - r0 - 1))
  dump=$(ls "$BENCH_TMP"/cg.out.* | tail -1)
  ir=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "RESULT path=$p requests=$n instructions_per_req=$(per "$ir" "$n") $BENCH_ID"
  echo "top $TOP functions by own instructions per request ($p):"
  callgrind_annotate --inclusive=no --threshold=100 "$dump" | awk -v n="$n" -v top="$TOP" '
    /^-+$/ { sep++; next }
    sep >= 3 && NF >= 2 && shown < top { ir = $1; gsub(",", "", ir); $1 = ""; printf "%10.1f %s\n", ir / n, $0; shown++ }'
done
