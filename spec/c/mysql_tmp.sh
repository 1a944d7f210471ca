#!/bin/sh
# A throwaway mariadbd for tests, listening on DIR/mysql.sock (and on
# 127.0.0.1:PORT when a port is given); root has no password.
#   mysql_tmp.sh start DIR [PORT]   (initialises DIR/data on first use)
#   mysql_tmp.sh stop DIR
set -eu
cmd=$1
dir=$2
port=${3:-0}
case "$cmd" in
start)
  mkdir -p "$dir"
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/install.log" 2>&1
  fi
  if [ "$port" = 0 ]; then net="--skip-networking"; else net="--port=$port --bind-address=127.0.0.1"; fi
  # shellcheck disable=SC2086
  mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/mysql.sock" $net --user=root \
    --pid-file="$dir/mysqld.pid" --innodb-buffer-pool-size=32M --log-error="$dir/error.log" \
    >/dev/null 2>&1 &
  i=0
  while ! mariadb-admin --no-defaults -S "$dir/mysql.sock" -uroot ping >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "mariadbd did not start, see $dir/error.log" >&2; exit 1; fi
    sleep 0.1
  done
  ;;
stop)
  [ -f "$dir/mysqld.pid" ] || exit 0
  pid=$(cat "$dir/mysqld.pid")
  kill "$pid" 2>/dev/null || exit 0
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then kill -9 "$pid"; break; fi
    sleep 0.1
  done
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
