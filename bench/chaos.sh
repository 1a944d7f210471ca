#!/usr/bin/env bash
# bench/chaos.sh -- a flash sale with one fault injected while it runs, then the proof that nothing
# was lost: bash bench/chaos.sh SCENARIO (or `all`: every scenario in turn, then a table; `list`).
#
# Each scenario is the sale of bench/flash_sale.sh, smaller (fresh private Redis + MariaDB under a
# temp dir: lib.sh shop_start; members and product: bench/flash_setup.lua; load: bench/flash_client.c,
# which logs every pay answered 200), and FAULT_AT seconds after the opening one fault:
#   redis-kill-always    kill -9 redis-server (appendfsync always), restart it from its AOF 1 s later
#   redis-kill-everysec  the same with appendfsync everysec (may lose the last second)
#   redis-failover       a replica and a redis-sentinel watch the master; fcfs knows only the sentinel
#                        (redis_sentinels): kill -9 of the master, the sentinel promotes the replica
#   mysql-stop           SIGSTOP mariadbd for 5 s, then SIGCONT
#   mysql-restart        stop mariadbd (TERM) while pays are in flight, start it again
#   worker-kill          kill -9 of a worker (worker 0: it also runs the flash watch and subscriber)
#   master-kill          kill -9 of the fcfs master, restarted 100 ms later as etc/fcfs.service would
#   reloads              10 reloads (fcfs -s reload), one every 0.5 s
# Then, after the client ends and max(hold_seconds, flash_settle_seconds) + the sweep interval + 2 s:
#   client               the load client ran to its end and printed its RESULT (else its log of pays
#                        answered 200 may be cut short, and `lost` would count nothing)
#   reconcile            fcfs run lua/cli/reconcile.lua PID exits 0 (initial = remaining + held + paid)
#   oversold             PAID flash orders in MySQL beyond the units: must be 0 (and no buyer twice)
#   lost                 pays answered 200 whose flash order is not PAID with its order in MySQL: 0
#   orphans              orders of the product in MySQL without their PAID flash order (twice, or a
#                        failed pay recorded anyway): 0
#   leaked               holds still HELD or PAYING in Redis: 0
#   serves               /readyz answers 200 and a fresh entry is answered (not 5xx) with no manual step
# recovered_s is the time from the end of the fault to the first 200 of /readyz (polled every 0.2 s,
# at most RECOVER_SECONDS). One line per scenario: CHAOS scenario=... result=PASS|FAIL ...
#
# env: N=400 S=80 OPENS_IN=3 HOLD_SECONDS=3 SETTLE_SECONDS=5 FAILURE_RATE=0.2 ABANDON=20
#      MAX_SECONDS=40 FAULT_AT=2 RECOVER_SECONDS=30 WAIT_SECONDS (the wait before the checks)
#      TAP=1 (also print TAP lines, one per check)
set -euo pipefail
SCENARIOS=(redis-kill-always redis-kill-everysec redis-failover mysql-stop mysql-restart worker-kill master-kill
  reloads)
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: bash bench/chaos.sh SCENARIO|all|list (scenarios: ${SCENARIOS[*]})" >&2; exit 2; }
scenario=${1:-}
[[ -n $scenario ]] || usage

if [[ $scenario = list ]]; then printf '%s\n' "${SCENARIOS[@]}"; exit 0; fi

# all: every scenario in its own run of this script, then the table
if [[ $scenario = all ]]; then
  declare -A line
  failed=0
  for s in "${SCENARIOS[@]}"; do
    out=$(bash "$0" "$s" 2>&1) || failed=$((failed + 1))
    line[$s]=$(grep '^CHAOS ' <<<"$out" | tail -1)
    [[ -n ${line[$s]} ]] || line[$s]="CHAOS scenario=$s result=FAIL (no result line; last output: $(tail -3 <<<"$out" | tr '\n' ' '))"
    echo "${line[$s]}"
  done
  f() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
  echo
  echo "| scenario | result | pays 200 / PAID in MySQL | oversold | lost | orphans | leaked holds | reconcile | serves again | recovered s | client errors |"
  echo "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|"
  for s in "${SCENARIOS[@]}"; do
    l=${line[$s]}
    printf '| %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "$(f result "$l")" "$(f paid_200 "$l")" \
      "$(f paid_mysql "$l")" "$(f oversold "$l")" "$(f lost "$l")" "$(f orphans "$l")" "$(f leaked "$l")" \
      "$(f reconcile "$l")" "$(f serves "$l")" "$(f recovered_s "$l")" "$(f client_errors "$l")"
  done
  echo
  echo "$((${#SCENARIOS[@]} - failed)) of ${#SCENARIOS[@]} scenarios passed ($(f commit "${line[${SCENARIOS[0]}]}"))"
  ((failed == 0))
  exit
fi

[[ " ${SCENARIOS[*]} " = *" $scenario "* ]] || usage

# shellcheck source=bench/lib.sh
source "$here/lib.sh"
N=${N:-400}
S=${S:-80}
OPENS_IN=${OPENS_IN:-3}
HOLD_SECONDS=${HOLD_SECONDS:-3}
SETTLE_SECONDS=${SETTLE_SECONDS:-5}
FAILURE_RATE=${FAILURE_RATE:-0.2}
ABANDON=${ABANDON:-20}
MAX_SECONDS=${MAX_SECONDS:-40}
FAULT_AT=${FAULT_AT:-2}
RECOVER_SECONDS=${RECOVER_SECONDS:-30}
SWEEP=0.5
export BENCH_ROOT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_init
client=$BENCH_TMP/flash_client
bench_run cc -O2 -Wall -Wextra -o "$client" "$BENCH_ROOT/bench/flash_client.c"

SVC=$BENCH_TMP/svc
bench_on_exit "bash '$BENCH_ROOT/etc/dev' services stop '$SVC'"
FCFS_DEV_REDIS_PORT=0 FCFS_DEV_MYSQL_PORT=0 bash "$BENCH_ROOT/etc/dev" services start "$SVC" >&2
redis_pid() { tr -dc '0-9' <"$SVC/redis/redis.pid"; }
mysql_pid() { tr -dc '0-9' <"$SVC/mysql/mysql.pid"; }
# wait until PID is gone (or a zombie: nobody may reap it here)
wait_gone() {
  local st
  for _ in $(seq 600); do
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ $st = Z || $st = X ]] && return 0
    sleep 0.1
  done
  return 1
}
conf_port() { awk '$1 == "port" { print $NF; exit }' "$1"; }

# redis-cli on the current master (the sentinel's answer in the failover scenario)
rcli() {
  if [[ -n ${SENTINEL_PORT:-} ]]; then
    local port
    port=$(redis-cli -p "$SENTINEL_PORT" SENTINEL get-master-addr-by-name chaos | sed -n 2p)
    redis-cli -h 127.0.0.1 -p "$port" "$@"
  else
    redis-cli -s "$SVC/redis/redis.sock" "$@"
  fi
}

# a background server started here: NAME, pid file, command...
start_bg() {
  local name=$1 pidfile=$2
  shift 2
  setsid "$@" </dev/null >>"$BENCH_TMP/$name.out" 2>&1 &
  echo $! >"$pidfile"
  bench_on_exit "kill -TERM \$(cat '$pidfile') 2>/dev/null"
}

extra=()
case $scenario in
  redis-kill-always) rcli CONFIG SET appendfsync always >/dev/null ;;
  redis-failover)
    master_port=$(conf_port "$SVC/redis/redis.conf")
    replica_port=$(free_port)
    SENTINEL_PORT=$(free_port)
    mkdir -p "$BENCH_TMP/replica" "$BENCH_TMP/sentinel"
    start_bg replica "$BENCH_TMP/replica/pid" redis-server --bind 127.0.0.1 --port "$replica_port" \
      --dir "$BENCH_TMP/replica" --appendonly yes --save '' --replicaof 127.0.0.1 "$master_port"
    cat >"$BENCH_TMP/sentinel/sentinel.conf" <<EOF
bind 127.0.0.1
port $SENTINEL_PORT
dir $BENCH_TMP/sentinel
sentinel monitor chaos 127.0.0.1 $master_port 1
sentinel down-after-milliseconds chaos 1000
sentinel failover-timeout chaos 10000
EOF
    start_bg sentinel "$BENCH_TMP/sentinel/pid" redis-sentinel "$BENCH_TMP/sentinel/sentinel.conf"
    for _ in $(seq 150); do # the sentinel learns of the replica from the master's INFO
      redis-cli -p "$SENTINEL_PORT" SENTINEL replicas chaos 2>/dev/null | grep -qx "$replica_port" && break
      sleep 0.2
    done
    redis-cli -p "$SENTINEL_PORT" SENTINEL replicas chaos | grep -qx "$replica_port" ||
      { echo "the sentinel does not see the replica" >&2; exit 1; }
    extra=("redis_sentinels = { \"127.0.0.1:$SENTINEL_PORT\" }" 'redis_master_name = "chaos"')
    ;;
esac

shop_start "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }" "max_connections = $((N + 1000))" \
  "idle_timeout = 300" "${extra[@]}" \
  "app = { hold_seconds = $HOLD_SECONDS, flash_sweep_interval = $SWEEP, flash_settle_seconds = $SETTLE_SECONDS, payment = { failure_rate = $FAILURE_RATE } }"
master_pid=$FCFS_PID
# workers orphaned by the master-kill scenario are stopped too
bench_on_exit "kill -KILL \$(cat '$BENCH_TMP/workers' 2>/dev/null) 2>/dev/null"
fcfs_workers >"$BENCH_TMP/workers"

tokens=$BENCH_TMP/tokens.txt
flash_setup "$N" "$S" "$OPENS_IN" "$tokens"
pid=$FLASH_PID opens_at=$FLASH_OPENS_AT
echo "# chaos $scenario: $N members, product $pid: $S units, opens at $(date -u -d "@$opens_at" '+%H:%M:%S') UTC," \
  "fault at +${FAULT_AT}s, hold_seconds $HOLD_SECONDS, settle $SETTLE_SECONDS s, failure_rate $FAILURE_RATE, abandon $ABANDON%"

paid_log=$BENCH_TMP/paid.txt
echo "\$ flash_client 127.0.0.1 $FCFS_PORT $pid tokens $opens_at $S $MAX_SECONDS $ABANDON paid.txt" >&2
"$client" 127.0.0.1 "$FCFS_PORT" "$pid" "$tokens" "$opens_at" "$S" "$MAX_SECONDS" "$ABANDON" "$paid_log" \
  >"$BENCH_TMP/client.out" 2>"$BENCH_TMP/client.err" &
client_pid=$!
bench_on_exit "kill $client_pid"

sleep "$(awk -v t="$opens_at" -v d="$FAULT_AT" -v now="$(date +%s.%N)" 'BEGIN { x = t + d - now; print (x > 0 ? x : 0) }')"
echo "# $(date -u '+%H:%M:%S.%N' | cut -c1-12) fault: $scenario"
case $scenario in
  redis-kill-always | redis-kill-everysec)
    p=$(redis_pid)
    kill -KILL "$p"
    wait_gone "$p"
    rm -f "$SVC/redis/redis.pid" # etc/dev would wait for a zombie
    sleep 1
    FCFS_DEV_REDIS_PORT=0 bash "$BENCH_ROOT/etc/dev" services start "$SVC" >&2
    [[ $scenario = redis-kill-always ]] && rcli CONFIG SET appendfsync always >/dev/null
    ;;
  redis-failover)
    kill -KILL "$(redis_pid)"
    for _ in $(seq 150); do
      [[ $(redis-cli -p "$SENTINEL_PORT" SENTINEL get-master-addr-by-name chaos | sed -n 2p) = "$replica_port" ]] && break
      sleep 0.1
    done
    echo "# sentinel: master is now 127.0.0.1:$(redis-cli -p "$SENTINEL_PORT" SENTINEL get-master-addr-by-name chaos | sed -n 2p)"
    ;;
  mysql-stop)
    kill -STOP "$(mysql_pid)"
    sleep 5
    kill -CONT "$(mysql_pid)"
    ;;
  mysql-restart)
    p=$(mysql_pid)
    kill -TERM "$p"
    wait_gone "$p"
    rm -f "$SVC/mysql/mysql.pid"
    FCFS_DEV_MYSQL_PORT=0 bash "$BENCH_ROOT/etc/dev" services start "$SVC" >&2
    ;;
  worker-kill) kill -KILL "$(pgrep -P "$master_pid" | head -1)" ;;
  master-kill)
    # then what the supervisor does (etc/fcfs.service: Restart=always, RestartSec=100ms): a new
    # master on the same config, while the old workers drain
    kill -KILL "$master_pid"
    sleep 0.1
    (cd "$BENCH_ROOT" && exec "$FCFS_BIN" -c "$FCFS_CONF") >>"$BENCH_TMP/fcfs.out" 2>&1 &
    FCFS_PID=$!
    ;;
  reloads)
    for i in $(seq 10); do
      (cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" -s reload) >&2 || echo "# reload $i failed"
      sleep 0.5
    done
    ;;
esac
fault_end=$(date +%s.%N)
recovered_s=none
for _ in $(seq $((RECOVER_SECONDS * 5))); do
  if curl -fsS -o /dev/null --max-time 1 "$FCFS_URL/readyz" 2>/dev/null; then
    recovered_s=$(awk -v a="$fault_end" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    break
  fi
  sleep 0.2
done
echo "# recovered (/readyz 200) after: $recovered_s s"

client_rc=0
wait "$client_pid" || client_rc=$?
result=$(grep '^RESULT ' "$BENCH_TMP/client.out" || echo "RESULT (the client printed none)")
echo "$result"
((client_rc == 0)) || echo "# the client exited with status $client_rc: $(tail -2 "$BENCH_TMP/client.err" | tr '\n' ' ')"
wait_s=${WAIT_SECONDS:-$(awk -v h="$HOLD_SECONDS" -v s="$SETTLE_SECONDS" -v w="$SWEEP" 'BEGIN { print (h > s ? h : s) + w + 2 }')}
echo "# waiting ${wait_s}s (default: max(hold_seconds, flash_settle_seconds) + sweep interval + 2 s)"
sleep "$wait_s"

# the checks
paid_mysql=$(shop_sql "SELECT COUNT(*) FROM flash_orders WHERE product_id = $pid AND state = 'PAID'")
oversold=$((paid_mysql > S ? paid_mysql - S : 0))
dups=$(shop_sql "SELECT COUNT(*) FROM (SELECT user_id FROM flash_orders WHERE product_id = $pid AND state = 'PAID' \
  GROUP BY user_id HAVING COUNT(*) > 1) d")
paid_200=$(sort -u "$paid_log" | wc -l)
dup_200=$(($(wc -l <"$paid_log") - paid_200))
found=0
if ((paid_200 > 0)); then
  pairs=$(sort -u "$paid_log" | awk '{ printf "%s(%s,%s)", (NR > 1 ? "," : ""), $1, ($2 == "" ? 0 : $2) }')
  found=$(shop_sql "SELECT COUNT(*) FROM flash_orders f JOIN orders o ON o.id = f.order_id \
    WHERE f.state = 'PAID' AND (f.id, f.order_id) IN ($pairs)")
fi
lost=$((paid_200 - found + dup_200))
orphans=$(shop_sql "SELECT COUNT(*) FROM order_items i LEFT JOIN flash_orders f ON f.order_id = i.order_id \
  AND f.state = 'PAID' WHERE i.product_id = $pid AND f.id IS NULL")
leaked=$(rcli HVALS "{p:$pid}:s" | grep -cE '^(HELD|PAYING)\|' || true)
rec=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run lua/cli/reconcile.lua "$pid" 2>&1) && rec_ok=OK || rec_ok=FAILED
echo "# reconcile: $rec"
ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$FCFS_URL/readyz" || true)
entry=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H "Authorization: Bearer $(tail -1 "$tokens")" \
  "$FCFS_URL/api/flash/products/$pid/entry" || true)
serves=no
[[ $ready = 200 && $entry =~ ^[1-4] ]] && serves=yes
echo "# after the wait: /readyz $ready, an entry $entry; $paid_200 pays answered 200 ($dup_200 twice)," \
  "$found of them PAID in MySQL with their order"

# the verdict: every check must hold; with TAP=1 each is also a TAP line
n=0
pass=PASS
rec_good=$([[ $rec_ok = OK ]] && echo 1 || echo 0)
serves_good=$([[ $serves = yes ]] && echo 1 || echo 0)
check() { # check DESCRIPTION ARITHMETIC-CONDITION DETAIL
  n=$((n + 1))
  if (($2)); then
    [[ ${TAP:-0} != 1 ]] || echo "ok $n - $scenario: $1"
  else
    pass=FAIL
    [[ ${TAP:-0} != 1 ]] || echo "not ok $n - $scenario: $1 ($3)"
  fi
}
# without the client's report, its log of pays answered 200 may be cut short: lost would count nothing
client_good=$([[ $client_rc = 0 && $result = "RESULT conns="* ]] && echo 1 || echo 0)
check "the load client ran to its end and reported" "$client_good" "exit status $client_rc, $result"
check "reconcile OK" "$rec_good" "$rec"
check "0 oversold, no buyer twice" "oversold + dups == 0" "oversold $oversold, duplicate buyers $dups"
check "every pay answered 200 is PAID once in MySQL with its order" "lost == 0" "$lost of $paid_200 missing"
check "no order of the product without its PAID flash order" "orphans == 0" "$orphans orphans"
check "no hold HELD or PAYING after the wait" "leaked == 0" "$leaked holds"
check "serves again (/readyz, an entry) with no manual step" "$serves_good" "/readyz $ready, entry $entry"
[[ ${TAP:-0} != 1 ]] || echo "1..$n"
echo "CHAOS scenario=$scenario result=$pass reconcile=$rec_ok oversold=$oversold duplicate_buyers=$dups" \
  "paid_200=$paid_200 paid_mysql=$paid_mysql lost=$lost orphans=$orphans leaked=$leaked serves=$serves" \
  "recovered_s=$recovered_s client_exit=$client_rc client_errors=$(field errors "$result") $BENCH_ID"
[[ $pass = PASS ]]
