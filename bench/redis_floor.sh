#!/usr/bin/env bash
# bench/redis_floor.sh -- how much of the one-Redis-GET route's gap to /hello belongs to the
# machine: fcfs's /bench/stock/1 and /hello beside the same two answers from bench/redis_floor.c
# (a server with nothing in it but the round trip: libuv, hiredis's async client, no Lua), both
# with 2 workers, on one private redis-server over TCP loopback (as in redis_get_vs_peer.sh), one
# target at a time, rounds rotated (compare_targets in bench/lib.sh).
# Per connection count it prints each server's GET/hello ratio (median of the rounds; issue 12
# asks >= 0.85 of fcfs) and what the round trip costs the machine per request in wall time,
# extra_us = 1e6 / get_rps - 1e6 / hello_rps (from each round's pair, median). With the floor's
# extra_us, a server answering hello as fast as fcfs would keep at best
# fcfs_bound = 1 / (1 + floor_extra_us * fcfs_hello_rps / 1e6) of its req/s on the GET route:
# when fcfs_bound is under 0.85, no server with fcfs's hello meets the target on this machine
# with the floor's way of talking to Redis. Redis's reads per request (1 / GETs per wake-up and
# connection) say how well each batches its commands.
# Exits 1 if any run saw socket errors or 4xx/5xx.
# env: DURATION=5 CONNS="64 256" THREADS=2 ROUNDS=3 WARMUP=1 FCFS_BIN=build/fcfs
#      FLOOR_WRITES=deferred (fcfs's way of writing Redis commands) or next-poll (hiredis's adapter)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
compare_defaults
FLOOR_WRITES=${FLOOR_WRITES:-deferred}

bench_init
redis_stock_server
floor=$BENCH_TMP/redis_floor
bench_run cc -O2 -Wall -Wextra -o "$floor" "$BENCH_ROOT/bench/redis_floor.c" -luv -lhiredis
FLOOR_PORT=$(free_port)
echo "\$ redis_floor $FLOOR_PORT 127.0.0.1 $REDIS_PORT 2 $FLOOR_WRITES" >&2
"$floor" "$FLOOR_PORT" 127.0.0.1 "$REDIS_PORT" 2 "$FLOOR_WRITES" >"$BENCH_TMP/floor.out" 2>&1 &
FLOOR_PID=$!
bench_on_exit "kill -TERM $FLOOR_PID"
wait_http "http://127.0.0.1:$FLOOR_PORT/hello"
FCFS_LUA_DIR=$BENCH_ROOT/bench/app
fcfs_start "redis = \"127.0.0.1:$REDIS_PORT\"" "lua_path = \"$BENCH_ROOT/lua/?.lua\""
echo "# fcfs probe:  $(curl -fsS "$FCFS_URL/bench/stock/1")"
echo "# floor probe: $(curl -fsS "http://127.0.0.1:$FLOOR_PORT/get")"

# shellcheck disable=SC2034 # read by compare_targets
declare -A url=(
  [fcfs_get]=$FCFS_URL/bench/stock/1
  [fcfs_hello]=$FCFS_URL/hello
  [floor_get]=http://127.0.0.1:$FLOOR_PORT/get
  [floor_hello]=http://127.0.0.1:$FLOOR_PORT/hello
)
# shellcheck disable=SC2034
order=(fcfs_get floor_get fcfs_hello floor_hello)
RATIOS="fcfs_get/fcfs_hello floor_get/floor_hello fcfs_hello/floor_hello"
REDIS_CLI="redis-cli -p $REDIS_PORT"
EXTRA_CPU="redis:$($REDIS_CLI info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')"
target_pids() {
  if [[ $1 = fcfs* ]]; then fcfs_workers; else echo "$FLOOR_PID $(pgrep -P "$FLOOR_PID" | tr '\n' ' ')"; fi
}
compare_targets

# extra_us per round from the ROUND pairs' req/s: wrk-<target>-<conns>-r<round>.txt hold them
extra_us() { # TARGET_PREFIX CONNS -> the median over rounds of 1e6/get - 1e6/hello
  local r g h
  for r in $(seq "$ROUNDS"); do
    g=$(field rps "$(grep '^RESULT ' "$BENCH_TMP/wrk-$1_get-$2-r$r.txt")")
    h=$(field rps "$(grep '^RESULT ' "$BENCH_TMP/wrk-$1_hello-$2-r$r.txt")")
    awk -v g="$g" -v h="$h" 'BEGIN { printf "%.2f\n", 1e6 / g - 1e6 / h }'
  done | median
}
echo
for c in $CONNS; do
  fe=$(extra_us fcfs "$c")
  le=$(extra_us floor "$c")
  h=$(field rps "${res[fcfs_hello-$c]}")
  echo "RESULT conns=$c fcfs_get_vs_hello=${ratio[fcfs_get/fcfs_hello-$c]}" \
    "floor_get_vs_hello=${ratio[floor_get/floor_hello-$c]} fcfs_hello_vs_floor=${ratio[fcfs_hello/floor_hello-$c]}" \
    "fcfs_extra_us=$fe floor_extra_us=$le fcfs_bound=$(awk -v e="$le" -v h="$h" 'BEGIN { printf "%.2f", 1 / (1 + e * h / 1e6) }')" \
    "fcfs_redis_reads=$(field redis_reads "${res[fcfs_get-$c]}") floor_redis_reads=$(field redis_reads "${res[floor_get-$c]}")" \
    "floor_writes=$FLOOR_WRITES $BENCH_ID"
done
exit "$bad"
