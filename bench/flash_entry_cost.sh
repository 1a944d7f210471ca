#!/usr/bin/env bash
# bench/flash_entry_cost.sh -- what a flash entry on the buy path (plenty of stock, a new member per
# request) costs the fcfs worker, in counts a loaded machine does not change: instructions per entry
# of the whole process (Lua, the token check of a member seen for the first time, the Redis client,
# the event loop), counted by callgrind. bench/flash_script_cost.sh counts the Redis side.
#
# A private shop (Redis, MariaDB, fcfs for the product setup) and 2 * N2 member tokens; then
# bench/flash_entry_cpu.lua in buy-only mode (`fcfs run`: entries handed straight to the app's
# handler, one entry script each, no HTTP) under callgrind twice, with N1 and with N2 entries, on
# products of their own: instructions per entry = (Ir(N2) - Ir(N1)) / (N2 - N1), so the start-up
# (LuaJIT, config, connections) cancels out. Then one native run of N2 entries prints its CPU time
# per entry (os.clock: a busy machine inflates it; the instruction count is the evidence) and the Lua
# garbage per entry (bytes allocated with the collector stopped: a count, load-independent).
# Prints one RESULT line with the commit.
# env: N1=1000 N2=3000 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N1=${N1:-1000}
N2=${N2:-3000}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
bench_init
# (Redis timeouts long: a run under valgrind on a busy machine is slow, and a timeout fails the run)
shop_start "shared_dicts = { revoked = \"8m\", limits = \"4m\", catalog = \"8m\" }" \
  "app = { flash_sweep_interval = 3600, hold_seconds = 3600 }" "redis_timeout = 30" "redis_connect_timeout = 30"
TOKENS=$BENCH_TMP/tokens.txt
bench_run "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_tokens.lua $((2 * N2)) 1000000 "$TOKENS" >&2
sold_pid=$(flash_product 0)

# ir N -> instructions of a `fcfs run` of N buy entries (a product of its own)
ir() {
  local out=$BENCH_TMP/cg.$1
  (cd "$BENCH_ROOT" && valgrind --tool=callgrind --callgrind-out-file="$out" "$FCFS_BIN" -c "$FCFS_CONF" run \
    bench/flash_entry_cpu.lua "$sold_pid" "$(flash_product 10000000)" "$TOKENS" "$1" buy) >"$out.log" 2>&1 ||
    { cat "$out.log" >&2; return 1; }
  awk '/^totals:/ {print $2}' "$out"
}
a=$(ir "$N1")
b=$(ir "$N2")
ir_entry=$(( (b - a) / (N2 - N1) ))
cpu=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_entry_cpu.lua "$sold_pid" \
  "$(flash_product 10000000)" "$TOKENS" "$N2" buy)
echo "RESULT flash_entry_worker N1=$N1 N2=$N2 Ir_per_buy=$ir_entry $(field buy_us "$cpu" | sed 's/^/cpu_buy_us=/') \
garbage_per_buy=$(field garbage_b "$cpu") $BENCH_ID"
