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
mode=0
: >"$res"
for _ in $(seq 31); do
  n0=$(bench_done "$out") t0=$(date +%s%3N)
  sleep 2
  echo "AB $mode $t0 $((($(bench_done "$out") - n0) / 2))" >>"$res"
  mode=$((1 - mode))
  sql=$sql_a
  if [ $mode = 1 ]; then sql=$sql_b; fi
  echo "$sql; SELECT pg_reload_conf();" | "${psql[@]}" -v ON_ERROR_STOP=1 >/dev/null
done
wait $bench_pid || true
grep -a '^requests\|^cpu' "$out" >>"$res"
rm -f "$out"
python3 "$here/abblocks.py" "$res"
