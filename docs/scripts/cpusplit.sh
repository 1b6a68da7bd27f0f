#!/bin/bash
# CPU per gift of a gift-hot run, split between the coinledger process (load
# generator and server) and PostgreSQL, from /proc over 12 s inside a 15-s run.
# usage: docs/scripts/cpusplit.sh COINLEDGER_BINARY [CALLERS]
set -eu
bin=$1 callers=${2:-32} out=$(mktemp)
. "$(dirname "$0")/benchlib.sh"
start_bench "$bin" "$callers" 15s "$out"
machine() { read -r _ u n s i w q sq _ </proc/stat; echo $((u + n + s + q + sq)) $((i + w)); }
read -r busy1 idle1 < <(machine); go1=$(proc_sum 14,15 $bench_pid); pg1=$(proc_sum 14,15 $(pgrep -x postgres)); n1=$(bench_done "$out")
sleep 12
read -r busy2 idle2 < <(machine); go2=$(proc_sum 14,15 $bench_pid); pg2=$(proc_sum 14,15 $(pgrep -x postgres)); n2=$(bench_done "$out")
wait $bench_pid
n=$((n2 - n1)) busy=$((busy2 - busy1)) idle=$((idle2 - idle1))
hz=$(getconf CLK_TCK)
echo "callers=$callers gifts/s=$((n / 12)) idle=$((100 * idle / (busy + idle)))%" \
  "cpu/gift: all=$((busy * 1000000 / hz / n))us go=$(((go2 - go1) * 1000000 / hz / n))us pg=$(((pg2 - pg1) * 1000000 / hz / n))us" \
  "| $(grep -a '^batches' "$out" | grep -o '[0-9.]* requests')"
rm -f "$out"
