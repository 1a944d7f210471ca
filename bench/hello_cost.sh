#!/usr/bin/env bash
# bench/hello_cost.sh -- what one request costs a worker, in counts that do not depend on how
# loaded the machine is (req/s on a shared machine do): allocations (malloc, calloc, realloc,
# memalign: an LD_PRELOAD shim, bench/alloc_count.c), system calls (perf's raw_syscalls
# tracepoint, and the syscalls:sys_enter_* of the kinds in SYSCALLS one by one) and user-space
# instructions (callgrind: valgrind's instruction count, with the window's top functions) per
# request, each over a window of a keep-alive wrk run after a warm-up. Beside them the worker's
# page faults, context switches and user and system CPU per request (these depend on the load:
# compare them within one run). Requests in a window: wrk's count of a run in it (perf attached
# over the whole run, its connects included); under callgrind, the calls of conn_respond in the
# dump. One worker (callgrind: workers = 0, the process is the worker).
# With PEER=1 the same counts for the peer (nginx + lua-nginx-module, PEER_DIR) on PEER_PATHS,
# its nginx with one worker: its /hello (Lua) and its /static-hello (nginx `return 200`, the
# ceiling); under callgrind nginx runs in the foreground without a master (the process is the
# worker) and its requests are the calls of ngx_http_free_request.
# Run it from the repository root.
# usage: bench/hello_cost.sh [PATH...]   (default /hello)
# With JITV=1 it only checks that the path stays compiled: LuaJIT's jit.v log of a worker
# (started through FCFS_LUA_INIT) under wrk, its trace aborts ("NYI" = not yet implemented in
# the JIT: that code runs in the interpreter) counted and listed: the whole log so far and, as
# window_traces / window_aborts, the WINDOW after the path's own WARMUP; JITV_LOG=FILE keeps the log.
# env: WARMUP=3 WINDOW=5 CONNS=64 CALLGRIND=1 (0 skips the instruction count) TOP=15 JITV=0 GC=0 REDIS=0
#      FCFS_BIN
#      RESPOND_FN=conn_respond (the function whose calls count requests under callgrind)
#      FCFS_LUA_DIR, EXTRA_CONF (config entries, Lua), PREPARE (paths GET once after the start)
#      PEER=0 PEER_PATHS="/hello /static-hello" PEER_DIR
# The sold-out gate check alone: FCFS_LUA_DIR=$PWD/bench/app EXTRA_CONF='redis = "127.0.0.1:1"'
#   PREPARE='/bench/gate/42?remaining=0&version=1' bash bench/hello_cost.sh /bench/soldout/42
# With GC=1 it only measures the Lua garbage of a request: bytes the worker's Lua VM allocates per
# request (FCFS_LUA_INIT stops its collector, so the growth of fcfs_lua_memory_bytes over the WINDOW
# after the path's WARMUP is everything the requests allocated: in a steady state, their garbage),
# requests counted by /metrics' fcfs_requests_total (both read on the admin socket).
# With SHOP=1 the shop's app (lua/) runs on a private Redis and MariaDB (lib.sh shop_services) with
# a NORMAL product and a sold-out FLASH product on sale (inserted in MySQL); {stock} and {sold} in
# a path stand for their ids (default paths: /hello /api/products/{stock}/stock
# /api/flash/products/{sold}/entry). A path ending in /entry is driven as bench/flash_vs_peer.sh
# drives the sold-out crowd: POSTs by CROWD members (default 200: few enough that even the slow
# callgrind warm-up puts all their tokens in the token cache, the crowd's steady state; tokens
# minted by bench/flash_tokens.lua) clicking again and again, through bench/flash_entry.lua.
# fcfs, the peer's /hello and nginx's /static-hello side by side: PEER=1 bash bench/hello_cost.sh
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
PEER=${PEER:-0}
PEER_PATHS=${PEER_PATHS:-/hello /static-hello}
SYSCALLS="read recvfrom write writev epoll_wait epoll_ctl accept4"
SHOP=${SHOP:-0}
CROWD=${CROWD:-200}
paths=("$@")
if ((!${#paths[@]})); then
  paths=(/hello)
  ((SHOP)) && paths+=('/api/products/{stock}/stock' '/api/flash/products/{sold}/entry')
fi

bench_init
cc -O2 -shared -fPIC -o "$BENCH_TMP/alloc_count.so" "$BENCH_ROOT/bench/alloc_count.c" -lpthread
mkdir "$BENCH_TMP/allocs"

if [[ ${REDIS:-0} = 1 ]]; then
  redis_stock_server
  EXTRA_CONF="redis = \"127.0.0.1:$REDIS_PORT\"${EXTRA_CONF:+, $EXTRA_CONF}"
fi

# start: fcfs on the shop's services (SHOP=1) or alone, with lua/ on the path
start() {
  local conf=("lua_path = \"$BENCH_ROOT/lua/?.lua\"")
  ((SHOP)) && conf+=("${SHOP_CONF[@]}" "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }"
    "app = { flash_sweep_interval = 3600 }")
  fcfs_start "${conf[@]}" ${EXTRA_CONF:+"$EXTRA_CONF"}
}
if ((SHOP)); then
  # shellcheck disable=SC2034 # read by fcfs_start (lib.sh)
  FCFS_LUA_DIR=$BENCH_ROOT/lua
  export THREADS=2 # bench/flash_entry.lua: wrk -t2 splits the crowd
  shop_services
  FCFS_WORKERS=1 start
  "$FCFS_BIN" -c "$FCFS_CONF" migrate >&2
  stock_pid=$(shop_product NORMAL 1000000)
  sold_pid=$(shop_product FLASH 0)
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

# Allocation calls of pid so far, and frees, as "allocs frees" (0 0 for a process without the shim).
allocs() {
  if [[ -f $BENCH_TMP/allocs/$1 ]]; then awk '{ print $2 + $4 + $6 + $8, $10 }' "$BENCH_TMP/allocs/$1"; else echo 0 0; fi
}
per() { awk -v a="$1" -v n="$2" 'BEGIN { printf "%.3f", (n > 0 ? a / n : -1) }'; }

# Requests answered in a callgrind dump: its calls of the function named $2 (valgrind
# zeroes and dumps when it gets to it, later than callgrind_control returns: /metrics would
# count a different window).
responses() {
  awk '/^c?fn=/ { s = $0; sub(/^c?fn=\(/, "", s); id = s; sub(/\).*/, "", id); nm = s; sub(/^[0-9]+\) ?/, "", nm)
                  if (nm != "") name[id] = nm; if ($0 ~ /^cfn=/) cur = id; next }
       /^calls=/ { split($0, a, /[= ]/); if (name[cur] == RESPOND) n += a[2] }
       END { printf "%d\n", n }' RESPOND="$2" "$1"
}

# perf's events: every system call, each kind of SYSCALLS, page faults and context switches
perf_events() {
  local k e="-e raw_syscalls:sys_enter -e page-faults -e context-switches"
  for k in $SYSCALLS; do e+=" -e syscalls:sys_enter_$k"; done
  echo "$e"
}
# From perf's --per-thread csv output FILE and REQUESTS: the server's threads (wrk's left out)
# as "syscalls_per_req=X kind=X ... faults_per_req=X cswitch_per_req=X" (kinds never seen left
# out; context switches depend on the load)
syscall_counts() {
  awk -F, -v n="$2" '
    function per(x) { return sprintf("%.3f", n > 0 ? x / n : -1) }
    NF < 4 || $1 ~ /^wrk-/ || $2 !~ /^[0-9]+$/ { next }
    { c[$4] += $2; if (!($4 in seen)) { seen[$4] = 1; order[++k] = $4 } }
    END { s = "syscalls_per_req=" per(c["raw_syscalls:sys_enter"])
          for (i = 1; i <= k; i++) if (order[i] ~ /^syscalls:sys_enter_/ && c[order[i]] > 0) {
            e = order[i]; sub(/.*sys_enter_/, "", e); s = s " " e "=" per(c[order[i]]) }
          print s " faults_per_req=" per(c["page-faults"]) " cswitch_per_req=" per(c["context-switches"]) }' "$1"
}
# User and system CPU of pid so far, in clock ticks, as "user sys".
ticks() { cut -d')' -f2- "/proc/$1/stat" | awk '{ print $12, $13 }'; }
# "user_us=X sys_us=X": CPU per request from two ticks() readings and the requests between them
cpu_split() {
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " ")
    printf "user_us=%.2f sys_us=%.2f", (y[1] - x[1]) / hz * 1e6 / n, (y[2] - x[2]) / hz * 1e6 / n }'
}

prepare() { for p in ${PREPARE:-}; do curl -fsS -o /dev/null "$FCFS_URL$p"; done; }

# wrk's arguments for path of URL: a flash entry is POSTed by the crowd (SHOP=1)
wrk_args() {
  if [[ $2 == */entry ]]; then echo "-s $BENCH_TMP/crowd.lua $1$2"; else echo "$1$2"; fi
}

# Runs wrk on path (of URL, default FCFS_URL) for the warm-up, the window and a second of
# margin, in the background.
load() {
  # shellcheck disable=SC2046 # wrk_args is a word list
  wrk -t2 -c"$CONNS" -d"$((WARMUP + WINDOW + 2))s" --timeout 5s $(wrk_args "${2:-$FCFS_URL}" "$1") \
    >"$BENCH_TMP/wrk.out" &
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
    wrk -t2 -c"$CONNS" -d"${WARMUP}s" $(wrk_args "$FCFS_URL" "$p") >/dev/null
    from=$(($(wc -l <"$log") + 1))
    # shellcheck disable=SC2046
    wrk -t2 -c"$CONNS" -d"${WINDOW}s" $(wrk_args "$FCFS_URL" "$p") >/dev/null
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

if [[ ${GC:-0} = 1 ]]; then
  echo 'collectgarbage("stop")' >"$BENCH_TMP/gcstop.lua"
  FCFS_WORKERS=1 FCFS_WRAP="env FCFS_LUA_INIT=$BENCH_TMP/gcstop.lua" start
  prepare
  # "requests lua_bytes" now, from the host's metrics (the memory gauge is refreshed every 100 ms)
  gc_sample() {
    sleep 0.3
    curl -fsS --unix-socket "$FCFS_ADMIN" http://localhost/metrics |
      awk '/^fcfs_requests_total/ { n += $NF } /^fcfs_lua_memory_bytes/ { m += $NF } END { printf "%d %d\n", n, m }'
  }
  for p in "${paths[@]}"; do
    # shellcheck disable=SC2046 # wrk_args is a word list
    wrk -t2 -c"$CONNS" -d"${WARMUP}s" $(wrk_args "$FCFS_URL" "$p") >/dev/null
    read -r n0 m0 < <(gc_sample)
    # shellcheck disable=SC2046
    wrk -t2 -c"$CONNS" -d"${WINDOW}s" $(wrk_args "$FCFS_URL" "$p") >/dev/null
    read -r n1 m1 < <(gc_sample)
    echo "RESULT path=$p requests=$((n1 - n0)) lua_bytes_per_req=$(per $((m1 - m0)) $((n1 - n0))) $BENCH_ID"
  done
  exit 0
fi

# count_window TARGET PID URL PATH: perf attached to the worker pid and to wrk over a window of a
# keep-alive wrk run, after its warm-up (no connects in the window). The requests are wrk's
# write calls in that window (one per request), counted by the same perf (--per-thread: wrk's
# threads apart). Where the allocation shim counts for pid (fcfs), its allocations in the window.
count_window() {
  local target=$1 pid=$2 url=$3 p=$4 n a0 f0 a1 f1 al=""
  load "$p" "$url"
  export BENCH_TMP WINDOW
  # shellcheck disable=SC2046 # perf_events is a list of options
  perf stat -x, --per-thread $(perf_events) -p "$pid,$WRK_PID" -o "$BENCH_TMP/perf.out" -- bash -c "
    $(declare -f allocs ticks)
    allocs $pid >\$BENCH_TMP/a0; ticks $pid >\$BENCH_TMP/t0; sleep \$WINDOW
    ticks $pid >\$BENCH_TMP/t1; allocs $pid >\$BENCH_TMP/a1"
  wait "$WRK_PID"
  n=$(awk -F, '$1 ~ /^wrk-/ && $4 == "syscalls:sys_enter_write" { n += $2 } END { print n + 0 }' "$BENCH_TMP/perf.out")
  if [[ -f $BENCH_TMP/allocs/$pid ]]; then
    read -r a0 f0 <"$BENCH_TMP/a0"
    read -r a1 f1 <"$BENCH_TMP/a1"
    al="allocs_per_req=$(per $((a1 - a0)) "$n") frees_per_req=$(per $((f1 - f0)) "$n") "
  fi
  echo "RESULT target=$target path=$p requests=$n $al$(syscall_counts "$BENCH_TMP/perf.out" "$n")" \
    "$(cpu_split "$(cat "$BENCH_TMP/t0")" "$(cat "$BENCH_TMP/t1")" "$n") $BENCH_ID"
}

echo "# allocations and system calls: 1 worker, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=1 FCFS_WRAP="env LD_PRELOAD=$BENCH_TMP/alloc_count.so ALLOC_COUNT_DIR=$BENCH_TMP/allocs" start
prepare
worker=$(fcfs_workers | awk '{ print $1 }')
for p in "${paths[@]}"; do
  count_window fcfs "$worker" "$FCFS_URL" "$p"
done
fcfs_stop

if ((PEER)); then
  echo "# the peer: nginx worker_processes 1, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
  PEER_WORKERS=1 peer_start
  worker=$(peer_workers | awk '{ print $1 }')
  for p in $PEER_PATHS; do
    count_window peer "$worker" "$PEER_URL" "$p"
  done
fi

((CALLGRIND)) || exit 0
command -v valgrind >/dev/null || { echo "valgrind is not installed: no instruction count" >&2; exit 2; }

# callgrind_window TARGET PID URL PATH RESPOND: the instructions per request of the process pid
# (run under callgrind) over a window of wrk on URL PATH; requests are the calls of RESPOND.
callgrind_window() {
  local target=$1 pid=$2 url=$3 p=$4 dump n ir
  load "$p" "$url"
  callgrind_control -z "$pid" >/dev/null
  sleep "$WINDOW"
  rm -f "$BENCH_TMP"/cg.out.*
  callgrind_control -d "$pid" >/dev/null
  wait "$WRK_PID"
  dump=$(ls "$BENCH_TMP"/cg.out.* | tail -1)
  n=$(responses "$dump" "$5")
  ir=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "RESULT target=$target path=$p requests=$n instructions_per_req=$(per "$ir" "$n") $BENCH_ID"
  echo "top $TOP functions by own instructions per request ($target $p):"
  callgrind_annotate --inclusive=no --threshold=100 "$dump" | awk -v n="$n" -v top="$TOP" '
    /^-+$/ { sep++; next }
    /PROGRAM TOTALS/ { total = $1; gsub(",", "", total) }
    # functions live when the counts were zeroed show the whole window: skip them
    sep >= 3 && NF >= 2 && shown < top { ir = $1; gsub(",", "", ir); if (ir + 0 >= 0.99 * total) next
      $1 = ""; printf "%10.1f %s\n", ir / n, $0; shown++ }'
}

echo "# user-space instructions (callgrind): workers = 0, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
FCFS_WORKERS=0 WAIT_HTTP_TRIES=1200 \
  FCFS_WRAP="valgrind --tool=callgrind --callgrind-out-file=$BENCH_TMP/cg.out" start
prepare
for p in "${paths[@]}"; do
  callgrind_window fcfs "$FCFS_PID" "$FCFS_URL" "$p" "${RESPOND_FN:-conn_respond}"
done
fcfs_stop

((PEER)) || exit 0
# The peer's own config (up.sh wrote it), nginx in the foreground without a master.
PEER_RUN=$PEER_RUN "$PEER_DIR/down.sh" >/dev/null
valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/cg.out" \
  nginx -c "$PEER_RUN/nginx.conf" -g 'daemon off; master_process off;' >"$BENCH_TMP/nginx.out" 2>&1 &
NGINX_PID=$!
bench_on_exit "kill $NGINX_PID"
WAIT_HTTP_TRIES=1200 wait_http "$PEER_URL/static-hello"
echo "# the peer under callgrind: nginx master_process off, wrk -t2 -c$CONNS, window ${WINDOW}s after ${WARMUP}s"
for p in $PEER_PATHS; do
  callgrind_window peer "$NGINX_PID" "$PEER_URL" "$p" ngx_http_free_request
done
