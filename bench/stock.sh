#!/usr/bin/env bash
# bench/stock.sh -- the sold-out path: fcfs GET /bench/soldout/:id (bench/app: one
# host.stock.sold_out check through the FFI on a sold-out product's gate in shared
# memory, no Redis) vs GET /hello (the HTTP + Lua floor), in one run on one machine,
# 2 workers, wrk on the same cores. Same method as bench/hello_vs_peer.sh (warm-up,
# rotated rounds, median); the soldout/hello ratio should be close to 1: the check
# costs next to nothing beside the request itself. Exits 1 on socket errors or non-2xx.
# env: DURATION=5 CONNS="256" THREADS=2 ROUNDS=3 WARMUP=1 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
CONNS=${CONNS:-256}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}

bench_init
# shellcheck disable=SC2034 # read by fcfs_start (lib.sh)
FCFS_LUA_DIR=$BENCH_ROOT/bench/app
fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" "redis = \"127.0.0.1:$(free_port)\""
curl -fsS -o /dev/null "$FCFS_URL/bench/gate/42?remaining=0&version=1"
curl -fsS "$FCFS_URL/bench/soldout/42" | grep -q '"sold_out":true' || {
  echo "product 42 is not sold out" >&2
  exit 1
}

# shellcheck disable=SC2034 # url, order and RATIOS are read by compare_targets (lib.sh)
declare -A url=(
  [fcfs_hello]=$FCFS_URL/hello
  [fcfs_soldout]=$FCFS_URL/bench/soldout/42
)
order=(fcfs_soldout fcfs_hello)
# shellcheck disable=SC2034
RATIOS="fcfs_soldout/fcfs_hello"

compare_targets
echo
for c in $CONNS; do
  echo "RESULT conns=$c soldout_rps=$(field rps "${res[fcfs_soldout-$c]}") hello_rps=$(field rps "${res[fcfs_hello-$c]}")" \
    "soldout_vs_hello=${ratio[fcfs_soldout/fcfs_hello-$c]}" \
    "soldout_cpu_us=$(field cpu_us "${res[fcfs_soldout-$c]}") hello_cpu_us=$(field cpu_us "${res[fcfs_hello-$c]}") $BENCH_ID"
done
exit "$bad"
