#!/usr/bin/env bash
# bench/hello_vs_peer.sh -- the HTTP + Lua floor, in one run on one machine:
# fcfs GET /hello vs the peer's GET /hello (nginx + lua-nginx-module, Lua JSON)
# vs the peer's GET /static-hello (nginx `return 200`, no Lua: the ceiling).
# Both servers run 2 workers; wrk runs on the same cores, one target at a time.
# The targets are interleaved and the whole sweep is repeated ROUNDS times; the
# table shows, per target and connection count, the round with the median req/s
# (a shared 2-core machine is noisy). Prints the fcfs/peer req/s ratio (target:
# >= 1.0) and the server CPU time per request (user + system of the workers,
# less sensitive to a noisy machine than req/s); exits 1 if any run saw socket errors or 4xx/5xx.
# env: DURATION=5 CONNS="64 256" THREADS=2 ROUNDS=3 WARMUP=1 FCFS_BIN=build/fcfs
#      PEER_DIR=../shared/peer PEER_WORKERS=2
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
CONNS=${CONNS:-64 256}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}

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

compare_targets
echo
for c in $CONNS; do
  f=$(field rps "${res[fcfs_hello-$c]}") p=$(field rps "${res[peer_hello-$c]}") s=$(field rps "${res[nginx_static-$c]}")
  r=$(awk -v a="$f" -v b="$p" 'BEGIN { printf "%.2f", a / b }')
  rs=$(awk -v a="$f" -v b="$s" 'BEGIN { printf "%.2f", a / b }')
  fc=$(field cpu_us "${res[fcfs_hello-$c]}") pc=$(field cpu_us "${res[peer_hello-$c]}")
  echo "RESULT conns=$c fcfs_rps=$f peer_rps=$p static_rps=$s fcfs_vs_peer=$r fcfs_vs_static=$rs" \
    "fcfs_cpu_us=$fc peer_cpu_us=$pc target=$(awk -v r="$r" 'BEGIN { print (r >= 1.0) ? "met" : "missed" }')"
done
exit "$bad"
