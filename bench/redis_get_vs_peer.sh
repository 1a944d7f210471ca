#!/usr/bin/env bash
# bench/redis_get_vs_peer.sh -- one Redis GET per request, in one run on one
# machine: fcfs GET /bench/stock/:id (a handler doing host.redis.call("GET",
# "stock:"..id)) vs the peer's GET /products/:id/stock (lua-resty-redis GET with
# set_keepalive). Both talk to the same redis-server (the one the peer's up.sh
# starts, TCP loopback), both run 2 workers. Every target is warmed up at every
# measured connection count; the sweep is repeated ROUNDS times, each round
# starting with the other target. The table shows the median round by req/s, the
# server CPU per request (workers) and Redis's CPU per request beside it; the
# fcfs/peer ratio (target: >= 1.5 at 256) is the median of the per-round ratios,
# each round's ratio printed too. fcfs's own /hello runs in the same rounds: the
# GET route's req/s over hello's (get_vs_hello, target >= 0.85: pipelining
# should hide Redis) comes from the same run the same way. Every RESULT line names the commit and build
# type. Exits 3 if fcfs has no /bench/stock/:id route yet, 1 on socket errors or 4xx/5xx.
# env: DURATION=5 CONNS="64 256" THREADS=2 ROUNDS=3 WARMUP=1 STOCK_ID=1
#      FCFS_BIN=build/fcfs PEER_DIR=../shared/peer PEER_WORKERS=2
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
compare_defaults
STOCK_ID=${STOCK_ID:-1}

bench_init
peer_start
redis-cli -p "$PEER_REDIS_PORT" set "stock:$STOCK_ID" 1000000 >/dev/null
FCFS_LUA_DIR=$BENCH_ROOT/bench/app
fcfs_start "redis = \"127.0.0.1:$PEER_REDIS_PORT\"" "lua_path = \"$BENCH_ROOT/lua/?.lua\""

code=$(curl -s -o "$BENCH_TMP/probe.json" -w '%{http_code}' "$FCFS_URL/bench/stock/$STOCK_ID" || true)
if [[ $code != 200 ]]; then
  echo "PENDING: fcfs answered $code to GET /bench/stock/$STOCK_ID (route not there yet?): $(head -c 200 "$BENCH_TMP/probe.json")"
  exit 3
fi
echo "# fcfs probe: $(head -c 200 "$BENCH_TMP/probe.json")"
echo "# peer probe: $(curl -fsS "$PEER_URL/products/$STOCK_ID/stock")"

declare -A url=(
  [fcfs_get]=$FCFS_URL/bench/stock/$STOCK_ID
  [fcfs_hello]=$FCFS_URL/hello
  [peer_get]=$PEER_URL/products/$STOCK_ID/stock
)
order=(fcfs_get peer_get fcfs_hello)
RATIOS="fcfs_get/peer_get fcfs_get/fcfs_hello"
redis_pid=$(redis-cli -p "$PEER_REDIS_PORT" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
EXTRA_CPU="redis:$redis_pid"
compare_targets
echo
for c in $CONNS; do
  r=${ratio[fcfs_get/peer_get-$c]}
  h=${ratio[fcfs_get/fcfs_hello-$c]}
  echo "RESULT conns=$c fcfs_rps=$(field rps "${res[fcfs_get-$c]}") peer_rps=$(field rps "${res[peer_get-$c]}") fcfs_vs_peer=$r" \
    "hello_rps=$(field rps "${res[fcfs_hello-$c]}") get_vs_hello=$h get_vs_hello_target=$(awk -v h="$h" 'BEGIN { print (h >= 0.85) ? "met" : "missed" }')" \
    "fcfs_cpu_us=$(field cpu_us "${res[fcfs_get-$c]}") fcfs_redis_cpu_us=$(field redis_cpu_us "${res[fcfs_get-$c]}")" \
    "peer_cpu_us=$(field cpu_us "${res[peer_get-$c]}") peer_redis_cpu_us=$(field redis_cpu_us "${res[peer_get-$c]}")" \
    "target=$(awk -v r="$r" -v c="$c" 'BEGIN { print (c != 256) ? "n/a" : (r >= 1.5) ? "met" : "missed" }') $BENCH_ID"
done
exit "$bad"
