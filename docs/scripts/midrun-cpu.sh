#!/bin/bash
# A/B of a database change inside one gift-hot run, by CPU a gift rather than
# throughput: reads the coinledger process's and PostgreSQL's CPU (as
# cpusplit.sh does) over 11 s before the SQL and 11 s from 2 s after it, and
# prints their ratio after/before. Machine speed moves both processes alike,
# so a change to one side shows in the ratio; "SELECT 1" is the control.
# The run is stopped after the second window, so the SQL may leave the
# database unable to pass the bench's after-check (dropping an index it uses).
# usage: docs/scripts/midrun-cpu.sh COINLEDGER_BINARY "SQL"
# For DDL, start the SQL with SET lock_timeout = '20ms' so that it is retried.
set -eu
bin=$1 sql=$2 out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" 32 60s "$out"
# window prints "GO_TICKS PG_TICKS GIFTS" spent over 11 s from now.
window() {
  local go1 pg1 n1
  go1=$(proc_sum 14,15 $bench_pid) pg1=$(proc_sum 14,15 $(pgrep -x postgres)) n1=$(bench_done "$out")
  sleep 11
  echo $(($(proc_sum 14,15 $bench_pid) - go1)) $(($(proc_sum 14,15 $(pgrep -x postgres)) - pg1)) $(($(bench_done "$out") - n1))
}
sleep 2
read -r go_b pg_b n_b < <(window)
bench_apply_sql "$sql"
sleep 2
read -r go_a pg_a n_a < <(window)
kill $bench_pid
wait $bench_pid || true
hz=$(getconf CLK_TCK)
awk -v hz="$hz" -v gb="$go_b" -v pb="$pg_b" -v nb="$n_b" -v ga="$go_a" -v pa="$pg_a" -v na="$n_a" 'BEGIN {
  printf "before %d/s go %.0fus pg %.0fus | after %d/s go %.0fus pg %.0fus | pg/go after/before %.3f\n",
    nb / 11, gb * 1e6 / hz / nb, pb * 1e6 / hz / nb, na / 11, ga * 1e6 / hz / na, pa * 1e6 / hz / na, (pa / ga) / (pb / gb) }'
rm -f "$out"
