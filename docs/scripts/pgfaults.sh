#!/bin/bash
# Minor page faults of the PostgreSQL processes a gift, over 10 s inside a
# 15-s gift-hot run.
# usage: docs/scripts/pgfaults.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 15s "$out"
f1=$(proc_sum 10 $(pgrep -x postgres)) n1=$(bench_done "$out")
sleep 10
f2=$(proc_sum 10 $(pgrep -x postgres)) n2=$(bench_done "$out")
wait $bench_pid
echo "callers=$callers gifts/s=$(((n2 - n1) / 10)) faults/gift=$(((f2 - f1) * 100 / (n2 - n1)))e-2"
rm -f "$out"
