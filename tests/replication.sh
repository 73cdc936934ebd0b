#!/usr/bin/env bash
# A PostgreSQL primary and a streaming replica of it, for the read-replica tests (tests/replica/).
#
#   tests/replication.sh start   start both (making them first if need be); does nothing when they run
#   tests/replication.sh stop    stop both
#   tests/replication.sh stop-replica   stop the replica only (a test of a replica going down)
#   tests/replication.sh status  exit 0 when the primary answers and the replica is in recovery
#
# Ports ROOMCAST_TEST_REPLICATION_PORTS ("5433 5434"), data under ROOMCAST_TEST_REPLICATION_DIR
# (/tmp/roomcast-pg-replication). The CI database on 5432 is not touched. PostgreSQL refuses to run
# as root: as root, the servers run as the `postgres` user. Test settings, not production ones:
# fsync is off, and trust authentication on loopback only.
set -euo pipefail

ROOT=${ROOMCAST_TEST_REPLICATION_DIR:-/tmp/roomcast-pg-replication}
read -r PRIMARY_PORT REPLICA_PORT <<<"${ROOMCAST_TEST_REPLICATION_PORTS:-5433 5434}"
PRIMARY=$ROOT/primary
REPLICA=$ROOT/replica

# The server binaries: PATH's, else the newest of Debian's.
bin_dir() {
  local found
  if found=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$found")/pg_basebackup" ]; then
    dirname "$found"; return
  fi
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || { echo "replication: no PostgreSQL server binaries found" >&2; exit 1; }
  echo "$found"
}
BIN=$(bin_dir)

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_at() {  # psql_at PORT SQL: one value
  as_postgres "$BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d postgres -tAXc "$2"
}

answers() { psql_at "$1" "SELECT 1" >/dev/null 2>&1; }

wait_until() {  # wait_until DESCRIPTION COMMAND...: up to 30 s
  local what=$1; shift
  for _ in $(seq 1 60); do "$@" && return 0; sleep 0.5; done
  echo "replication: $what did not happen within 30 s" >&2
  return 1
}

start_server() {  # start_server DATA_DIR PORT
  as_postgres "$BIN/pg_ctl" -D "$1" -l "$1.log" -w -t 30 -o "-p $2" start >/dev/null
}

make_primary() {
  rm -rf "$PRIMARY"
  as_postgres "$BIN/initdb" -D "$PRIMARY" -U postgres --auth=trust --no-instructions >/dev/null
  cat >>"$PRIMARY/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$ROOT'
wal_level = replica
max_wal_senders = 4
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
fsync = off
full_page_writes = off
shared_buffers = '32MB'
max_connections = 200
EOF
}

make_replica() {
  rm -rf "$REPLICA"
  as_postgres "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$REPLICA" -R -X stream -c fast
}

in_recovery() { [ "$(psql_at "$REPLICA_PORT" "SELECT pg_is_in_recovery()" 2>/dev/null)" = t ]; }

streaming() {
  [ "$(psql_at "$PRIMARY_PORT" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" -ge 1 ]
}

start() {
  mkdir -p "$ROOT"
  [ "$(id -u)" = 0 ] && chown postgres: "$ROOT"
  if ! answers "$PRIMARY_PORT"; then
    [ -f "$PRIMARY/PG_VERSION" ] || make_primary
    as_postgres "$BIN/pg_ctl" -D "$PRIMARY" stop -m fast >/dev/null 2>&1 || true  # a stale postmaster.pid
    start_server "$PRIMARY" "$PRIMARY_PORT"
  fi
  if [ "$(psql_at "$PRIMARY_PORT" "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 0 ]; then
    psql_at "$PRIMARY_PORT" "CREATE DATABASE test" >/dev/null
  fi
  if ! answers "$REPLICA_PORT"; then
    [ -f "$REPLICA/standby.signal" ] || make_replica
    as_postgres "$BIN/pg_ctl" -D "$REPLICA" stop -m fast >/dev/null 2>&1 || true
    if ! start_server "$REPLICA" "$REPLICA_PORT"; then
      # A replica that cannot start (its primary was made anew, say) is made again from the primary.
      make_replica
      start_server "$REPLICA" "$REPLICA_PORT"
    fi
  fi
  # A run stopped in the middle of a test may have left replay paused.
  psql_at "$REPLICA_PORT" "SELECT pg_wal_replay_resume()" >/dev/null
  wait_until "the replica's recovery" in_recovery
  wait_until "streaming from the primary" streaming
  echo "replication: primary on $PRIMARY_PORT, replica on $REPLICA_PORT (data in $ROOT)"
}

stop() {
  for dir in "$REPLICA" "$PRIMARY"; do
    [ -f "$dir/postmaster.pid" ] && as_postgres "$BIN/pg_ctl" -D "$dir" stop -m fast >/dev/null || true
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  stop-replica) as_postgres "$BIN/pg_ctl" -D "$REPLICA" stop -m fast >/dev/null ;;
  status) answers "$PRIMARY_PORT" && in_recovery ;;
  *) echo "usage: $0 [start|stop|stop-replica|status]" >&2; exit 2 ;;
esac
