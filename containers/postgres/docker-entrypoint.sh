#!/bin/bash
# First start: initdb with the POSTGRES_* variables (as the official image), create
# POSTGRES_DB; every start: run the server on all interfaces in the foreground.
set -euo pipefail
if [[ ${1:-} != postgres && ${1:-} != -* ]]; then
  exec "$@"
fi
[[ ${1:-} == postgres ]] && shift

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z ${POSTGRES_PASSWORD:-} && $method != trust ]]; then
    echo "error: POSTGRES_PASSWORD is not set." >&2
    echo "next step: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust for a throw-away dev server)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host="$method" >/dev/null
  rm -f "$pwfile"
  printf 'host all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
  if [[ $db != postgres ]]; then
    printf 'CREATE DATABASE "%s";\n' "${db//\"/\"\"}" | postgres --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "PostgreSQL init process complete; ready for start up."
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
