#!/usr/bin/env bash
# bench/flash_sale.sh -- the flash sale simulation, one command: fcfs (2 workers) on a private
# Redis and MariaDB under the temp dir; N members (tokens minted with the token key before the
# clock starts: bench/flash_setup.lua), one FLASH product of S units opening OPENS_IN seconds
# later; N concurrent clients on N keep-alive connections (bench/flash_client.c, C on epoll) hit
# the entry at the opening; ABANDON% of the winners never pay (their holds expire after
# HOLD_SECONDS), the others pay through the simulator (FAILURE_RATE declined, then they enter
# again); losers retry the entry every ~100 ms until S orders are paid.
# Summary: attempts, req/s, p50/p99 per endpoint, time to sell out, paid orders in MySQL,
# oversold, duplicate buyers, reconcile.
# env: N=10000 S=100 OPENS_IN=5 HOLD_SECONDS=3 FAILURE_RATE=0.2 ABANDON=20 MAX_SECONDS=120 FD_LIMIT=30000
# (MAX_SECONDS bounds the client run; not SECONDS, which is bash's own clock)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${N:-10000}
S=${S:-100}
OPENS_IN=${OPENS_IN:-5}
HOLD_SECONDS=${HOLD_SECONDS:-3}
FAILURE_RATE=${FAILURE_RATE:-0.2}
ABANDON=${ABANDON:-20}
SECONDS_MAX=${MAX_SECONDS:-120}
FD_LIMIT=${FD_LIMIT:-30000}
export BENCH_ROOT

hard=$(ulimit -Hn)
want=$FD_LIMIT
[[ $hard != unlimited ]] && ((want > hard)) && want=$hard
ulimit -n "$want"
(($(ulimit -n) > N + 64)) || { echo "fd limit $(ulimit -n) too low for $N connections" >&2; exit 2; }

bench_init
client=$BENCH_TMP/flash_client
bench_run cc -O2 -Wall -Wextra -o "$client" "$BENCH_ROOT/bench/flash_client.c"
shop_start "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }" "max_connections = $((N + 1000))" \
  "idle_timeout = 300" "app = { hold_seconds = $HOLD_SECONDS, flash_sweep_interval = 0.5, payment = { failure_rate = $FAILURE_RATE } }"

tokens=$BENCH_TMP/tokens.txt
flash_setup "$N" "$S" "$OPENS_IN" "$tokens"
pid=$FLASH_PID opens_at=$FLASH_OPENS_AT
echo "# $N members, product $pid: $S units, opens at $(date -u -d "@$opens_at" '+%H:%M:%S') UTC," \
  "hold_seconds $HOLD_SECONDS, failure_rate $FAILURE_RATE, abandon $ABANDON%"

echo "\$ flash_client 127.0.0.1 $FCFS_PORT $pid tokens $opens_at $S $SECONDS_MAX $ABANDON" >&2
result=$("$client" 127.0.0.1 "$FCFS_PORT" "$pid" "$tokens" "$opens_at" "$S" "$SECONDS_MAX" "$ABANDON")
echo "$result"
last_paid=$(date +%s.%N)

# MySQL must hold exactly the paid orders within 2 s of the last successful payment
paid_mysql=0
for _ in $(seq 20); do
  paid_mysql=$(shop_sql "SELECT COUNT(*) FROM flash_orders WHERE product_id = $pid AND state = 'PAID'")
  [[ $paid_mysql -ge $(sed -n 's/.* paid=\([0-9]*\).*/\1/p' <<<"$result") ]] && break
  sleep 0.1
done
in_time=$(awk -v a="$last_paid" -v b="$(date +%s.%N)" 'BEGIN { print (b - a <= 2) ? "yes" : "no" }')
oversold=$((paid_mysql > S ? paid_mysql - S : 0))
dups=$(shop_sql "SELECT COUNT(*) FROM (SELECT user_id FROM flash_orders WHERE product_id = $pid AND state = 'PAID' \
  GROUP BY user_id HAVING COUNT(*) > 1) d")
rec=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run lua/cli/reconcile.lua "$pid" 2>&1) && rec_ok=OK || rec_ok=FAILED
echo "# reconcile: $rec"
echo "SUMMARY paid_in_mysql=$paid_mysql within_2s=$in_time oversold $oversold duplicate_buyers $dups" \
  "reconcile $rec_ok $BENCH_ID"
[[ $oversold = 0 && $dups = 0 && $rec_ok = OK ]]
