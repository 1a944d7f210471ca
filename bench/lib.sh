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
# AFFINITY=auto runs both servers' workers one per CPU: fcfs through its
# worker_cpu_affinity = "auto", the peer's nginx workers through taskset, the
# placement nginx's worker_cpu_affinity auto makes (the peer's nginx.conf has
# no such line). The default, off, leaves both to the scheduler.
#
# env: FCFS_BIN (default build/fcfs), FCFS_LUA_DIR (default lua/), PEER_DIR (default ../shared/peer from the
# repository root), BENCH_KEEP=1 keeps the temp dir for inspection, AFFINITY=auto|off.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FCFS_BIN=${FCFS_BIN:-build/fcfs}
FCFS_LUA_DIR=${FCFS_LUA_DIR:-$BENCH_ROOT/lua}
[[ $FCFS_BIN = /* ]] || FCFS_BIN=$BENCH_ROOT/$FCFS_BIN
PEER_DIR=${PEER_DIR:-$BENCH_ROOT/../shared/peer}
AFFINITY=${AFFINITY:-off}
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

# The build type of FCFS_BIN, from the CMakeCache.txt beside it (with its sanitizer/coverage options).
bench_build_type() {
  local cache t
  cache=$(dirname "$FCFS_BIN")/CMakeCache.txt
  [[ -f $cache ]] || { echo unknown; return; }
  t=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
  grep -q '^FCFS_SANITIZE:BOOL=ON' "$cache" && t+="+asan"
  grep -q '^FCFS_COVERAGE:BOOL=ON' "$cache" && t+="+coverage"
  echo "${t:-unknown}"
}

# BENCH_ID: "commit=<hash>[-dirty] build=<type> affinity=<AFFINITY>", printed in the header and in every RESULT line.
bench_machine() {
  local commit
  commit=$(git -C "$BENCH_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  git -C "$BENCH_ROOT" diff --quiet HEAD -- 2>/dev/null || commit+=-dirty
  BENCH_ID="commit=$commit build=$(bench_build_type) affinity=$AFFINITY"
  echo "# date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
  echo "# load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
  echo "# fcfs:    $FCFS_BIN ($BENCH_ID)"
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
  for i in $(seq "${WAIT_HTTP_TRIES:-100}"); do # 50 ms apart
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "no answer from $url" >&2
  return 1
}

# fcfs_start [KEY=VALUE...]: extra config entries as Lua (e.g. 'redis="127.0.0.1:6391"').
# Sets FCFS_PORT, FCFS_CONF, FCFS_URL, FCFS_ADMIN (the admin unix socket: /_host/*, /metrics).
# FCFS_WORKERS (default 2) is the workers key; FCFS_WRAP, when set, is a command the binary
# runs under (e.g. "valgrind --tool=callgrind"), split on spaces.
fcfs_start() {
  FCFS_PORT=$(free_port)
  FCFS_CONF=$BENCH_TMP/fcfs.lua
  FCFS_ADMIN=$BENCH_TMP/admin.sock
  local extra="" kv
  for kv in "$@"; do extra+="  $kv,"$'\n'; done
  cat >"$FCFS_CONF" <<EOF
return {
  listen = "127.0.0.1:$FCFS_PORT",
  workers = ${FCFS_WORKERS:-2},
  access_log = "off",
  error_log = "$BENCH_TMP/error.log",
  run_dir = "$BENCH_TMP",
  pid_file = "$BENCH_TMP/fcfs.pid",
  admin_listen = "unix:$FCFS_ADMIN",
  lua_dir = "$FCFS_LUA_DIR",
  log_level = "notice",
  worker_cpu_affinity = "$AFFINITY",
$extra}
EOF
  echo "\$ $FCFS_BIN -c $FCFS_CONF   # $(tr -s ' \n' ' ' <"$FCFS_CONF")" >&2
  # shellcheck disable=SC2086 # FCFS_WRAP is a command line
  (cd "$BENCH_ROOT" && exec ${FCFS_WRAP:-} "$FCFS_BIN" -c "$FCFS_CONF") >"$BENCH_TMP/fcfs.out" 2>&1 &
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

# The CPUs this shell may run on (its taskset list, e.g. "0-1,4"), one number each: "0 1 4".
allowed_cpus() {
  taskset -pc $$ | sed 's/.*: //' |
    awk -F, '{ for (i = 1; i <= NF; i++) { n = split($i, r, "-"); for (c = r[1]; c <= r[n]; c++) printf "%d ", c } print "" }'
}

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
  [[ $AFFINITY = auto ]] || return 0
  local cpus i=0 pid
  read -ra cpus <<<"$(allowed_cpus)"
  for pid in $(peer_workers); do
    taskset -pc "${cpus[i % ${#cpus[@]}]}" "$pid" >/dev/null
    i=$((i + 1))
  done
}

# wrk_result LABEL wrk-args...: run wrk with bench/report.lua (or the script WRK_SCRIPT, which must
# end with report.lua's done()), print its RESULT line prefixed with the label; the full wrk output
# goes to BENCH_TMP/wrk-LABEL.txt.
wrk_result() {
  local label=$1 script=${WRK_SCRIPT:-$BENCH_ROOT/bench/report.lua}
  shift
  echo "\$ wrk -s ${script#"$BENCH_ROOT"/} $*" >&2
  wrk -s "$script" "$@" >"$BENCH_TMP/wrk-$label.txt" 2>&1 || {
    cat "$BENCH_TMP/wrk-$label.txt" >&2
    return 1
  }
  local line
  line=$(grep '^RESULT ' "$BENCH_TMP/wrk-$label.txt" | tail -1)
  echo "$label $line"
}

# field NAME "RESULT ... NAME=value ..." -> value
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# median of the numbers on stdin, one per line
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# compare_defaults: the knobs of compare_targets, from the environment or their defaults.
# shellcheck disable=SC2034 # read by compare_targets and the scripts
compare_defaults() {
  DURATION=${DURATION:-5}
  CONNS=${CONNS:-64 256}
  THREADS=${THREADS:-2}
  WARMUP=${WARMUP:-1}
  ROUNDS=${ROUNDS:-3}
}

# compare_targets: wrk each target of the array `order` (URLs in the associative array `url`) at
# each of $CONNS connections, $ROUNDS times. Before measuring, every target is warmed up at every
# connection count that is measured (WARMUP seconds each). Each round rotates `order` by one, so
# no target always runs first. Per round and connection count, the req/s ratio of each pair
# "a/b" in $RATIOS is printed (ROUND lines); ratio[pair-conns] gets the median of the per-round
# ratios. res[target-conns] keeps the round with the median req/s, with the server CPU per request
# of its workers (fcfs_* targets are fcfs, the others the peer; a function target_pids TARGET from
# the caller, when defined, names them instead) and, for each "name:pid" in
# $EXTRA_CPU (e.g. redis:<pid>), that process's CPU per request as name_cpu_us. Prints the table
# and the ratios; sets bad=1 if any run saw socket errors or 4xx/5xx.
# Optional, from the caller: wrk_script[target] = a wrk script to run instead of bench/report.lua
# (ending with report.lua's done()); a function before_run TARGET, called before every run of the
# target (warm-up included: to reset state, it may change url[target]); ERRORS_EXPECTED = targets
# whose every answer must be a 4xx/5xx (a sold-out path: bad=1 unless non2xx = requests);
# REDIS_CLI = a redis-cli command line: its server's commands per request (INFO commandstats,
# scripts' inner commands included), its reads from client sockets per request (INFO stats
# total_reads_processed: each is a wake-up's read of one connection) and its time in scripts per
# request go into each RESULT line as redis_cmds, redis_reads and redis_script_us.
# shellcheck disable=SC2034,SC2154 # order/url/RATIOS come from the caller, res/ratio/bad go back to it
compare_targets() {
  local r c t i n pids c0 c1 line key l hz pair a b x e round_order
  declare -gA res ratio wrk_script
  declare -A all rounds cpu0
  bad=0
  n=${#order[@]}
  echo "# warm-up: every target ${WARMUP}s at each of $CONNS connections"
  for c in $CONNS; do
    for t in "${order[@]}"; do
      if declare -F before_run >/dev/null; then before_run "$t"; fi
      wrk -t"$THREADS" -c"$c" -d"${WARMUP}s" ${wrk_script[$t]:+-s "${wrk_script[$t]}"} "${url[$t]}" >/dev/null
    done
  done

  hz=$(getconf CLK_TCK)
  for r in $(seq "$ROUNDS"); do
    round_order=()
    for ((i = 0; i < n; i++)); do round_order+=("${order[(i + r - 1) % n]}"); done
    for c in $CONNS; do
      local -A rps=()
      for t in "${round_order[@]}"; do
        if declare -F target_pids >/dev/null; then pids=$(target_pids "$t")
        elif [[ $t = fcfs* ]]; then pids=$(fcfs_workers); else pids=$(peer_workers); fi
        # shellcheck disable=SC2086
        c0=$(cpu_ticks $pids)
        if declare -F before_run >/dev/null; then before_run "$t"; fi
        if [[ -n ${REDIS_CLI:-} ]]; then $REDIS_CLI config resetstat >/dev/null; fi
        for e in ${EXTRA_CPU:-}; do cpu0[$e]=$(cpu_ticks "${e#*:}"); done
        line=$(WRK_SCRIPT=${wrk_script[$t]:-} wrk_result "$t-$c-r$r" -t"$THREADS" -c"$c" -d"${DURATION}s" \
          --timeout 5s "${url[$t]}")
        # shellcheck disable=SC2086
        c1=$(cpu_ticks $pids)
        # CPU (user + system) per request, in microseconds: the server's workers, then each extra
        line+=" cpu_us=$(per_request $((c1 - c0)) "$hz" "$(field requests "$line")")"
        for e in ${EXTRA_CPU:-}; do
          line+=" ${e%%:*}_cpu_us=$(per_request $(($(cpu_ticks "${e#*:}") - cpu0[$e])) "$hz" "$(field requests "$line")")"
        done
        if [[ -n ${REDIS_CLI:-} ]]; then
          line+=" redis_reads=$(redis_reads "$(field requests "$line")")"
          line+=" redis_cmds=$(redis_cmds "$(field requests "$line")")"
          line+=" redis_script_us=$(redis_script_us "$(field requests "$line")")"
        fi
        echo "$line round=$r"
        all[$t-$c]+="${line#* }"$'\n'
        rps[$t]=$(field rps "$line")
        if [[ " ${ERRORS_EXPECTED:-} " = *" $t "* ]]; then x=$(field requests "$line"); else x=0; fi
        (( $(field sock_err "$line") == 0 && $(field non2xx "$line") == x )) || bad=1
      done
      for pair in ${RATIOS:-}; do
        a=${pair%/*} b=${pair#*/}
        x=$(awk -v a="${rps[$a]}" -v b="${rps[$b]}" 'BEGIN { printf "%.2f", a / b }')
        rounds[$pair-$c]+="$x"$'\n'
        echo "ROUND round=$r conns=$c order=$(IFS=,; echo "${round_order[*]}") $pair=$x"
      done
      unset rps
    done
  done
  for key in "${!all[@]}"; do # the median round by req/s
    res[$key]=$(sed '/^$/d' <<<"${all[$key]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) print substr($i, 5), $0 }' |
      sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }' | cut -d' ' -f2-)
  done

  echo
  echo "median round by req/s of $ROUNDS rounds, wrk -t$THREADS -d${DURATION}s ($BENCH_ID)"
  local extra_head="" extra_sep=""
  for e in ${EXTRA_CPU:-}; do extra_head+=" ${e%%:*} CPU µs/req |"; extra_sep+="---:|"; done
  if [[ -n ${REDIS_CLI:-} ]]; then extra_head+=" Redis cmds/req | Redis reads/req | Redis script µs/req |"; extra_sep+="---:|---:|---:|"; fi
  echo "| target | conns | req/s | p50 ms | p99 ms | server CPU µs/req |$extra_head sock err | non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|$extra_sep---:|---:|"
  for c in $CONNS; do
    for t in "${order[@]}"; do
      l=${res[$t-$c]}
      x=""
      for e in ${EXTRA_CPU:-}; do x+=" $(field "${e%%:*}_cpu_us" "$l") |"; done
      if [[ -n ${REDIS_CLI:-} ]]; then x+=" $(field redis_cmds "$l") | $(field redis_reads "$l") | $(field redis_script_us "$l") |"; fi
      printf '| %s | %s | %s | %s | %s | %s |%s %s | %s |\n' "$t" "$c" "$(field rps "$l")" "$(field p50_ms "$l")" \
        "$(field p99_ms "$l")" "$(field cpu_us "$l")" "$x" "$(field sock_err "$l")" "$(field non2xx "$l")"
    done
  done
  if [[ -n ${RATIOS:-} ]]; then
    echo
    echo "req/s ratios per round, and their median ($BENCH_ID)"
    for c in $CONNS; do
      for pair in $RATIOS; do
        ratio[$pair-$c]=$(sed '/^$/d' <<<"${rounds[$pair-$c]}" | median)
        echo "$pair at $c conns: rounds $(sed '/^$/d' <<<"${rounds[$pair-$c]}" | paste -sd' ') -> median ${ratio[$pair-$c]}"
      done
    done
  fi
}

# redis_stock_server: a throwaway redis-server (TCP loopback, free port, no persistence) under
# BENCH_TMP/redis with stock:1 set (the one-GET route's key), stopped on exit; sets REDIS_PORT.
redis_stock_server() {
  REDIS_PORT=$(free_port)
  mkdir "$BENCH_TMP/redis"
  setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$BENCH_TMP/redis" --save '' \
    --appendonly no </dev/null >"$BENCH_TMP/redis/out" 2>&1 &
  echo $! >"$BENCH_TMP/redis/pid"
  bench_on_exit "kill -TERM \$(cat '$BENCH_TMP/redis/pid')"
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis-cli -p "$REDIS_PORT" set stock:1 1000000 >/dev/null
}

# redis_cmds REQUESTS -> the commands $REDIS_CLI's server ran since its last CONFIG RESETSTAT, per
# request (the RESETSTAT and this INFO themselves not counted)
redis_cmds() {
  $REDIS_CLI info commandstats | tr -d '\r' | awk -F'[=,:]' -v n="$1" '
    /^cmdstat_/ && $1 != "cmdstat_config" && $1 != "cmdstat_info" { s += $3 }
    END { printf "%.2f", (n > 0 ? s / n : 0) }'
}

# redis_reads REQUESTS -> reads $REDIS_CLI's server made from its clients' sockets since its last
# CONFIG RESETSTAT, per request (this INFO's own read not counted): 1 / commands per wake-up and
# connection
redis_reads() {
  $REDIS_CLI info stats | tr -d '\r' | awk -F: -v n="$1" '
    $1 == "total_reads_processed" { printf "%.3f", (n > 0 ? ($2 - 1) / n : 0) }'
}

# redis_script_us REQUESTS -> microseconds $REDIS_CLI's server spent running scripts (EVAL, EVALSHA:
# their commands included; Redis's own clock, not disturbed by waiting for a CPU) per request
redis_script_us() {
  $REDIS_CLI info commandstats | tr -d '\r' | awk -F'[=,:]' -v n="$1" '
    $1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { s += $5 }
    END { printf "%.2f", (n > 0 ? s / n : 0) }'
}

# per_request TICKS HZ REQUESTS -> microseconds of CPU per request
per_request() { awk -v d="$1" -v hz="$2" -v n="$3" 'BEGIN { printf "%.1f", (n > 0 ? d / hz * 1e6 / n : 0) }'; }

# shop_services: a private Redis and MariaDB (etc/dev services) under BENCH_TMP/svc and fresh
# secrets in the environment; sets SHOP_SVC, SHOP_DB and SHOP_CONF (the config lines that point
# fcfs at them, for fcfs_start). shop_sql "SQL" runs a statement on its database (tab-separated
# rows, no header).
shop_services() {
  SHOP_SVC=$BENCH_TMP/svc
  FCFS_DEV_REDIS_PORT=0 FCFS_DEV_MYSQL_PORT=0 bash "$BENCH_ROOT/etc/dev" services start "$SHOP_SVC" >&2
  bench_on_exit "bash '$BENCH_ROOT/etc/dev' services stop '$SHOP_SVC'"
  local pw
  key() { head -c 32 /dev/urandom | base64 -w0; }
  FCFS_SECRET_SEAL_KEYS="1:$(key)" FCFS_SECRET_BLIND_KEY=$(key) FCFS_SECRET_TOKEN_KEY=$(key)
  export FCFS_SECRET_SEAL_KEYS FCFS_SECRET_BLIND_KEY FCFS_SECRET_TOKEN_KEY
  pw=$(luajit -e "print(dofile('$BENCH_ROOT/etc/fcfs.lua').mysql_password)")
  SHOP_DB=$(luajit -e "print(dofile('$BENCH_ROOT/etc/fcfs.lua').mysql_database)")
  SHOP_CONF=("redis = \"unix:$SHOP_SVC/redis/redis.sock\"" "mysql_socket = \"$SHOP_SVC/mysql/mysql.sock\""
    "mysql_password = \"$pw\"" "migrations_dir = \"$BENCH_ROOT/migrations\"" "mysql_wait_timeout = 5")
}

# shop_start [KEY=VALUE...]: shop_services, then fcfs_start on them with the repository's
# migrations applied and the extra config lines given.
shop_start() {
  shop_services
  fcfs_start "${SHOP_CONF[@]}" "$@"
  "$FCFS_BIN" -c "$FCFS_CONF" migrate >&2
}

shop_sql() { mariadb --no-defaults --socket="$SHOP_SVC/mysql/mysql.sock" -u"$(id -un)" "$SHOP_DB" -N -e "$1"; }

# shop_product TYPE STOCK -> the id of a new product (NORMAL or FLASH) with STOCK units, on sale since a
# minute ago for a day, limit 1 per member (inserted in MySQL: no admin token needed)
shop_product() {
  shop_sql "INSERT INTO products (name, description, price, type, stock, sale_starts_at, sale_ends_at,
    per_user_limit, created_at, updated_at) VALUES ('bench $1 $(date +%s%N)', 'bench', 10000, '$1', $2,
    UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE, UTC_TIMESTAMP(3) + INTERVAL 1 DAY, 1, UTC_TIMESTAMP(3),
    UTC_TIMESTAMP(3)); SELECT LAST_INSERT_ID()"
}

# flash_product UNITS -> the id of a FLASH product on sale (shop_product), its Redis state created
# (the first GET inits it) so no entry waits for MySQL
flash_product() {
  local id
  id=$(shop_product FLASH "$1")
  curl -fsS -o /dev/null "$FCFS_URL/api/flash/products/$id"
  echo "$id"
}

# flash_setup N UNITS OPENS_IN TOKENS_FILE: bench/flash_setup.lua on the shop of shop_start (N members
# with their tokens in TOKENS_FILE, a FLASH product of UNITS units opening OPENS_IN s from now).
# Sets FLASH_PID and FLASH_OPENS_AT (epoch seconds).
flash_setup() {
  local out
  out=$(cd "$BENCH_ROOT" && "$FCFS_BIN" -c "$FCFS_CONF" run bench/flash_setup.lua "$@")
  FLASH_PID=$(sed -n 's/.*product=\([0-9]*\).*/\1/p' <<<"$out")
  FLASH_OPENS_AT=$(sed -n 's/.*opens_at=\([0-9]*\).*/\1/p' <<<"$out")
  [[ -n $FLASH_PID && -n $FLASH_OPENS_AT ]]
}
