#!/usr/bin/env bash
# bench/answers_vs_hello.sh -- the shop's cheapest answers against the HTTP + Lua floor, in one run on
# one machine (fcfs, 2 workers, the shop's app on a private Redis and MariaDB, wrk on the same cores):
#   fcfs_hello  GET /hello
#   fcfs_stock  GET /api/products/:id/stock (a NORMAL product: the stock read, cached per worker)
#   fcfs_sold   POST /api/flash/products/:id/entry on a sold-out FLASH product by one signed-in
#               member clicking again and again: the auth check (token cache), the stock gate
#               (no Redis command) and the 409 OUT_OF_STOCK answer
# Every request of a target is the same bytes (wrk builds it once: no per-request Lua in the
# client), so the client costs the same per request for the three and the ratios are the server's.
# A crowd of members, each request another token, is bench/flash_vs_peer.sh's sold path.
# Same method as bench/hello_vs_peer.sh (warm-up, rotated rounds, median of the per-round ratios).
# Targets (the hot-path issue): stock/hello >= 0.8, sold/hello >= 0.8. Exits 1 on socket errors, a
# non-2xx on hello or stock, or anything but a 409 on the sold-out entry.
# env: DURATION=5 CONNS="256" THREADS=2 ROUNDS=3 WARMUP=1 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-256}
compare_defaults

bench_init
shop_start "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }"
stock_pid=$(shop_product NORMAL 1000000)
sold_pid=$(shop_product FLASH 0)
(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_tokens.lua 1 1 "$BENCH_TMP/token.txt")
{
  echo 'wrk.method = "POST"'
  echo "wrk.headers[\"Authorization\"] = \"Bearer $(cat "$BENCH_TMP/token.txt")\""
  cat "$BENCH_ROOT/bench/report.lua"
} >"$BENCH_TMP/sold.lua"

# shellcheck disable=SC2034 # url, order, RATIOS, ERRORS_EXPECTED and wrk_script are read by compare_targets
declare -A url=(
  [fcfs_hello]=$FCFS_URL/hello
  [fcfs_stock]=$FCFS_URL/api/products/$stock_pid/stock
  [fcfs_sold]=$FCFS_URL/api/flash/products/$sold_pid/entry
)
declare -A wrk_script=([fcfs_sold]=$BENCH_TMP/sold.lua)
echo "# probe fcfs_sold: $(curl -sS -X POST -H "Authorization: Bearer $(cat "$BENCH_TMP/token.txt")" \
  -w ' %{http_code}' "${url[fcfs_sold]}")"
order=(fcfs_hello fcfs_stock fcfs_sold)
# shellcheck disable=SC2034
RATIOS="fcfs_stock/fcfs_hello fcfs_sold/fcfs_hello"
# shellcheck disable=SC2034
ERRORS_EXPECTED="fcfs_sold"
compare_targets

echo
for c in $CONNS; do
  line="RESULT conns=$c hello_rps=$(field rps "${res[fcfs_hello-$c]}")"
  for t in stock sold; do
    r=${ratio[fcfs_$t/fcfs_hello-$c]}
    line+=" ${t}_rps=$(field rps "${res[fcfs_$t-$c]}") ${t}_vs_hello=$r"
    line+=" ${t}_target=$(awk -v r="$r" 'BEGIN { print (r >= 0.8) ? "met" : "missed" }')"
  done
  for t in hello stock sold; do line+=" ${t}_cpu_us=$(field cpu_us "${res[fcfs_$t-$c]}")"; done
  echo "$line $BENCH_ID"
done
exit "$bad"
