#!/usr/bin/env bash
# bench/slow_clients.sh -- hostile clients against a shop (issue 11 "slow clients").
#  1. CONNS connections send request headers a byte per second and never finish them
#     (bench/slow_clients.c slow, built here with cc), while wrk measures GET /healthz and the
#     flash stock read GET /api/flash/products/:id (WRK_SECONDS each, WRK_CONNS connections). The
#     p99 of both must stay under P99_MS, and every slow connection must be closed by the server's
#     header_timeout (HEADER_TIMEOUT s) with a 408.
#  2. PIPE_CONNS connections pipeline GET /healthz as fast as the kernel takes it and never read a
#     byte (bench/slow_clients.c pipeline; at most PIPE_SECONDS): the server stops serving them at
#     its write-queue bound, stops reading at its backlog bound, and closes them at idle_timeout;
#     /healthz answers meanwhile (max_requests_per_conn is raised so that the bounds are met, not
#     that limit, which closes a connection after a 2 s linger that drops what it reads).
# VmRSS of every worker is sampled (every 0.5 s) before, during each phase (peak) and after; a
# worker past RSS_MAX_MB fails the run. Exits 1 unless every check held.
# env: CONNS=5000 HEADER_TIMEOUT=10 WRK_SECONDS=5 WRK_CONNS=32 THREADS=2 P99_MS=50 PIPE_CONNS=100
#      PIPE_SECONDS=120
#      IDLE_TIMEOUT=10 RSS_MAX_MB=256 FD_LIMIT=20000 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
CONNS=${CONNS:-5000}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10}
WRK_SECONDS=${WRK_SECONDS:-5}
WRK_CONNS=${WRK_CONNS:-32}
THREADS=${THREADS:-2}
P99_MS=${P99_MS:-50}
PIPE_CONNS=${PIPE_CONNS:-100}
PIPE_SECONDS=${PIPE_SECONDS:-120}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-10}
RSS_MAX_MB=${RSS_MAX_MB:-256}
FD_LIMIT=${FD_LIMIT:-20000}

hard=$(ulimit -Hn)
want=$FD_LIMIT
[[ $hard != unlimited ]] && ((want > hard)) && want=$hard
ulimit -n "$want"
(($(ulimit -n) > CONNS + WRK_CONNS + 64)) || { echo "fd limit too low for $CONNS connections" >&2; exit 2; }

bench_init
client=$BENCH_TMP/slow_clients
bench_run cc -O2 -Wall -Wextra -o "$client" "$BENCH_ROOT/bench/slow_clients.c"
shop_start "shared_dicts = { revoked = \"8m\", catalog = \"8m\" }" "max_connections = $((CONNS + 2000))" \
  "header_timeout = $HEADER_TIMEOUT" "idle_timeout = $IDLE_TIMEOUT" "max_requests_per_conn = 100000000" \
  "app = { flash_sweep_interval = 0.5, lifecycle_interval = 1 }"
setup=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_setup.lua 1 100000 0 "$BENCH_TMP/tokens")
product=$(sed -n 's/.*product=\([0-9]*\).*/\1/p' <<<"$setup")
[[ -n $product ]] || { echo "no product: $setup" >&2; exit 1; }
stock_url=$FCFS_URL/api/flash/products/$product
curl -fsS -o /dev/null "$stock_url"
workers=$(fcfs_workers)
echo "# workers: $workers; flash product $product; conns=$CONNS header_timeout=${HEADER_TIMEOUT}s" \
  "idle_timeout=${IDLE_TIMEOUT}s"

rss_line() { local p out=""; for p in $workers; do out+="$p=$(rss_kb "$p") "; done; echo "${out% }"; }
# sample_peak PID FILE: while PID runs, the peak RSS of each worker; "pid=kB ..." goes to FILE
sample_peak() {
  local pid=$1 file=$2 p v out=""
  declare -A peak
  for p in $workers; do peak[$p]=0; done
  while kill -0 "$pid" 2>/dev/null; do
    for p in $workers; do
      v=$(rss_kb "$p" 2>/dev/null || echo 0)
      ((v > ${peak[$p]})) && peak[$p]=$v
    done
    sleep 0.5
  done
  for p in $workers; do out+="$p=${peak[$p]} "; done
  echo "${out% }" >"$file"
}
max_mb() { tr ' ' '\n' <"$1" | awk -F= '$2 > m { m = $2 } END { print int(m / 1024) }'; }

bad=0
echo "# RSS before (kB): $(rss_line)"

# 1. slow headers + wrk
echo "\$ $client slow 127.0.0.1 $FCFS_PORT $CONNS $((HEADER_TIMEOUT + 5)) 1000" >&2
"$client" slow 127.0.0.1 "$FCFS_PORT" "$CONNS" "$((HEADER_TIMEOUT + 5))" 1000 >"$BENCH_TMP/slow.txt" &
slow_pid=$!
sample_peak "$slow_pid" "$BENCH_TMP/peak-slow" &
sampler=$!
sleep 2 # every slow connection open and dribbling
health=$(wrk_result healthz -t"$THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --timeout 5s "$FCFS_URL/healthz")
stock=$(wrk_result flash_stock -t"$THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --timeout 5s "$stock_url")
wait "$slow_pid" || true
wait "$sampler" || true
slow=$(grep '^RESULT' "$BENCH_TMP/slow.txt" || echo "RESULT none")
echo "$health"
echo "$stock"
echo "slow $slow"
echo "# RSS peak during slow clients (kB): $(cat "$BENCH_TMP/peak-slow")"
for r in "$health" "$stock"; do
  p99=$(field p99_ms "$r")
  if awk -v p="$p99" -v max="$P99_MS" 'BEGIN { exit !(p >= max) }'; then
    echo "FAIL: p99 ${p99} ms >= ${P99_MS} ms: $r"; bad=1
  fi
  if [[ $(field sock_err "$r") != 0 || $(field non2xx "$r") != 0 ]]; then echo "FAIL: errors: $r"; bad=1; fi
done
if [[ $(field closed "$slow") != "$CONNS" || $(field answered_408 "$slow") != "$CONNS" ]]; then
  echo "FAIL: not every slow connection was closed by the header timeout with a 408: $slow"; bad=1
fi
(($(max_mb "$BENCH_TMP/peak-slow") <= RSS_MAX_MB)) || { echo "FAIL: a worker's RSS passed ${RSS_MAX_MB} MB"; bad=1; }

# 2. pipelining clients that never read
echo "\$ $client pipeline 127.0.0.1 $FCFS_PORT $PIPE_CONNS $PIPE_SECONDS /healthz" >&2
"$client" pipeline 127.0.0.1 "$FCFS_PORT" "$PIPE_CONNS" "$PIPE_SECONDS" /healthz >"$BENCH_TMP/pipe.txt" &
pipe_pid=$!
sample_peak "$pipe_pid" "$BENCH_TMP/peak-pipe" &
sampler=$!
sleep 3
during=$(wrk_result healthz_during_pipeline -t"$THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --timeout 5s \
  "$FCFS_URL/healthz")
wait "$pipe_pid" || true
wait "$sampler" || true
pipe=$(grep '^RESULT' "$BENCH_TMP/pipe.txt" || echo "RESULT none")
echo "$during"
echo "pipeline $pipe"
echo "# RSS peak during pipelining clients (kB): $(cat "$BENCH_TMP/peak-pipe")"
if [[ $(field closed "$pipe") != "$PIPE_CONNS" ]]; then
  echo "FAIL: not every non-reading connection was closed within ${PIPE_SECONDS}s: $pipe"; bad=1
fi
[[ $(field sock_err "$during") == 0 && $(field non2xx "$during") == 0 && $(field requests "$during") != 0 ]] ||
  { echo "FAIL: /healthz not served while the pipeliners ran: $during"; bad=1; }
(($(max_mb "$BENCH_TMP/peak-pipe") <= RSS_MAX_MB)) || { echo "FAIL: a worker's RSS passed ${RSS_MAX_MB} MB"; bad=1; }
sleep 1
echo "# RSS after (kB): $(rss_line)"
echo "# $BENCH_ID"
exit "$bad"
