#!/bin/bash
# In-run A/B of a PostgreSQL setting: one 66-s gift-hot run whose private
# PostgreSQL is switched between two settings every 2 s (SQL_B, then SQL_A,
# each followed by pg_reload_conf()), writing a line "AB MODE UNIX_MS RATE"
# per block to OUT (MODE 1 is B) and the run's summary after them; then
# abblocks.py compares each block with its neighbours, so the machine's drift
# cancels. The same SQL for both sides is the null run.
# usage: docs/scripts/ab-pgsetting.sh COINLEDGER_BINARY "SQL_B" "SQL_A" OUT
# e.g.   ... "ALTER SYSTEM SET synchronous_commit = off" "ALTER SYSTEM SET synchronous_commit = on" /tmp/ab.txt
set -eu
bin=$1 sql_b=$2 sql_a=$3 res=$4 out=$(mktemp)
here=$(dirname "$0")
. "$here/benchlib.sh"
start_bench "$bin" 32 66s "$out"
bench_psql
apply() { echo "$1; SELECT pg_reload_conf();" | "${psql[@]}" -v ON_ERROR_STOP=1 >/dev/null; }
ab_blocks "$out" "$res" 'apply "$sql_b"' 'apply "$sql_a"'
rm -f "$out"
python3 "$here/abblocks.py" "$res"
