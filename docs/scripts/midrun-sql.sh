#!/bin/bash
# A/B of a database setting inside one 30-s gift-hot run: after 15 s, runs SQL
# on the bench's private PostgreSQL (as its superuser, one statement at a
# time) and compares the gifts/s of seconds 3-15 with seconds 18-30. Being one
# run, it is free of the machine's drift between runs; "SELECT 1" is the control.
# usage: docs/scripts/midrun-sql.sh COINLEDGER_BINARY "ALTER SYSTEM SET ...; ..."
# For DDL, start the SQL with SET lock_timeout = '20ms' so that it is retried.
set -eu
bin=$1 sql=$2 out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" 32 30s "$out"
sleep 14
bench_apply_sql "$sql; SELECT pg_reload_conf()"
wait $bench_pid
grep -a 'gift-hot: ' "$out" | grep -o '[0-9.]*s *[0-9]* ok' | awk '
  { t = $1 + 0; r = $2 - prev; prev = $2
    if (t >= 3 && t <= 15) { a += r; na++ }
    if (t >= 18) { b += r; nb++ } }
  END { printf "before %.0f/s after %.0f/s ratio %.3f\n", a / na, b / nb, (b / nb) / (a / na) }'
rm -f "$out"
