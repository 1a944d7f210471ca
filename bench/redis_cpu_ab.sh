#!/usr/bin/env bash
# bench/redis_cpu_ab.sh -- what a route costs Redis per request, for two fcfs builds or configs
# alternated (A, B, A, B...): redis-server's own CPU (INFO cpu: used_cpu_sys + used_cpu_user,
# getrusage, so time spent waiting for a CPU is not counted) and its commands (INFO commandstats)
# over one wrk run, divided by wrk's request count. One private redis-server (TCP loopback, free
# port, stock:1 set) for every run; a fresh fcfs (2 workers, bench/app) per run, warmed up first.
# Load-dependent (how many commands share a write and a wake-up of Redis depends on timing):
# alternate, several rounds, and read every figure.
# usage: A=old/fcfs B=build/fcfs bash bench/redis_cpu_ab.sh
#        A_CONF='redis_connections = 1' B_CONF='redis_connections = 2' bash bench/redis_cpu_ab.sh
# env: A, B (fcfs binaries, default FCFS_BIN), A_CONF, B_CONF (extra config entries, Lua),
#      ROUNDS=3 DURATION=5 WARMUP=1 CONNS=64 THREADS=2 URL_PATH=/bench/stock/1
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
URL_PATH=${URL_PATH:-/bench/stock/1}
A=${A:-$FCFS_BIN}
B=${B:-$FCFS_BIN}
[[ $A = /* ]] || A=$BENCH_ROOT/$A
[[ $B = /* ]] || B=$BENCH_ROOT/$B
# shellcheck disable=SC2034 # read by fcfs_start (lib.sh)
FCFS_LUA_DIR=$BENCH_ROOT/bench/app

bench_init
redis_stock_server
REDIS_CLI="redis-cli -p $REDIS_PORT"
echo "# A: $A ${A_CONF:-}"
echo "# B: $B ${B_CONF:-}"

redis_cpu() { $REDIS_CLI info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f", s }'; }

# one LABEL BIN CONF: a fresh fcfs, a warm-up, then the measured wrk run
one() {
  local label=$1 bin=$2 conf=$3 c0 c1 line n
  FCFS_BIN=$bin fcfs_start "redis = \"127.0.0.1:$REDIS_PORT\"" "lua_path = \"$BENCH_ROOT/lua/?.lua\"" \
    ${conf:+"$conf"}
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP"s "$FCFS_URL$URL_PATH" >/dev/null
  $REDIS_CLI config resetstat >/dev/null
  c0=$(redis_cpu)
  line=$(wrk_result "$label" -t"$THREADS" -c"$CONNS" -d"$DURATION"s "$FCFS_URL$URL_PATH")
  c1=$(redis_cpu)
  n=$(field requests "$line")
  fcfs_stop
  echo "RESULT $label rps=$(field rps "$line") requests=$n non2xx=$(field non2xx "$line")" \
    "redis_cpu_us_per_req=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) * 1e6 / n : 0) }')" \
    "redis_cmds_per_req=$(redis_cmds "$n") conns=$CONNS bin=$bin conf='$conf'"
}

for r in $(seq "$ROUNDS"); do
  one "A#$r" "$A" "${A_CONF:-}"
  one "B#$r" "$B" "${B_CONF:-}"
done
