#!/usr/bin/env bash
# bench/flash_vs_peer.sh -- the flash entry against the peer's purchase, in one run on one machine:
# fcfs POST /api/flash/products/:id/entry (lua/flash.lua, one Redis script) vs the peer's
# POST /purchase (nginx + lua-nginx-module, one EVALSHA), on two paths:
#   buy  -- plenty of stock, every request another member: each entry holds a unit. fcfs members
#           carry access tokens minted before the clock starts (bench/flash_tokens.lua, the token
#           key, no argon2), fed to wrk by bench/flash_entry.lua; each fcfs run gets a new product
#           (10^7 units), each peer run a reset product (stock:1, open:1, buyers:1), so no member
#           ever buys twice. The peer's requests come from its own wrk/purchase.lua.
#   sold -- stock 0: fcfs answers 409 OUT_OF_STOCK from its stock gate (no Redis command), the
#           peer runs its script, which answers 409 sold_out. Every answer must be a 409. The fcfs
#           requests come from a crowd of SOLD_MEMBERS members clicking again and again (default
#           10,000, the buyers of bench/flash_sale.sh; each worker then checks a token's signature
#           once and finds it in its token cache afterwards); SOLD_MEMBERS=$TOKENS makes every
#           sold-out request another member too (a signature check each). The peer checks no token.
# Both servers run 2 workers and talk to one redis-server over TCP loopback: the one the peer's
# up.sh starts (AOF, appendfsync everysec -- what etc/redis.conf.in configures for fcfs too), so
# persistence and transport are the same. fcfs's MySQL (a private MariaDB, etc/dev services) only
# creates the products: the entry never reads it. fcfs's flash timer (expiry sweeper + order event
# drain into MySQL) runs once at start and then only after an hour (app.flash_sweep_interval =
# 3600): the peer has no consumer of its order stream either, so neither side pays for one.
# Every target is warmed up at every measured connection count; the sweep is repeated ROUNDS
# times, each round starting with another target. The table shows the median round by req/s, the
# server CPU per request (workers), Redis's CPU and commands per request; each fcfs/peer ratio
# (targets at 256 connections: buy >= 1.5, sold >= 2.5) is the median of the per-round ratios.
# Then bench/flash_entry_cpu.lua hands CPU_N entries of each path straight to the app's handler in
# a `fcfs run` process and prints the CPU time per entry (CPU sold_us= buy_us=): the Lua side
# alone, a figure a busy machine disturbs far less than req/s. PERF=1 adds perf profiles.
# Every RESULT line names the commit and build type. Exits 1 on socket errors, on a non-2xx answer
# on the buy path or a 2xx on the sold path.
# env: DURATION=5 CONNS="64 256" THREADS=2 ROUNDS=3 WARMUP=1 TOKENS=400000 (members per run at most)
#      SOLD_MEMBERS=10000 CPU_N=20000 PERF=0
#      FCFS_BIN=build/fcfs PEER_DIR=../shared/peer PEER_WORKERS=2
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
compare_defaults
TOKENS_N=${TOKENS:-400000}
SOLD_MEMBERS=${SOLD_MEMBERS:-10000}
UNITS=10000000

bench_init
peer_start
redis="127.0.0.1:$PEER_REDIS_PORT"
rcli() { redis-cli -p "$PEER_REDIS_PORT" "$@"; }
echo "# redis: $redis, $(rcli config get appendonly | tail -1) appendonly, appendfsync $(rcli config get appendfsync | tail -1)"
shop_start "redis = \"$redis\"" "shared_dicts = { revoked = \"8m\", limits = \"4m\", catalog = \"8m\" }" \
  "app = { flash_sweep_interval = 3600, hold_seconds = 3600 }"

export TOKENS=$BENCH_TMP/tokens.txt THREADS
bench_run "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_tokens.lua "$TOKENS_N" 1000000 "$TOKENS" >&2

sold_pid=$(flash_product 0)
buy_pid=

declare -A url=(
  [fcfs_buy]=""
  [peer_buy]=$PEER_URL/purchase
  [fcfs_sold]=$FCFS_URL/api/flash/products/$sold_pid/entry
  [peer_sold]=$PEER_URL/purchase
)
head -n "$SOLD_MEMBERS" "$TOKENS" >"$BENCH_TMP/crowd.txt"
cat "$BENCH_ROOT/bench/flash_entry.lua" "$BENCH_ROOT/bench/report.lua" >"$BENCH_TMP/fcfs_entry.lua"
{ echo "tokens_file = \"$BENCH_TMP/crowd.txt\""; cat "$BENCH_TMP/fcfs_entry.lua"; } >"$BENCH_TMP/fcfs_crowd.lua"
cat "$PEER_DIR/wrk/purchase.lua" "$BENCH_ROOT/bench/report.lua" >"$BENCH_TMP/peer_purchase.lua"
declare -A wrk_script=(
  [fcfs_buy]=$BENCH_TMP/fcfs_entry.lua [fcfs_sold]=$BENCH_TMP/fcfs_crowd.lua
  [peer_buy]=$BENCH_TMP/peer_purchase.lua [peer_sold]=$BENCH_TMP/peer_purchase.lua
)

# before every run: the previous buy product's keys go (UNLINK: freed off Redis's main thread), then
# the target's state is set up afresh
before_run() {
  if [[ -n $buy_pid ]]; then
    rcli unlink "{p:$buy_pid}:s" "{p:$buy_pid}:dl" "{p:$buy_pid}:ev" >/dev/null
    buy_pid=
  fi
  case $1 in
    fcfs_buy)
      buy_pid=$(flash_product "$UNITS")
      url[fcfs_buy]=$FCFS_URL/api/flash/products/$buy_pid/entry ;;
    peer_buy) rcli unlink buyers:1 orders:stream >/dev/null; rcli mset stock:1 "$UNITS" open:1 1 >/dev/null ;;
    peer_sold) rcli unlink buyers:1 orders:stream >/dev/null; rcli mset stock:1 0 open:1 1 >/dev/null ;;
  esac
}

probe() { # probe TARGET -> "STATUS BODY" of one request as wrk makes it
  local auth=()
  [[ $1 = fcfs* ]] && auth=(-H "Authorization: Bearer $(tail -1 "$TOKENS")")
  before_run "$1"
  curl -sS -X POST "${auth[@]}" -H 'Content-Type: application/json' -d '{"user_id":1,"product_id":1}' \
    -w ' %{http_code}' "${url[$1]}"
}
for t in fcfs_buy peer_buy fcfs_sold peer_sold; do echo -n "# probe $t: "; probe "$t"; echo; done

order=(fcfs_buy peer_buy fcfs_sold peer_sold)
RATIOS="fcfs_buy/peer_buy fcfs_sold/peer_sold"
ERRORS_EXPECTED="fcfs_sold peer_sold"
REDIS_CLI="redis-cli -p $PEER_REDIS_PORT"
redis_pid=$(rcli info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
EXTRA_CPU="redis:$redis_pid"
compare_targets

# what fcfs answered on the entry route (its /metrics): 201 on the buy path, 409 on the sold-out path;
# anything else (a 503 is a Redis timeout on an overloaded machine) is explained by the error log
echo "# fcfs answers to entries, by status (/metrics):" \
  "$(curl -sS --unix-socket "$FCFS_ADMIN" http://fcfs/metrics | grep '^fcfs_requests_total{route="/api/flash/products/:id\[%d\]/entry"' |
    sed 's/.*status="\([0-9]*\)"} \([0-9]*\)/\1:\2/' | paste -sd' ')"
if ((bad)); then echo "# error log (last lines):"; tail -n 5 "$BENCH_TMP/error.log" | cut -c1-300; fi

# the Lua side alone, in process (no HTTP, no load from wrk): CPU time per entry on both paths
before_run fcfs_buy
cpu=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_entry_cpu.lua "$sold_pid" "$buy_pid" "$TOKENS" \
  "${CPU_N:-20000}")
echo "$cpu $BENCH_ID"

# PERF=1: one more run of each fcfs target at the last connection count under perf record (cpu-clock,
# call graphs) of the fcfs workers and of redis-server; the top symbols of each are printed, the
# data kept in BENCH_TMP (BENCH_KEEP=1)
if [[ ${PERF:-0} = 1 ]]; then
  for t in fcfs_buy fcfs_sold; do
    before_run "$t"
    c=${CONNS##* }
    # shellcheck disable=SC2046
    perf record -q -e cpu-clock -F 1999 -g -o "$BENCH_TMP/perf-$t.data" -p "$(fcfs_workers | tr ' ' ',' | sed 's/,$//')" \
      -- sleep "$DURATION" 2>/dev/null &
    p1=$!
    perf record -q -e cpu-clock -F 1999 -g -o "$BENCH_TMP/perf-$t-redis.data" -p "$redis_pid" -- sleep "$DURATION" \
      2>/dev/null &
    p2=$!
    WRK_SCRIPT=${wrk_script[$t]} wrk_result "perf-$t" -t"$THREADS" -c"$c" -d"${DURATION}s" "${url[$t]}"
    wait "$p1" "$p2" || true
    for d in "$t" "$t-redis"; do
      echo "# perf $d: top symbols (self, cpu-clock)"
      perf report -i "$BENCH_TMP/perf-$d.data" --no-children --stdio --sort dso,sym -g none 2>/dev/null |
        grep -v '^#' | sed '/^$/d' | head -25 || true
    done
  done
fi

echo
for c in $CONNS; do
  for path in buy:1.5 sold:2.5; do
    p=${path%:*} want=${path#*:}
    r=${ratio[fcfs_$p/peer_$p-$c]}
    echo "RESULT path=$p conns=$c fcfs_rps=$(field rps "${res[fcfs_$p-$c]}") peer_rps=$(field rps "${res[peer_$p-$c]}")" \
      "fcfs_vs_peer=$r fcfs_cpu_us=$(field cpu_us "${res[fcfs_$p-$c]}") peer_cpu_us=$(field cpu_us "${res[peer_$p-$c]}")" \
      "fcfs_redis_cmds=$(field redis_cmds "${res[fcfs_$p-$c]}") peer_redis_cmds=$(field redis_cmds "${res[peer_$p-$c]}")" \
      "fcfs_script_us=$(field redis_script_us "${res[fcfs_$p-$c]}") peer_script_us=$(field redis_script_us "${res[peer_$p-$c]}")" \
      "target=$(awk -v r="$r" -v c="$c" -v w="$want" 'BEGIN { print (c != 256) ? "n/a" : (r >= w) ? "met" : "missed" }')" \
      "$BENCH_ID"
  done
done
exit "$bad"
