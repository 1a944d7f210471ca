#!/usr/bin/env bash
# bench/hello_cost.sh -- what one request costs a worker, in counts that do not depend on how
# loaded the machine is (req/s on a shared machine do): allocations (malloc, calloc, realloc,
# memalign: an LD_PRELOAD shim, bench/alloc_count.c), system calls (perf's raw_syscalls
# tracepoint) and user-space instructions (callgrind: valgrind's instruction count, with the
# window's top functions) per request, each over a window of a keep-alive wrk run after a
# warm-up. Requests in a window: the difference of fcfs_requests_total (/metrics on the admin
# socket) before and after it, less the first /metrics request; under callgrind, the calls of
# conn_respond in the dump. One worker (callgrind: workers = 0, the process is the worker).
# The alloc pass also reads the worker's CPU time (user + system, /proc) over the window:
# cpu_us_per_req, coarser than the counts (a loaded machine inflates it).
# Run it from the repository root.
# usage: bench/hello_cost.sh [PATH...]   (default /hello)
# With JITV=1 it only checks that the path stays compiled: LuaJIT's jit.v log of a worker
# (started through FCFS_LUA_INIT) under wrk, its trace aborts ("NYI" = not yet implemented in
# the JIT: that code runs in the interpreter) counted and listed: the whole log so far and, as
# window_traces / window_aborts, the WINDOW after the path's own WARMUP; JITV_LOG=FILE keeps the log.
# env: WARMUP=3 WINDOW=5 CONNS=64 CALLGRIND=1 (0 skips the instruction count) TOP=15 JITV=0 FCFS_BIN
#      RESPOND_FN=conn_respond (the function whose calls count requests under callgrind)
#      FCFS_LUA_DIR, EXTRA_CONF (config entries, Lua), PREPARE (paths GET once after the start)
# The sold-out gate check alone: FCFS_LUA_DIR=$PWD/bench/app EXTRA_CONF='redis = "127.0.0.1:1"'
#   PREPARE='/bench/gate/42?remaining=0&version=1' bash bench/hello_cost.sh /bench/soldout/42
# With SHOP=1 the shop's app (lua/) runs on a private Redis and MariaDB (lib.sh shop_services) with
# a NORMAL product and a sold-out FLASH product on sale (inserted in MySQL); {stock} and {sold} in
# a path stand for their ids (default paths: /hello /api/products/{stock}/stock
# /api/flash/products/{sold}/entry). A path ending in /entry is driven as bench/flash_vs_peer.sh
# drives the sold-out crowd: POSTs by CROWD members (default 200: few enough that even the slow
# callgrind warm-up puts all their tokens in the token cache, the crowd's steady state; tokens minted by
# bench/flash_tokens.lua) clicking again and again, through bench/flash_entry.lua.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
WARMUP=${WARMUP:-3}
WINDOW=${WINDOW:-5}
CONNS=${CONNS:-64}
CALLGRIND=${CALLGRIND:-1}
TOP=${TOP:-15}
SHOP=${SHOP:-0}
CROWD=${CROWD:-200}
paths=("$@")
if ((!${#paths[@]})); then
  paths=(/hello)
  ((SHOP)) && paths+=('/api/products/{stock}/stock' '/api/flash/products/{sold}/entry')
fi

bench_init
# start: fcfs on the shop's services (SHOP=1) or alone, with lua/ on the path
start() {
  local conf=("lua_path = \"$BENCH_ROOT/lua/?.lua\"")
  ((SHOP)) && conf+=("${SHOP_CONF[@]}" "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }"
    "app = { flash_sweep_interval = 3600 }")
  fcfs_start "${conf[@]}" ${EXTRA_CONF:+"$EXTRA_CONF"}
}
if ((SHOP)); then
  FCFS_LUA_DIR=$BENCH_ROOT/lua
  export THREADS=2 # bench/flash_entry.lua: wrk -t2 splits the crowd
  shop_services
  FCFS_WORKERS=1 start
  "$FCFS_BIN" -c "$FCFS_CONF" migrate >&2
  product() { # product TYPE STOCK -> the id of a product on sale since a minute ago, for a day
    shop_sql "INSERT INTO products (name, description, price, type, stock, sale_starts_at, sale_ends_at,
      per_user_limit, created_at, updated_at) VALUES ('bench $1', 'bench', 10000, '$1', $2,
      UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE, UTC_TIMESTAMP(3) + INTERVAL 1 DAY, 1, UTC_TIMESTAMP(3),
      UTC_TIMESTAMP(3)); SELECT LAST_INSERT_ID()"
  }
  stock_pid=$(product NORMAL 1000000)
  sold_pid=$(product FLASH 0)
  (cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_tokens.lua "$CROWD" 1 "$BENCH_TMP/crowd.txt")
  fcfs_stop
  { echo "tokens_file = \"$BENCH_TMP/crowd.txt\""; cat "$BENCH_ROOT/bench/flash_entry.lua"; } >"$BENCH_TMP/crowd.lua"
  # the sold-out product's Redis state and gate are built by its first view (after every start)
  PREPARE="${PREPARE:-} /api/flash/products/$sold_pid"
  for i in "${!paths[@]}"; do
    paths[i]=${paths[i]//\{stock\}/$stock_pid}
    paths[i]=${paths[i]//\{sold\}/$sold_pid}
  done
fi
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

# wrk's arguments for path: a flash entry is POSTed by the crowd (SHOP=1)
wrk_args() {
  if [[ $1 == */entry ]]; then echo "-s $BENCH_TMP/crowd.lua $FCFS_URL$1"; else echo "$FCFS_URL$1"; fi
}

# Runs wrk on path for the warm-up, the window and a second of margin, in the background.
load() {
  # shellcheck disable=SC2046 # wrk_args is a word list
  wrk -t2 -c"$CONNS" -d"$((WARMUP + WINDOW + 2))s" --timeout 5s $(wrk_args "$1") >"$BENCH_TMP/wrk.out" &
  WRK_PID=$!
  sleep "$WARMUP"
}

if [[ ${JITV:-0} = 1 ]]; then
  echo "local v = require 'jit.v'; v.start('$BENCH_TMP/jit.log')" >"$BENCH_TMP/jitv.lua"
  FCFS_WORKERS=1 FCFS_WRAP="env FCFS_LUA_INIT=$BENCH_TMP/jitv.lua" start
  prepare
  log=$BENCH_TMP/jit.log
  for p in "${paths[@]}"; do
    # shellcheck disable=SC2046 # wrk_args is a word list
    wrk -t2 -c"$CONNS" -d"${WARMUP}s" $(wrk_args "$p") >/dev/null
    from=$(($(wc -l <"$log") + 1))
    # shellcheck disable=SC2046
    wrk -t2 -c"$CONNS" -d"${WINDOW}s" $(wrk_args "$p") >/dev/null
    # the whole log so far, then the window after the warm-up alone
    echo "RESULT path=$p traces=$(grep -c '^\[TRACE *[0-9]* ' "$log") aborts=$(grep -c '^\[TRACE --- ' "$log")" \
      "nyi=$(grep -c 'NYI' "$log") window_traces=$(tail -n +"$from" "$log" | grep -c '^\[TRACE *[0-9]* ')" \
      "window_aborts=$(tail -n +"$from" "$log" | grep -c '^\[TRACE --- ') $BENCH_ID"
    { grep '^\[TRACE --- ' "$log" || true; } | sed 's/^\[TRACE --- //; s/\]$//' | sort | uniq -c | sort -rn |
      head -"$TOP"
  done
  [[ -z ${JITV_LOG:-} ]] || cp "$log" "$JITV_LOG"
  exit 0
fi

echo "# allocations and system calls: 1 worker, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=1 FCFS_WRAP="env LD_PRELOAD=$BENCH_TMP/alloc_count.so ALLOC_COUNT_DIR=$BENCH_TMP/allocs" start
prepare
worker=$(fcfs_workers | awk '{ print $1 }')
for p in "${paths[@]}"; do
  load "$p"
  # the counts are read inside perf's window, so it spans the requests counted
  export BENCH_TMP FCFS_ADMIN WINDOW worker
  perf stat -x, -e raw_syscalls:sys_enter -p "$worker" -o "$BENCH_TMP/perf.out" -- bash -c "
    $(declare -f requests allocs cpu_ticks)
    requests >\$BENCH_TMP/r0; cpu_ticks \$worker >\$BENCH_TMP/c0; sleep 0.1 # the shim rewrites its counts every 20 ms
    allocs \$worker >\$BENCH_TMP/a0; sleep \$WINDOW; allocs \$worker >\$BENCH_TMP/a1
    cpu_ticks \$worker >\$BENCH_TMP/c1; requests >\$BENCH_TMP/r1"
  read -r r0 <"$BENCH_TMP/r0"
  read -r r1 <"$BENCH_TMP/r1"
  read -r a0 f0 <"$BENCH_TMP/a0"
  read -r a1 f1 <"$BENCH_TMP/a1"
  read -r c0 <"$BENCH_TMP/c0"
  read -r c1 <"$BENCH_TMP/c1"
  wait "$WRK_PID"
  n=$((r1 - r0 - 1))
  sys=$(awk -F, '/raw_syscalls/ { print $1 }' "$BENCH_TMP/perf.out")
  echo "RESULT path=$p requests=$n allocs_per_req=$(per $((a1 - a0)) "$n") frees_per_req=$(per $((f1 - f0)) "$n")" \
    "syscalls_per_req=$(per "$sys" "$n") cpu_us_per_req=$(per_request $((c1 - c0)) "$(getconf CLK_TCK)" "$n")" \
    "$BENCH_ID"
done
fcfs_stop

((CALLGRIND)) || exit 0
command -v valgrind >/dev/null || { echo "valgrind is not installed: no instruction count" >&2; exit 2; }
echo "# user-space instructions (callgrind): workers = 0, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=0 WAIT_HTTP_TRIES=1200 \
  FCFS_WRAP="valgrind --tool=callgrind --callgrind-out-file=$BENCH_TMP/cg.out" start
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
