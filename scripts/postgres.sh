#!/usr/bin/env bash
# Make sure a local PostgreSQL answers on 127.0.0.1:5432 with a `test` database (for the storage tests).
# Prints the URL to use; prints nothing when no server can be had (the PostgreSQL tests then skip).
set -uo pipefail
url="postgresql+psycopg://postgres@127.0.0.1:5432/test"
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! ready && command -v pg_ctlcluster >/dev/null; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 20); do ready && break; sleep 0.5; done
fi
ready || exit 0
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 || true
fi
echo "$url"
