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

for t in "${order[@]}"; do # warm up JIT and connection pools
  wrk -t"$THREADS" -c64 -d"${WARMUP}s" "${url[$t]}" >/dev/null
done

hz=$(getconf CLK_TCK)
declare -A all res
bad=0
for r in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    for t in "${order[@]}"; do
      if [[ $t = fcfs* ]]; then pids=$(fcfs_workers); else pids=$(peer_workers); fi
      # shellcheck disable=SC2086
      c0=$(cpu_ticks $pids)
      line=$(wrk_result "$t-$c-r$r" -t"$THREADS" -c"$c" -d"${DURATION}s" --timeout 5s "${url[$t]}")
      # shellcheck disable=SC2086
      c1=$(cpu_ticks $pids)
      # server CPU (user + system, all workers) per request, in microseconds
      line+=" cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$(field requests "$line")" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')"
      echo "$line"
      all[$t-$c]+="${line#* }"$'\n'
      (( $(field sock_err "$line") == 0 && $(field non2xx "$line") == 0 )) || bad=1
    done
  done
done
for key in "${!all[@]}"; do # the median round by req/s
  res[$key]=$(sed '/^$/d' <<<"${all[$key]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) print substr($i, 5), $0 }' |
    sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }' | cut -d' ' -f2-)
done

echo
echo "median of $ROUNDS rounds, wrk -t$THREADS -d${DURATION}s"
echo "| target | conns | req/s | p50 ms | p99 ms | server CPU µs/req | sock err | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in $CONNS; do
  for t in "${order[@]}"; do
    l=${res[$t-$c]}
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$c" "$(field rps "$l")" "$(field p50_ms "$l")" \
      "$(field p99_ms "$l")" "$(field cpu_us "$l")" "$(field sock_err "$l")" "$(field non2xx "$l")"
  done
done
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
