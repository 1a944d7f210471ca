#!/usr/bin/env bash
# bench/members.sh -- the member platform's costs, in one run on one machine (fcfs, 2 workers, a
# private Redis and MariaDB under the temp dir):
#   * login throughput: POST /api/auth/login with the right password, argon2id-bound (each login is
#     one password verification on the thread pool plus a session row);
#   * the token check: GET /api/auth/session (access-token HMAC + expiry + the host.shared
#     revocation lookup, no other I/O) vs GET /hello (no auth) -- target: the authenticated route
#     keeps >= 85% of hello's req/s;
#   * GET /api/users/me (token check + one MySQL row + 5 field decryptions): req/s and p99.
# Targets are interleaved and the sweep repeated ROUNDS times; the median round by req/s is kept.
# The argon2 parameters are those of the config (argon2_ops / argon2_mem_kib defaults of the host).
# env: DURATION=5 CONNS=64 THREADS=2 ROUNDS=3 LOGIN_CONNS=8 FCFS_BIN=build/fcfs
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
LOGIN_CONNS=${LOGIN_CONNS:-8}
export BENCH_ROOT

bench_init
shop_start "shared_dicts = { revoked = \"8m\" }" \
  "app = { mail_transport = \"file\", mail_interval = 0.2, login_max_failures_ip = 1000000 }"

# one verified member
email="bench.$RANDOM@example.com" password="bench123!"
curl -fsS -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\",\
\"name\":\"bench\",\"phone\":\"010-1234-5678\",\"address\":\"Seoul\"}" "$FCFS_URL/api/users" >&2
mail=$BENCH_TMP/mail/1.eml # the first outbox row
for _ in $(seq 50); do [[ -f $mail ]] && break; sleep 0.1; done
code=$(tr -d '\r' <"$mail" | sed -n '/^$/,$p' | tr -d '\n' | base64 -d | grep -o '[0-9]\{6\}' | head -1)
curl -fsS -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"code\":\"$code\"}" \
  "$FCFS_URL/api/users/verify" >&2
export LOGIN_BODY="{\"email\":\"$email\",\"password\":\"$password\"}"
token=$(curl -fsS -H 'Content-Type: application/json' -d "$LOGIN_BODY" "$FCFS_URL/api/auth/login" |
  luajit -e 'print(require("cjson").decode(io.read("*a")).access_token)')
auth="Authorization: Bearer $token"

# login: argon2-bound, a short run at a few connections
echo "\$ wrk -s bench/login.lua -t$THREADS -c$LOGIN_CONNS -d${DURATION}s $FCFS_URL/api/auth/login" >&2
wrk -s "$BENCH_ROOT/bench/login.lua" -t"$THREADS" -c"$LOGIN_CONNS" -d"${DURATION}s" --timeout 10s \
  "$FCFS_URL/api/auth/login" >"$BENCH_TMP/wrk-login.txt" 2>&1
login=$(grep '^RESULT ' "$BENCH_TMP/wrk-login.txt")
echo "login $login"

declare -A all
bad=0
for p in /hello /api/auth/session /api/users/me; do # warm-up
  wrk -t"$THREADS" -c"$CONNS" -d1s -H "$auth" "$FCFS_URL$p" >/dev/null
done
for r in $(seq "$ROUNDS"); do
  for t in hello session me; do
    case $t in
      hello) line=$(wrk_result "$t-r$r" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$FCFS_URL/hello") ;;
      session) line=$(wrk_result "$t-r$r" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H "$auth" "$FCFS_URL/api/auth/session") ;;
      me) line=$(wrk_result "$t-r$r" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -H "$auth" "$FCFS_URL/api/users/me") ;;
    esac
    echo "$line"
    all[$t]+="${line#* }"$'\n'
    (($(field sock_err "$line") == 0 && $(field non2xx "$line") == 0)) || bad=1
  done
done
median() { sed '/^$/d' <<<"${all[$1]}" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) print substr($i, 5), $0 }' |
  sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }' | cut -d' ' -f2-; }
h=$(median hello) s=$(median session) m=$(median me)
ratio=$(awk -v a="$(field rps "$s")" -v b="$(field rps "$h")" 'BEGIN { printf "%.2f", a / b }')
echo
echo "| target | req/s | p50 ms | p99 ms |"
echo "|---|---:|---:|---:|"
for x in "login:$login" "hello:$h" "session:$s" "me:$m"; do
  l=${x#*:}
  printf '| %s | %s | %s | %s |\n' "${x%%:*}" "$(field rps "$l")" "$(field p50_ms "$l")" "$(field p99_ms "$l")"
done
echo "RESULT login_rps=$(field rps "$login") hello_rps=$(field rps "$h") session_rps=$(field rps "$s")" \
  "session_vs_hello=$ratio me_rps=$(field rps "$m") me_p99_ms=$(field p99_ms "$m")" \
  "target=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.85) ? "met" : "missed" }')"
exit "$bad"
