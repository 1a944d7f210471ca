#!/usr/bin/env bash
# bench/c10k.sh -- 10,000 concurrent keep-alive connections to fcfs GET /hello.
#  1. bench/c10k_client.c (built here with cc) opens CONNS connections, keeps a
#     request in flight on every one for DURATION s, checks that each connection
#     was answered and none was dropped, then holds them all open and idle.
#  2. wrk -cCONNS -tTHREADS -dDURATION --timeout, counting socket errors.
# VmRSS of every worker (/proc/PID/status) is recorded idle before the run, at
# its peak under load (sampled every 0.5 s), with all connections held idle, and
# after they closed. The soft fd limit is raised with `ulimit -n` (within the
# hard limit) for the client and the server. Exits 1 unless every connection was
# answered with no errors in both runs.
# env: CONNS=10000 DURATION=10 HOLD=3 THREADS=2 FD_LIMIT=20000 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-10000}
DURATION=${DURATION:-10}
HOLD=${HOLD:-3}
THREADS=${THREADS:-2}
FD_LIMIT=${FD_LIMIT:-20000}

hard=$(ulimit -Hn)
want=$FD_LIMIT
[[ $hard != unlimited ]] && (( want > hard )) && want=$hard
ulimit -n "$want"
echo "# fd limit: soft $(ulimit -n), hard $hard (needs > $CONNS + a few)"
(( $(ulimit -n) > CONNS + 64 )) || { echo "fd limit too low for $CONNS connections" >&2; exit 2; }

bench_init
client=$BENCH_TMP/c10k_client
bench_run cc -O2 -Wall -Wextra -o "$client" "$BENCH_ROOT/bench/c10k_client.c"
fcfs_start "max_connections = $((CONNS + 1000))" "idle_timeout = 120"
workers=$(fcfs_workers)
echo "# workers: $workers"

rss_line() { # "pid=kB pid=kB"
  local p out=""
  for p in $workers; do out+="$p=$(rss_kb "$p") "; done
  echo "${out% }"
}
sum_rss() { tr ' ' '\n' <<<"$1" | awk -F= '{ s += $2 } END { print s }'; }

# sample the peak RSS of each worker while the command in the background runs
declare -A peak
sample_peak() {
  local pid=$1 p v
  for p in $workers; do peak[$p]=0; done
  while kill -0 "$pid" 2>/dev/null; do
    for p in $workers; do
      v=$(rss_kb "$p" 2>/dev/null || echo 0)
      (( v > ${peak[$p]} )) && peak[$p]=$v
    done
    sleep 0.5
  done
}
peak_line() { local p out=""; for p in $workers; do out+="$p=${peak[$p]} "; done; echo "${out% }"; }

idle=$(rss_line)
echo "# RSS idle (kB): $idle"

# 1. the c10k client: all connections answered and kept
echo "\$ c10k_client 127.0.0.1 $FCFS_PORT /hello $CONNS $DURATION $HOLD" >&2
"$client" 127.0.0.1 "$FCFS_PORT" /hello "$CONNS" "$DURATION" "$HOLD" >"$BENCH_TMP/client.out" 2>"$BENCH_TMP/client.err" &
cpid=$!
bench_on_exit "kill $cpid"
sleep 1
sample_peak_until() { # like sample_peak, but stop once the client printed its RESULT
  local p v
  for p in $workers; do peak[$p]=0; done
  while kill -0 "$cpid" 2>/dev/null && ! grep -q RESULT "$BENCH_TMP/client.out"; do
    for p in $workers; do
      v=$(rss_kb "$p" 2>/dev/null || echo 0)
      (( v > ${peak[$p]} )) && peak[$p]=$v
    done
    sleep 0.5
  done
}
sample_peak_until
load=$(peak_line)
sleep 0.5
held=$(rss_line)
conns_now=$(ss -Htn state established "( sport = :$FCFS_PORT )" | wc -l)
client_rc=0
wait "$cpid" || client_rc=$?
cres=$(grep RESULT "$BENCH_TMP/client.out" || echo "RESULT none")
sleep 1
after=$(rss_line)
echo "client $cres"
echo "# server-side established connections while held: $conns_now"
echo "# RSS peak under load (kB): $load"
echo "# RSS with $CONNS idle keep-alive connections held (kB): $held"
echo "# RSS after the client closed them (kB): $after"

# 2. wrk with the same connection count
wrk_result c10k-wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s "$FCFS_URL/hello" >"$BENCH_TMP/wrk.result" &
wpid=$!
bench_on_exit "kill $wpid"
sample_peak "$wpid"
wait "$wpid"
wload=$(peak_line)
wres=$(cat "$BENCH_TMP/wrk.result")
echo "$wres"
echo "# RSS peak under wrk load (kB): $wload"
errs=$(grep -cE '\[(error|crit|alert|emerg)\]' "$BENCH_TMP/error.log" || true)
echo "# error log lines at error level or worse: $errs"

nw=$(wc -w <<<"$workers")
echo
echo "| phase | RSS per worker (kB) | total (kB) |"
echo "|---|---|---:|"
echo "| idle, before | $idle | $(sum_rss "$idle") |"
echo "| peak, c10k_client load | $load | $(sum_rss "$load") |"
echo "| $CONNS connections held idle | $held | $(sum_rss "$held") |"
echo "| after close | $after | $(sum_rss "$after") |"
echo "| peak, wrk load | $wload | $(sum_rss "$wload") |"
echo
per_conn=$(awk -v h="$(sum_rss "$held")" -v i="$(sum_rss "$idle")" -v c="$CONNS" 'BEGIN { printf "%.2f", (h - i) / c }')
echo "RESULT conns=$CONNS workers=$nw client_answered=$(field answered "$cres")/$CONNS client_errors=$(field errors "$cres")" \
  "client_closed=$(field closed "$cres") client_rps=$(field rps "$cres") wrk_rps=$(field rps "$wres")" \
  "wrk_p99_ms=$(field p99_ms "$wres") wrk_sock_err=$(field sock_err "$wres") wrk_non2xx=$(field non2xx "$wres")" \
  "rss_idle_kb=$(sum_rss "$idle") rss_held_kb=$(sum_rss "$held") kb_per_conn=$per_conn $BENCH_ID"
if (( client_rc == 0 && $(field sock_err "$wres") == 0 && $(field non2xx "$wres") == 0 )); then
  echo PASS
else
  echo FAIL
  exit 1
fi
