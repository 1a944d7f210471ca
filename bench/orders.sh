#!/usr/bin/env bash
# bench/orders.sh -- commerce costs, in one run on one machine (fcfs, 2 workers, a private Redis and
# MariaDB under the temp dir):
#   * GET /api/products/:id/stock (the cached hot path: no MySQL per request) vs GET /hello:
#     req/s, p99 and the server CPU per request -- target: the stock read costs at most 1.5x the
#     hello's CPU per request;
#   * POST /api/orders of 1 unit of one NORMAL product (one MySQL transaction with the conditional
#     stock UPDATE; all orders contend for that product's row lock): req/s and p99.
# Stock-read targets are interleaved and repeated ROUNDS times (median round by req/s kept).
# env: DURATION=5 CONNS=64 THREADS=2 ROUNDS=3 WARMUP=1 ORDER_CONNS=16 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
ORDER_CONNS=${ORDER_CONNS:-16}
export BENCH_ROOT

bench_init
shop_start "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }"
json_field() { luajit -e "print(require('cjson').decode(io.read('*a')).$1)"; }

# one member, verified and made ADMIN in MySQL (no public route does either), logged in
email="bench.$RANDOM@example.com" password="bench123!"
uid=$(curl -fsS -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\",\
\"name\":\"bench\",\"phone\":\"010-1234-5678\",\"address\":\"Seoul\"}" "$FCFS_URL/api/users" | json_field user_id)
shop_sql "UPDATE users SET status = 'VERIFIED', role = 'ADMIN' WHERE id = $uid"
BENCH_TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}" \
  "$FCFS_URL/api/auth/login" | json_field access_token)
export BENCH_TOKEN
pid=$(curl -fsS -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_TOKEN" \
  -d '{"name":"bench product","price":1000,"stock":1000000000}' "$FCFS_URL/api/products" | json_field id)
export ORDER_BODY="{\"items\":[{\"product_id\":$pid,\"quantity\":1}]}"

# the stock read vs hello, with the server CPU per request
declare -A url # read by compare_targets
# shellcheck disable=SC2034
order=(fcfs_hello fcfs_stock)
url[fcfs_hello]=$FCFS_URL/hello
url[fcfs_stock]=$FCFS_URL/api/products/$pid/stock
compare_targets

# order creation
echo "\$ wrk -s bench/order.lua -t$THREADS -c$ORDER_CONNS -d${DURATION}s $FCFS_URL/api/orders" >&2
wrk -s "$BENCH_ROOT/bench/order.lua" -t"$THREADS" -c"$ORDER_CONNS" -d"${DURATION}s" --timeout 10s \
  "$FCFS_URL/api/orders" >"$BENCH_TMP/wrk-orders.txt" 2>&1
orders=$(grep '^RESULT ' "$BENCH_TMP/wrk-orders.txt")
echo "| orders | $ORDER_CONNS | $(field rps "$orders") | $(field p50_ms "$orders") | $(field p99_ms "$orders") | - |" \
  "$(field sock_err "$orders") | $(field non2xx "$orders") |"
(($(field sock_err "$orders") == 0 && $(field non2xx "$orders") == 0)) || bad=1
echo "orders in MySQL: $(shop_sql 'SELECT COUNT(*) FROM orders')"

c=${CONNS%% *}
hc=$(field cpu_us "${res[fcfs_hello-$c]}") sc=$(field cpu_us "${res[fcfs_stock-$c]}")
ratio=$(awk -v a="$sc" -v b="$hc" 'BEGIN { printf "%.2f", a / b }')
echo "RESULT stock_rps=$(field rps "${res[fcfs_stock-$c]}") stock_p99_ms=$(field p99_ms "${res[fcfs_stock-$c]}")" \
  "hello_rps=$(field rps "${res[fcfs_hello-$c]}") stock_cpu_us=$sc hello_cpu_us=$hc stock_vs_hello_cpu=$ratio" \
  "orders_rps=$(field rps "$orders") orders_p99_ms=$(field p99_ms "$orders")" \
  "target=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.5) ? "met" : "missed" }')"
exit "$bad"
