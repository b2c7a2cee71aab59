#!/usr/bin/env bash
# The peer's database: PostgreSQL 15 (Debian's `postgresql`, installed with
# apt-get when missing and we are root), a throwaway cluster in DIR on
# 127.0.0.1:PORT, trust authentication, loaded with load.sql from DIR.
#   postgres.sh start DIR PORT    initdb, start, wait until it answers
#   postgres.sh load DIR PORT     run load.sql (the CSV files beside it)
#   postgres.sh stop DIR          stop and remove the cluster
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
if [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >&2
  else
    echo "the peer benchmark needs PostgreSQL 15 ($bin): apt-get install postgresql-15" >&2
    exit 1
  fi
fi
# PostgreSQL refuses to run as root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cmd=$1 dir=$2
case "$cmd" in
  start)
    port=$3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log"
    # Memory for a 24 GiB, 2-core machine; JIT off (it costs short queries).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start -o \
      "-p $port -k $dir -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c effective_cache_size=4GB -c work_mem=16MB -c jit=off -c max_connections=100" >/dev/null
    ;;
  load)
    port=$3
    cd "$dir"
    "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -f load.sql
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start DIR PORT | load DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
