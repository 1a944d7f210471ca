#!/usr/bin/env bash
# bench/reload_soak.sh -- hot reload under load: wrk hammers /hello for DURATION
# seconds while RELOADS `fcfs -c CONF -s reload` commands are sent, evenly spread.
# Fails (exit 1) unless wrk saw no socket errors and no 4xx/5xx, every reload
# command exited 0, and every worker's Lua generation advanced by RELOADS.
# env: DURATION=10 RELOADS=20 CONNS=64 THREADS=2 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10}
RELOADS=${RELOADS:-20}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

bench_init
# shellcheck disable=SC2119
fcfs_start

# generation of each worker, as "worker_id=generation" lines (asks until both answered)
generations() {
  local seen="" i body wid gen
  for i in $(seq 200); do
    body=$(curl -fsS --unix-socket "$FCFS_ADMIN" http://localhost/_host/status) || continue
    wid=$(sed -n 's/.*"worker_id":\([0-9]*\).*/\1/p' <<<"$body")
    gen=$(sed -n 's/.*"generation":\([0-9]*\).*/\1/p' <<<"$body")
    [[ " $seen " == *" $wid="* ]] || seen+=" $wid=$gen"
    (( $(wc -w <<<"$seen") >= 2 )) && break
  done
  tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort
}

before=$(generations)
echo "# generations before: $(tr '\n' ' ' <<<"$before")"

wrk_result soak -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s "$FCFS_URL/hello" >"$BENCH_TMP/soak.result" &
wrk_pid=$!
bench_on_exit "kill $wrk_pid"

interval=$(awk -v d="$DURATION" -v n="$RELOADS" 'BEGIN { printf "%.3f", d / (n + 1) }')
echo "\$ $FCFS_BIN -c $FCFS_CONF -s reload   # $RELOADS times, every ${interval}s" >&2
ok=0 failed=0 max_ms=0
for i in $(seq "$RELOADS"); do
  sleep "$interval"
  t0=$(date +%s%N)
  if (cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" -s reload) >>"$BENCH_TMP/reload.out" 2>&1; then
    ok=$((ok + 1))
  else
    failed=$((failed + 1))
    echo "reload $i failed: $(tail -1 "$BENCH_TMP/reload.out")" >&2
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  (( ms > max_ms )) && max_ms=$ms
done
wait "$wrk_pid"
sleep 0.5 # the last reload is applied asynchronously by the workers
after=$(generations)
echo "# generations after:  $(tr '\n' ' ' <<<"$after")"

# every worker must have advanced by RELOADS generations
gen_ok=1
while read -r line; do
  wid=${line%%=*} g0=${line#*=}
  g1=$(sed -n "s/^$wid=//p" <<<"$after")
  if [[ -z $g1 ]] || (( g1 - g0 != RELOADS )); then
    gen_ok=0
    echo "worker $wid: generation $g0 -> ${g1:-?}, expected +$RELOADS" >&2
  fi
done <<<"$before"
[[ -n $before ]] || gen_ok=0

line=$(cat "$BENCH_TMP/soak.result")
echo "$line"
sock=$(field sock_err "$line") non2xx=$(field non2xx "$line") rps=$(field rps "$line")
p99=$(field p99_ms "$line")
errs=$(grep -cE '\[(error|crit|alert|emerg)\]' "$BENCH_TMP/error.log" || true)
echo "# error log lines at error level or worse: $errs"
echo "RESULT reloads_ok=$ok/$RELOADS reload_cmd_max_ms=$max_ms generations_ok=$gen_ok rps=$rps p99_ms=$p99 sock_err=$sock non2xx=$non2xx $BENCH_ID"
if (( sock == 0 && non2xx == 0 && ok == RELOADS && gen_ok == 1 )); then
  echo "PASS"
else
  echo "FAIL"
  exit 1
fi
