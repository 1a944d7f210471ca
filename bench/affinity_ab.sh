#!/usr/bin/env bash
# bench/affinity_ab.sh -- does pinning the workers to CPUs (worker_cpu_affinity) change req/s here?
# One fcfs (2 workers, bench/app, a private redis-server with stock:1) serves every run, so the
# runs differ only by placement: before each wrk run its workers are pinned one per CPU (what
# worker_cpu_affinity = "auto" does, here with taskset) or given every CPU back. Each round runs
# the four combinations (pinned or not x the one-GET route or /hello) in a shuffled order. Prints
# a RUN line per wrk run, then per placement the median req/s of each path and the median of the
# rounds' GET/hello ratios.
# env: ROUNDS=8 DURATION=4 CONNS=64 THREADS=2
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-4}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
# shellcheck disable=SC2034 # read by fcfs_start (lib.sh): placement is switched below instead
AFFINITY=off
# shellcheck disable=SC2034 # read by fcfs_start (lib.sh)
FCFS_LUA_DIR=$BENCH_ROOT/bench/app

bench_init
redis_stock_server
fcfs_start "redis = \"127.0.0.1:$REDIS_PORT\"" "lua_path = \"$BENCH_ROOT/lua/?.lua\""
read -ra workers <<<"$(fcfs_workers)"
allowed=$(taskset -pc $$ | sed 's/.*: //')
read -ra cpus <<<"$(allowed_cpus)"

# place 1: worker i on the i-th allowed CPU; place 0: every worker on every allowed CPU
place() {
  local i
  for i in "${!workers[@]}"; do
    if [[ $1 = 1 ]]; then taskset -pc "${cpus[i % ${#cpus[@]}]}" "${workers[i]}"; else taskset -pc "$allowed" "${workers[i]}"; fi >/dev/null
  done
}

for path in /bench/stock/1 /hello; do wrk -t"$THREADS" -c"$CONNS" -d1s "$FCFS_URL$path" >/dev/null; done
runs=$BENCH_TMP/runs.txt
for r in $(seq "$ROUNDS"); do
  for combo in $(printf '%s\n' 0:/bench/stock/1 0:/hello 1:/bench/stock/1 1:/hello | shuf); do
    place "${combo%%:*}"
    run_rps=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION"s "$FCFS_URL${combo#*:}" | awk '/Requests\/sec/ { print $2 }')
    echo "RUN round=$r pinned=${combo%%:*} path=${combo#*:} rps=$run_rps" | tee -a "$runs"
  done
done
for p in 0 1; do
  get=$(awk -v p="$p" '$3 == "pinned=" p && $4 == "path=/bench/stock/1" { sub("rps=", "", $5); print $5 }' "$runs" | median)
  hello=$(awk -v p="$p" '$3 == "pinned=" p && $4 == "path=/hello" { sub("rps=", "", $5); print $5 }' "$runs" | median)
  get_hello=$(awk -v p="$p" '$3 == "pinned=" p { sub("round=", "", $2); sub("rps=", "", $5); v[$2, $4] = $5 }
    END { for (k in v) { split(k, a, SUBSEP); if (a[2] == "path=/hello") print v[a[1], "path=/bench/stock/1"] / v[k] } }' "$runs" | median)
  echo "RESULT pinned=$p conns=$CONNS get_rps=$get hello_rps=$hello get_vs_hello=$(printf '%.2f' "$get_hello") rounds=$ROUNDS $BENCH_ID"
done
