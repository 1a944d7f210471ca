#!/usr/bin/env bash
# bench/crypto.sh -- argon2id password hashing in fcfs at the configured cost: the time of one
# hash (one connection, one hash at a time: wrk -c1 p50 of GET /bench/hash, which is
# host.crypto.password_hash plus a few µs of HTTP), the hashes per second of the whole node (2
# workers, each hashing on its libuv thread pool, THREADS wrk threads x CONNS connections), and,
# while that runs, the latency of GET /hello on one connection: the loops never compute a hash,
# so it should stay in milliseconds. Exits 1 on socket errors or non-2xx.
# env: ARGON2_OPS=2 ARGON2_MEM_KIB=19456 DURATION=5 CONNS=16 THREADS=2 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
ARGON2_OPS=${ARGON2_OPS:-2}
ARGON2_MEM_KIB=${ARGON2_MEM_KIB:-19456}
DURATION=${DURATION:-5}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}

bench_init
echo "# argon2id: ops=$ARGON2_OPS mem=$ARGON2_MEM_KIB KiB, UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-4 (default)}"
FCFS_LUA_DIR=$BENCH_ROOT/bench/app
fcfs_start "lua_path = \"$BENCH_ROOT/lua/?.lua\"" "argon2_ops = $ARGON2_OPS" \
  "argon2_mem_kib = $ARGON2_MEM_KIB"
curl -fsS "$FCFS_URL/bench/hash" >/dev/null || { echo "GET /bench/hash failed" >&2; exit 1; }

single=$(wrk_result hash-c1 -t1 -c1 -d"${DURATION}s" --timeout 10s "$FCFS_URL/bench/hash")
echo "$single"
wrk_result hash-c"$CONNS" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s "$FCFS_URL/bench/hash" \
  >"$BENCH_TMP/many.line" &
many_pid=$!
sleep 0.5 # the pools are busy before /hello is measured
hello=$(wrk_result hello-during -t1 -c1 -d"$((DURATION - 1))s" --timeout 10s "$FCFS_URL/hello")
wait "$many_pid"
many=$(cat "$BENCH_TMP/many.line")
echo "$many"
echo "$hello"

bad=0
for l in "$single" "$many" "$hello"; do
  (( $(field sock_err "$l") == 0 && $(field non2xx "$l") == 0 )) || bad=1
done
echo
echo "RESULT argon2_ops=$ARGON2_OPS argon2_mem_kib=$ARGON2_MEM_KIB hash_ms=$(field p50_ms "$single")" \
  "hashes_per_s=$(field rps "$many") conns=$CONNS hello_p50_ms_during=$(field p50_ms "$hello")" \
  "hello_p99_ms_during=$(field p99_ms "$hello") hello_max_ms_during=$(field max_ms "$hello")"
exit "$bad"
