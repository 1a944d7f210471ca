#!/usr/bin/env bash
# bench/hello_vs_peer.sh -- the HTTP + Lua floor, in one run on one machine:
# fcfs GET /hello vs the peer's GET /hello (nginx + lua-nginx-module, Lua JSON)
# vs the peer's GET /static-hello (nginx `return 200`, no Lua: the ceiling).
# Both servers run 2 workers; wrk runs on the same cores, one target at a time.
# Every target is warmed up at every measured connection count; the sweep is
# repeated ROUNDS times, each round starting with another target. The table
# shows, per target and connection count, the round with the median req/s and
# the server CPU time per request (user + system of the workers, less sensitive
# to a noisy machine than req/s); the fcfs/peer ratio (target: >= 1.0) is the
# median of the per-round ratios, each round's ratio printed too. Every RESULT
# line names the commit and build type. Exits 1 if any run saw socket errors or 4xx/5xx.
# env: DURATION=5 CONNS="64 256" THREADS=2 ROUNDS=3 WARMUP=1 FCFS_BIN=build/fcfs
#      PEER_DIR=../shared/peer PEER_WORKERS=2
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
compare_defaults

bench_init
# shellcheck disable=SC2119
fcfs_start
peer_start

declare -A url=(
  [fcfs_hello]=$FCFS_URL/hello
  [peer_hello]=$PEER_URL/hello
  [nginx_static]=$PEER_URL/static-hello
)
order=(fcfs_hello peer_hello nginx_static)
RATIOS="fcfs_hello/peer_hello fcfs_hello/nginx_static"

compare_targets
echo
for c in $CONNS; do
  r=${ratio[fcfs_hello/peer_hello-$c]} rs=${ratio[fcfs_hello/nginx_static-$c]}
  echo "RESULT conns=$c fcfs_rps=$(field rps "${res[fcfs_hello-$c]}") peer_rps=$(field rps "${res[peer_hello-$c]}")" \
    "static_rps=$(field rps "${res[nginx_static-$c]}") fcfs_vs_peer=$r fcfs_vs_static=$rs" \
    "fcfs_cpu_us=$(field cpu_us "${res[fcfs_hello-$c]}") peer_cpu_us=$(field cpu_us "${res[peer_hello-$c]}")" \
    "target=$(awk -v r="$r" 'BEGIN { print (r >= 1.0) ? "met" : "missed" }') $BENCH_ID"
done
exit "$bad"
