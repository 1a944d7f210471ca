# shellcheck shell=bash
# bench/lib.sh -- shared helpers for the bench/*.sh scripts (sourced, never run).
#
# Each script sources this file, then calls bench_init: it makes a temp dir
# (BENCH_TMP, removed on exit unless BENCH_KEEP=1), installs an EXIT trap that
# stops every process the script started (fcfs by its pid file, the peer with
# its own down.sh) and prints the machine. fcfs_start writes a private config
# under BENCH_TMP (free port, workers = 2, access log off, error log in the temp
# dir) and waits until /hello answers. Scripts add their own cleanup steps with
# bench_on_exit "command".
#
# env: FCFS_BIN (default build/fcfs), FCFS_LUA_DIR (default lua/), PEER_DIR (default ../shared/peer from the
# repository root), BENCH_KEEP=1 keeps the temp dir for inspection.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FCFS_BIN=${FCFS_BIN:-build/fcfs}
FCFS_LUA_DIR=${FCFS_LUA_DIR:-$BENCH_ROOT/lua}
[[ $FCFS_BIN = /* ]] || FCFS_BIN=$BENCH_ROOT/$FCFS_BIN
PEER_DIR=${PEER_DIR:-$BENCH_ROOT/../shared/peer}
BENCH_CLEANUP=()

bench_on_exit() { BENCH_CLEANUP+=("$1"); }

bench_cleanup() {
  local i
  for ((i = ${#BENCH_CLEANUP[@]} - 1; i >= 0; i--)); do
    eval "${BENCH_CLEANUP[i]}" >/dev/null 2>&1 || true
  done
  if [[ -n ${BENCH_TMP:-} && -d $BENCH_TMP ]]; then
    if [[ ${BENCH_KEEP:-0} = 1 ]]; then echo "kept $BENCH_TMP"; else rm -rf "$BENCH_TMP"; fi
  fi
}

bench_init() {
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fcfs-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  [[ -x $FCFS_BIN ]] || { echo "no fcfs binary at $FCFS_BIN (build it, or set FCFS_BIN)" >&2; exit 2; }
  command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
  bench_machine
}

bench_machine() {
  echo "# date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
  echo "# load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
  echo "# fcfs:    $FCFS_BIN"
}

# Print a command line, then run it.
bench_run() {
  echo "\$ $*" >&2
  "$@"
}

# A TCP port nobody listens on right now (the kernel picks it).
free_port() {
  luajit -e 'local s = assert(require("socket").bind("127.0.0.1", 0)); local _, p = s:getsockname(); s:close(); print(p)'
}

# Wait until URL answers 2xx, at most ~5 s.
wait_http() {
  local url=$1 i
  for i in $(seq 100); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no answer from $url" >&2
  return 1
}

# fcfs_start [KEY=VALUE...]: extra config entries as Lua (e.g. 'redis="127.0.0.1:6391"').
# Sets FCFS_PORT, FCFS_CONF, FCFS_URL, FCFS_ADMIN (the admin unix socket: /_host/*, /metrics).
fcfs_start() {
  FCFS_PORT=$(free_port)
  FCFS_CONF=$BENCH_TMP/fcfs.lua
  FCFS_ADMIN=$BENCH_TMP/admin.sock
  local extra="" kv
  for kv in "$@"; do extra+="  $kv,"$'\n'; done
  cat >"$FCFS_CONF" <<EOF
return {
  listen = "127.0.0.1:$FCFS_PORT",
  workers = 2,
  access_log = "off",
  error_log = "$BENCH_TMP/error.log",
  run_dir = "$BENCH_TMP",
  pid_file = "$BENCH_TMP/fcfs.pid",
  admin_listen = "unix:$FCFS_ADMIN",
  lua_dir = "$FCFS_LUA_DIR",
  log_level = "notice",
$extra}
EOF
  echo "\$ $FCFS_BIN -c $FCFS_CONF   # $(tr -s ' \n' ' ' <"$FCFS_CONF")" >&2
  (cd "$BENCH_ROOT" && exec "$FCFS_BIN" -c "$FCFS_CONF") >"$BENCH_TMP/fcfs.out" 2>&1 &
  FCFS_PID=$!
  bench_on_exit "fcfs_stop"
  FCFS_URL=http://127.0.0.1:$FCFS_PORT
  wait_http "$FCFS_URL/hello" || { cat "$BENCH_TMP/fcfs.out" "$BENCH_TMP/error.log" >&2 || true; return 1; }
}

fcfs_stop() {
  [[ -n ${FCFS_PID:-} ]] || return 0
  kill -TERM "$FCFS_PID" 2>/dev/null || true
  local i
  for i in $(seq 50); do kill -0 "$FCFS_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$FCFS_PID" 2>/dev/null || true
  FCFS_PID=
}

# Pids of the fcfs workers (children of the master).
fcfs_workers() { pgrep -P "$FCFS_PID" | tr '\n' ' '; }

# CPU time (user + system) of the given pids, in clock ticks.
cpu_ticks() {
  local p t=0 f
  for p in "$@"; do
    f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + $(awk '{ print $12 + $13 }' <<<"$f")))
  done
  echo "$t"
}

# Pids of the peer's nginx workers.
peer_workers() { pgrep -P "$(cat "$PEER_RUN/nginx.pid")" | tr '\n' ' '; }

# VmRSS in kB of one pid.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# peer_start: the nginx + Lua peer on free ports in the temp dir (its own up.sh).
# Sets PEER_URL, PEER_REDIS_PORT.
peer_start() {
  [[ -x $PEER_DIR/up.sh ]] || { echo "no peer at $PEER_DIR (set PEER_DIR)" >&2; return 1; }
  export PEER_RUN=$BENCH_TMP/peer PEER_PORT PEER_REDIS_PORT PEER_WORKERS=${PEER_WORKERS:-2}
  PEER_PORT=$(free_port)
  PEER_REDIS_PORT=$(free_port)
  bench_on_exit "PEER_RUN=$PEER_RUN '$PEER_DIR/down.sh'"
  bench_run "$PEER_DIR/up.sh" >&2
  PEER_URL=http://127.0.0.1:$PEER_PORT
  wait_http "$PEER_URL/hello"
}

# wrk_result LABEL wrk-args...: run wrk with bench/report.lua, print its RESULT line
# prefixed with the label; the full wrk output goes to BENCH_TMP/wrk-LABEL.txt.
wrk_result() {
  local label=$1
  shift
  echo "\$ wrk -s bench/report.lua $*" >&2
  wrk -s "$BENCH_ROOT/bench/report.lua" "$@" >"$BENCH_TMP/wrk-$label.txt" 2>&1 || {
    cat "$BENCH_TMP/wrk-$label.txt" >&2
    return 1
  }
  local line
  line=$(grep '^RESULT ' "$BENCH_TMP/wrk-$label.txt" | tail -1)
  echo "$label $line"
}

# field NAME "RESULT ... NAME=value ..." -> value
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# compare_targets: wrk each target of the array `order` (URLs in the associative array `url`) at
# each of $CONNS connections, interleaved, $ROUNDS times, after a warm-up; keeps per target and
# connection count the round with the median req/s in res[target-conns] (plus the server CPU per
# request of its workers: fcfs_* targets are fcfs, the others the peer), prints the table, and
# sets bad=1 if any run saw socket errors or 4xx/5xx.
# shellcheck disable=SC2034,SC2154 # order/url come from the caller, res/bad go back to it
compare_targets() {
  local r c t pids c0 c1 line key l hz
  declare -gA res
  declare -A all
  bad=0
  for t in "${order[@]}"; do # warm up JIT and connection pools
    wrk -t"$THREADS" -c64 -d"${WARMUP}s" "${url[$t]}" >/dev/null
  done

  hz=$(getconf CLK_TCK)
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
}
