#!/bin/bash
# CPU profile (perf, cpu-clock with call graphs) of the PostgreSQL processes
# over 8 s inside a 15-s gift-hot run. This VM has no hardware counters, so the
# software clock it is. Read it with: perf report -i PERF_DATA --children
# usage: docs/scripts/pgperf.sh COINLEDGER_BINARY PERF_DATA [CALLERS]
set -eu
bin=$1 data=$2 callers=${3:-32} out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 15s "$out"
sleep 1
perf record -e cpu-clock -F 2000 -g -p "$(pgrep -x postgres | paste -sd,)" -o "$data" -- sleep 8 >/dev/null 2>&1
wait $bench_pid
grep -a '^requests' "$out"
rm -f "$out"
